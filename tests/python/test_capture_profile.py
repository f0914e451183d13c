"""_C._CaptureProfile: the side-effect monitor's profile function, filtered in C.

It must forward exactly the events the monitor acts on (include/framecache/
capture_profile.h): every event of code not known as library code, a C call only from
code that is not library, a return of library code only when the tracer is on or the
caller is not known as library; and it must stop a call when the monitor raises.
"""

from __future__ import annotations

import sys
import types

import pytest

from framecache import _C


def library_leaf(x):
    return abs(x)


def library_caller(x):
    return library_leaf(x) + 1


def user_fn(x):
    return library_caller(x) * 2


def _code(fn: types.FunctionType) -> types.CodeType:
    return fn.__code__


def _watch(table: dict[types.CodeType, bool], tracing: bool = False):
    seen: list[tuple[str, str]] = []

    def callback(frame, event, arg):
        seen.append((event, frame.f_code.co_name))

    profile = _C._CaptureProfile(callback, table)
    profile.tracing = tracing
    return profile, seen


def _run_under(profile, fn, *args):
    previous = sys.getprofile()
    profile.install()
    try:
        return fn(*args)
    finally:
        sys.setprofile(previous)


def test_library_events_are_answered_in_c_and_user_events_forwarded():
    table = {_code(library_leaf): False, _code(library_caller): False, _code(user_fn): True}
    profile, seen = _watch(table)
    assert _run_under(profile, user_fn, -3) == 8
    # user_fn's call and its C calls are forwarded; the library frames' calls and C calls
    # (abs) are not; library_caller's return goes back to user code, so it is forwarded.
    assert ("call", "user_fn") in seen
    assert ("return", "library_caller") in seen
    assert ("call", "library_caller") not in seen
    assert ("call", "library_leaf") not in seen
    assert ("return", "library_leaf") not in seen


def test_a_code_mapped_to_none_has_its_calls_and_returns_forwarded():
    """The import system's entry: the monitor counts its depth, so each call and return
    reaches it, even with the tracer off and library code around it."""
    table = {_code(library_leaf): None, _code(library_caller): False, _code(user_fn): False}
    profile, seen = _watch(table)
    _run_under(profile, user_fn, 1)
    assert ("call", "library_leaf") in seen
    assert ("return", "library_leaf") in seen
    assert ("call", "library_caller") not in seen
    assert ("c_call", "library_leaf") in seen  # not known as library: the monitor decides


def test_unknown_code_is_forwarded():
    profile, seen = _watch({})
    _run_under(profile, user_fn, 1)
    names = {name for _, name in seen}
    assert {"user_fn", "library_caller", "library_leaf"} <= names


def test_with_the_tracer_on_library_calls_and_returns_are_forwarded():
    table = {_code(library_leaf): False, _code(library_caller): False, _code(user_fn): True}
    profile, seen = _watch(table, tracing=True)
    _run_under(profile, user_fn, 1)
    assert ("call", "library_caller") in seen and ("return", "library_leaf") in seen


def test_an_exception_from_the_monitor_stops_the_call_and_uninstalls():
    class Abort(BaseException):
        pass

    def callback(frame, event, arg):
        if event == "call" and frame.f_code is _code(library_leaf):
            raise Abort("stop")

    profile = _C._CaptureProfile(callback, {})
    previous = sys.getprofile()
    try:
        profile.install()
        with pytest.raises(Abort):
            user_fn(1)
        assert sys.getprofile() is None  # removed itself, as sys.setprofile's does
    finally:
        sys.setprofile(previous)


def test_bad_arguments_are_clear_errors():
    with pytest.raises(TypeError, match="callable"):
        _C._CaptureProfile(42, {})
    with pytest.raises(TypeError):
        _C._CaptureProfile(print, [])


def test_an_entry_the_monitor_writes_during_the_capture_is_read_from_then_on():
    """The filter memoises entries it has found by code identity, never an absence: a code
    first unknown (forwarded) and then written as library code is answered in C."""
    table: dict[types.CodeType, bool] = {_code(user_fn): True, _code(library_caller): False}
    seen: list[tuple[str, str]] = []

    def callback(frame, event, arg):
        seen.append((event, frame.f_code.co_name))
        if frame.f_code is _code(library_leaf):
            table[frame.f_code] = False  # what the monitor does once it has decided

    profile = _C._CaptureProfile(callback, table)
    _run_under(profile, user_fn, 1)
    assert ("call", "library_leaf") in seen
    seen.clear()
    _run_under(profile, user_fn, 1)
    assert ("call", "library_leaf") not in seen and ("call", "user_fn") in seen


def user_called_back(x):
    return x + 1


def library_calls_back(x):
    return user_called_back(x) * 2


def user_outer(x):
    y = library_calls_back(x)
    return y + 1


def _per_frame_run(
    per_frame: bool,
) -> tuple[list[tuple[str, str]], list[tuple[str, int]], int, bool]:
    """user_outer under the filter inside a framecache region (the hook installed), with
    a global line tracer like the monitor's: (profile events, line events, result,
    whether per-frame events were available in the region)."""
    import framecache

    table = {
        _code(user_outer): True,
        _code(library_calls_back): False,
        _code(user_called_back): True,
    }
    profile, seen = _watch(table, tracing=True)
    profile.per_frame = per_frame
    lines: list[tuple[str, int]] = []
    user = {_code(user_outer), _code(user_called_back)}

    def local(frame, event, arg):
        if event == "line":
            lines.append((frame.f_code.co_name, frame.f_lineno - frame.f_code.co_firstlineno))
        return local

    def tracer(frame, event, arg):
        if event == "call":
            lines.append((frame.f_code.co_name, -1))  # -1: the global tracer saw the call
        return local if frame.f_code in user else None

    with framecache.optimize(lambda *a: None):
        available = _C._capture_per_frame_available()
        previous_trace = sys.gettrace()
        sys.settrace(tracer)
        try:
            result = _run_under(profile, user_outer, 3)
        finally:
            sys.settrace(previous_trace)
    return seen, lines, result, available


def test_per_frame_library_frames_run_without_events_and_user_frames_keep_theirs():
    seen, lines, result, available = _per_frame_run(per_frame=True)
    assert result == 9
    # User code keeps every event and line, before and after the library frame and in
    # the user code the library frame calls.
    assert ("call", "user_outer") in seen and ("call", "user_called_back") in seen
    assert ("user_outer", 1) in lines and ("user_outer", 2) in lines
    assert ("user_called_back", 1) in lines
    library_events = [e for e in seen if e[1] == "library_calls_back"]
    if sys.version_info[:2] == (3, 11):
        # framecache.optimize installed the hook: the library frame emits nothing, not
        # even a call to the global trace function.
        assert available
        assert library_events == []
        assert ("library_calls_back", -1) not in lines
    else:
        # 3.12+ has no per-frame flag (sys.monitoring): every event as without per_frame.
        assert not available
        assert ("return", "library_calls_back") in library_events
        assert ("library_calls_back", -1) in lines


def test_without_per_frame_the_library_frame_is_traced_as_before():
    seen, lines, result, _ = _per_frame_run(per_frame=False)
    assert result == 9
    assert ("return", "library_calls_back") in seen  # tracer on: forwarded
    assert ("library_calls_back", -1) in lines
    assert ("user_outer", 2) in lines and ("user_called_back", 1) in lines


def test_per_frame_is_off_without_the_hook():
    import framecache

    assert not framecache.hook_installed()
    assert _C._capture_per_frame_available() is False
