"""Fuzz programs shared by the hypothesis tests and the atheris harnesses (tests/fuzz/).

A fuzz input is read as a small program through a ``Choices`` source (hypothesis's
``data.draw`` or atheris's ``FuzzedDataProvider``):

* ``run_guard_program`` builds a guard tree by calling random builder methods of random
  nodes with random (often hostile) arguments, then runs ``check`` and ``check_verbose``
  on random (often hostile) locals and globals;
* ``run_callback_program`` installs a callback that returns random (often wrong) results,
  raises at a random point, or resets the code from inside itself or a guard, then calls a
  function of a random argument layout and checks the result against the original.

Each ends in a Python exception or a correct result; anything else (a wrong result, a
stale compiled code running, a check that returns a non-bool) raises ``FuzzFailure``; a
crash kills the process. Hostile values are the objects whose ``__eq__``, ``__hash__``,
``__getattr__``, ``__len__``, ``__index__`` or ``__bool__`` raise or mutate the value
under check.
"""

from __future__ import annotations

import math
import sys
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any, Protocol, TypeVar

import framecache
from framecache import CallbackResult, FrameAction, FrameExecStrategy, GuardedCode
from framecache.guards import GuardDebugInfo, GuardManager, RootGuardManager

__all__ = [
    "FuzzFailure",
    "Choices",
    "HypothesisChoices",
    "BytesChoices",
    "HOSTILE_ERRORS",
    "run_guard_program",
    "run_callback_program",
    "builder_methods",
]

T = TypeVar("T")


class FuzzFailure(AssertionError):
    """A fuzz input found a wrong result (as opposed to a clean exception)."""


class HostileError(Exception):
    """Raised by the hostile objects' special methods."""


# Exceptions a hostile input may legitimately end in.
HOSTILE_ERRORS: tuple[type[BaseException], ...] = (Exception,)


class Choices(Protocol):
    """Where a fuzz program's decisions come from."""

    def integer(self, lo: int, hi: int) -> int:
        """An int in [lo, hi]."""
        ...


class HypothesisChoices:
    """Decisions drawn from a hypothesis ``data`` object (shrinks well)."""

    def __init__(self, data: Any) -> None:
        from hypothesis import strategies as st

        self._data = data
        self._st = st

    def integer(self, lo: int, hi: int) -> int:
        return int(self._data.draw(self._st.integers(lo, hi)))


class BytesChoices:
    """Decisions read from fuzzer bytes (atheris's FuzzedDataProvider); zeros when exhausted."""

    def __init__(self, provider: Any) -> None:
        self._fdp = provider

    def integer(self, lo: int, hi: int) -> int:
        return int(self._fdp.ConsumeIntInRange(lo, hi))


def pick(ch: Choices, items: Sequence[T]) -> T:
    """One of ``items``."""
    return items[ch.integer(0, len(items) - 1)]


# --------------------------------------------------------------------------- hostile values


class RaisingEq:
    """``==`` raises."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise HostileError("__eq__")


class RaisingHash:
    """``hash()`` raises (and so does ``==`` with anything but itself)."""

    def __hash__(self) -> int:
        raise HostileError("__hash__")

    def __eq__(self, other: object) -> bool:
        return self is other


class RaisingGetattr:
    """Every missing attribute raises a non-AttributeError."""

    def __getattr__(self, name: str) -> Any:
        raise HostileError(f"__getattr__({name})")


class RaisingLen:
    """``len()`` raises; so does ``bool()``, which falls back to it."""

    def __len__(self) -> int:
        raise HostileError("__len__")


class HugeLen:
    """``len()`` is larger than Py_ssize_t: OverflowError."""

    def __len__(self) -> int:
        return 2**70


class NegativeLen:
    """``len()`` is negative: ValueError."""

    def __len__(self) -> int:
        return -1


class RaisingBool:
    """``bool()`` raises: returned by __eq__ it makes the comparison's truth raise."""

    def __bool__(self) -> bool:
        raise HostileError("__bool__")


class EqReturnsRaisingBool:
    """``==`` returns an object whose truth raises."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> Any:
        return RaisingBool()


class RaisingIndex:
    """``__index__`` raises (passed where an int index or length is expected)."""

    def __index__(self) -> int:
        raise HostileError("__index__")


class HugeIndex:
    """``__index__`` returns an int beyond Py_ssize_t."""

    def __index__(self) -> int:
        return 2**80


class RaisingStrHash(str):
    """A str subclass whose hash and == raise: names and dict keys of this type."""

    def __hash__(self) -> int:
        raise HostileError("str.__hash__")

    def __eq__(self, other: object) -> bool:
        raise HostileError("str.__eq__")


class RaisingRepr:
    """``repr()`` and ``str()`` raise (failure reasons print values)."""

    def __repr__(self) -> str:
        raise HostileError("__repr__")

    __str__ = __repr__


class RaisingClass:
    """Reading ``__class__`` raises."""

    @property
    def __class__(self) -> type:  # type: ignore[override]
        raise HostileError("__class__")


class MutatingBox:
    """A container whose special methods mutate it (and the dict it was found in)."""

    def __init__(self) -> None:
        self.items: list[Any] = [1, 2, 3]
        self.victims: list[Any] = []
        self.x = 1

    def _mutate(self) -> None:
        self.items.append(len(self.items))
        self.__dict__.pop("x", None)
        self.__dict__["y"] = object()
        for victim in self.victims:
            if isinstance(victim, dict):
                victim.clear()
                victim["x"] = object()
            elif isinstance(victim, list):
                victim.clear()
                victim.extend(range(50))

    def __eq__(self, other: object) -> bool:
        self._mutate()
        return False

    def __hash__(self) -> int:
        self._mutate()
        return 7

    def __len__(self) -> int:
        self._mutate()
        return len(self.items)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self._mutate()
        return 1

    def __getitem__(self, key: Any) -> Any:
        self._mutate()
        if isinstance(key, int) and key >= 64:
            # `x in box` iterates through __getitem__(0), (1), ... until IndexError: without
            # an end it never returns, in Python as under a guard (a DICT_CONTAINS on a box
            # grew the box until the fuzzer's memory limit).
            raise IndexError(key)
        return self.items[0]

    def keys(self) -> list[Any]:
        self._mutate()
        return list(range(len(self.items)))


class MutatingDict(dict):  # type: ignore[type-arg]
    """A dict subclass whose lookups, keys and length mutate it."""

    def __getitem__(self, key: Any) -> Any:
        self.clear()
        self[key] = object()  # dict.__setitem__ via the subclass: fine, not recursive
        return super().__getitem__(key)

    def keys(self) -> Any:  # type: ignore[override]
        self.clear()
        return super().keys()

    def __len__(self) -> int:
        self["grown"] = len(self)
        return super().__len__()

    def __eq__(self, other: object) -> bool:
        self.clear()
        return False

    __hash__ = None  # type: ignore[assignment]


class RaisingDict(dict):  # type: ignore[type-arg]
    """A dict subclass whose Python-level accessors raise."""

    def __getitem__(self, key: Any) -> Any:
        raise HostileError("dict.__getitem__")

    def keys(self) -> Any:  # type: ignore[override]
        raise HostileError("dict.keys")

    def __len__(self) -> int:
        raise HostileError("dict.__len__")

    def __contains__(self, key: object) -> bool:
        raise HostileError("dict.__contains__")


class MutatingList(list):  # type: ignore[type-arg]
    """A list subclass whose ``__len__``/``__getitem__`` empty it."""

    def __len__(self) -> int:
        self.clear()
        return 0

    def __getitem__(self, i: Any) -> Any:
        self.clear()
        raise IndexError(i)


class ClassMutator:
    """``__eq__`` and ``__getattr__`` change the object's class (type guards see a new type)."""

    def __eq__(self, other: object) -> bool:
        self.__class__ = OtherClass
        return True

    __hash__ = object.__hash__

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        self.__class__ = OtherClass
        return 0


class OtherClass:
    """What ClassMutator turns into."""

    def __eq__(self, other: object) -> bool:
        self.__class__ = ClassMutator
        return False

    __hash__ = object.__hash__


class MetaRaising(type):
    """A metaclass whose ``==``, ``hash`` and attribute reads raise."""

    def __eq__(cls, other: object) -> bool:
        raise HostileError("meta.__eq__")

    def __hash__(cls) -> int:
        raise HostileError("meta.__hash__")

    def __getattr__(cls, name: str) -> Any:
        raise HostileError(f"meta.__getattr__({name})")


class WithRaisingMeta(metaclass=MetaRaising):
    """A class whose metaclass is hostile."""


class FatalEq:
    """``==`` raises KeyboardInterrupt (which must propagate out of a check)."""

    __hash__ = object.__hash__

    def __eq__(self, other: object) -> bool:
        raise KeyboardInterrupt("FatalEq.__eq__")


class _Dead:
    pass


def _dead_weakref() -> weakref.ref[Any]:
    obj = _Dead()
    ref = weakref.ref(obj)
    del obj
    return ref


def _closure_fn() -> Callable[[], Any]:
    a = [1]
    b = {"k": 2}

    def inner() -> Any:
        return a, b

    return inner


def _kw_fn(a: int, /, b: int = 2, *args: Any, c: int = 3, **kw: Any) -> Any:
    return a, b, args, c, kw


def _cyclic_list() -> list[Any]:
    xs: list[Any] = [1]
    xs.append(xs)
    return xs


def _make_values() -> list[Callable[[], Any]]:
    """Factories of the values a fuzz program may use (fresh per use: some mutate)."""
    return [
        lambda: None,
        lambda: True,
        lambda: False,
        lambda: 0,
        lambda: 1,
        lambda: -1,
        lambda: 2**31,
        lambda: 2**63,
        lambda: -(2**63) - 1,
        lambda: 2**200,
        lambda: sys.maxsize,
        lambda: -sys.maxsize - 1,
        lambda: 1.5,
        lambda: math.nan,
        lambda: math.inf,
        lambda: "x",
        lambda: "",
        lambda: "\udcff",  # a lone surrogate: not encodable as UTF-8
        lambda: b"x",
        lambda: (1, 2, 3),
        lambda: (),
        lambda: [1, 2, 3],
        lambda: [],
        lambda: {"x": 1, "y": [2]},
        lambda: {},
        lambda: {1, 2},
        lambda: iter(range(3)),
        lambda: iter((1, 2)),
        lambda: iter([1, 2]),
        lambda: range(-5, 5, 2),
        lambda: int,
        lambda: type,
        lambda: object(),
        lambda: _closure_fn(),
        lambda: _kw_fn,
        lambda: len,
        lambda: _dead_weakref(),
        lambda: weakref.ref(_closure_fn),
        lambda: _cyclic_list(),
        lambda: types.SimpleNamespace(x=1, y=RaisingEq()),
        lambda: RaisingEq(),
        lambda: RaisingHash(),
        lambda: RaisingGetattr(),
        lambda: RaisingLen(),
        lambda: HugeLen(),
        lambda: NegativeLen(),
        lambda: EqReturnsRaisingBool(),
        lambda: RaisingBool(),
        lambda: RaisingIndex(),
        lambda: HugeIndex(),
        lambda: RaisingStrHash("x"),
        lambda: RaisingRepr(),
        lambda: RaisingClass(),
        lambda: MutatingBox(),
        lambda: MutatingDict(x=1, y=2),
        lambda: RaisingDict(x=1),
        lambda: MutatingList([1, 2, 3]),
        lambda: ClassMutator(),
        lambda: WithRaisingMeta,
        lambda: WithRaisingMeta(),
        lambda: MetaRaising,
        lambda: FatalEq(),
    ]


VALUES = _make_values()
NAMES = ["x", "y", "z", "items", "__dict__", "__class__", "k", "\udcff", "a" * 300]
FATAL = (FatalEq,)


def draw_value(ch: Choices, depth: int = 0) -> Any:
    """A value from the pool, sometimes a name or a container of pool values."""
    kind = ch.integer(0, 9)
    if kind == 0:
        return pick(ch, NAMES)
    if kind == 1 and depth < 2:
        return [draw_value(ch, depth + 1) for _ in range(ch.integer(0, 3))]
    if kind == 2 and depth < 2:
        return tuple(draw_value(ch, depth + 1) for _ in range(ch.integer(0, 3)))
    if kind == 3 and depth < 2:
        return {pick(ch, NAMES): draw_value(ch, depth + 1) for _ in range(ch.integer(0, 3))}
    return pick(ch, VALUES)()


def builder_methods() -> list[str]:
    """Every public builder method of a guard node (leaf guards and accessors)."""
    skip = {
        "check",
        "check_verbose",
        "num_guards",
        "leaf_guards",
        "accessors",
        "children",
        "fail_counts",
        "local_names",
        "tensor_pass_size",
        "take_exports",
        "source",
        "dict_versioned",
    }
    names = set()
    for cls in (GuardManager, RootGuardManager):
        for name in dir(cls):
            if name.startswith("_") or name in skip:
                continue
            if callable(getattr(cls, name)):
                names.add(name)
    return sorted(names)


METHODS = builder_methods()


def _arg(ch: Choices, nodes: list[Any]) -> Any:
    kind = ch.integer(0, 5)
    if kind == 0 and nodes:
        return pick(ch, nodes)
    if kind == 1 and nodes:
        return [pick(ch, nodes) for _ in range(ch.integer(0, 3))]
    return draw_value(ch)


def _is_fatal(exc: BaseException) -> bool:
    return isinstance(exc, KeyboardInterrupt) and "FatalEq" in str(exc)


def _contains_fatal(obj: Any, depth: int = 0) -> bool:
    if isinstance(obj, FATAL):
        return True
    if depth > 3:
        return False
    if isinstance(obj, (list, tuple)):
        return any(_contains_fatal(o, depth + 1) for o in obj)
    if isinstance(obj, dict) and type(obj) is dict:
        return any(_contains_fatal(o, depth + 1) for o in obj.values())
    return False


def run_guard_program(ch: Choices, max_steps: int = 12, max_checks: int = 4) -> dict[str, int]:
    """Builds a random guard tree and checks it on random inputs (see the module docstring).

    Returns counters (builder calls that succeeded / raised, checks run) for reports.
    """
    stats = {"built": 0, "rejected": 0, "checks": 0, "check_errors": 0}
    globals_: Any = None
    if ch.integer(0, 3) == 0:
        globals_ = {"x": draw_value(ch), "__builtins__": {"len": len}}
    try:
        root = RootGuardManager(globals_) if ch.integer(0, 1) else RootGuardManager()
    except TypeError:
        root = RootGuardManager()
    nodes: list[Any] = [root]
    for _ in range(ch.integer(1, max_steps)):
        node = pick(ch, nodes)
        method = pick(ch, METHODS)
        if ch.integer(0, 2) and method in ("local", "global_", "builtin", "attr", "generic_attr"):
            args: list[Any] = [pick(ch, NAMES)]
        else:
            args = [_arg(ch, nodes) for _ in range(ch.integer(0, 3))]
        try:
            out = getattr(node, method)(*args)
        except KeyboardInterrupt as exc:
            if not _is_fatal(exc):
                raise
            stats["rejected"] += 1
            continue
        except Exception:
            stats["rejected"] += 1
            continue
        stats["built"] += 1
        if isinstance(out, GuardManager) and out not in nodes:
            nodes.append(out)
        if ch.integer(0, 7) == 0:
            str(node)  # rendering a tree built from hostile values
    for _ in range(ch.integer(1, max_checks)):
        f_locals: Any
        if ch.integer(0, 9) == 0:
            f_locals = draw_value(ch)  # often not a dict: a TypeError
        else:
            f_locals = {pick(ch, NAMES): draw_value(ch) for _ in range(ch.integer(0, 4))}
        f_globals: Any = None
        if ch.integer(0, 3) == 0:
            f_globals = {pick(ch, NAMES): draw_value(ch) for _ in range(ch.integer(0, 3))}
        stats["checks"] += 1
        results = []
        for verbose in (False, True):
            try:
                if verbose:
                    info = root.check_verbose(f_locals, f_globals)
                    if not isinstance(info, GuardDebugInfo) or not isinstance(info.result, bool):
                        raise FuzzFailure(f"check_verbose returned {info!r}")
                    if not all(isinstance(f, str) for f in info.failures):
                        raise FuzzFailure(f"check_verbose failures not str: {info.failures!r}")
                    if info.result and info.failures:
                        raise FuzzFailure(f"passed with failures: {info!r}")
                    str(info)
                    results.append(info.result)
                else:
                    passed = root.check(f_locals, f_globals)
                    if not isinstance(passed, bool):
                        raise FuzzFailure(f"check returned {passed!r}")
                    results.append(passed)
            except KeyboardInterrupt as exc:
                if not _is_fatal(exc):
                    raise
                stats["check_errors"] += 1
            except FuzzFailure:
                raise
            except Exception:
                stats["check_errors"] += 1
        str(root)
    return stats


# --------------------------------------------------------------------------- callback programs

_LAYOUTS = {
    # name: (source of def with {body}, call args, call kwargs)
    "plain": ("def f(x, y=10):\n    return {m}(x, y)\n", (3,), {}),
    "posonly": ("def f(x, /, y):\n    return {m}(x, y)\n", (3, 4), {}),
    "kwonly": ("def f(x, *, y=5):\n    return {m}(x, y)\n", (3,), {"y": 6}),
    "varargs": ("def f(x, *y):\n    return {m}(x, y)\n", (3, 4, 5), {}),
    "varkw": ("def f(x, **y):\n    return {m}(x, sorted(y.items()))\n", (3,), {"k": 1}),
    "cell": ("def f(x, y=1):\n    def g():\n        return x\n    return {m}(g(), y)\n", (3,), {}),
    "closure": (
        "def outer():\n    z = 7\n    def f(x, y=1):\n        return {m}(x + z, y)\n    return f\n",
        (3,),
        {},
    ),
}


def _make_layout(name: str, marker: str) -> types.FunctionType:
    src, _, _ = _LAYOUTS[name]
    ns: dict[str, Any] = {"original": lambda a, b: ("original", a, b), "compiled": None}
    ns["compiled"] = lambda a, b: ("compiled", a, b)
    exec(compile(src.format(m=marker), f"<fuzz {name} {marker}>", "exec"), ns)
    fn = ns["outer"]() if name == "closure" else ns["f"]
    assert isinstance(fn, types.FunctionType)
    return fn


class _Raise(Exception):
    """The error a fuzz callback raises on purpose."""


class _PyGuard:
    """A Python guard manager: check() returns a value chosen by the program or raises."""

    def __init__(self, outcome: Any, on_check: Callable[[], None] | None = None) -> None:
        self.outcome = outcome
        self.on_check = on_check

    def check(self, f_locals: Any) -> Any:
        if self.on_check is not None:
            self.on_check()
        if isinstance(self.outcome, BaseException):
            raise self.outcome
        return self.outcome

    def check_verbose(self, f_locals: Any) -> Any:
        return types.SimpleNamespace(failures=[RaisingRepr()])


def run_callback_program(ch: Choices, calls: int = 4) -> dict[str, int]:
    """One callback program: a function of some layout, a hostile callback, a few calls.

    The compiled code returns ``("compiled", ...)``; it must run only when its entry's
    guards pass (for a RootGuardManager, type(x) is int and the entry was not reset);
    otherwise the result is the original's ``("original", ...)`` or a Python exception.
    """
    stats = {"calls": 0, "errors": 0, "compiled_runs": 0}
    layout = pick(ch, list(_LAYOUTS))
    fn = _make_layout(layout, "original")
    other_layout = pick(ch, list(_LAYOUTS))
    compiled_src = _make_layout(layout if ch.integer(0, 2) else other_layout, "compiled")
    _, args, kwargs = _LAYOUTS[layout]
    state = {"guard_ok": False, "called": False}

    def make_guard() -> Any:
        kind = ch.integer(0, 6)
        if kind <= 2:
            root = RootGuardManager()
            root.local("x").type_match(int)
            if kind == 1:
                root.local("x").lambda_guard(lambda v: _maybe_reset(v), "resets the code")
            if kind == 2:
                root.local("x").lambda_guard(lambda v: 1 / 0, "raises")
            state["guard_ok"] = kind != 2
            return root
        if kind == 3:
            outcome = pick(ch, [True, False, _Raise("guard"), RaisingBool(), None, 1])
            state["guard_ok"] = outcome is True or outcome == 1
            return _PyGuard(
                outcome, (lambda: framecache.reset_code(fn.__code__)) if ch.integer(0, 1) else None
            )
        if kind == 4:
            state["guard_ok"] = False
            return object()  # no check(): rejected when the entry is made
        state["guard_ok"] = False
        return draw_value(ch)

    def _maybe_reset(v: Any) -> bool:
        framecache.reset_code(fn.__code__)
        return True

    def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
        if frame.f_code is not fn.__code__:
            return None
        state["called"] = True
        point = ch.integer(0, 12)
        if point == 0:
            raise _Raise("callback")
        if point == 1:
            return draw_value(ch)  # a wrong type (or None)
        if point == 2:
            framecache.reset_code(fn.__code__)
        if point == 3:
            framecache.reset()
        if point == 4:
            framecache.set_eval_frame(None)
        if point == 5:
            frame_state["k"] = RaisingEq()
        code: Any = compiled_src.__code__ if ch.integer(0, 4) else draw_value(ch)
        try:
            guard = make_guard()
            gc_kind = ch.integer(0, 3)
            if gc_kind == 0:
                return CallbackResult(
                    strategy=FrameExecStrategy(
                        pick(ch, list(FrameAction)), pick(ch, list(FrameAction))
                    ),
                    apply_to_code=bool(ch.integer(0, 1)),
                )
            gcode = GuardedCode(code, guard, compile_id=draw_value(ch))
            return CallbackResult(gcode)
        except Exception:
            if ch.integer(0, 1):
                raise
            return None

    previous = framecache.set_eval_frame(callback)
    try:
        for _ in range(calls):
            stats["calls"] += 1
            x_value = 3 if ch.integer(0, 2) else 3.5
            call_args = (x_value, *args[1:])
            state["called"] = False
            try:
                result = fn(*call_args, **kwargs)
            except Exception:
                stats["errors"] += 1
                continue
            if not isinstance(result, tuple) or result[0] not in ("original", "compiled"):
                raise FuzzFailure(f"{layout}: unexpected result {result!r}")
            if result[0] == "compiled":
                stats["compiled_runs"] += 1
                # A hit (the callback was not asked) must come from an entry whose guards
                # pass: no RootGuardManager entry passes for a float x.
                guards = [e.guard_manager for e in framecache.cache_entries(fn.__code__)]
                only_roots = all(isinstance(g, RootGuardManager) for g in guards)
                if not state["called"] and only_roots and not isinstance(x_value, int):
                    raise FuzzFailure(f"{layout}: a cached code ran although type(x) is float")
    finally:
        framecache.set_eval_frame(previous)
        framecache.reset()
    # The runtime keeps working: a copy entry compiles and hits.
    framecache.set_eval_frame(
        lambda frame, entry, fs: (
            CallbackResult(GuardedCode(frame.f_code.replace(), RootGuardManager()))
            if frame.f_code is fn.__code__
            else None
        )
    )
    try:
        expected = ("original", *fn(*args, **kwargs)[1:])
        if fn(*args, **kwargs) != expected or fn(*args, **kwargs) != expected:
            raise FuzzFailure(f"{layout}: the runtime stopped working after a fuzz program")
        if len(framecache.cache_entries(fn.__code__)) != 1:
            raise FuzzFailure(f"{layout}: expected one entry after recovery")
    finally:
        framecache.set_eval_frame(previous)
        framecache.reset()
    return stats
