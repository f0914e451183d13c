"""Lifetimes: what frees cache entries, reference counts across hits, and threads at once."""

from __future__ import annotations

import gc
import json
import sys
import types
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import framecache
from conftest import copy_all_callback, copy_result, none_callback, run_python
from framecache.guards import RootGuardManager


class PythonGuards:
    """A guard manager written in Python that always passes."""

    def check(self, f_locals: dict) -> bool:
        return True


GUARD_FACTORIES: dict[str, Callable[[], object]] = {
    "python": PythonGuards,
    "root": RootGuardManager,
}


class RememberGuards:
    """Compiles every frame of the named functions into a copy; keeps weakrefs to the guards."""

    def __init__(self, make_guards: Callable[[], object], *names: str) -> None:
        self.make_guards = make_guards
        self.names = names
        self.guards: list[weakref.ref] = []

    def __call__(self, frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code.co_name not in self.names:
            return None
        guards = self.make_guards()
        self.guards.append(weakref.ref(guards))
        return copy_result(frame.f_code, guards)


DYNAMIC_SOURCE = """
def plain(x):
    return x + 1

def make_closure(k):
    def closure(x):
        return x * k
    return closure

def numbers(n):
    yield from range(n)

class Holder:
    def method(self, x):
        return x - 1
"""


def run_dynamic_module(namespace: dict[str, Any]) -> list[Any]:
    return [
        namespace["plain"](1),
        namespace["plain"](2),
        namespace["make_closure"](3)(4),
        list(namespace["numbers"](3)),
        namespace["Holder"]().method(5),
    ]


@pytest.mark.parametrize("kind", sorted(GUARD_FACTORIES))
def test_a_dead_code_object_frees_its_entries(kind: str) -> None:
    names = ("plain", "closure", "numbers", "method")
    callback = RememberGuards(GUARD_FACTORIES[kind], *names)
    namespace: dict[str, Any] = {}
    exec(compile(DYNAMIC_SOURCE, "<dynamic>", "exec"), namespace)
    code = weakref.ref(namespace["plain"].__code__)
    with framecache.optimize(callback):
        assert run_dynamic_module(namespace) == [2, 3, 12, [0, 1, 2], 4]
    assert len(callback.guards) == 4
    assert all(ref() is not None for ref in callback.guards)
    assert len(framecache.cache_entries(namespace["plain"].__code__)) == 1
    del namespace
    gc.collect()
    assert code() is None
    assert [ref() for ref in callback.guards] == [None] * 4


def run_module_twice(guards: object) -> None:
    """Compiles and runs a module code object that nothing keeps once this returns."""
    namespace: dict[str, Any] = {}
    code = compile("value = 41 + 1\n", "<dead-module>", "exec")

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, guards) if frame.f_code is code else None

    with framecache.optimize(callback):
        exec(code, namespace)
        exec(code, namespace)
    assert namespace["value"] == 42
    assert framecache.cache_entries(code)[0].hit_count == 1


def test_a_dead_module_code_object_frees_its_entries() -> None:
    guards = PythonGuards()
    dead = weakref.ref(guards)
    run_module_twice(guards)
    del guards
    gc.collect()
    assert dead() is None


def test_an_entry_view_keeps_its_entry_alive_after_the_code_dies() -> None:
    namespace: dict[str, Any] = {}
    exec(compile(DYNAMIC_SOURCE, "<dynamic>", "exec"), namespace)
    callback = RememberGuards(PythonGuards, "plain")
    with framecache.optimize(callback):
        namespace["plain"](1)
    [view] = framecache.cache_entries(namespace["plain"].__code__)
    del namespace
    gc.collect()
    assert callback.guards[0]() is not None
    assert view.code.co_name == "plain"
    assert isinstance(view.guard_manager, PythonGuards)
    del view
    gc.collect()
    assert callback.guards[0]() is None


def scoped(x: int) -> int:
    return x * 3


@pytest.mark.parametrize("kind", sorted(GUARD_FACTORIES))
def test_reset_code_and_reset_free_the_entries(kind: str) -> None:
    callback = RememberGuards(GUARD_FACTORIES[kind], "scoped")
    with framecache.optimize(callback):
        assert scoped(1) == 3
    [first] = callback.guards
    assert first() is not None
    framecache.reset_code(scoped.__code__)
    assert first() is None  # freed at once: nothing else held it

    with framecache.optimize(callback):
        assert scoped(2) == 6
    second = callback.guards[1]
    assert second() is not None
    framecache.reset()
    assert second() is None


class SelfResettingGuards:
    """A guard manager whose destructor resets framecache again."""

    def __init__(self, code: types.CodeType) -> None:
        self.code = code

    def check(self, f_locals: dict) -> bool:
        return True

    def __del__(self) -> None:
        framecache.reset_code(self.code)
        framecache.reset()


def test_a_guard_destructor_that_resets_again() -> None:
    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is scoped.__code__:
            return copy_result(frame.f_code, SelfResettingGuards(frame.f_code))
        return None

    with framecache.optimize(callback):
        assert scoped(1) == 3
    framecache.reset_code(scoped.__code__)
    assert framecache.cache_entries(scoped.__code__) == []
    with framecache.optimize(callback):
        assert scoped(2) == 6
    framecache.reset()
    assert framecache.cache_entries(scoped.__code__) == []


# --- reference counts across hits ----------------------------------------------------------------


def positional(a: object, b: object) -> object:
    return a


def general(a: object, /, b: object, *args: object, c: object, **kwargs: object) -> object:
    return a


def make_adder(k: int) -> Callable[[object], object]:
    def with_closure(a: object) -> object:
        return k and a

    return with_closure


def cell_arg(a: object) -> object:
    def read() -> object:
        return a

    return read()


def producing(a: object) -> Iterator[object]:
    yield a


class Payload:
    """An argument object whose reference count the tests watch."""


ADDER = make_adder(1)

# name: (a call, the code whose entry that call hits)
CALLS: dict[str, tuple[Callable[[object], object], types.CodeType]] = {
    "positional": (lambda p: positional(p, p), positional.__code__),
    "general": (lambda p: general(p, p, p, p, c=p, d=p), general.__code__),
    "closure": (ADDER, ADDER.__code__),
    "cell argument": (cell_arg, cell_arg.__code__),
    "generator": (lambda p: next(producing(p)), producing.__code__),
}


@pytest.mark.parametrize("call", sorted(CALLS))
@pytest.mark.parametrize("guards", ["root", "python"])
def test_hits_leak_no_references(call: str, guards: str) -> None:
    fn, code = CALLS[call]
    payload = Payload()
    make = GUARD_FACTORIES[guards]

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        return copy_result(frame.f_code, make()) if frame.f_code.co_flags & 0x1 else None

    with framecache.optimize(callback):
        assert fn(payload) is payload  # compiles
        assert fn(payload) is payload  # the first hit makes the entry's function
    g = globals()
    before = (sys.getrefcount(payload), sys.getrefcount(g))
    with framecache.run_only():
        for _ in range(10_000):
            fn(payload)
    assert (sys.getrefcount(payload), sys.getrefcount(g)) == before
    [entry] = framecache.cache_entries(code)
    assert entry.hit_count == 10_001


@pytest.mark.parametrize("setting", ["none", "run-only miss"])
def test_misses_leak_no_references(setting: str) -> None:
    payload = Payload()
    seen_locals: list[int] = []

    def reading_callback(frame: framecache.FrameView, entry: object, state: dict) -> None:
        seen_locals.append(len(frame.f_locals))
        return None

    callback = reading_callback if setting == "none" else False
    framecache.set_eval_frame(callback)
    general(payload, payload, c=payload)
    before = sys.getrefcount(payload)
    for _ in range(10_000):
        general(payload, payload, payload, c=payload, z=payload)
    framecache.set_eval_frame(None)
    assert sys.getrefcount(payload) == before
    assert len(seen_locals) == (10_001 if setting == "none" else 0)


def test_module_and_class_body_hits_leak_no_references() -> None:
    payload = Payload()
    code = compile("class Body:\n    value = payload\nresult = Body.value\n", "<body>", "exec")
    namespace = {"payload": payload}
    with framecache.optimize(copy_all_callback):
        exec(code, namespace)
        exec(code, namespace)
    gc.collect()  # earlier Body classes are cycles waiting for the collector
    before = sys.getrefcount(payload)
    with framecache.run_only():
        for _ in range(2_000):
            exec(code, namespace)
    gc.collect()
    assert sys.getrefcount(payload) == before
    assert framecache.cache_entries(code)[0].hit_count == 2_001


def test_the_hook_keeps_no_frame_alive() -> None:
    payload = Payload()
    dead = weakref.ref(payload)
    with framecache.optimize(none_callback):
        positional(payload, 1)
    with framecache.optimize(copy_all_callback):
        positional(payload, 1)
        general(payload, 1, c=1)
        list(producing(payload))
    del payload
    assert dead() is None


# --- threads ------------------------------------------------------------------------------------


THREADS_PROGRAM = """
import itertools, json, sys, threading, time
import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager

sys.setswitchinterval(1e-6)  # hand the GIL over as often as possible
framecache.set_recompile_limit(10**6, accumulated=10**9)

def target(x, y):
    return x * 2 + y

# One compiled code per argument type. Each refuses to run for another type,
# so a wrong entry would show up as an error.
SPECIALISED = {}
for tp in (int, float, str):
    source = (
        "def target(x, y):\\n"
        f"    if type(x) is not {tp.__name__}:\\n"
        f"        raise AssertionError('entry for {tp.__name__} ran for ' + type(x).__name__)\\n"
        "    return x * 2 + y\\n"
    )
    module = compile(source, "<specialised>", "exec")
    SPECIALISED[tp] = next(c for c in module.co_consts if hasattr(c, "co_code"))

checks = itertools.count()

class PythonTypeGuard:
    def __init__(self, tp):
        self.tp = tp
    def check(self, f_locals):
        n = next(checks)
        if n % 7 == 0:
            time.sleep(0)  # let another thread in mid-lookup
        if n % 53 == 0:
            framecache.reset_code(target.__code__)  # the list changes under the lookup
        return type(f_locals["x"]) is self.tp

def callback(frame, entry, state):
    if frame.f_code is not target.__code__:
        return None
    tp = type(frame.f_locals["x"])
    state[tp.__name__] = state.get(tp.__name__, 0) + 1
    if len(state) % 2:
        guards = RootGuardManager()
        guards.local("x").type_match(tp)
    else:
        guards = PythonTypeGuard(tp)
    return CallbackResult(GuardedCode(SPECIALISED[tp], guards))

ITERATIONS = 1500
errors = []
counts = [0] * 4
start = threading.Barrier(4)

def worker(k):
    framecache.set_eval_frame(callback)
    try:
        start.wait()
        for i in range(ITERATIONS):
            x = (i, float(i), str(i % 10))[(i + k) % 3]
            y = "!" if isinstance(x, str) else k
            result = target(x, y)
            if result != x * 2 + y:
                errors.append(f"thread {k}: target({x!r}, {y!r}) gave {result!r}")
            if i % 11 == k:
                framecache.reset_code(target.__code__)
            if i % 97 == k:
                framecache.reset()
            if i % 13 == k:
                for view in framecache.cache_entries(target.__code__):
                    view.guard_manager, view.code, view.hit_count
            if i % 17 == k:
                framecache.set_lru(i % 2 == 0)
            counts[k] += 1
    except BaseException as exc:
        errors.append(f"thread {k}: {type(exc).__name__}: {exc}")
    finally:
        framecache.set_eval_frame(None)

threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
for t in threads:
    t.start()
for t in threads:
    t.join()
print(json.dumps({"errors": errors[:10], "counts": counts,
                  "installed": framecache.hook_installed()}))
"""


def test_four_threads_compiling_hitting_and_resetting_one_function() -> None:
    proc = run_python(THREADS_PROGRAM)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    report = json.loads(proc.stdout)
    assert report == {"errors": [], "counts": [1500] * 4, "installed": False}


EXIT_PROGRAM = """
import atexit, sys, threading
sys.path.insert(0, {tests_dir!r})
import framecache
from conftest import copy_all_callback

framecache.set_recompile_limit(8, accumulated=10**9)

def work(x):
    return [i * x for i in range(3)]

class Late:
    def __del__(self):
        work(3)

late = Late()
atexit.register(lambda: print("atexit", work(2)))
running = threading.Event()

def spin():
    framecache.set_eval_frame(copy_all_callback)
    running.set()
    while True:
        work(1)

threading.Thread(target=spin, daemon=True).start()
running.wait()
framecache.set_eval_frame(copy_all_callback)
print("main", work(1))
"""


def test_the_interpreter_exits_cleanly_with_callbacks_still_set() -> None:
    tests_dir = str(__import__("pathlib").Path(__file__).parent)
    proc = run_python(EXIT_PROGRAM.format(tests_dir=tests_dir))
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["main [0, 1, 2]", "atexit [0, 2, 4]"]
