"""framecache.compile: the front door."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from typing import Any, TypeVar, overload

import torch

from .. import _C
from ..stances import active_callback
from . import backends
from .callback import CompileContext

F = TypeVar("F", bound=Callable[..., Any])


class OptimizedModule(torch.nn.Module):
    """A module whose forward runs through framecache; it shares the original's parameters."""

    def __init__(self, module: torch.nn.Module, context: CompileContext) -> None:
        super().__init__()
        self._orig_mod = module
        self._framecache_context = context
        self._framecache_original = module

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        callback = active_callback(self._framecache_context)
        return _C._call_with_callback(callback, self._orig_mod, *args, **kwargs)

    def __repr__(self) -> str:
        return f"OptimizedModule({self._orig_mod!r})"


@overload
def compile(
    fn_or_module: None = None,
    *,
    backend: str | backends.Backend = "eager",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Callable[[F], F]: ...
@overload
def compile(
    fn_or_module: F,
    *,
    backend: str | backends.Backend = "eager",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> F: ...
def compile(
    fn_or_module: Any = None,
    *,
    backend: str | backends.Backend = "eager",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
) -> Any:
    """Compile a function or an nn.Module into torch.fx graphs run by ``backend``.

    Each call looks up the cached graphs of the function's frames; a miss captures the frame
    with make_fx on fake tensors, compiles the graph and guards it (input types and tensor
    metadata, specialised constants, globals, closure cells and module state read, and
    torch's ambient state). Frames that cannot be captured run normally.

    Args:
        fn_or_module: the function or module; omit it to use ``compile`` as a decorator
            factory (``@framecache.compile(backend="inductor")``).
        backend: ``"eager"``, ``"inductor"`` or a callable ``backend(gm, example_inputs)``.
        dynamic: ``None`` compiles static first and makes dimensions symbolic when their size
            changes; ``True`` makes every dimension symbolic; ``False`` never does.
        fullgraph: raise FullGraphError instead of running a frame normally when it cannot
            be captured.
        cache: keep compiled graphs in the disk cache, so that a new process calling the
            function with compatible inputs loads them instead of capturing and compiling
            again (see framecache/cache/). ``False`` turns it off for this function.
        cache_dir: the disk cache's directory; default ``$FRAMECACHE_CACHE_DIR``, else
            ``$XDG_CACHE_HOME/framecache`` (``~/.cache/framecache``).
    """
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be a bool, got {type(cache).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path, got {type(cache_dir).__name__}")
    context = CompileContext(
        backend=backend, dynamic=dynamic, fullgraph=fullgraph, cache=cache, cache_dir=cache_dir
    )
    if fn_or_module is None:
        return functools.partial(_wrap, context=context)
    return _wrap(fn_or_module, context=context)


def _wrap(fn_or_module: Any, *, context: CompileContext) -> Any:
    if isinstance(fn_or_module, torch.nn.Module):
        return OptimizedModule(fn_or_module, context)
    if not callable(fn_or_module):
        raise TypeError(
            "framecache.compile expects a function or an nn.Module, "
            f"got {type(fn_or_module).__name__}"
        )
    fn = fn_or_module

    call = _C._call_with_callback

    @functools.wraps(fn)
    def compiled(*args: Any, **kwargs: Any) -> Any:
        # One C call swaps this thread's callback around fn (the stance may replace it).
        return call(active_callback(context), fn, *args, **kwargs)

    compiled._framecache_context = context  # type: ignore[attr-defined]
    compiled._framecache_original = fn  # type: ignore[attr-defined]
    return compiled
