"""The callback protocol: what the callback receives, what it may return, and its failures."""

from __future__ import annotations

import builtins
import types
from typing import Any

import pytest

import framecache
from conftest import CountingCallback, copy_callback, copy_result, none_callback
from framecache import CallbackResult, FrameAction, FrameExecStrategy, GuardedCode
from framecache.guards import RootGuardManager


def add(x: Any, y: Any = 10) -> Any:
    z = x + y
    return z


def leaf(x: int) -> int:
    return x + 1


def caller(x: int) -> int:
    return leaf(x) * 10


def make_closure(a: int) -> types.FunctionType:
    b = 2

    def closure_fn(c: int) -> tuple[int, int, int]:
        nonlocal b
        b += 1
        return a, b, c

    return closure_fn


def cell_arg(x: int) -> int:
    def read() -> int:
        return x

    x += 1
    return read()


def kwonly(a: int, /, b: int, *args: int, c: int, d: int = 4, **kwargs: int) -> tuple:
    return a, b, args, c, d, kwargs


class Recorder:
    """Calls ``action`` on the frames of ``code`` and records what the callback saw."""

    def __init__(self, code: types.CodeType, action: Any = None) -> None:
        self.code = code
        self.action = action
        self.views: list[framecache.FrameView] = []
        self.seen: list[dict[str, Any]] = []

    def __call__(self, frame: framecache.FrameView, entry: object, frame_state: dict) -> Any:
        if frame.f_code is not self.code:
            return None
        self.views.append(frame)
        self.seen.append(
            {
                "valid": frame.valid,
                "f_code": frame.f_code,
                "f_locals": frame.f_locals,
                "f_globals": frame.f_globals,
                "f_builtins": frame.f_builtins,
                "closure": frame.closure,
                "f_lasti": frame.f_lasti,
                "entry": entry,
                "frame_state": frame_state,
                "repr": repr(frame),
            }
        )
        return self.action(frame) if self.action else None


# --- what the callback receives -------------------------------------------------------------


def test_callback_receives_a_frame_view_the_first_entry_and_frame_state() -> None:
    rec = Recorder(add.__code__, lambda f: copy_result(f.f_code, typed_x(int)))
    with framecache.optimize(rec):
        assert add(1, 2) == 3
        assert add("a", "b") == "ab"
    first, second = rec.seen
    assert isinstance(rec.views[0], framecache.FrameView)
    assert first["entry"] is None
    assert isinstance(second["entry"], framecache.CacheEntry)
    assert second["entry"].code is framecache.cache_entries(add.__code__)[1].code
    assert first["frame_state"] is second["frame_state"]
    assert first["frame_state"] is framecache.frame_state(add.__code__)
    assert first["valid"] is True
    assert first["repr"].startswith("<FrameView of <code object add at ")


def typed_x(tp: type) -> RootGuardManager:
    root = RootGuardManager()
    root.local("x").type_match(tp)
    return root


def test_frame_view_fields_of_a_plain_function() -> None:
    rec = Recorder(add.__code__)
    with framecache.optimize(rec):
        assert add(5) == 15
    [seen] = rec.seen
    assert seen["f_code"] is add.__code__
    # Arguments (defaults included) are bound; the body's locals are not yet.
    assert seen["f_locals"] == {"x": 5, "y": 10}
    assert seen["f_globals"] is globals()
    assert seen["f_builtins"] is builtins.__dict__
    assert seen["closure"] is None
    assert seen["f_lasti"] == -1


def test_frame_view_locals_include_free_variables_and_cell_arguments() -> None:
    fn = make_closure(7)
    rec = Recorder(fn.__code__)
    with framecache.optimize(rec):
        assert fn(1) == (7, 3, 1)
    [seen] = rec.seen
    assert seen["f_locals"] == {"c": 1, "a": 7, "b": 2}
    assert seen["closure"] is fn.__closure__

    rec = Recorder(cell_arg.__code__)
    with framecache.optimize(rec):
        assert cell_arg(4) == 5
    [seen] = rec.seen
    assert seen["f_locals"] == {"x": 4}
    assert seen["closure"] is None


def test_frame_view_locals_of_keyword_only_star_args_and_kwargs() -> None:
    rec = Recorder(kwonly.__code__)
    with framecache.optimize(rec):
        assert kwonly(1, 2, 3, c=5, e=6) == (1, 2, (3,), 5, 4, {"e": 6})
    [seen] = rec.seen
    assert seen["f_locals"] == {"a": 1, "b": 2, "args": (3,), "c": 5, "d": 4, "kwargs": {"e": 6}}


def test_frame_view_of_module_code() -> None:
    code = compile("value = base * 2\n", "<callback-module>", "exec")
    rec = Recorder(code)
    namespace: dict[str, Any] = {"base": 21}
    with framecache.optimize(rec):
        exec(code, namespace)
    assert namespace["value"] == 42
    [seen] = rec.seen
    assert seen["f_code"] is code
    assert seen["f_globals"] is namespace
    # A copy of the namespace as it was before the module ran.
    assert seen["f_locals"] is not namespace
    assert set(seen["f_locals"]) == {"__builtins__", "base"}
    assert seen["f_locals"]["base"] == 21
    assert seen["f_lasti"] == -1


def test_frame_view_raises_after_the_callback_returns() -> None:
    rec = Recorder(add.__code__)
    with framecache.optimize(rec):
        add(1)
    [view] = rec.views
    assert view.valid is False
    assert repr(view) == "<FrameView (expired)>"
    for field in ("f_code", "f_locals", "f_globals", "f_builtins", "closure", "f_lasti"):
        with pytest.raises(RuntimeError, match="no longer valid"):
            getattr(view, field)


def test_frames_run_by_the_callback_are_not_intercepted() -> None:
    outer_calls: list[str] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> None:
        outer_calls.append(frame.f_code.co_name)
        if frame.f_code is caller.__code__:
            assert leaf(1) == 2  # runs normally: the hook is off while the callback runs
        return None

    with framecache.optimize(callback):
        assert caller(1) == 20
    assert outer_calls == ["caller", "leaf"]


# --- what the callback returns ----------------------------------------------------------------


def test_returning_none_runs_the_frame_normally_and_asks_again_next_time() -> None:
    cb = CountingCallback(none_callback)
    with framecache.optimize(cb):
        assert add(1, 2) == 3
        assert add(3, 4) == 7
    assert cb.count(add.__code__) == 2
    assert framecache.cache_entries(add.__code__) == []


def test_a_guarded_code_becomes_an_entry_that_runs_now() -> None:
    ran: list[str] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is not add.__code__:
            return None
        # A "compiled" code that differs from the original, to tell them apart.
        compiled = compile("def add(x, y=10):\n    return ('compiled', x, y)\n", "<c>", "exec")
        fn_code = next(c for c in compiled.co_consts if isinstance(c, types.CodeType))
        ran.append("compile")
        return CallbackResult(GuardedCode(fn_code, RootGuardManager(), compile_id=7))

    with framecache.optimize(callback):
        assert add(1) == ("compiled", 1, 10)
        assert add(2, 3) == ("compiled", 2, 3)
    assert ran == ["compile"]
    [entry] = framecache.cache_entries(add.__code__)
    assert entry.compile_id == 7
    assert entry.hit_count == 1
    assert add(1) == 11


@pytest.mark.parametrize("action", [FrameAction.SKIP, FrameAction.RUN_ONLY])
def test_a_strategy_applied_to_the_code_is_stored(action: FrameAction) -> None:
    strategy = FrameExecStrategy(action, FrameAction.DEFAULT)
    first = {"done": False}

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is not add.__code__:
            return None
        if not first["done"]:
            first["done"] = True
            return CallbackResult(
                GuardedCode(frame.f_code.replace(), typed_x(int)), strategy, apply_to_code=True
            )
        return copy_result(frame.f_code)

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert add(1, 2) == 3
        assert add(2, 3) == 5
        assert add("a", "b") == "ab"
    assert cb.count(add.__code__) == 1
    assert framecache.get_code_strategy(add.__code__) == strategy
    [entry] = framecache.cache_entries(add.__code__)
    # SKIP runs every later frame normally; RUN_ONLY still uses the entry.
    assert entry.hit_count == (0 if action == FrameAction.SKIP else 1)


@pytest.mark.parametrize("action", [FrameAction.SKIP, FrameAction.RUN_ONLY])
def test_a_strategy_not_applied_to_the_code_is_for_this_frame_only(action: FrameAction) -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is caller.__code__:
            return CallbackResult(strategy=FrameExecStrategy(action, FrameAction.SKIP))
        return None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert caller(1) == 20
        assert cb.count(leaf.__code__) == 0
        assert caller(2) == 30
    assert cb.count(caller.__code__) == 2
    assert cb.count(leaf.__code__) == 0
    assert framecache.get_code_strategy(caller.__code__) == FrameExecStrategy()
    with framecache.optimize(cb):
        assert leaf(1) == 2
    assert cb.count(leaf.__code__) == 1


def test_recursive_skip_applies_to_every_frame_called_from_the_frame() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is caller.__code__:
            return CallbackResult(
                GuardedCode(frame.f_code.replace(), RootGuardManager()),
                FrameExecStrategy(FrameAction.DEFAULT, FrameAction.SKIP),
                apply_to_code=True,
            )
        return copy_result(frame.f_code)

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert leaf(0) == 1  # leaf gets an entry of its own
        assert caller(1) == 20  # compiles caller; leaf is skipped under it
        assert caller(2) == 30  # hits caller; leaf is skipped again
        assert leaf(5) == 6
    assert cb.count(leaf.__code__) == 1
    assert cb.count(caller.__code__) == 1
    [leaf_entry] = framecache.cache_entries(leaf.__code__)
    assert leaf_entry.hit_count == 1  # only the direct call
    assert framecache.cache_entries(caller.__code__)[0].hit_count == 1


def test_recursive_run_only_uses_callees_entries_but_never_compiles_them() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is caller.__code__:
            return CallbackResult(
                GuardedCode(frame.f_code.replace(), RootGuardManager()),
                FrameExecStrategy(FrameAction.DEFAULT, FrameAction.RUN_ONLY),
                apply_to_code=True,
            )
        if frame.f_code is leaf.__code__:
            return copy_result(frame.f_code, typed_x(int))
        return None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert leaf(0) == 1
        assert caller(1) == 20  # leaf hits its int entry
        assert caller(True) == 20  # leaf(True) misses: runs normally, no callback
        assert leaf(True) == 2  # called directly, it compiles
    assert cb.count(leaf.__code__) == 2
    assert [e.hit_count for e in framecache.cache_entries(leaf.__code__)] == [0, 1]


def test_strategy_without_guarded_code_and_without_apply() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is add.__code__:
            return CallbackResult(strategy=FrameExecStrategy(FrameAction.DEFAULT))
        return None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert add(1, 1) == 2
        assert add(1, 2) == 3
    assert cb.count(add.__code__) == 2
    assert framecache.cache_entries(add.__code__) == []


# --- bad results and failures ----------------------------------------------------------------


def other_layout(p: int, q: int, r: int) -> int:
    return p + q + r


def kwonly_renamed(a: int, /, b: int, *args: int, c: int, e: int = 4, **kwargs: int) -> tuple:
    return a, b, args, c, e, kwargs


def no_varargs(a: int, /, b: int, *, c: int, d: int = 4, **kwargs: int) -> tuple:
    return a, b, (), c, d, kwargs


def with_free_variable(x: Any, y: Any = 10) -> Any:
    return x + y + add.__code__.co_argcount


MODULE_CODE = compile("pass\n", "<module>", "exec")


@pytest.mark.parametrize(
    ("fn", "args", "kwargs", "compiled", "message"),
    [
        (add, (1, 2), {}, other_layout.__code__, "must keep the original's arguments"),
        (add, (1, 2), {}, MODULE_CODE, "must be a function code object like the original"),
        (kwonly, (1, 2), {"c": 3}, kwonly_renamed.__code__, "keyword-only argument names"),
        (kwonly, (1, 2), {"c": 3}, no_varargs.__code__, r"\*args=1, \*\*kwargs=1; got"),
        (make_closure(1), (1,), {}, add.__code__, "must keep the original's arguments"),
        (
            make_closure(1),
            (1,),
            {},
            (lambda c: c).__code__,
            "must have the original's 2 free variables, got 0",
        ),
    ],
)
def test_a_guarded_code_with_another_argument_layout_is_rejected(
    fn: Any, args: tuple, kwargs: dict, compiled: types.CodeType, message: str
) -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is fn.__code__:
            return CallbackResult(GuardedCode(compiled, RootGuardManager()))
        return None

    with framecache.optimize(callback), pytest.raises(ValueError, match=message):
        fn(*args, **kwargs)
    assert framecache.cache_entries(fn.__code__) == []
    assert framecache.get_recompile_limits()[2] == 0
    # The thread is in a sound state: the next call compiles normally.
    with framecache.optimize(copy_callback):
        fn(*args, **kwargs)
    assert len(framecache.cache_entries(fn.__code__)) == 1


@pytest.mark.parametrize("bad", [1, "result", GuardedCode(add.__code__, RootGuardManager())])
def test_a_wrong_return_type_is_a_type_error(bad: object) -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return bad if frame.f_code is add.__code__ else None

    with (
        framecache.optimize(callback),
        pytest.raises(TypeError, match="callback must return None or a CallbackResult, got"),
    ):
        add(1, 2)
    assert framecache.cache_entries(add.__code__) == []


class CallbackFailure(Exception):
    pass


def test_an_exception_in_the_callback_reaches_the_caller_and_leaves_nothing_behind() -> None:
    raised: list[BaseException] = []
    fail = {"on": True}

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is not add.__code__:
            return None
        if fail["on"]:
            exc = CallbackFailure("from the callback")
            raised.append(exc)
            raise exc
        return copy_result(frame.f_code)

    with framecache.optimize(callback):
        with pytest.raises(CallbackFailure) as info:
            caller_of_add()
        assert info.value is raised[0]
        # The traceback runs through the caller of add.
        names = [entry.name for entry in info.traceback]
        assert "caller_of_add" in names
        assert "callback" in names
        assert framecache.cache_entries(add.__code__) == []
        assert framecache.get_eval_frame() is callback
        fail["on"] = False
        assert caller_of_add() == 3
        # The hook is on again for callees (it was suspended during the callback).
        assert leaf(1) == 2
    assert len(framecache.cache_entries(add.__code__)) == 1


def caller_of_add() -> Any:
    return add(1, 2)


def test_a_keyboard_interrupt_in_the_callback_propagates() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is add.__code__:
            raise KeyboardInterrupt
        return None

    with framecache.optimize(callback):
        with pytest.raises(KeyboardInterrupt):
            add(1, 2)
        framecache.set_eval_frame(copy_callback)
        assert add(1, 2) == 3
    assert len(framecache.cache_entries(add.__code__)) == 1


def test_a_callback_that_resets_the_code_being_compiled() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is not add.__code__:
            return None
        state["before reset"] = True
        framecache.reset_code(frame.f_code)
        return CallbackResult(
            GuardedCode(frame.f_code.replace(), typed_x(type(frame.f_locals["x"]))),
            FrameExecStrategy(FrameAction.DEFAULT, FrameAction.DEFAULT),
            apply_to_code=True,
        )

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert add(1, 2) == 3
        assert add(2, 2) == 4
        assert add(1.0, 2) == 3.0
    assert cb.count(add.__code__) == 2
    entries = framecache.cache_entries(add.__code__)
    # Each compile reset the code first: only the last entry is left.
    assert len(entries) == 1
    assert entries[0].guard_manager.check({"x": 1.0})
    assert framecache.frame_state(add.__code__) == {}


def test_a_callback_that_turns_the_thread_off() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is caller.__code__:
            framecache.set_eval_frame(None)
            return copy_result(frame.f_code)
        return None

    cb = CountingCallback(callback)
    framecache.set_eval_frame(cb)
    try:
        result = caller(1)
        after = framecache.get_eval_frame()
    finally:
        framecache.set_eval_frame(None)
    assert result == 20
    assert after is None
    assert cb.count(leaf.__code__) == 0
    assert len(framecache.cache_entries(caller.__code__)) == 1


class PythonGuards:
    """A guard manager in Python: check() returns ``result`` or raises ``error``."""

    def __init__(self, result: bool = True, error: BaseException | None = None) -> None:
        self.result = result
        self.error = error
        self.seen: list[dict] = []

    def check(self, f_locals: dict) -> bool:
        self.seen.append(dict(f_locals))
        if self.error is not None:
            raise self.error
        return self.result


def test_a_python_guard_manager_gets_the_frame_locals() -> None:
    guards = PythonGuards()
    fn = make_closure(3)

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, guards) if frame.f_code is fn.__code__ else None

    with framecache.optimize(callback):
        assert fn(1) == (3, 3, 1)
        assert fn(2) == (3, 4, 2)
    assert guards.seen == [{"c": 2, "a": 3, "b": 3}]
    assert framecache.cache_entries(fn.__code__)[0].hit_count == 1


@pytest.mark.parametrize(
    "guards", [PythonGuards(result=False), PythonGuards(error=LookupError("guard bug"))]
)
def test_a_failing_or_raising_python_guard_is_a_miss(guards: PythonGuards) -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, guards) if frame.f_code is add.__code__ else None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert add(1, 2) == 3
        assert add(2, 2) == 4
    assert cb.count(add.__code__) == 2
    assert len(framecache.cache_entries(add.__code__)) == 2
    assert [e.hit_count for e in framecache.cache_entries(add.__code__)] == [0, 0]


def test_a_keyboard_interrupt_in_a_python_guard_propagates() -> None:
    guards = PythonGuards()

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, guards) if frame.f_code is add.__code__ else None

    with framecache.optimize(callback):
        add(1, 2)
    guards.error = KeyboardInterrupt()
    with framecache.run_only():
        with pytest.raises(KeyboardInterrupt):
            add(1, 2)
        guards.error = None
        assert add(3, 2) == 5
    assert framecache.cache_entries(add.__code__)[0].hit_count == 1


class KeylessNamespace:
    """A namespace mapping for exec() with no keys(): it cannot be copied into a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.data[key] = value


def test_an_error_reading_the_locals_for_a_python_guard_is_a_miss() -> None:
    code = compile("a = 1\n", "<keyless>", "exec")
    guards = PythonGuards()

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, guards) if frame.f_code is code else None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        first, second = KeylessNamespace(), KeylessNamespace()
        exec(code, {}, first)
        exec(code, {}, second)  # the guard cannot read the locals: a miss, not an error
    assert first.data == second.data == {"a": 1}
    assert guards.seen == []
    assert cb.count(code) == 2
    assert [e.hit_count for e in framecache.cache_entries(code)] == [0, 0]


def test_the_original_code_itself_as_the_compiled_code() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is caller.__code__:
            return CallbackResult(GuardedCode(frame.f_code, RootGuardManager()))
        return None

    cb = CountingCallback(callback)
    with framecache.optimize(cb):
        assert caller(1) == 20
        assert caller(2) == 30
    assert cb.count(caller.__code__) == 1
    assert cb.count(leaf.__code__) == 2  # the callees are still looked up
    [entry] = framecache.cache_entries(caller.__code__)
    assert entry.code is caller.__code__
    assert entry.hit_count == 1


@pytest.mark.parametrize("kind", ["generator", "coroutine"])
def test_an_exception_in_the_callback_for_a_generator_or_coroutine_frame(kind: str) -> None:
    def numbers() -> Any:
        yield 1

    async def answer() -> int:
        return 42

    target = numbers if kind == "generator" else answer

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is target.__code__:
            raise CallbackFailure(kind)
        return None

    with framecache.optimize(callback), pytest.raises(CallbackFailure, match=kind):
        target()
    with framecache.optimize(copy_callback):
        made = target()
    if kind == "generator":
        assert list(made) == [1]
    else:
        with pytest.raises(StopIteration) as stop:
            made.send(None)
        assert stop.value.value == 42
