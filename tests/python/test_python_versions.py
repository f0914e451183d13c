"""What differs between the CPython versions framecache supports (3.11, 3.12, 3.13).

The runtime hides the differences (include/framecache/cpython.h); these tests pin the
behaviour that depends on them: the import-time interpreter check, which frames the hook
leaves alone (sys.monitoring tools, 3.12+), that frames the hook answers without running
them are released (3.12+ makes the hook clear them), the callback's frame view on 3.13
(PEP 667), and instance dicts under DICT_VERSION (3.13's shared inline values).
"""

from __future__ import annotations

import sys
import types
import weakref
from collections.abc import Iterator
from typing import Any

import pytest

import framecache
from conftest import CountingCallback, copy_callback, copy_result, none_callback, run_python
from framecache._interpreter import SUPPORTED_VERSIONS, unsupported_reason
from framecache.guards import RootGuardManager

# --- the import-time check ----------------------------------------------------------------------


def test_this_interpreter_is_supported() -> None:
    assert unsupported_reason() is None
    assert (sys.version_info.major, sys.version_info.minor) in SUPPORTED_VERSIONS


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        (
            {"version": (3, 14)},
            "framecache supports CPython 3.11, 3.12, 3.13; this is CPython 3.14",
        ),
        ({"version": (3, 10)}, "this is CPython 3.10, whose frame layout it does not know"),
        ({"implementation": "pypy"}, "framecache needs CPython (3.11, 3.12, 3.13); this is pypy"),
        ({"gil_disabled": True}, "does not support free-threaded CPython builds"),
    ],
)
def test_unsupported_interpreters_are_named(kwargs: dict[str, Any], message: str) -> None:
    defaults: dict[str, Any] = {
        "version": (3, 12),
        "implementation": "cpython",
        "gil_disabled": False,
    }
    reason = unsupported_reason(**{**defaults, **kwargs})
    assert reason is not None and message in reason


def test_importing_on_an_unsupported_interpreter_is_a_clear_import_error() -> None:
    # A staged build met by an interpreter it was not made for: framecache refuses
    # before touching its compiled core, with an ImportError, not a crash.
    result = run_python(
        """
        import sys
        sys.version_info = (3, 14, 0, "final", 0)
        try:
            import framecache
        except ImportError as exc:
            print("ImportError:", exc)
            sys.exit(3)
        print("imported")
        """
    )
    assert result.returncode == 3, result.stdout + result.stderr
    assert "framecache supports CPython 3.11, 3.12, 3.13; this is CPython 3.14" in result.stdout


# --- frames that must run normally --------------------------------------------------------------


def monitored(x: int) -> int:
    return x * 3 + 1


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring (PEP 669) is 3.12+")
@pytest.mark.parametrize("scope", ["global", "local"])
def test_frames_run_normally_while_a_monitoring_tool_has_events(scope: str) -> None:
    # Like sys.settrace on 3.11: a debugger, coverage tool or profiler built on
    # sys.monitoring sees the real code, so the hook leaves frames alone meanwhile.
    mon = sys.monitoring  # type: ignore[attr-defined]
    tool = mon.COVERAGE_ID
    lines: list[int] = []
    counting = CountingCallback(copy_callback)
    mon.use_tool_id(tool, "framecache-test")
    try:
        mon.register_callback(tool, mon.events.LINE, lambda code, line: lines.append(line))
        with framecache.optimize(counting):
            assert monitored(1) == 4  # compiled into a copy and cached
            assert monitored(2) == 7  # a hit
            hits_before = sum(e.hit_count for e in framecache.cache_entries(monitored.__code__))
            if scope == "global":
                mon.set_events(tool, mon.events.LINE)
            else:
                mon.set_local_events(tool, monitored.__code__, mon.events.LINE)
            assert monitored(3) == 10
            mon.set_events(tool, 0)
            mon.set_local_events(tool, monitored.__code__, 0)
            assert monitored(4) == 13  # hits again once the tool is quiet
        hits = sum(e.hit_count for e in framecache.cache_entries(monitored.__code__))
        assert hits == hits_before + 1
        assert counting.count(monitored.__code__) == 1
        assert monitored.__code__.co_firstlineno + 1 in lines
    finally:
        mon.set_events(tool, 0)
        mon.register_callback(tool, mon.events.LINE, None)
        mon.free_tool_id(tool)


def _settable_events(scope: str) -> list[tuple[str, int]]:
    """(name, bit) of every single event `scope` accepts (sys.monitoring refuses the rest)."""
    mon = sys.monitoring  # type: ignore[attr-defined]
    events = sorted(
        (getattr(mon.events, n), n) for n in dir(mon.events) if n.isupper() and n != "NO_EVENTS"
    )
    tool = mon.OPTIMIZER_ID
    mon.use_tool_id(tool, "framecache-test-probe")
    settable = []
    try:
        for bit, name in events:
            try:
                if scope == "global":
                    mon.set_events(tool, bit)
                else:
                    mon.set_local_events(tool, monitored.__code__, bit)
            except ValueError:
                continue
            finally:
                mon.set_events(tool, 0)
                mon.set_local_events(tool, monitored.__code__, 0)
            settable.append((name, bit))
    finally:
        mon.free_tool_id(tool)
    return settable


@pytest.mark.skipif(sys.version_info < (3, 12), reason="sys.monitoring (PEP 669) is 3.12+")
@pytest.mark.parametrize("scope", ["global", "local"])
def test_every_monitoring_event_makes_frames_run_normally(scope: str) -> None:
    # The hook reads the tools' event bytes a word at a time (cpython.h any_tool): each
    # event a tool can switch on, in every byte of the global and local arrays, must be
    # seen, or a debugger would step through cached code instead of the real one.
    mon = sys.monitoring  # type: ignore[attr-defined]
    events = _settable_events(scope)
    # Every ungrouped event globally, the local ones locally (3.12 and 3.13 alike).
    assert len(events) == (15 if scope == "global" else 10), events
    tool = mon.DEBUGGER_ID
    counting = CountingCallback(copy_callback)
    mon.use_tool_id(tool, "framecache-test")
    try:
        with framecache.optimize(counting):
            assert monitored(1) == 4
            assert monitored(2) == 7
            for name, bit in events:
                hits = sum(e.hit_count for e in framecache.cache_entries(monitored.__code__))
                if scope == "global":
                    mon.set_events(tool, bit)
                else:
                    mon.set_local_events(tool, monitored.__code__, bit)
                try:
                    assert monitored(3) == 10
                finally:
                    mon.set_events(tool, 0)
                    mon.set_local_events(tool, monitored.__code__, 0)
                after = sum(e.hit_count for e in framecache.cache_entries(monitored.__code__))
                assert after == hits, f"{name} on: the cached code ran"
                assert monitored(4) == 13  # quiet again: a hit
                quiet = sum(e.hit_count for e in framecache.cache_entries(monitored.__code__))
                assert quiet == hits + 1, f"{name} off: no hit"
        assert counting.count(monitored.__code__) == 1
    finally:
        mon.set_events(tool, 0)
        mon.free_tool_id(tool)


# --- frames answered without running them are released ------------------------------------------


class Payload:
    """An argument whose lifetime the tests watch."""


def takes(payload: Payload, *rest: object, **named: object) -> int:
    return len(rest) + len(named)


def with_cell(payload: Payload) -> int:
    def inner() -> Payload:
        return payload

    return 1 if inner() is payload else 0


def fails_in_callback(frame: framecache.FrameView, entry: object, frame_state: dict) -> None:
    if frame.f_code.co_name in ("takes", "with_cell"):
        raise LookupError("callback refuses")
    return None


@pytest.mark.parametrize("fn", [takes, with_cell])
@pytest.mark.parametrize("outcome", ["hit", "callback-error", "guard-error"])
def test_a_frame_the_hook_did_not_run_releases_its_arguments(
    fn: types.FunctionType, outcome: str
) -> None:
    # On 3.12+ the hook itself clears a frame it answers without running it (a
    # hit runs the cached code as a separate call; an error leaves before anything
    # ran). Its arguments must be released as soon as the call returns.
    def raising_guard(value: object) -> bool:
        # Ordinary exceptions only fail a guard; KeyboardInterrupt ends the lookup.
        raise KeyboardInterrupt

    if outcome == "hit":
        callback: Any = copy_callback
    elif outcome == "callback-error":
        callback = fails_in_callback
    else:
        root = RootGuardManager()
        root.local("payload").lambda_guard(raising_guard)

        def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
            return copy_result(frame.f_code, root) if frame.f_code is fn.__code__ else None

    args: tuple[object, ...] = (1, 2) if fn is takes else ()
    kwargs: dict[str, object] = {"k": 3} if fn is takes else {}
    with framecache.optimize(callback):
        if outcome == "guard-error":
            fn(Payload(), *args, **kwargs)  # compiles the entry whose guard raises
            assert len(framecache.cache_entries(fn.__code__)) == 1
        refs = []
        for _ in range(50):
            p = Payload()
            refs.append(weakref.ref(p))
            if outcome == "hit":
                fn(p, *args, **kwargs)
            else:
                with pytest.raises((LookupError, KeyboardInterrupt)):
                    fn(p, *args, **kwargs)
            del p
    assert all(r() is None for r in refs), "an argument outlived its call"


def recurse(n: int) -> int:
    return 0 if n == 0 else 1 + recurse(n - 1)


def squares(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


def test_many_hits_deep_and_wide_keep_the_stack_consistent() -> None:
    # Thousands of frames answered by cached code, at many depths, with generators
    # and exceptions between them: a frame popped twice or never would corrupt the
    # thread's data stack and show here (or under the sanitizer run).
    with framecache.optimize(copy_callback):
        for _ in range(20):
            assert recurse(200) == 200
            assert sum(squares(30)) == sum(i * i for i in range(30))
            try:
                recurse(-1)
            except RecursionError:
                pass
        assert recurse(300) == 300
    assert sum(e.hit_count for e in framecache.cache_entries(recurse.__code__)) > 4000


# --- the callback's frame view ------------------------------------------------------------------


def adds(x: int, y: int) -> int:
    z = x + y
    return z


def test_the_callback_sees_a_plain_dict_of_locals_on_every_version() -> None:
    # PEP 667 (3.13) makes frame.f_locals of a function a FrameLocalsProxy; the
    # callback's FrameView is not a frame object and keeps giving a dict snapshot
    # of the frame's arguments (its other locals are not bound yet).
    seen: list[Any] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> None:
        if frame.f_code is adds.__code__:
            seen.append((type(frame.f_locals), dict(frame.f_locals), frame.f_lasti))
        return none_callback(frame, entry, state)

    with framecache.optimize(callback):
        assert adds(2, 3) == 5
    assert seen == [(dict, {"x": 2, "y": 3}, -1)]


def comprehension_user(items: list[int]) -> list[int]:
    scale = 2
    return [v * scale for v in items]


def test_inlined_comprehension_variables_are_not_frame_locals() -> None:
    # PEP 709 (3.12) inlines the comprehension: `v` becomes a hidden slot of
    # comprehension_user's frame. It is no local of the function's, on any version.
    seen: list[dict[str, Any]] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> None:
        if frame.f_code is comprehension_user.__code__:
            seen.append(dict(frame.f_locals))
        return None

    with framecache.optimize(callback):
        assert comprehension_user([1, 2]) == [2, 4]
    assert seen == [{"items": [1, 2]}]


# --- DICT_VERSION on instance dicts -------------------------------------------------------------


class Settings:
    def __init__(self) -> None:
        self.mode = "fast"
        self.depth = 2


def set_depth(obj: Settings, value: int) -> None:
    obj.depth = value  # a specialised attribute store (3.13: into the inline values)


def executed(root: RootGuardManager, f_locals: dict[str, Any]) -> int:
    return root.check_verbose(f_locals).num_guards_executed


def test_dict_version_on_an_instance_dict_sees_attribute_stores() -> None:
    root = RootGuardManager()
    d = root.local("s").obj_dict().dict_version()
    d.dict_item("depth").equals_match(2)
    d.dict_item("mode").equals_match("fast")
    s = Settings()
    for _ in range(3):
        assert root.check({"s": s})
    for value in (5, 2, 7):
        for _ in range(20):  # long enough for the store to specialise
            set_depth(s, value)
        assert root.check({"s": s}) is (value == 2)
        assert root.check({"s": s}) is (value == 2)
    s.mode = "slow"
    assert not root.check({"s": s})
    if sys.version_info[:2] == (3, 13):
        # 3.13 shares the object's inline values with its __dict__; stores into them
        # bypass dict watchers and the version tag, so such a dict is never skipped.
        s.mode = "fast"
        set_depth(s, 2)
        assert executed(root, {"s": s}) == executed(root, {"s": s}) == 2
    else:
        s.mode = "fast"
        set_depth(s, 2)
        assert executed(root, {"s": s}) == 2
        assert executed(root, {"s": s}) == 0


def test_dict_version_a_new_dict_in_a_dead_ones_place_is_checked_again() -> None:
    # Dicts are recycled (free list, same address): a tag never outlives its dict.
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("n").equals_match(1)
    for i in range(200):
        d = {"n": 1 if i % 2 == 0 else 2}
        assert root.check({"cfg": d}) is (i % 2 == 0)
        assert root.check({"cfg": d}) is (i % 2 == 0)
        del d


def test_dict_version_sees_clear_update_pop_and_setdefault() -> None:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("n").equals_match(1)
    d = {"n": 1}
    assert root.check({"cfg": d}) and root.check({"cfg": d})
    changes = [
        lambda: d.clear(),
        lambda: d.update(n=1),
        lambda: d.__setitem__("n", 2),
        lambda: d.pop("n"),
        lambda: d.setdefault("n", 1),
        lambda: d.popitem(),
        lambda: d.update({"n": 1}),
        lambda: d.__ior__({"n": 3}),
    ]
    for change in changes:
        change()
        expected = d.get("n") == 1
        assert root.check({"cfg": d}) is expected
        assert root.check({"cfg": d}) is expected
