"""framecache's Python API: callbacks per thread, strategies, caches, limits and scopes."""

from __future__ import annotations

import json
import pathlib
import sys
import threading
import types
from typing import Any

import pytest

import framecache
from conftest import (
    DEFAULT_ACCUMULATED_LIMIT,
    DEFAULT_RECOMPILE_LIMIT,
    CountingCallback,
    copy_callback,
    none_callback,
    run_python,
)
from framecache import (
    CallbackResult,
    FrameAction,
    FrameExecStrategy,
    GuardedCode,
    RecompileLimitWarning,
)
from framecache.guards import RootGuardManager


def add(x: Any, y: Any) -> Any:
    return x + y


def double(x: Any) -> Any:
    return x * 2


def inner(x: int) -> int:
    return x + 1


def outer(x: int) -> int:
    return inner(x) * 10


def typed_root(**types_by_name: type) -> RootGuardManager:
    """A root with one TYPE_MATCH guard per named local."""
    root = RootGuardManager()
    for name, tp in types_by_name.items():
        root.local(name).type_match(tp)
    return root


class TypeSpecialiser:
    """Compiles the frames of the given codes into copies guarded on their arguments' types."""

    def __init__(self, *codes: types.CodeType, compile_id: object = None) -> None:
        self.targets = codes
        self.calls: list[tuple[types.CodeType, object, dict]] = []
        self.compile_id = compile_id

    def __call__(
        self, frame: framecache.FrameView, entry: object, frame_state: dict
    ) -> CallbackResult | None:
        code = frame.f_code
        if code not in self.targets:
            return None
        self.calls.append((code, entry, frame_state))
        f_locals = frame.f_locals
        names = code.co_varnames[: code.co_argcount]
        root = typed_root(**{n: type(f_locals[n]) for n in names})
        annotation = ",".join(type(f_locals[n]).__name__ for n in names)
        return CallbackResult(GuardedCode(code.replace(), root, self.compile_id, annotation))


# --- set_eval_frame ----------------------------------------------------------------------


def test_set_eval_frame_returns_the_previous_callback() -> None:
    assert framecache.get_eval_frame() is None
    assert framecache.set_eval_frame(none_callback) is None
    assert framecache.get_eval_frame() is none_callback
    assert framecache.set_eval_frame(False) is none_callback
    assert framecache.get_eval_frame() is False
    assert framecache.set_eval_frame(copy_callback) is False
    assert framecache.set_eval_frame(None) is copy_callback
    assert framecache.get_eval_frame() is None


@pytest.mark.parametrize("bad", [True, 0, 1, "callback", object(), [none_callback]])
def test_set_eval_frame_rejects_what_is_not_none_false_or_callable(bad: object) -> None:
    framecache.set_eval_frame(none_callback)
    with pytest.raises(TypeError, match=r"None .*False .*callable"):
        framecache.set_eval_frame(bad)
    assert framecache.get_eval_frame() is none_callback


def test_set_eval_frame_is_per_thread() -> None:
    main_cb = CountingCallback()
    thread_cb = CountingCallback()
    seen_in_thread: list[object] = []
    thread_set = threading.Event()
    main_checked = threading.Event()

    def worker() -> None:
        seen_in_thread.append(framecache.get_eval_frame())
        seen_in_thread.append(framecache.set_eval_frame(thread_cb))
        thread_set.set()
        main_checked.wait()
        add(1, 2)
        seen_in_thread.append(framecache.set_eval_frame(None))

    framecache.set_eval_frame(main_cb)
    t = threading.Thread(target=worker)
    t.start()
    thread_set.wait()
    assert framecache.get_eval_frame() is main_cb
    main_checked.set()
    t.join()
    double(3)
    framecache.set_eval_frame(None)

    assert seen_in_thread == [None, None, thread_cb]
    assert main_cb.count(add.__code__) == 0
    assert main_cb.count(double.__code__) == 1
    assert thread_cb.count(add.__code__) == 1
    assert thread_cb.count(double.__code__) == 0


# --- FrameAction, FrameExecStrategy, GuardedCode, CallbackResult ---------------------------


def test_frame_action_members() -> None:
    assert {a.name for a in FrameAction.__members__.values()} == {"DEFAULT", "RUN_ONLY", "SKIP"}
    assert FrameAction.SKIP != FrameAction.DEFAULT
    assert FrameAction.RUN_ONLY == FrameAction.RUN_ONLY


def test_frame_exec_strategy_defaults_equality_and_repr() -> None:
    s = FrameExecStrategy()
    assert s.cur_action == FrameAction.DEFAULT
    assert s.recursive_action == FrameAction.DEFAULT
    skip_run = FrameExecStrategy(FrameAction.SKIP, FrameAction.RUN_ONLY)
    assert skip_run == FrameExecStrategy(
        cur_action=FrameAction.SKIP, recursive_action=FrameAction.RUN_ONLY
    )
    assert skip_run != s
    assert s != "FrameExecStrategy()"
    assert hash(skip_run) == hash(FrameExecStrategy(FrameAction.SKIP, FrameAction.RUN_ONLY))
    assert repr(skip_run) == (
        "FrameExecStrategy(cur_action=FrameAction.SKIP, recursive_action=FrameAction.RUN_ONLY)"
    )
    s.cur_action = FrameAction.RUN_ONLY
    assert s == FrameExecStrategy(FrameAction.RUN_ONLY)


def test_frame_exec_strategy_rejects_non_actions() -> None:
    with pytest.raises(TypeError):
        FrameExecStrategy("SKIP")  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        FrameExecStrategy(FrameAction.SKIP, 2)  # type: ignore[arg-type]


class PythonGuards:
    """A guard manager written in Python."""

    def __init__(self, result: bool = True) -> None:
        self.result = result
        self.seen: list[dict] = []

    def check(self, f_locals: dict) -> bool:
        self.seen.append(dict(f_locals))
        return self.result


def test_guarded_code_fields_and_defaults() -> None:
    root = RootGuardManager()
    gc = GuardedCode(add.__code__, root)
    assert gc.code is add.__code__
    assert gc.guard_manager is root
    assert gc.compile_id is None
    assert gc.trace_annotation == ""
    guards = PythonGuards()
    gc = GuardedCode(add.__code__, guards, compile_id=(3, 1), trace_annotation="x: int")
    assert gc.guard_manager is guards
    assert gc.compile_id == (3, 1)
    assert gc.trace_annotation == "x: int"


def test_guarded_code_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="code must be a code object, got function"):
        GuardedCode(add, RootGuardManager())  # type: ignore[arg-type]
    with pytest.raises(TypeError, match=r"guard_manager must be a RootGuardManager.*got object"):
        GuardedCode(add.__code__, object())
    not_callable = types.SimpleNamespace(check=True)
    with pytest.raises(TypeError, match="callable check"):
        GuardedCode(add.__code__, not_callable)
    with pytest.raises(TypeError):
        GuardedCode(add.__code__, RootGuardManager(), None, 3)  # type: ignore[arg-type]


def test_callback_result_fields_and_validation() -> None:
    r = CallbackResult()
    assert r.guarded_code is None
    assert r.strategy is None
    assert r.apply_to_code is False
    gc = GuardedCode(add.__code__, RootGuardManager())
    strategy = FrameExecStrategy(FrameAction.RUN_ONLY, FrameAction.SKIP)
    r = CallbackResult(gc, strategy, apply_to_code=True)
    assert r.guarded_code is gc
    assert r.strategy == strategy
    assert r.apply_to_code is True
    with pytest.raises(TypeError, match="guarded_code must be a GuardedCode or None, got code"):
        CallbackResult(add.__code__)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="apply_to_code=True needs a strategy"):
        CallbackResult(gc, apply_to_code=True)
    with pytest.raises(TypeError):
        CallbackResult(gc, strategy="SKIP")  # type: ignore[arg-type]


# --- caches: cache_entries, reset_code, reset, frame_state ---------------------------------


def test_cache_entries_of_a_code_never_seen_is_empty() -> None:
    def never_called() -> None:
        pass

    assert framecache.cache_entries(never_called.__code__) == []


@pytest.mark.parametrize(
    "fn", [framecache.cache_entries, framecache.reset_code, framecache.get_code_strategy]
)
def test_code_functions_reject_non_code(fn: Any) -> None:
    with pytest.raises(TypeError, match=r"expects a code object, got function \(pass fn.__code__"):
        fn(add)


def test_cache_entries_views() -> None:
    cb = TypeSpecialiser(add.__code__, compile_id="cid-1")
    with framecache.optimize(cb):
        assert add(1, 2) == 3
        assert add(3, 4) == 7
        assert add(1.5, 2.0) == 3.5
    entries = framecache.cache_entries(add.__code__)
    assert len(entries) == 2
    newest, oldest = entries
    assert newest.trace_annotation == "float,float"
    assert oldest.trace_annotation == "int,int"
    assert newest.hit_count == 0
    assert oldest.hit_count == 1
    for entry in entries:
        assert isinstance(entry.code, types.CodeType)
        assert entry.code is not add.__code__
        assert entry.code.co_name == "add"
        assert isinstance(entry.guard_manager, RootGuardManager)
        assert entry.compile_id == "cid-1"
    assert oldest.guard_manager.check({"x": 1, "y": 2})
    assert not oldest.guard_manager.check({"x": 1.0, "y": 2})
    assert "hits=1" in repr(oldest)


def test_entries_are_checked_and_hit_in_run_only_mode() -> None:
    with framecache.optimize(TypeSpecialiser(add.__code__)):
        add(1, 2)
    [entry] = framecache.cache_entries(add.__code__)
    with framecache.run_only():
        for i in range(5):
            assert add(i, 1) == i + 1
        assert add("a", "b") == "ab"
    assert entry.hit_count == 5


def test_reset_code_drops_entries_strategy_and_frame_state() -> None:
    cb = TypeSpecialiser(add.__code__)
    with framecache.optimize(cb):
        add(1, 2)
    framecache.frame_state(add.__code__)["note"] = 1
    framecache.set_code_strategy(add.__code__, FrameExecStrategy(FrameAction.RUN_ONLY))
    [old_entry] = framecache.cache_entries(add.__code__)

    framecache.reset_code(add.__code__)
    assert framecache.cache_entries(add.__code__) == []
    assert framecache.get_code_strategy(add.__code__) == FrameExecStrategy()
    assert framecache.frame_state(add.__code__) == {}
    # A view taken before the reset stays readable.
    assert old_entry.code.co_name == "add"

    with framecache.optimize(cb):
        assert add(1, 2) == 3
    assert len(cb.calls) == 2
    assert len(framecache.cache_entries(add.__code__)) == 1


def test_reset_code_of_a_code_never_seen_is_a_no_op() -> None:
    def never_called() -> None:
        pass

    framecache.reset_code(never_called.__code__)
    assert framecache.cache_entries(never_called.__code__) == []


def test_reset_drops_every_code() -> None:
    cb = TypeSpecialiser(add.__code__, double.__code__)
    with framecache.optimize(cb):
        add(1, 2)
        double(2)
    framecache.set_code_strategy(inner.__code__, FrameExecStrategy(FrameAction.SKIP))
    assert framecache.get_recompile_limits()[2] == 2
    framecache.reset()
    assert framecache.cache_entries(add.__code__) == []
    assert framecache.cache_entries(double.__code__) == []
    assert framecache.get_code_strategy(inner.__code__) == FrameExecStrategy()
    assert framecache.get_recompile_limits()[2] == 0


def test_frame_state_persists_across_recompiles_and_reset_code_clears_it() -> None:
    cb = TypeSpecialiser(add.__code__)
    with framecache.optimize(cb):
        add(1, 2)
        cb.calls[0][2]["dynamic"] = {"x"}
        add("a", "b")
        add(1.0, 2.0)
    states = [state for _, _, state in cb.calls]
    assert len(states) == 3
    assert all(state is states[0] for state in states)
    assert framecache.frame_state(add.__code__) is states[0]
    assert states[0] == {"dynamic": {"x"}}

    framecache.reset_code(add.__code__)
    fresh = framecache.frame_state(add.__code__)
    assert fresh == {}
    assert fresh is not states[0]


def test_callback_gets_the_first_entry_on_a_recompile() -> None:
    cb = TypeSpecialiser(add.__code__)
    with framecache.optimize(cb):
        add(1, 2)
        add("a", "b")
    first_call_entry = cb.calls[0][1]
    second_call_entry = cb.calls[1][1]
    assert first_call_entry is None
    assert second_call_entry.trace_annotation == "int,int"
    failures = second_call_entry.guard_manager.check_verbose({"x": "a", "y": "b"}).failures
    assert failures == ["L['x']: expected type int, got str", "L['y']: expected type int, got str"]


# --- strategies ----------------------------------------------------------------------------


def test_code_strategy_defaults_and_round_trip() -> None:
    assert framecache.get_code_strategy(double.__code__) == FrameExecStrategy()
    strategy = FrameExecStrategy(FrameAction.RUN_ONLY, FrameAction.SKIP)
    framecache.set_code_strategy(double.__code__, strategy)
    assert framecache.get_code_strategy(double.__code__) == strategy
    with pytest.raises(TypeError):
        framecache.set_code_strategy(double.__code__, FrameAction.SKIP)  # type: ignore[arg-type]


def test_skip_strategy_runs_the_code_normally() -> None:
    cb = CountingCallback(TypeSpecialiser(outer.__code__, inner.__code__))
    framecache.set_code_strategy(outer.__code__, FrameExecStrategy(FrameAction.SKIP))
    with framecache.optimize(cb):
        assert outer(1) == 20
    assert cb.count(outer.__code__) == 0
    assert cb.count(inner.__code__) == 1
    assert framecache.cache_entries(outer.__code__) == []


def test_run_only_strategy_uses_entries_and_never_compiles() -> None:
    cb = CountingCallback(TypeSpecialiser(add.__code__))
    with framecache.optimize(cb):
        add(1, 2)
        framecache.set_code_strategy(add.__code__, FrameExecStrategy(FrameAction.RUN_ONLY))
        assert add(3, 4) == 7
        assert add("a", "b") == "ab"
    assert cb.count(add.__code__) == 1
    [entry] = framecache.cache_entries(add.__code__)
    assert entry.hit_count == 1


def test_recursive_skip_strategy_covers_the_callees() -> None:
    cb = CountingCallback(none_callback)
    framecache.set_code_strategy(
        outer.__code__, FrameExecStrategy(FrameAction.DEFAULT, FrameAction.SKIP)
    )
    with framecache.optimize(cb):
        assert outer(1) == 20
        assert inner(1) == 2
    assert cb.count(outer.__code__) == 1
    assert cb.count(inner.__code__) == 1  # the direct call only


# --- LRU ---------------------------------------------------------------------------------


def annotations_of(code: types.CodeType) -> list[str]:
    return [e.trace_annotation for e in framecache.cache_entries(code)]


@pytest.mark.parametrize("lru", [True, False])
def test_lru_moves_a_hit_entry_to_the_front_only_when_on(lru: bool) -> None:
    framecache.set_lru(lru)
    assert framecache.get_lru() is lru
    with framecache.optimize(TypeSpecialiser(double.__code__)):
        double(1)
        double("a")
        double(1.0)
        assert annotations_of(double.__code__) == ["float", "str", "int"]
        assert double(2) == 4
    if lru:
        assert annotations_of(double.__code__) == ["int", "float", "str"]
    else:
        assert annotations_of(double.__code__) == ["float", "str", "int"]
    assert [e.hit_count for e in framecache.cache_entries(double.__code__)].count(1) == 1


# --- recompile limits --------------------------------------------------------------------


def test_recompile_limits_defaults_and_validation() -> None:
    limit, accumulated, compiled = framecache.get_recompile_limits()
    assert (limit, accumulated, compiled) == (DEFAULT_RECOMPILE_LIMIT, DEFAULT_ACCUMULATED_LIMIT, 0)
    with pytest.raises(ValueError, match="recompile limit must be >= 0, got -1"):
        framecache.set_recompile_limit(-1)
    with pytest.raises(ValueError, match="accumulated recompile limit must be >= 0, got -2"):
        framecache.set_recompile_limit(3, accumulated=-2)
    assert framecache.get_recompile_limits()[:2] == (limit, accumulated)
    framecache.set_recompile_limit(3)
    assert framecache.get_recompile_limits()[:2] == (3, accumulated)
    framecache.set_recompile_limit(4, accumulated=10)
    assert framecache.get_recompile_limits()[:2] == (4, 10)


def test_past_the_recompile_limit_the_code_runs_run_only_with_one_warning() -> None:
    framecache.set_recompile_limit(2)
    cb = TypeSpecialiser(double.__code__)
    with framecache.optimize(cb), pytest.warns(RecompileLimitWarning) as record:
        assert double(1) == 2
        assert double("a") == "aa"
        assert double(1.5) == 3.0
        assert double([1]) == [1, 1]
        assert double((2,)) == (2, 2)
        assert double(3) == 6
    assert len(cb.calls) == 2
    assert len(record) == 1
    message = str(record[0].message)
    line = double.__code__.co_firstlineno
    assert f"double ({__file__}:{line}) reached the recompile limit (2 compiles)" in message
    assert "L['x']: expected type str, got float" in message
    assert "L['x']: expected type int, got float" in message
    assert record[0].filename == __file__
    assert framecache.get_code_strategy(double.__code__).cur_action == FrameAction.RUN_ONLY
    entries = framecache.cache_entries(double.__code__)
    assert [e.trace_annotation for e in entries] == ["int", "str"]
    assert entries[0].hit_count == 1


def test_the_accumulated_recompile_limit_counts_each_code_on_its_own() -> None:
    framecache.set_recompile_limit(8, accumulated=2)
    cb = TypeSpecialiser(add.__code__, double.__code__, inner.__code__)
    with framecache.optimize(cb), pytest.warns(RecompileLimitWarning) as record:
        assert add(1, 2) == 3
        assert double(2) == 4
        assert inner(1) == 2
        assert inner(2.0) == 3.0
        assert add(1.0, 2.0) == 3.0
        assert double("a") == "aa"
        assert double(1.5) == 3.0
    # Every code compiled up to its own 2 entries: 6 compiles, more than 2 in all.
    names = [code.co_name for code, _, _ in cb.calls]
    assert names == ["add", "double", "inner", "inner", "add", "double"]
    assert len(record) == 1
    line = double.__code__.co_firstlineno
    assert str(record[0].message).startswith(
        f"framecache: double ({__file__}:{line}) reached the accumulated recompile limit "
        "(2 entries on this code)"
    )
    assert framecache.get_recompile_limits()[2] == 6
    assert framecache.get_code_strategy(double.__code__).cur_action == FrameAction.RUN_ONLY
    assert framecache.get_code_strategy(add.__code__).cur_action == FrameAction.DEFAULT


def test_the_accumulated_limit_warning_names_the_guard_failures() -> None:
    framecache.set_recompile_limit(8, accumulated=1)
    cb = TypeSpecialiser(add.__code__)
    with framecache.optimize(cb), pytest.warns(RecompileLimitWarning) as record:
        assert add(1, 2) == 3
        assert add(1.0, 2) == 3.0
    assert len(record) == 1
    assert "accumulated recompile limit (1 entries on this code)" in str(record[0].message)
    assert "entry 0 failed:\n    L['x']: expected type int, got float" in str(record[0].message)


# --- optimize, disable, run_only -----------------------------------------------------------


def test_optimize_as_a_context_manager_restores_the_previous_callback() -> None:
    framecache.set_eval_frame(False)
    cb = CountingCallback()
    with framecache.optimize(cb) as scope:
        assert isinstance(scope, framecache.optimize)
        assert framecache.get_eval_frame() is cb
        with framecache.optimize(none_callback):
            assert framecache.get_eval_frame() is none_callback
        assert framecache.get_eval_frame() is cb
        double(1)
    assert framecache.get_eval_frame() is False
    assert cb.count(double.__code__) == 1


def test_optimize_restores_the_previous_callback_on_an_exception() -> None:
    framecache.set_eval_frame(none_callback)
    with pytest.raises(ZeroDivisionError), framecache.optimize(copy_callback):
        assert framecache.get_eval_frame() is copy_callback
        add(1, 0) / 0
    assert framecache.get_eval_frame() is none_callback


def test_optimize_as_a_decorator() -> None:
    cb = CountingCallback()
    seen: list[object] = []

    @framecache.optimize(cb)
    def run(x: int) -> int:
        seen.append(framecache.get_eval_frame())
        if x < 0:
            raise ValueError(x)
        return outer(x)

    assert run.__name__ == "run"
    assert run(1) == 20
    assert framecache.get_eval_frame() is None
    with pytest.raises(ValueError):
        run(-1)
    assert framecache.get_eval_frame() is None
    assert seen == [cb, cb]
    assert cb.count(outer.__code__) == 1
    assert cb.count(inner.__code__) == 1


def test_optimize_rejects_bad_arguments() -> None:
    with pytest.raises(TypeError, match="callable callback, got int"):
        framecache.optimize(3)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="decorates a callable, got int"):
        framecache.optimize(none_callback)(3)  # type: ignore[arg-type]


def test_disable_intercepts_nothing_inside() -> None:
    cb = CountingCallback(copy_callback)
    with framecache.optimize(cb):
        assert outer(1) == 20
    before = [e.hit_count for e in framecache.cache_entries(inner.__code__)]
    cb.codes.clear()
    disabled_outer = framecache.disable(outer)
    assert disabled_outer.__name__ == "outer"
    with framecache.optimize(cb):
        assert disabled_outer(2) == 30
        assert cb.codes == []
        assert [e.hit_count for e in framecache.cache_entries(inner.__code__)] == before
        assert inner(5) == 6
    assert [e.hit_count for e in framecache.cache_entries(inner.__code__)] == [before[0] + 1]
    with pytest.raises(TypeError, match="expects a callable, got str"):
        framecache.disable("outer")  # type: ignore[arg-type]


def test_disable_lets_exceptions_through_and_restores_interception() -> None:
    def fail() -> None:
        inner(1)
        raise KeyError("inside")

    cb = CountingCallback()
    with framecache.optimize(cb):
        with pytest.raises(KeyError, match="inside"):
            framecache.disable(fail)()
        assert cb.count(inner.__code__) == 0
        inner(2)
    assert cb.count(inner.__code__) == 1


def test_run_only_uses_cached_entries_and_never_calls_the_callback() -> None:
    cb = CountingCallback(copy_callback)
    with framecache.optimize(cb):
        assert inner(1) == 2
    cb.codes.clear()
    framecache.set_eval_frame(cb)
    with framecache.run_only():
        assert framecache.get_eval_frame() is False
        assert inner(3) == 4
        assert outer(3) == 40
        assert double(4) == 8
    assert framecache.get_eval_frame() is cb
    framecache.set_eval_frame(None)
    assert [cb.count(f.__code__) for f in (inner, outer, double)] == [0, 0, 0]
    [entry] = framecache.cache_entries(inner.__code__)
    assert entry.hit_count == 2
    assert framecache.cache_entries(outer.__code__) == []
    assert framecache.cache_entries(double.__code__) == []


def test_run_only_restores_the_previous_callback_on_an_exception() -> None:
    framecache.set_eval_frame(none_callback)
    with pytest.raises(RuntimeError, match="boom"), framecache.run_only():
        raise RuntimeError("boom")
    assert framecache.get_eval_frame() is none_callback


# --- installation and chaining -------------------------------------------------------------


def test_hook_is_installed_only_while_a_thread_has_a_callback() -> None:
    assert not framecache.hook_installed()
    framecache.set_eval_frame(none_callback)
    assert framecache.hook_installed()
    framecache.set_eval_frame(False)
    assert framecache.hook_installed()
    framecache.set_eval_frame(None)
    assert not framecache.hook_installed()

    states: list[bool] = []
    thread_on = threading.Event()
    main_looked = threading.Event()

    def worker(turn_off: bool) -> None:
        framecache.set_eval_frame(copy_callback)
        states.append(framecache.hook_installed())
        thread_on.set()
        main_looked.wait()
        if turn_off:
            framecache.set_eval_frame(None)
            states.append(framecache.hook_installed())

    for turn_off in (True, False):
        thread_on.clear()
        main_looked.clear()
        t = threading.Thread(target=worker, args=(turn_off,))
        t.start()
        thread_on.wait()
        states.append(framecache.hook_installed())
        main_looked.set()
        t.join()
        # A thread that ends with its callback set turns itself off.
        states.append(framecache.hook_installed())
    assert states == [True, True, False, False, True, True, False]


def traced_target(x: int) -> int:
    return inner(x) + 1


@pytest.mark.parametrize("install", [sys.settrace, sys.setprofile])
def test_frames_run_normally_while_a_trace_function_is_active(install: Any) -> None:
    cb = CountingCallback(copy_callback)
    with framecache.optimize(cb):
        assert traced_target(1) == 3
    hits_before = framecache.cache_entries(traced_target.__code__)[0].hit_count
    cb.codes.clear()
    seen: list[types.CodeType] = []

    def tracer(frame: types.FrameType, event: str, arg: object) -> Any:
        if event == "call":
            seen.append(frame.f_code)
        return None

    with framecache.optimize(cb):
        install(tracer)
        try:
            result = traced_target(5)
            fresh = double(7)
        finally:
            install(None)
    assert (result, fresh) == (7, 14)
    assert cb.codes == []
    assert traced_target.__code__ in seen
    assert inner.__code__ in seen
    assert double.__code__ in seen
    assert all(code.co_name != "traced_target" or code is traced_target.__code__ for code in seen)
    assert framecache.cache_entries(traced_target.__code__)[0].hit_count == hits_before
    assert framecache.cache_entries(double.__code__) == []

    # With the trace function gone, the callback and the cache are back.
    with framecache.optimize(cb):
        assert double(7) == 14
        assert traced_target(5) == 7
    assert cb.count(double.__code__) == 1
    assert framecache.cache_entries(traced_target.__code__)[0].hit_count == hits_before + 1


# An evaluator of another tool, made with ctypes: a C function pointer that
# calls the evaluator it was given, with no Python frame in between. (ctypes
# would swallow an exception raised through it: the frames run under it raise
# none.)
CHAINING_PROGRAM = """
import ctypes, json, sys
sys.path.insert(0, {tests_dir!r})
import framecache
from conftest import CountingCallback, copy_callback

api = ctypes.pythonapi
api.PyInterpreterState_Get.restype = ctypes.c_void_p
api._PyInterpreterState_GetEvalFrameFunc.restype = ctypes.c_void_p
api._PyInterpreterState_GetEvalFrameFunc.argtypes = [ctypes.c_void_p]
api._PyInterpreterState_SetEvalFrameFunc.argtypes = [ctypes.c_void_p, ctypes.c_void_p]
interp = api.PyInterpreterState_Get()
SIGNATURE = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int]

def current():
    return api._PyInterpreterState_GetEvalFrameFunc(interp)

def evaluator_calling(address):
    call = ctypes.PYFUNCTYPE(*SIGNATURE)(address)
    evaluator = ctypes.CFUNCTYPE(*SIGNATURE)(call)
    return evaluator, ctypes.cast(evaluator, ctypes.c_void_p).value

def f(x):
    return x + 1

default = current()
callback = CountingCallback(copy_callback)
report = {{}}
if {on_top!r}:
    framecache.set_eval_frame(callback)
    ours = current()
    keep, other = evaluator_calling(ours)  # installed on top of ours, chains to it
    api._PyInterpreterState_SetEvalFrameFunc(interp, other)
    report["first"] = [f(1), f(2)]
    framecache.set_eval_frame(None)
    report["left in place"] = current() == other
    framecache.set_eval_frame(callback)  # ours on top again: ours -> other -> ours
    report["again"] = [f(3), f(4)]
    framecache.set_eval_frame(None)
else:
    keep, other = evaluator_calling(default)  # a debugger's, installed first
    api._PyInterpreterState_SetEvalFrameFunc(interp, other)
    framecache.set_eval_frame(callback)
    report["replaced while on"] = current() not in (other, default)
    report["first"] = [f(1), f(2)]
    framecache.set_eval_frame(None)
    report["restored"] = current() == other
api._PyInterpreterState_SetEvalFrameFunc(interp, default)
report["compiles"] = callback.count(f.__code__)
report["hits"] = framecache.cache_entries(f.__code__)[0].hit_count
print(json.dumps(report))
"""


def test_an_evaluator_installed_before_is_chained_to_and_restored() -> None:
    tests_dir = str(pathlib.Path(__file__).parent)
    proc = run_python(CHAINING_PROGRAM.format(tests_dir=tests_dir, on_top=False))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "replaced while on": True,
        "first": [2, 3],
        "restored": True,
        "compiles": 1,
        "hits": 1,
    }


def test_an_evaluator_installed_on_top_that_chains_back_makes_no_cycle() -> None:
    tests_dir = str(pathlib.Path(__file__).parent)
    proc = run_python(CHAINING_PROGRAM.format(tests_dir=tests_dir, on_top=True))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert json.loads(proc.stdout) == {
        "first": [2, 3],
        "left in place": True,
        "again": [4, 5],
        "compiles": 1,
        "hits": 3,
    }
