"""framecache.compile: the front door."""

from __future__ import annotations

import functools
import os
import types
from collections.abc import Callable
from typing import Any, TypeVar, overload

import torch

from .. import _C
from ..stances import _current as _stance_var
from ..stances import active_callback
from . import backends
from .callback import CompileContext
from .side_effects import is_library_code

F = TypeVar("F", bound=Callable[..., Any])
# The stance variable's default value: when it holds this very object, the compiled
# function installs its own callback without calling back into Python (any other value,
# "default" included, goes through active_callback, which gives the same answer).
_DEFAULT_STANCE = "default"


class OptimizedModule(torch.nn.Module):
    """A module whose forward runs through framecache; it shares the original's parameters."""

    def __init__(self, module: torch.nn.Module, context: CompileContext) -> None:
        super().__init__()
        self._orig_mod = module
        self._framecache_context = context
        self._framecache_original = module
        # Calls the module with the context (or what the stance says) and its options tag.
        # module=True: the module's forward is called directly when its __call__ would
        # do nothing else (no hooks, no tracing): src/module_call.cpp.
        self._framecache_call = _C.CompiledFunction(
            module,
            context,
            _stance_var,
            _DEFAULT_STANCE,
            active_callback,
            context._framecache_tag,
            module=True,
        )
        self._framecache_library_forward = library_forward(module)

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        code = self._framecache_library_forward
        if code is not None:
            allow_compiling(code)
        return self._framecache_call(*args, **kwargs)

    def __repr__(self) -> str:
        return f"OptimizedModule({self._orig_mod!r})"


# What torch's Module.__call__ reads, so that calling a module without hooks skips it
# (~0.5 us of Python per call), here and in the CompiledFunction above.
_C._configure_module_call(
    torch.nn.Module.__call__,
    torch.nn.Module._wrapped_call_impl,
    torch.nn.Module._call_impl,
    vars(torch.nn.modules.module),
    torch._C._get_tracing_state,
)
_C._install_module_call(OptimizedModule)

_ALLOWED = "framecache.compile allowed"
_PREFIX_SKIP = _C.FrameExecStrategy(_C.FrameAction.SKIP, _C.FrameAction.DEFAULT)


def library_forward(module: torch.nn.Module) -> types.CodeType | None:
    """The code of ``type(module).forward`` when it is library code, else None.

    torch's own modules (nn.Linear, nn.TransformerEncoder) have their forward in torch's
    directory, whose code the hook skips: compiling one is asked for explicitly.
    """
    code = getattr(getattr(type(module), "forward", None), "__code__", None)
    return code if isinstance(code, types.CodeType) and is_library_code(code) else None


def allow_compiling(code: types.CodeType) -> None:
    """Let the hook look up and compile ``code`` although it lives under a skipped prefix.

    The mark sits in the code's frame_state, so it is made again after a reset (which
    drops the state, and with it the strategy). A state with the mark keeps whatever
    strategy the callback gave it since (a fallback stays a fallback).
    """
    state = _C.frame_state(code)
    if _ALLOWED in state:
        return
    state[_ALLOWED] = True
    if _C.get_code_strategy(code) == _PREFIX_SKIP:
        _C.set_code_strategy(code, _C.FrameExecStrategy())


@overload
def compile(
    fn_or_module: None = None,
    *,
    backend: str | backends.Backend = "eager",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    cudagraphs: bool | None = None,
    cudagraph_clone_outputs: bool = True,
    remote: str | bool | None = None,
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
    mode: str | None = None,
    cudagraphs: bool | None = None,
    cudagraph_clone_outputs: bool = True,
    remote: str | bool | None = None,
) -> F: ...
def compile(
    fn_or_module: Any = None,
    *,
    backend: str | backends.Backend = "eager",
    dynamic: bool | None = None,
    fullgraph: bool = False,
    cache: bool = True,
    cache_dir: str | os.PathLike[str] | None = None,
    mode: str | None = None,
    cudagraphs: bool | None = None,
    cudagraph_clone_outputs: bool = True,
    remote: str | bool | None = None,
) -> Any:
    """Compile a function or an nn.Module into torch.fx graphs run by ``backend``.

    Each call looks up the cached graphs of the function's frames that were compiled with
    the same options (backend, dynamic, fullgraph): two wrappers of one function with
    different options never run each other's entries, nor share a fallback decision;
    wrappers with equal options share them. A miss captures the frame
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
        mode: ``None``/``"default"``, or ``"reduce-overhead"`` as torch.compile spells it,
            which turns ``cudagraphs`` on (the backend stays the one given).
        cudagraphs: record each compiled entry into a CUDA graph on its first call and
            replay it on hits (inputs copied into static buffers, outputs cloned). Entries
            that cannot be graphed (CPU tensors, autograd recording, mutated inputs,
            dynamic shapes past 8 sizes) run without graphs; ``stats(fn)`` and ``explain``
            say why. See framecache/compiler/cudagraphs.py.
        cudagraph_clone_outputs: ``False`` hands back the recording's static outputs
            without a copy: faster, but the next call of the same entry overwrites them.
        remote: a shared store under the disk cache, ``"redis://host:port/db"``: a local
            miss asks it, a compile writes to both (docs/remote_cache.md). Default
            ``$FRAMECACHE_REMOTE``; ``False`` turns it off for this function.
    """
    if not isinstance(cache, bool):
        raise TypeError(f"cache must be a bool, got {type(cache).__name__}")
    if cache_dir is not None and not isinstance(cache_dir, (str, os.PathLike)):
        raise TypeError(f"cache_dir must be a path, got {type(cache_dir).__name__}")
    graphs = _cudagraphs_option(mode, cudagraphs)
    if remote is not None and remote is not False and not isinstance(remote, str):
        raise TypeError(f"remote must be a redis:// URL or False, got {type(remote).__name__}")
    if isinstance(remote, str):
        from ..cache.remote import check_url

        check_url(remote)
    context = CompileContext(
        backend=backend,
        dynamic=dynamic,
        fullgraph=fullgraph,
        cache=cache,
        cache_dir=cache_dir,
        cudagraphs=graphs,
        cudagraph_clone_outputs=cudagraph_clone_outputs,
    )
    if context.disk is not None:
        context.disk.use_remote(remote)
    if fn_or_module is None:
        return functools.partial(_wrap, context=context)
    return _wrap(fn_or_module, context=context)


_MODES = (None, "default", "reduce-overhead")


def _cudagraphs_option(mode: str | None, cudagraphs: bool | None) -> bool:
    """Whether CUDA graphs are on, from ``mode`` and ``cudagraphs`` (which must agree)."""
    if mode not in _MODES:
        raise ValueError(f"unknown mode {mode!r}; use one of {list(_MODES)}")
    if cudagraphs is not None and not isinstance(cudagraphs, bool):
        raise TypeError(f"cudagraphs must be a bool, got {type(cudagraphs).__name__}")
    if mode == "reduce-overhead":
        if cudagraphs is False:
            raise ValueError('mode="reduce-overhead" means cudagraphs=True; drop one of them')
        return True
    return bool(cudagraphs)


def _wrap(fn_or_module: Any, *, context: CompileContext) -> Any:
    if isinstance(fn_or_module, torch.nn.Module):
        return OptimizedModule(fn_or_module, context)
    if not callable(fn_or_module):
        raise TypeError(
            "framecache.compile expects a function or an nn.Module, "
            f"got {type(fn_or_module).__name__}"
        )
    fn = fn_or_module
    # Calling it is one C call: it reads the stance, swaps this thread's callback around
    # fn and restores it (no Python frame of its own). Outside the default stance it asks
    # active_callback what to install. It binds as a method like a function.
    compiled = _C.CompiledFunction(
        fn, context, _stance_var, _DEFAULT_STANCE, active_callback, context._framecache_tag
    )
    functools.update_wrapper(compiled, fn)
    compiled._framecache_context = context
    compiled._framecache_original = fn
    return compiled
