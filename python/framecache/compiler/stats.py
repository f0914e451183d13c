"""Per-code-object counters of what framecache.compile did."""

from __future__ import annotations

import types
from dataclasses import dataclass, field
from typing import Any

from .. import _C


@dataclass
class CodeStats:
    """What happened to one code object under framecache.compile."""

    name: str
    misses: int = 0
    compiles: int = 0
    fallbacks: int = 0
    compile_seconds: float = 0.0
    recompile_reasons: list[str] = field(default_factory=list)
    fallback_reasons: list[str] = field(default_factory=list)


# Counters live in the code's frame_state, so reset_code()/reset() clear them with the cache.
_KEY = "framecache.stats"


def for_code(code: types.CodeType) -> CodeStats:
    """The (created on demand) counters of ``code``."""
    state = _C.frame_state(code)
    stats = state.get(_KEY)
    if stats is None:
        stats = state[_KEY] = CodeStats(code.co_qualname)
    return stats


@dataclass(frozen=True)
class Stats:
    """``framecache.stats(fn)``: hits, misses, compiles and why anything recompiled."""

    name: str
    hits: int
    misses: int
    compiles: int
    fallbacks: int
    entries: int
    compile_seconds: float
    recompile_reasons: tuple[str, ...]
    fallback_reasons: tuple[str, ...]

    def __str__(self) -> str:
        lines = [
            f"{self.name}: {self.hits} hits, {self.misses} misses, {self.compiles} compiles "
            f"({self.compile_seconds:.2f}s), {self.fallbacks} fallbacks, {self.entries} entries"
        ]
        lines += [f"  recompiled: {r}" for r in self.recompile_reasons]
        lines += [f"  not compiled: {r}" for r in self.fallback_reasons]
        return "\n".join(lines)


def code_of(obj: Any) -> types.CodeType:
    """The code object behind a compiled function, a function, a method or a module."""
    original = getattr(obj, "_framecache_original", None)
    if original is not None:
        obj = original
    if isinstance(obj, types.CodeType):
        return obj
    forward = getattr(obj, "forward", None)
    if forward is not None and hasattr(obj, "parameters"):
        obj = forward
    func = getattr(obj, "__func__", obj)
    code = getattr(func, "__code__", None)
    if not isinstance(code, types.CodeType):
        raise TypeError(
            f"stats() expects a function, method, module or code, got {type(obj).__name__}"
        )
    return code


def stats(obj: Any) -> Stats:
    """Hits, misses, compiles and recompile reasons of a compiled function or module."""
    code = code_of(obj)
    counters = _C.frame_state(code).get(_KEY) or CodeStats(code.co_qualname)
    entries = _C.cache_entries(code)
    return Stats(
        name=counters.name,
        hits=sum(e.hit_count for e in entries),
        misses=counters.misses,
        compiles=counters.compiles,
        fallbacks=counters.fallbacks,
        entries=len(entries),
        compile_seconds=counters.compile_seconds,
        recompile_reasons=tuple(counters.recompile_reasons),
        fallback_reasons=tuple(counters.fallback_reasons),
    )
