"""Python-level helpers around the compiled hook: scopes, wrappers, warnings."""

from __future__ import annotations

import atexit
import functools
import gc
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from . import _C
from ._attr_hooks import recognise as _recognise_attr_hook

F = TypeVar("F", bound=Callable[..., Any])

Callback = Callable[..., Any]


class RecompileLimitWarning(RuntimeWarning):
    """A code object reached a recompile limit (see ``set_recompile_limit``).

    Past ``limit`` (entries compiled for the same identity-guarded objects) the frame runs
    without compiling; past ``accumulated`` (entries of the code in all) the code does.
    Given once per code object.
    """


_C._set_recompile_warning_category(RecompileLimitWarning)
# framecache's own Python code is never intercepted.
_C._set_skip_prefixes([os.path.dirname(os.path.abspath(__file__)) + os.sep])
# Which Python __getattribute__ hooks and property getters the guards perform in C.
_C.guards._set_attr_hook_recogniser(_recognise_attr_hook)


# A cache entry keeps a function object (and so its globals) alive through
# C++, out of the collector's sight; dropping them before each full collection
# lets it free namespaces whose only code is cached (see cache_entry.cpp).
gc.callbacks.append(_C._gc_callback)

# At exit, daemon threads waiting for the GIL are unwound by pthread_exit (3.11): the C++
# owners on their stacks must not release Python references then (see framecache/ref.h).
atexit.register(_C._note_interpreter_exit)


def _check_callback(callback: object) -> None:
    if callback is not None and callback is not False and not callable(callback):
        raise TypeError(
            "expected None (off), False (run-only) or a callable callback, "
            f"got {type(callback).__name__}"
        )


class optimize:
    """Turn compile mode on with ``callback`` for a ``with`` block or a decorated call.

    The previous callback of the thread is restored afterwards, also when the
    block raises. As a decorator, each call of the decorated function enables the
    callback for its duration::

        with framecache.optimize(my_callback):
            f(1, 2)

        @framecache.optimize(my_callback)
        def g(x): ...
    """

    def __init__(self, callback: Callback | bool | None) -> None:
        _check_callback(callback)
        self._callback = callback
        # (callback, options tag) pairs to restore: the tag of a framecache.compile'd
        # call this scope sits in comes back with its callback.
        self._saved: list[tuple[object, int]] = []

    def __enter__(self) -> optimize:
        tag = _C.get_eval_frame_tag()
        self._saved.append((_C.set_eval_frame(self._callback), tag))
        return self

    def __exit__(self, *exc: object) -> None:
        callback, tag = self._saved.pop()
        _C.set_eval_frame(callback, tag)

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"optimize(...) decorates a callable, got {type(fn).__name__}")
        callback = self._callback

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            tag = _C.get_eval_frame_tag()
            previous = _C.set_eval_frame(callback)
            try:
                return fn(*args, **kwargs)
            finally:
                _C.set_eval_frame(previous, tag)

        return wrapper  # type: ignore[return-value]


@contextmanager
def run_only() -> Iterator[None]:
    """Use cached entries but never compile, for the duration of a ``with`` block."""
    tag = _C.get_eval_frame_tag()
    previous = _C.set_eval_frame(False, tag)  # the entries of the scope it is in
    try:
        yield
    finally:
        _C.set_eval_frame(previous, tag)


def disable(fn: F) -> F:
    """Wrap ``fn`` so that neither it nor anything it calls is ever intercepted."""
    if not callable(fn):
        raise TypeError(f"disable() expects a callable, got {type(fn).__name__}")

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return _C._run_with_action(_C.FrameAction.SKIP, fn, *args, **kwargs)

    return wrapper  # type: ignore[return-value]
