"""framecache.compile and its tools: capture frames into FX graphs, compile, guard, cache.

Needs torch (``torch==2.13.0``); ``import framecache`` alone does not import it.
"""

from __future__ import annotations

import os

import torch

from .. import _C
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

__all__ = [
    "BackendCompileError",
    "ExplainOutput",
    "FullGraphError",
    "OptimizedModule",
    "Stats",
    "Unsupported",
    "compile",
    "explain",
    "mark_dynamic",
    "stats",
]
