"""Least-recently-used eviction under a size cap.

Entries are removed oldest last use first until the total size is within the cap. A
key whose writer lock is held by another process is skipped: its entries are being
written (eviction takes the lock without waiting, so it never blocks a writer).
"""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import dataclass, field

from .entry import SUFFIX
from .store import HITS, Store

log = logging.getLogger("framecache.cache")


@dataclass
class PruneResult:
    """What one eviction pass did."""

    removed: list[str] = field(default_factory=list)
    freed_bytes: int = 0
    skipped_busy: list[str] = field(default_factory=list)
    total_bytes: int = 0


def total_size(store: Store) -> int:
    """Bytes of every entry in the store."""
    return sum(e.size for e in store.list_entries())


def evict(store: Store, limit: int) -> PruneResult:
    """Remove least-recently-used entries until the store holds at most ``limit`` bytes."""
    result = PruneResult()
    entries = store.list_entries()
    total = sum(e.size for e in entries)
    result.total_bytes = total
    if total <= limit:
        return result
    busy: set[str] = set()
    for entry in sorted(entries, key=lambda e: e.last_use):
        if total <= limit:
            break
        if entry.key in busy:
            continue
        with store.locked(entry.key, blocking=False) as got:
            if not got:
                busy.add(entry.key)
                result.skipped_busy.append(entry.key)
                continue
            directory = store.key_dir(entry.key)
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / (entry.entry_id + SUFFIX))
                total -= entry.size
                result.freed_bytes += entry.size
                result.removed.append(f"{entry.key}/{entry.entry_id}")
            with contextlib.suppress(FileNotFoundError):
                os.unlink(directory / (entry.entry_id + HITS))
    for tmp in store.stale_temporaries():
        with contextlib.suppress(OSError):
            os.unlink(tmp)
    result.total_bytes = total
    if result.removed:
        log.info("evicted %d entries (%d bytes)", len(result.removed), result.freed_bytes)
    return result


def clear(store: Store) -> PruneResult:
    """Remove every entry not being written."""
    return evict(store, -1)


__all__ = ["PruneResult", "clear", "evict", "total_size"]
