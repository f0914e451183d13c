"""Compile events: who wants to hear about each compile framecache.compile makes.

framecache.compile's cache-miss callback (compiler/callback.py) reports every compile
here; framecache.testing's recompile budgets listen. Observers run synchronously on the
compiling thread, inside the callback, so they can look at the Python stack of the call
that missed. The registry is process-wide: a budget counts compiles made by every
thread while it is open. Nothing here needs torch.
"""

from __future__ import annotations

import threading
import types
from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class CompileEvent:
    """One compile made by framecache.compile's callback.

    ``recompile`` is true when the code object already had cache entries, that is when
    this compile is not the code's first; ``reasons`` then holds the guard failures of
    its first entry (``"L['x']: dtype mismatch, expected torch.float32, got ..."``).
    """

    code: types.CodeType
    recompile: bool
    reasons: tuple[str, ...]


Observer = Callable[[CompileEvent], None]

_lock = threading.Lock()
_observers: tuple[Observer, ...] = ()


def add_observer(observer: Observer) -> None:
    """Call ``observer(event)`` for every compile from now on."""
    global _observers
    if not callable(observer):
        raise TypeError(f"add_observer() expects a callable, got {type(observer).__name__}")
    with _lock:
        _observers = (*_observers, observer)


def remove_observer(observer: Observer) -> None:
    """Stop calling ``observer``; a ValueError if it was not added."""
    global _observers
    with _lock:
        observers = list(_observers)
        observers.remove(observer)
        _observers = tuple(observers)


def has_observers() -> bool:
    """True while anyone listens (the callback skips building events otherwise)."""
    return bool(_observers)


def emit(event: CompileEvent) -> None:
    """Deliver ``event`` to every observer, in the order they were added."""
    for observer in _observers:
        observer(event)
