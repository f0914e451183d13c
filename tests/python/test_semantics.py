"""Python behaves exactly as without the hook.

Every scenario runs once with framecache off, to get the expected result, and
once under each mode:

* ``none``: compile mode with a callback that returns None for every frame;
* ``run_only``: entries compiled first with copy_all_callback, then run-only
  (``set_eval_frame(False)``), so every frame runs a cached copy and nothing compiles;
* ``copy``: copy_callback compiles every function frame into an identical copy;
* ``copy_all``: copy_all_callback compiles module and class-body frames too.
"""

from __future__ import annotations

import asyncio
import collections
import collections.abc
import dataclasses
import enum
import functools
import json
import sys
import threading
import traceback
import types
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import pytest

import framecache
from conftest import (
    DEFAULT_RECOMPILE_LIMIT,
    CountingCallback,
    copy_all_callback,
    copy_callback,
    none_callback,
    run_python,
)

MODES = ("none", "run_only", "copy", "copy_all")


def total_hits(code: types.CodeType) -> int:
    return sum(entry.hit_count for entry in framecache.cache_entries(code))


class Mode:
    """Runs a scenario under one of the MODES and tells which frames the hook handled."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.watcher = CountingCallback(none_callback)
        self.compiler = CountingCallback(copy_callback if name == "copy" else copy_all_callback)
        # Hits per code (by id: copies of a code compare equal to it) before run-only.
        self.hits_before: dict[int, int] = {}

    def run(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        if self.name == "none":
            with framecache.optimize(self.watcher):
                return fn(*args, **kwargs)
        if self.name in ("copy", "copy_all"):
            with framecache.optimize(self.compiler):
                return fn(*args, **kwargs)
        with framecache.optimize(self.compiler):
            fn(*args, **kwargs)
        self.hits_before = {id(code): total_hits(code) for code in self.compiler.codes}
        with framecache.run_only():
            return fn(*args, **kwargs)

    def handled(self, code: types.CodeType) -> bool:
        """True if the hook looked up (or handed to the callback) a frame of ``code``."""
        if self.name == "none":
            return self.watcher.count(code) > 0
        if self.name in ("copy", "copy_all"):
            return self.compiler.count(code) > 0 and bool(framecache.cache_entries(code))
        return total_hits(code) > self.hits_before.get(id(code), 0)

    def callback_calls(self, code: types.CodeType) -> int:
        """How often this mode's callback was called for frames of ``code``."""
        return (self.watcher if self.name == "none" else self.compiler).count(code)


@pytest.fixture(params=MODES)
def mode(request: pytest.FixtureRequest) -> Mode:
    # Copying every frame compiles much of the standard library on the way:
    # the accumulated limit must not get in the way of these tests.
    framecache.set_recompile_limit(DEFAULT_RECOMPILE_LIMIT, accumulated=10**9)
    return Mode(request.param)


def check_same(mode: Mode, scenario: Callable[[], Any], *codes: types.CodeType) -> Any:
    """Runs ``scenario`` off and under ``mode``, asserts the results are equal, returns it.

    Also asserts that the hook did handle frames of each of ``codes``.
    """
    expected = scenario()
    actual = mode.run(scenario)
    assert actual == expected
    for code in codes:
        assert mode.handled(code), f"{mode.name}: no frame of {code.co_name} went through the hook"
    return actual


# --- generators ------------------------------------------------------------------------------


def accumulator(start: int) -> Iterator[int]:
    total = start
    try:
        while True:
            try:
                received = yield total
            except ValueError as exc:
                received = len(str(exc))
            if received is None:
                return total
            total += received
    finally:
        LOG.append(f"accumulator({start}) closed at {total}")


LOG: list[str] = []


def delegator(n: int) -> Iterator[int]:
    result = yield from accumulator(n)
    yield -result


def countdown(n: int) -> Iterator[int]:
    while n > 0:
        yield n
        n -= 1


def scenario_generators() -> list[Any]:
    LOG.clear()
    out: list[Any] = []
    g = accumulator(1)
    out.append(next(g))
    out.append(g.send(2))
    out.append(g.throw(ValueError("four")))
    out.append(g.send(10))
    g.close()
    out.append((g.gi_frame is None, g.gi_running))
    g = accumulator(5)
    next(g)
    try:
        g.send(None)
    except StopIteration as stop:
        out.append(("stop", stop.value))
    g = accumulator(0)
    next(g)
    try:
        g.throw(KeyError("unhandled"))
    except KeyError as exc:
        out.append(("key", exc.args))
    d = delegator(3)
    out.append([next(d), d.send(4), d.send(None)])
    out.append(list(countdown(5)))
    out.append(sum(x * x for x in countdown(10)))
    out.append([y for y in countdown(3) if y != 2])
    out.append(list(zip(countdown(3), countdown(4), strict=False)))
    out.append((accumulator.__name__, accumulator(0).__name__, accumulator(0).__qualname__))
    out.append(list(LOG))
    return out


def test_generators(mode: Mode) -> None:
    result = check_same(mode, scenario_generators, accumulator.__code__, countdown.__code__)
    assert result[0:4] == [1, 3, 7, 17]


def test_a_resumed_generator_frame_is_not_looked_up_again(mode: Mode) -> None:
    def scenario() -> list[int]:
        out = []
        for _ in range(3):
            out.extend(countdown(4))
        return out

    check_same(mode, scenario, countdown.__code__)
    # Three generators: three frames looked up, however often each resumed.
    if mode.name == "none":
        assert mode.callback_calls(countdown.__code__) == 3
    elif mode.name == "run_only":
        assert total_hits(countdown.__code__) - mode.hits_before[id(countdown.__code__)] == 3
    else:
        assert mode.callback_calls(countdown.__code__) == 1
        assert total_hits(countdown.__code__) == 2


# --- coroutines and async generators ---------------------------------------------------------


async def fetch(i: int) -> int:
    await asyncio.sleep(0)
    if i == 3:
        raise LookupError(f"no item {i}")
    return i * i


async def gather_all(n: int) -> list[Any]:
    results = await asyncio.gather(*(fetch(i) for i in range(n)), return_exceptions=True)
    return [r if isinstance(r, int) else repr(r) for r in results]


async def main_coroutine() -> list[Any]:
    out: list[Any] = [await fetch(2)]
    out.append(await gather_all(5))
    task = asyncio.ensure_future(fetch(4))
    out.append(await asyncio.wait_for(task, timeout=None))
    try:
        await fetch(3)
    except LookupError as exc:
        out.append(("caught", str(exc), [f.name for f in traceback.extract_tb(exc.__traceback__)]))
    queue: asyncio.Queue[int] = asyncio.Queue()

    async def producer() -> None:
        for i in range(3):
            await queue.put(i)
        await queue.put(-1)

    async def consumer() -> list[int]:
        got = []
        while (item := await queue.get()) != -1:
            got.append(item)
        return got

    _, consumed = await asyncio.gather(producer(), consumer())
    out.append(consumed)
    return out


def simple_coroutine_protocol() -> list[Any]:
    class Yield:
        def __await__(self) -> Iterator[str]:
            value = yield "suspended"
            return value

    async def waiter() -> Any:
        try:
            got = await Yield()
        except ValueError as exc:
            return ("thrown", str(exc))
        return ("sent", got)

    out: list[Any] = []
    coro = waiter()
    out.append(coro.send(None))
    try:
        coro.send(42)
    except StopIteration as stop:
        out.append(stop.value)
    coro = waiter()
    coro.send(None)
    try:
        coro.throw(ValueError("bad"))
    except StopIteration as stop:
        out.append(stop.value)
    coro = waiter()
    coro.send(None)
    coro.close()
    out.append(coro.cr_frame is None)
    return out


def scenario_coroutines() -> list[Any]:
    return [asyncio.run(main_coroutine()), simple_coroutine_protocol()]


def test_coroutines(mode: Mode) -> None:
    result = check_same(mode, scenario_coroutines, fetch.__code__, main_coroutine.__code__)
    assert result[0][1] == [0, 1, 4, "LookupError('no item 3')", 16]


async def ticker(n: int) -> AsyncIterator[int]:
    try:
        for i in range(n):
            try:
                received = yield i
            except KeyError:
                received = 100
            if received:
                yield received
            await asyncio.sleep(0)
    finally:
        ASYNC_LOG.append(f"ticker({n}) finalised")


ASYNC_LOG: list[str] = []


async def async_generators_main() -> list[Any]:
    out: list[Any] = []
    out.append([i async for i in ticker(4)])
    agen = ticker(5)
    out.append(await agen.__anext__())
    out.append(await agen.athrow(KeyError("k")))
    out.append(await agen.__anext__())
    out.append(await agen.asend(7))
    await agen.aclose()
    try:
        await agen.__anext__()
    except StopAsyncIteration:
        out.append("exhausted")
    out.append(sorted([i * 2 async for i in ticker(3) if i != 1]))
    out.append(list(ASYNC_LOG))
    return out


def scenario_async_generators() -> list[Any]:
    ASYNC_LOG.clear()
    return asyncio.run(async_generators_main())


def test_async_generators(mode: Mode) -> None:
    result = check_same(mode, scenario_async_generators, ticker.__code__)
    assert result[0] == [0, 1, 2, 3]


# --- exceptions and tracebacks ---------------------------------------------------------------


def fail_at(depth: int) -> int:
    if depth == 0:
        return {"a": 1}["missing"]
    return fail_at(depth - 1) + 1


def wrap_failure() -> None:
    try:
        fail_at(2)
    except KeyError as exc:
        raise RuntimeError("wrapped") from exc


def fail_in_finally() -> None:
    try:
        fail_at(0)
    finally:
        [].pop()


def peek_exception() -> Any:
    return sys.exc_info()[0]


def reraise() -> None:
    # A bare raise re-raises the exception the caller is handling.
    raise


def failing_generator() -> Iterator[int]:
    yield 1
    fail_at(1)


def describe(exc: BaseException) -> tuple[list[tuple[str, int | None, str | None]], str]:
    frames = [(f.name, f.lineno, f.line) for f in traceback.extract_tb(exc.__traceback__)]
    return frames, "".join(traceback.format_exception(exc))


def stack_names() -> list[str]:
    names = []
    frame = sys._getframe(1)
    while frame is not None and frame.f_code.co_name != "scenario_exceptions":
        names.append(frame.f_code.co_name)
        frame = frame.f_back
    return names


def nested_stack(n: int) -> list[str]:
    return stack_names() if n == 0 else nested_stack(n - 1)


def scenario_exceptions() -> list[Any]:
    out: list[Any] = []
    for action in (
        lambda: fail_at(3),
        wrap_failure,
        fail_in_finally,
        lambda: list(failing_generator()),
    ):
        try:
            action()
        except Exception as exc:
            out.append(describe(exc))
    try:
        raise ValueError("handled")
    except ValueError:
        out.append(peek_exception().__name__)
        try:
            reraise()
        except ValueError as again:
            out.append(str(again))
    out.append(peek_exception())
    out.append(nested_stack(3))
    try:
        fail_at(1)
    except KeyError as exc:
        out.append(exc.__traceback__.tb_next.tb_frame.f_code.co_name)
        out.append(exc.__traceback__.tb_next.tb_lineno)
    return out


def test_exceptions_and_tracebacks(mode: Mode) -> None:
    result = check_same(mode, scenario_exceptions, fail_at.__code__, wrap_failure.__code__)
    frames, text = result[0]
    assert [name for name, _, _ in frames] == ["scenario_exceptions", "<lambda>"] + ["fail_at"] * 4
    assert "KeyError: 'missing'" in text
    assert result[-3] == ["nested_stack"] * 4


def group_raiser() -> None:
    raise ExceptionGroup(
        "outer",
        [
            ValueError(1),
            TypeError(2),
            ExceptionGroup("inner", [ValueError(3), KeyError(4)]),
        ],
    )


def handle_values_only() -> list[str]:
    seen = []
    try:
        group_raiser()
    except* ValueError as group:
        seen.append(repr(group))
    return seen


def scenario_exception_groups() -> list[Any]:
    out: list[Any] = []
    try:
        group_raiser()
    except* ValueError as group:
        out.append(("value", repr(group)))
    except* TypeError as group:
        out.append(("type", repr(group)))
    except* KeyError as group:
        out.append(("key", repr(group)))
    try:
        handle_values_only()
    except ExceptionGroup as rest:
        out.append(describe(rest))
        out.append(repr(rest.split(KeyError)))
    return out


def test_exception_groups(mode: Mode) -> None:
    result = check_same(mode, scenario_exception_groups, group_raiser.__code__)
    assert [kind for kind, _ in result[:3]] == ["value", "type", "key"]


# --- recursion ---------------------------------------------------------------------------------


RECURSION_PROGRAM = """
import json, sys
sys.path.insert(0, {tests_dir!r})
import framecache
from conftest import copy_all_callback, copy_callback, none_callback

framecache.set_recompile_limit(8, accumulated=10**9)
sys.setrecursionlimit(250)
depth = 0

def down(n):
    global depth
    depth = n
    return down(n + 1)

def up_to(n):
    return 0 if n == 0 else 1 + up_to(n - 1)

def probe():
    try:
        down(0)
    except RecursionError as exc:
        reached = depth
        return [reached, str(exc), up_to(reached - 5)]

def run(mode):
    if mode == "off":
        return probe()
    if mode == "none":
        with framecache.optimize(none_callback):
            return probe()
    if mode == "run_only":
        with framecache.optimize(copy_all_callback):
            probe()
        with framecache.run_only():
            return [probe(), framecache.cache_entries(down.__code__)[0].hit_count > 0]
    with framecache.optimize(copy_callback if mode == "copy" else copy_all_callback):
        return [probe(), probe()]

print(json.dumps(run({mode!r})))
"""


def test_recursion_up_to_the_limit_and_recursion_error_past_it(mode: Mode) -> None:
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    off = run_python(RECURSION_PROGRAM.format(tests_dir=tests_dir, mode="off"))
    assert off.returncode == 0, off.stderr
    expected = json.loads(off.stdout)
    assert expected[1] == "maximum recursion depth exceeded"
    hooked = run_python(RECURSION_PROGRAM.format(tests_dir=tests_dir, mode=mode.name))
    assert hooked.returncode == 0, hooked.stderr
    result = json.loads(hooked.stdout)
    if mode.name == "none":
        assert result == expected
    elif mode.name == "run_only":
        assert result == [expected, True]
    else:
        assert result == [expected, expected]


# --- tracing and profiling -----------------------------------------------------------------------


def traced_leaf(x: int) -> int:
    y = x * 2
    return y + 1


def traced_branch(x: int) -> int:
    total = 0
    for i in range(x):
        total += traced_leaf(i)
    return total


def traced_gen(n: int) -> Iterator[int]:
    yield from range(n)


# By id: a copy of a code object compares equal to it.
KNOWN_CODES = {id(f.__code__) for f in (traced_leaf, traced_branch, traced_gen)}


def scenario_tracing() -> list[Any]:
    warm = traced_branch(2)  # compiled (and then hit) in the copying modes
    events: list[Any] = []

    # Only the scenario's own functions: the collector may run a __del__ or a
    # weakref callback at any time, and the hook changes when it runs.
    def tracer(frame: types.FrameType, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_name.startswith("traced_"):
            events.append((event, code.co_name, frame.f_lineno, id(code) in KNOWN_CODES))
        return tracer

    sys.settrace(tracer)
    try:
        traced_result = traced_branch(3) + sum(traced_gen(3))
    finally:
        sys.settrace(None)

    profiled: list[Any] = []

    def profiler(frame: types.FrameType, event: str, arg: Any) -> None:
        name = getattr(arg, "__name__", None) if event.startswith("c_") else None
        if frame.f_code.co_name.startswith("traced_"):
            profiled.append((event, frame.f_code.co_name, id(frame.f_code) in KNOWN_CODES, name))

    sys.setprofile(profiler)
    try:
        profiled_result = traced_branch(2)
    finally:
        sys.setprofile(None)
    return [warm, traced_result, events, profiled_result, profiled]


def test_trace_and_profile_functions_see_the_real_code(mode: Mode) -> None:
    result = check_same(mode, scenario_tracing, traced_branch.__code__)
    events = result[2]
    assert ("call", "traced_leaf", traced_leaf.__code__.co_firstlineno, True) in events
    assert all(known for _, _, _, known in events)
    assert all(known for _, _, known, _ in result[4])
    assert ("call", "traced_leaf", True, None) in result[4]
    if mode.name == "none":
        # Called once, for the warm-up call only; traced frames run normally.
        assert mode.callback_calls(traced_branch.__code__) == 1
        assert mode.callback_calls(traced_leaf.__code__) == 2
        assert mode.callback_calls(traced_gen.__code__) == 0


# --- closures and cells ------------------------------------------------------------------------


def make_counter(start: int) -> tuple[Callable[[], int], Callable[[int], None]]:
    count = start

    def increment() -> int:
        nonlocal count
        count += 1
        return count

    def reset(value: int) -> None:
        nonlocal count
        count = value

    return increment, reset


def cell_argument(x: int, y: int = 1) -> tuple[int, int]:
    def read() -> int:
        return x

    before = read()
    x += y
    return before, read()


def three_levels(a: int) -> Callable[[int], Callable[[int], int]]:
    def middle(b: int) -> Callable[[int], int]:
        def inner(c: int) -> int:
            nonlocal a
            a += 1
            return a * 100 + b * 10 + c

        return inner

    return middle


def deleted_cell() -> str:
    value = "set"

    def read() -> str:
        return value  # noqa: F821 - deleted below on purpose

    del value
    try:
        read()
    except NameError as exc:
        return str(exc)
    return "no error"


class Base:
    def who(self) -> str:
        return "base"


class Derived(Base):
    def who(self) -> str:
        return "derived<" + super().who() + ">" + __class__.__name__


def scenario_closures() -> list[Any]:
    out: list[Any] = []
    increment, reset = make_counter(10)
    out.append([increment(), increment()])
    reset(0)
    out.append(increment())
    out.append(cell_argument(5))
    out.append(cell_argument(5, y=10))
    inner = three_levels(1)(2)
    out.append([inner(3), inner(4)])
    out.append(deleted_cell())
    out.append([f() for f in [lambda i=i: i * i for i in range(4)]])
    out.append([f() for f in [lambda: i for i in range(3)]])  # noqa: B023 - late binding is the point
    out.append(Derived().who())
    out.append(functools.reduce(lambda a, b: a * b, range(1, 6)))
    return out


def test_closures_and_cells(mode: Mode) -> None:
    result = check_same(
        mode, scenario_closures, cell_argument.__code__, make_counter(0)[0].__code__
    )
    assert result[:3] == [[11, 12], 1, (5, 6)]


# --- argument passing --------------------------------------------------------------------------


def positional_only(a: int, b: int = 2, /, c: int = 3) -> tuple:
    return a, b, c


def keyword_only(a: int, *, b: int, c: list | None = None) -> tuple:
    return a, b, c


def star_args(first: int, *rest: int) -> tuple:
    return first, rest


def star_kwargs(a: int, /, **kwargs: int) -> tuple:
    return a, list(kwargs.items())  # in the order they were passed


def everything(
    a: int, b: int = 2, /, c: int = 3, *args: int, d: int, e: int = 5, **kw: int
) -> tuple:
    return a, b, c, args, d, e, sorted(kw.items())


def mutable_default(item: int, into: list[int] = []) -> list[int]:  # noqa: B006 - shared on purpose
    into.append(item)
    return list(into)


def bad_calls() -> list[str]:
    messages = []
    for call in (
        lambda: positional_only(a=1),
        lambda: keyword_only(1, 2),
        lambda: star_kwargs(),
        lambda: everything(1),
        lambda: star_args(),
    ):
        try:
            call()
        except TypeError as exc:
            messages.append(str(exc))
    return messages


def scenario_arguments() -> list[Any]:
    mutable_default.__defaults__[0].clear()
    return [
        positional_only(1),
        positional_only(1, 20, c=30),
        keyword_only(1, b=2),
        keyword_only(a=1, b=2, c=[3]),
        star_args(1),
        star_args(1, 2, 3, *range(3)),
        star_kwargs(1, z=2, a=3, m=4),  # "a" is positional-only: it also lands in **kwargs
        star_kwargs(1, **{"a": 5}),
        everything(1, d=4),
        everything(1, 2, 3, 4, 5, d=6, e=7, f=8, a=9),
        everything(*[1, 2], **{"d": 1, "z": 0}),
        mutable_default(1),
        mutable_default(2),
        mutable_default(3, []),
        bad_calls(),
    ]


def test_argument_passing(mode: Mode) -> None:
    result = check_same(
        mode,
        scenario_arguments,
        everything.__code__,
        star_kwargs.__code__,
        keyword_only.__code__,
        positional_only.__code__,
        mutable_default.__code__,
    )
    assert result[6] == (1, [("z", 2), ("a", 3), ("m", 4)])
    assert result[9] == (1, 2, 3, (4, 5), 6, 7, [("a", 9), ("f", 8)])


# --- class bodies, module code, exec and eval -----------------------------------------------------


class RecordingNamespace(collections.abc.MutableMapping):
    """A class-body namespace that is not a dict."""

    def __init__(self) -> None:
        self.data: dict[str, Any] = {}
        self.writes: list[str] = []

    def __getitem__(self, key: str) -> Any:
        return self.data[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self.writes.append(key)
        self.data[key] = value

    def __delitem__(self, key: str) -> None:
        del self.data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.data)

    def __len__(self) -> int:
        return len(self.data)


class RecordingMeta(type):
    @classmethod
    def __prepare__(mcls, name: str, bases: tuple) -> RecordingNamespace:
        return RecordingNamespace()

    def __new__(mcls, name: str, bases: tuple, namespace: RecordingNamespace) -> type:
        cls = super().__new__(mcls, name, bases, dict(namespace.data))
        cls.writes = [k for k in namespace.writes if not k.startswith("__")]
        return cls


class OrderedMeta(type):
    @classmethod
    def __prepare__(mcls, name: str, bases: tuple) -> collections.OrderedDict:
        namespace = collections.OrderedDict()
        namespace["prepared_by"] = mcls.__name__
        return namespace

    def __new__(mcls, name: str, bases: tuple, namespace: dict) -> type:
        cls = super().__new__(mcls, name, bases, dict(namespace))
        cls.order = [k for k in namespace if not k.startswith("__")]
        return cls


def make_classes(scale: int) -> list[Any]:
    class Plain:
        factor = scale
        squares = tuple([i * i for i in range(3)])  # a comprehension in a class body

        def __init__(self, value: int) -> None:
            self.value = value * self.factor

        def __init_subclass__(cls, **kwargs: Any) -> None:
            super().__init_subclass__(**kwargs)
            cls.registered = True

        @property
        def doubled(self) -> int:
            return self.value * 2

    class Child(Plain):
        def who(self) -> str:
            return super().__repr__().split(" object")[0].rsplit(".", 1)[-1] + __class__.__name__

    class Ordered(metaclass=OrderedMeta):
        b = 1
        a = 2

        def method(self) -> int:
            return scale

    @dataclasses.dataclass(frozen=True)
    class Point:
        x: int
        y: int = 0

        def norm1(self) -> int:
            return abs(self.x) + abs(self.y)

    class Recorded(metaclass=RecordingMeta):
        first = scale
        second = first + 1

        def method(self) -> int:
            return self.second

    class Color(enum.Enum):
        RED = 1
        GREEN = 2

    return [
        Plain(2).doubled,
        Plain.squares,
        Child(1).who(),
        Child.registered,
        Ordered.order,
        Ordered.prepared_by,
        Ordered().method(),
        Point(3, -4).norm1(),
        repr(Point(1)),
        Point(1, 2) == Point(1, 2),
        [c.name for c in Color],
        Color(2).name,
        Recorded.writes,
        Recorded().method(),
    ]


def scenario_class_bodies() -> list[Any]:
    return make_classes(3) + make_classes(5)


def test_class_bodies(mode: Mode) -> None:
    result = check_same(mode, scenario_class_bodies, make_classes.__code__)
    assert result[4] == ["prepared_by", "b", "a", "method"]
    assert result[12:14] == [["first", "second", "method"], 4]


MODULE_SOURCE = """
import math
counter = 0

def bump(by=1):
    global counter
    counter += by
    return counter

class Shape:
    sides = 0
    def describe(self):
        return f"{type(self).__name__} with {self.sides} sides"

class Square(Shape):
    sides = 4

for i in range(3):
    bump(i)

root = math.isqrt(49)
result = [Square().describe(), counter, root]
"""
MODULE_CODE = compile(MODULE_SOURCE, "<semantics-module>", "exec")
EXPRESSION_CODE = compile("[a * b for a in range(n)] + [locals_only]", "<semantics-eval>", "eval")


class LoggingMapping(dict):
    """A locals mapping that is a dict subclass with its own __getitem__."""

    def __getitem__(self, key: str) -> Any:
        return super().__getitem__(key)


def scenario_module_exec_eval() -> list[Any]:
    out: list[Any] = []
    for _ in range(2):
        namespace: dict[str, Any] = {}
        exec(MODULE_CODE, namespace)
        out.append(namespace["result"])
        out.append(namespace["bump"](10))
    out.append(eval(EXPRESSION_CODE, {"b": 2}, {"n": 3, "locals_only": "L"}))
    out.append(eval(EXPRESSION_CODE, {"b": 3, "n": 2, "locals_only": None}))
    local_map = LoggingMapping(x=4)
    exec("y = x * x\nz = [y + 1] * 2", {}, local_map)
    out.append(sorted(local_map.items()))
    out.append(eval("lambda q: q + w", {"w": 1})(2))
    # exec() of a function's code object, with and without a closure.
    exec(no_argument_function.__code__, globals())
    exec(closure_reader.__code__, globals(), closure=(types.CellType("from a cell"),))
    out.append(list(EXEC_LOG))
    EXEC_LOG.clear()
    return out


EXEC_LOG: list[str] = []


def no_argument_function() -> None:
    EXEC_LOG.append("ran without arguments")


def make_closure_reader(captured: str) -> Callable[[], None]:
    def closure_reader() -> None:
        EXEC_LOG.append(captured)

    return closure_reader


closure_reader = make_closure_reader("unused")


def test_module_code_exec_and_eval(mode: Mode) -> None:
    result = check_same(mode, scenario_module_exec_eval)
    assert result[0] == ["Square with 4 sides", 3, 7]
    assert result[-1] == ["ran without arguments", "from a cell"]
    if mode.name == "copy_all":
        assert mode.callback_calls(MODULE_CODE) == 1
        assert total_hits(MODULE_CODE) == 1
    if mode.name == "run_only":
        assert mode.handled(MODULE_CODE)
        assert mode.handled(EXPRESSION_CODE)


# --- KeyboardInterrupt raised inside the callback ------------------------------------------------


def interrupted_target(x: int) -> int:
    return x + 1


def interrupted_caller(log: list[str]) -> int:
    try:
        return interrupted_target(1)
    except Exception:  # a KeyboardInterrupt is not an Exception
        log.append("caught as Exception")
        return -1
    finally:
        log.append("finally ran")


class InterruptOnce:
    """Wraps a mode's callback: the first frame of interrupted_target raises KeyboardInterrupt."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        self.inner = inner
        self.fired = False

    def __call__(self, frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is interrupted_target.__code__ and not self.fired:
            self.fired = True
            raise KeyboardInterrupt("from the callback")
        return self.inner(frame, entry, state)


def test_keyboard_interrupt_raised_inside_the_callback(mode: Mode) -> None:
    inner = mode.watcher if mode.name == "none" else mode.compiler
    callback = InterruptOnce(inner)
    log: list[str] = []
    with framecache.optimize(callback):
        with pytest.raises(KeyboardInterrupt, match="from the callback"):
            interrupted_caller(log)
        assert log == ["finally ran"]
        assert framecache.cache_entries(interrupted_target.__code__) == []
        assert interrupted_caller(log) == 2
    if mode.name == "run_only":
        with framecache.run_only():
            assert interrupted_caller(log) == 2
    assert log == ["finally ran"] * (3 if mode.name == "run_only" else 2)
    expected_entries = 0 if mode.name == "none" else 1
    assert len(framecache.cache_entries(interrupted_target.__code__)) == expected_entries
    if mode.name == "run_only":
        assert total_hits(interrupted_target.__code__) == 1


# --- threads --------------------------------------------------------------------------------------


def workload(seed: int) -> list[Any]:
    def square(v: int) -> int:
        return v * v

    gen = (square(i) for i in range(seed % 7))
    return [seed, sum(gen), positional_only(seed), [i for i in countdown(3)]]


class ThreadRecorder(CountingCallback):
    """A counting callback that also records which threads called it."""

    def __init__(self, inner: Callable[..., Any]) -> None:
        super().__init__(inner)
        self.threads: set[int] = set()

    def __call__(self, frame: framecache.FrameView, entry: object, state: dict) -> Any:
        self.threads.add(threading.get_ident())
        return super().__call__(frame, entry, state)


def own_workload() -> types.FunctionType:
    """A function like workload with a code object of its own."""
    return types.FunctionType(workload.__code__.replace(), globals(), "workload")


def test_threads_each_with_their_own_callback(mode: Mode) -> None:
    expected = [workload(i) for i in range(40)]
    mine = ThreadRecorder(mode.watcher if mode.name == "none" else mode.compiler)
    copier = ThreadRecorder(copy_callback)
    watcher = ThreadRecorder(none_callback)
    outside = ThreadRecorder(none_callback)
    names = ("mine", "copy", "none", "off", "disabled")
    functions = {name: own_workload() for name in names}
    barrier = threading.Barrier(len(names))
    results: dict[str, Any] = {}
    idents: dict[str, int] = {}
    errors: list[BaseException] = []

    def run(name: str, setting: Any) -> None:
        fn = functions[name]
        if name == "disabled":
            fn = framecache.disable(fn)
        try:
            idents[name] = threading.get_ident()
            framecache.set_eval_frame(setting)
            barrier.wait()
            if name == "mine" and mode.name == "run_only":
                # Entries compiled on this thread first, then run-only.
                [fn(i) for i in range(40)]
                framecache.set_eval_frame(False)
            results[name] = [fn(i) for i in range(40)]
            results[name + " callback"] = framecache.get_eval_frame()
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        finally:
            framecache.set_eval_frame(None)

    settings = {"mine": mine, "copy": copier, "none": watcher, "off": None, "disabled": outside}
    threads = [threading.Thread(target=run, args=(name, settings[name])) for name in names]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    for name in names:
        assert results[name] == expected, name
    assert results["mine callback"] is (False if mode.name == "run_only" else mine)
    assert results["copy callback"] is copier
    assert results["none callback"] is watcher
    assert results["off callback"] is None
    # Each callback ran on its own thread only, and nothing leaked into the
    # thread that was off.
    assert mine.threads == {idents["mine"]}
    assert copier.threads == {idents["copy"]}
    assert watcher.threads == {idents["none"]}
    assert outside.threads == {idents["disabled"]}  # its barrier.wait() was intercepted
    assert watcher.count(functions["none"].__code__) == 40
    # Nothing inside the disabled function was.
    disabled_code = functions["disabled"].__code__
    inside = [disabled_code, positional_only.__code__, countdown.__code__]
    inside += [c for c in disabled_code.co_consts if isinstance(c, types.CodeType)]
    # square, the generator expression and (before 3.12) the list comprehension:
    # 3.12 inlines list comprehensions into the function (PEP 709).
    assert len(inside) == (6 if sys.version_info < (3, 12) else 5)
    assert not any(code is seen for code in inside for seen in outside.codes)
    assert copier.count(functions["copy"].__code__) == 1
    assert mine.count(functions["mine"].__code__) == (40 if mode.name == "none" else 1)
    assert framecache.cache_entries(functions["off"].__code__) == []
    assert framecache.cache_entries(functions["disabled"].__code__) == []
    if mode.name == "run_only":
        assert total_hits(functions["mine"].__code__) == 79
