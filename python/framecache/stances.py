"""``framecache.stance(...)``: how framecache.compile'd functions behave for a while.

The same idea as ``torch.compiler.set_stance``, as a context manager::

    f(x)                                  # warm up: compiles
    with framecache.stance("fail_on_recompile"):
        f(x)                              # a cache hit: fine
        f(x.double())                     # would recompile: raises RecompileError

Stances:

``"default"``
    Look up cached entries; compile on a miss.
``"fail_on_recompile"``
    Look up cached entries; a miss on a code object that already has entries raises
    RecompileError naming the guards that failed, instead of compiling. A code object's
    first compile is still allowed.
``"eager"``
    Run every compiled function as plain Python: no lookup, no compile.
``"run_only"``
    Look up cached entries, never compile: a miss runs the original code.

The stance is per thread (a ``contextvars.ContextVar``), not global as torch's is: one
test's stance never leaks into another thread, which torch learnt the hard way with a
process-wide flag. A thread started inside ``with stance(...)`` starts at ``"default"``;
to carry the stance over, start it through ``contextvars.copy_context().run``.
It applies to framecache.compile'd functions and modules only; framecache.optimize
with a callback of your own is unaffected.
"""

from __future__ import annotations

import contextvars
import functools
from collections.abc import Callable
from typing import Any, Literal, TypeVar

Stance = Literal["default", "fail_on_recompile", "eager", "run_only"]
STANCES: tuple[str, ...] = ("default", "fail_on_recompile", "eager", "run_only")

F = TypeVar("F", bound=Callable[..., Any])

_current: contextvars.ContextVar[str] = contextvars.ContextVar(
    "framecache_stance", default="default"
)


class RecompileError(RuntimeError):
    """A recompile was needed under ``stance("fail_on_recompile")``."""


def current_stance() -> str:
    """The stance of the calling thread (or task)."""
    return _current.get()


class stance:
    """Use ``name`` for framecache.compile'd code within a ``with`` block or a decorated call.

    The previous stance is restored on exit, also when the block raises; stances nest.
    """

    def __init__(self, name: Stance) -> None:
        if name not in STANCES:
            raise ValueError(f"stance() expects one of {', '.join(STANCES)}; got {name!r}")
        self.name = name
        self._tokens: list[contextvars.Token[str]] = []

    def __enter__(self) -> stance:
        self._tokens.append(_current.set(self.name))
        return self

    def __exit__(self, *exc: object) -> None:
        _current.reset(self._tokens.pop())

    def __call__(self, fn: F) -> F:
        if not callable(fn):
            raise TypeError(f"stance(...) decorates a callable, got {type(fn).__name__}")
        name = self.name

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with stance(name):  # type: ignore[arg-type]
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


def active_callback(callback: Any) -> Any:
    """What a compiled function's wrapper installs as the thread's callback under the stance.

    ``callback`` normally; None (no lookup at all) when eager; False (cached entries only)
    when run_only.
    """
    name = _current.get()
    if name == "eager":
        return None
    if name == "run_only":
        return False
    return callback
