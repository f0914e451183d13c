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
    # The disk cache (framecache/cache): loads, misses, writes, and why it was bypassed.
    disk_hits: int = 0
    disk_misses: int = 0
    disk_stores: int = 0
    disk_builds: int = 0  # entries whose AOTInductor package is built in the background
    disk_bypasses: int = 0
    disk_reasons: list[str] = field(default_factory=list)
    # CUDA graphs (cudagraphs=True): graphs recorded, and why an entry runs without them.
    cudagraph_recordings: int = 0
    cudagraph_reasons: list[str] = field(default_factory=list)


@dataclass
class DiskStats:
    """``framecache.stats()``: this process's disk cache counters, over every function."""

    hits: int = 0
    misses: int = 0
    stores: int = 0
    builds: int = 0
    bypasses: int = 0
    corrupt: int = 0
    reasons: list[str] = field(default_factory=list)
    # The remote store's counters (cache/remote.py RemoteStats), once one is used.
    remote: Any = None

    @property
    def torch_fast_path(self) -> str:
        """Whether tensor guards read through the C++ reader, for which torch, or why not.

        "on: C++ reader for torch <version> (<where it came from>)" or "off: <why>; ...".
        """
        return _C.guards.torch_fast_path_status()

    def __str__(self) -> str:
        lines = [
            f"disk cache: {self.hits} hits, {self.misses} misses, {self.stores} stores, "
            f"{self.builds} background builds, {self.bypasses} bypasses, "
            f"{self.corrupt} corrupt entries",
            f"tensor guards: {self.torch_fast_path}",
        ]
        lines += [f"  {r}" for r in self.reasons]
        if self.remote is not None:
            lines.append(str(self.remote))
        return "\n".join(lines)


PROCESS = DiskStats()
_MAX_REASONS = 64


def _reason(counters: CodeStats, reason: str) -> None:
    if len(counters.disk_reasons) < _MAX_REASONS:
        counters.disk_reasons.append(reason)
    if len(PROCESS.reasons) < _MAX_REASONS:
        PROCESS.reasons.append(f"{counters.name}: {reason}")


def disk_hit(counters: CodeStats) -> None:
    """An entry loaded from disk became the frame's cache entry."""
    counters.disk_hits += 1
    PROCESS.hits += 1


def disk_miss(counters: CodeStats) -> None:
    """No stored entry of the key held for the frame."""
    counters.disk_misses += 1
    PROCESS.misses += 1


def disk_store(counters: CodeStats) -> None:
    """An entry was written (to disk, or to memory after a disk failure)."""
    counters.disk_stores += 1
    PROCESS.stores += 1


def disk_build(counters: CodeStats) -> None:
    """An entry went to a background build (cache/builds.py), which writes it when done."""
    counters.disk_builds += 1
    PROCESS.builds += 1


def disk_bypass(counters: CodeStats, reason: str) -> None:
    """The compile could not be stored (or keyed); ``reason`` says why."""
    counters.disk_bypasses += 1
    PROCESS.bypasses += 1
    _reason(counters, f"bypass: {reason}")


def disk_graph_only(counters: CodeStats, reason: str) -> None:
    """An entry stored, or loaded, with its graph only: a warm start compiles it again."""
    _reason(counters, f"graph only: {reason}")


def disk_corrupt(counters: CodeStats, reason: str) -> None:
    """A stored entry was unreadable (a miss, and it is replaced)."""
    PROCESS.corrupt += 1
    _reason(counters, f"corrupt entry: {reason}")


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
    disk_hits: int = 0
    disk_misses: int = 0
    disk_stores: int = 0
    disk_bypasses: int = 0
    disk_reasons: tuple[str, ...] = ()
    disk_builds: int = 0
    cudagraph_recordings: int = 0
    cudagraph_reasons: tuple[str, ...] = ()

    def __str__(self) -> str:
        lines = [
            f"{self.name}: {self.hits} hits, {self.misses} misses, {self.compiles} compiles "
            f"({self.compile_seconds:.2f}s), {self.fallbacks} fallbacks, {self.entries} entries"
        ]
        if self.disk_hits or self.disk_misses or self.disk_bypasses:
            lines.append(
                f"  disk: {self.disk_hits} hits, {self.disk_misses} misses, "
                f"{self.disk_stores} stores, {self.disk_builds} background builds, "
                f"{self.disk_bypasses} bypasses"
            )
            lines += [f"  disk {r}" for r in self.disk_reasons]
        if self.cudagraph_recordings or self.cudagraph_reasons:
            lines.append(f"  cudagraphs: {self.cudagraph_recordings} recordings")
            lines += [f"  without cudagraphs: {r}" for r in self.cudagraph_reasons]
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


_PROCESS_WIDE = object()


def stats(obj: Any = _PROCESS_WIDE) -> Any:
    """Hits, misses, compiles and recompile reasons of a compiled function or module.

    Without an argument: this process's disk cache counters (a DiskStats).
    """
    if obj is _PROCESS_WIDE:
        return PROCESS
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
        disk_hits=counters.disk_hits,
        disk_misses=counters.disk_misses,
        disk_stores=counters.disk_stores,
        disk_bypasses=counters.disk_bypasses,
        disk_reasons=tuple(counters.disk_reasons),
        disk_builds=counters.disk_builds,
        cudagraph_recordings=counters.cudagraph_recordings,
        cudagraph_reasons=tuple(counters.cudagraph_reasons),
    )
