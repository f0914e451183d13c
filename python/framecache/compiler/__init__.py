"""framecache.compile and its tools: capture frames into FX graphs, compile, guard, cache.

Needs torch, in the range ``framecache.cache.torch_compat.SUPPORTED_RANGE`` (a torch
outside it gets one ``UnsupportedTorchWarning``); ``import framecache`` alone does not
import it.
"""

from __future__ import annotations

import os

import torch

from .. import _C
from ..cache.torch_compat import UnsupportedTorchWarning, warn_if_unsupported
from . import logs
from .api import OptimizedModule, compile
from .dynamic import mark_dynamic
from .errors import BackendCompileError, FullGraphError, Unsupported
from .explain import ExplainOutput, explain
from .stats import Stats, stats

# torch's own Python code is traced through, never intercepted.
_C._set_skip_prefixes(
    [
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep,
        os.path.dirname(os.path.abspath(torch.__file__)) + os.sep,
    ]
)
logs.configure()
warn_if_unsupported()

__all__ = [
    "BackendCompileError",
    "ExplainOutput",
    "FullGraphError",
    "OptimizedModule",
    "Stats",
    "Unsupported",
    "UnsupportedTorchWarning",
    "compile",
    "explain",
    "mark_dynamic",
    "stats",
]
