"""framecache: a PEP 523 frame-evaluation runtime with guarded caches of compiled code.

The hook intercepts Python frames while a callback is set for the thread. Each
code object keeps a list of cache entries (compiled code plus the guards under
which it may run); a frame whose guards pass runs the cached code instead of the
original, a miss calls the callback, which may return new compiled code.
"""

from __future__ import annotations

from . import guards
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
    reset,
    reset_code,
    set_code_strategy,
    set_eval_frame,
    set_lru,
    set_recompile_limit,
)
from ._runtime import RecompileLimitWarning, disable, optimize, run_only

__version__ = "0.1.0"

__all__ = [
    "CacheEntry",
    "CallbackResult",
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
