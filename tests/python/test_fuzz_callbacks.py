"""Property-based fuzzing of the callback protocol (hypothesis).

Callbacks return wrong types, GuardedCode of code objects with a different argument,
cell or free-variable layout, guard managers of the wrong kind, raise at every point, and
reset the code (or everything) from inside the callback or a guard. Each call ends in a
Python exception or a correct result (the original's, or the compiled code's when its
entry was just made or its guards pass), and the runtime keeps working afterwards (see
tests/python/fuzz_programs.py). The coverage-guided pass is `tests/fuzz/fuzz.py callbacks`.
"""

from __future__ import annotations

import types
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager
from fuzz_programs import (
    _LAYOUTS,
    HypothesisChoices,
    RaisingClass,
    _make_layout,
    run_callback_program,
)


@settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)
@given(st.data())
def test_random_callback_programs_end_in_an_exception_or_a_correct_result(data: Any) -> None:
    run_callback_program(HypothesisChoices(data))


@pytest.mark.parametrize("layout", sorted(_LAYOUTS))
@pytest.mark.parametrize("other", sorted(_LAYOUTS))
def test_compiled_code_of_every_other_layout(layout: str, other: str) -> None:
    # Same layout: the compiled code runs. Another argument or free-variable layout: a
    # ValueError naming what differs, and the original still runs afterwards. A different
    # cell layout alone is fine (the compiled code makes its own cells).
    fn = _make_layout(layout, "original")
    compiled = _make_layout(other, "compiled")
    _, args, kwargs = _LAYOUTS[layout]

    def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
        if frame.f_code is not fn.__code__:
            return None
        return CallbackResult(GuardedCode(compiled.__code__, RootGuardManager()))

    def signature(name: str) -> tuple[Any, ...]:
        code = _make_layout(name, "original").__code__
        flags = code.co_flags & 0x0C  # CO_VARARGS | CO_VARKEYWORDS
        return (
            code.co_argcount,
            code.co_posonlyargcount,
            code.co_kwonlyargcount,
            flags,
            len(code.co_freevars),
            code.co_varnames[code.co_argcount : code.co_argcount + code.co_kwonlyargcount],
        )

    expected = fn(*args, **kwargs)
    compatible = signature(layout) == signature(other)
    with framecache.optimize(callback):
        if compatible:
            result = fn(*args, **kwargs)
            assert result == ("compiled", *expected[1:])
        else:
            with pytest.raises(ValueError, match="compiled code for"):
                fn(*args, **kwargs)
            assert framecache.cache_entries(fn.__code__) == []
    assert fn(*args, **kwargs) == expected


def test_a_callback_that_resets_from_inside_a_guard_of_another_entry() -> None:
    def f(x: int) -> int:
        return x + 1

    calls = []

    def resetting(v: Any) -> bool:
        calls.append(v)
        framecache.reset()
        return True

    def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
        if frame.f_code is not f.__code__:
            return None
        root = RootGuardManager()
        root.local("x").lambda_guard(resetting, "resets everything")
        return CallbackResult(GuardedCode(frame.f_code.replace(), root))

    with framecache.optimize(callback):
        for i in range(20):
            assert f(i) == i + 1
    # Every lookup's guard reset the cache: each call was a miss, compiled again.
    assert len(calls) == 19


@pytest.mark.parametrize(
    "bad",
    [1, "s", (None,), GuardedCode, types.SimpleNamespace(), CallbackResult, RootGuardManager()],
)
def test_a_callback_returning_a_wrong_type_raises_type_error(bad: Any) -> None:
    def f(x: int) -> int:
        return x

    with framecache.optimize(lambda fr, e, s: bad if fr.f_code is f.__code__ else None):
        with pytest.raises(TypeError, match="CallbackResult"):
            f(1)
    assert f(2) == 2


class SpoofsCallbackResult:
    """Claims to be a CallbackResult through __class__ (isinstance() believes it)."""

    @property
    def __class__(self) -> type:  # type: ignore[override]
        return CallbackResult


@pytest.mark.parametrize("bad", [RaisingClass, SpoofsCallbackResult])
def test_a_callback_result_whose_class_raises_or_lies_is_a_type_error(bad: type) -> None:
    # Found by fuzz_callbacks: the hook asked isinstance(), which reads __class__: a
    # raising __class__ threw a C++ exception out of the hook (std::terminate), and a
    # lying one made the cast to CallbackResult throw. The type check now reads no
    # attribute, and no C++ exception leaves the hook.
    def f(x: int) -> int:
        return x

    with framecache.optimize(lambda fr, e, s: bad() if fr.f_code is f.__code__ else None):
        with pytest.raises(TypeError, match="CallbackResult"):
            f(1)
        with pytest.raises(TypeError, match="CallbackResult"):
            f(2)
    assert f(3) == 3
