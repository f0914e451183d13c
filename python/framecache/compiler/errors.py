"""Exceptions raised by framecache.compile."""

from __future__ import annotations


class Unsupported(Exception):
    """A frame cannot be captured into a graph; the reason says why.

    framecache runs such frames normally (their callees can still be compiled),
    unless ``fullgraph=True`` was asked for.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class FullGraphError(RuntimeError):
    """``fullgraph=True`` was requested but the function could not be captured whole."""


class BackendCompileError(RuntimeError):
    """The backend raised while compiling a captured graph."""
