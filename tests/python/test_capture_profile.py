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
