"""Logging for framecache.compile, switched on by ``FRAMECACHE_LOGS``.

``FRAMECACHE_LOGS=recompiles,guards,graph,compile`` (or ``all``) sends those channels to
stderr. Each channel is a ``logging`` logger, ``framecache.<channel>``, so an application
can configure them like any other.
"""

from __future__ import annotations

import logging
import os

CHANNELS = ("recompiles", "guards", "graph", "compile", "fallbacks")

recompiles = logging.getLogger("framecache.recompiles")
guards = logging.getLogger("framecache.guards")
graph = logging.getLogger("framecache.graph")
compile_log = logging.getLogger("framecache.compile")
fallbacks = logging.getLogger("framecache.fallbacks")


def configure(spec: str | None = None) -> list[str]:
    """Enable the channels named in ``spec`` (default: $FRAMECACHE_LOGS); returns them."""
    spec = os.environ.get("FRAMECACHE_LOGS", "") if spec is None else spec
    wanted = {part.strip() for part in spec.split(",") if part.strip()}
    if "all" in wanted:
        wanted = set(CHANNELS)
    unknown = wanted - set(CHANNELS)
    if unknown:
        raise ValueError(f"FRAMECACHE_LOGS: unknown channels {sorted(unknown)}; known: {CHANNELS}")
    for channel in sorted(wanted):
        logger = logging.getLogger(f"framecache.{channel}")
        logger.setLevel(logging.DEBUG)
        if not any(getattr(h, "_framecache", False) for h in logger.handlers):
            handler = logging.StreamHandler()
            handler.setFormatter(logging.Formatter("[%(name)s] %(message)s"))
            handler._framecache = True  # type: ignore[attr-defined]
            logger.addHandler(handler)
    return sorted(wanted)
