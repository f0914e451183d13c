"""framecache's disk cache: compiled graphs that outlive the process.

A new process calling a framecache.compile'd function with compatible inputs loads the
stored graph (and, for inductor, its compiled code) instead of capturing and compiling.

Modules, one concept each:

* ``location``: the directory (``$FRAMECACHE_CACHE_DIR``, else ``$XDG_CACHE_HOME/framecache``),
  0700, refused when another user can write it; the size cap.
* ``key``: the content hash of code, input signature, backend and environment.
* ``refs``, ``portable``: guards written down for another process and rebuilt there.
* ``lifting``: parameters become graph inputs, so graphs hold no process's objects.
* ``graph_codec``: graphs as node data (no pickled code).
* ``entry``: the file format (checked header, pickled payload).
* ``artifact``: what is stored of each backend's output.
* ``store``: atomic writes under a file lock, lock-free reads, hit counts.
* ``eviction``: least-recently-used eviction under the cap.
* ``session``: the compiler's miss path (lookup before capture, store after).
* ``builds``: inductor entries' AOTInductor packages, built in a process of their own
  after the first call returns; ``wait_for_builds()`` waits for this process's builds,
  ``cancel_builds()`` stops them.
* ``cli``: ``python -m framecache cache info|list|clear|prune``.
* ``remote``, ``remote_cli``: the shared store on Redis under the local cache
  (``$FRAMECACHE_REMOTE``), and ``cache push|pull``.

Importing this package imports torch only through the modules that need it.
"""

from __future__ import annotations

from .builds import cancel_builds, wait_for_builds
from .location import DEFAULT_SIZE_BYTES, DiskCacheWarning, default_dir, size_limit

__all__ = [
    "DEFAULT_SIZE_BYTES",
    "DiskCacheWarning",
    "cancel_builds",
    "default_dir",
    "size_limit",
    "wait_for_builds",
]
