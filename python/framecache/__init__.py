"""framecache: a PEP 523 frame-evaluation runtime with guarded caches of compiled code.

The hook intercepts Python frames while a callback is set for the thread. Each
code object keeps a list of cache entries (compiled code plus the guards under
which it may run); a frame whose guards pass runs the cached code instead of the
original, a miss calls the callback, which may return new compiled code.
"""

from __future__ import annotations

# First: raises a clear ImportError on an interpreter the compiled core cannot serve.
from . import _interpreter  # noqa: F401  # isort: skip
import sys as _sys

from . import _C, guards
from ._C import (
    CacheEntry,
    CallbackResult,
    FrameAction,
    FrameExecStrategy,
    FrameView,
    GuardedCode,
    cache_entries,
    frame_state,
    get_code_strategy,
    get_eval_frame,
    get_lru,
    get_recompile_limits,
    hook_installed,
    reset_code,
    set_code_strategy,
    set_eval_frame,
    set_lru,
    set_recompile_limit,
)
from ._runtime import RecompileLimitWarning, disable, optimize, run_only
from .profiling import GuardProfile, profile_guards
from .stances import RecompileError, stance
from .testing import RecompileBudgetExceeded, expect_recompiles

__version__ = "0.1.0"


def reset() -> None:
    """Drop every code object's cache entries and frame state, and any CUDA graph recordings."""
    _C.reset()
    graphs = _sys.modules.get("framecache.compiler.cudagraphs")
    if graphs is not None:  # loaded only when some compile used cudagraphs=True
        graphs.release_all()


# framecache.compile and its tools need torch: imported on first use, so that the
# runtime and guards work without torch installed.
_COMPILER_NAMES = (
    "BackendCompileError",
    "ExplainOutput",
    "FullGraphError",
    "OptimizedModule",
    "Stats",
    "UnsupportedTorchWarning",
    "compile",
    "explain",
    "mark_dynamic",
    "stats",
)


def __getattr__(name: str) -> object:
    if name in _COMPILER_NAMES:
        from . import compiler

        value = getattr(compiler, name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'framecache' has no attribute {name!r}")


__all__ = [
    "BackendCompileError",
    "ExplainOutput",
    "FullGraphError",
    "OptimizedModule",
    "Stats",
    "UnsupportedTorchWarning",
    "compile",
    "explain",
    "mark_dynamic",
    "stats",
    "CacheEntry",
    "CallbackResult",
    "GuardProfile",
    "RecompileBudgetExceeded",
    "RecompileError",
    "expect_recompiles",
    "profile_guards",
    "stance",
    "FrameAction",
    "FrameExecStrategy",
    "FrameView",
    "GuardedCode",
    "RecompileLimitWarning",
    "cache_entries",
    "disable",
    "frame_state",
    "get_code_strategy",
    "get_eval_frame",
    "get_lru",
    "get_recompile_limits",
    "guards",
    "hook_installed",
    "optimize",
    "reset",
    "reset_code",
    "run_only",
    "set_code_strategy",
    "set_eval_frame",
    "set_lru",
    "set_recompile_limit",
]
