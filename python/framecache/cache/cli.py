"""``python -m framecache cache info|list|clear|prune``: look after the disk cache.

* ``info``: the directory, its size against the cap, entry and key counts, hits.
* ``list``: one line per entry: key, function, backend, size, hit count, last use.
* ``clear``: remove every entry (entries being written are left alone).
* ``prune [--max-size SIZE]``: evict least-recently-used entries down to the cap.
* ``push`` / ``pull``: copy entries from the local cache to the remote store, or back
  (``--remote URL``, else ``$FRAMECACHE_REMOTE``; see remote.py). ``info`` also shows the
  remote store, whether it answers, and its counters.

None of them imports torch.
"""

from __future__ import annotations

import argparse
import datetime
from pathlib import Path

from . import entry as entry_mod
from . import eviction, location
from .store import Store


def _store(args: argparse.Namespace) -> Store:
    path = Path(args.dir).expanduser() if args.dir else location.default_dir()
    path = path.absolute()
    try:
        location.check_private(path)
    except location.UnsafeCacheError as exc:
        raise SystemExit(f"framecache cache: refusing {path}: {exc}") from None
    return Store(path)


def _when(ts: float) -> str:
    return datetime.datetime.fromtimestamp(ts).strftime("%Y-%m-%d %H:%M:%S")


def _size(n: int) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024  # type: ignore[assignment]
    return str(n)


def info(args: argparse.Namespace) -> int:
    store = _store(args)
    entries = store.list_entries()
    total = sum(e.size for e in entries)
    limit = location.size_limit()
    print(f"directory: {store.root}")
    print(f"entries:   {len(entries)} in {len({e.key for e in entries})} keys")
    print(f"size:      {_size(total)} of {_size(limit)} ({total} bytes)")
    print(f"hits:      {sum(e.hits for e in entries)}")
    if entries:
        print(f"last use:  {_when(max(e.last_use for e in entries))}")
    from . import remote_cli

    remote_cli.info(args)
    return 0


def list_(args: argparse.Namespace) -> int:
    store = _store(args)
    entries = sorted(store.list_entries(), key=lambda e: e.last_use, reverse=True)
    print(f"{'key':<14} {'function':<30} {'backend':<16} {'size':>10} {'hits':>5}  last use")
    for e in entries:
        try:
            stored = entry_mod.loads(e.path.read_bytes())
            name, backend = stored.qualname, f"{stored.backend}/{stored.artifact_kind}"
        except (OSError, entry_mod.CorruptEntry) as exc:
            name, backend = f"<unreadable: {exc}>"[:30], "-"
        print(
            f"{e.key[:12]:<14} {name[:30]:<30} {backend[:16]:<16} {_size(e.size):>10} "
            f"{e.hits:>5}  {_when(e.last_use)}"
        )
    return 0


def clear(args: argparse.Namespace) -> int:
    result = eviction.clear(_store(args))
    print(f"removed {len(result.removed)} entries ({_size(result.freed_bytes)})")
    if result.skipped_busy:
        print(f"left {len(result.skipped_busy)} keys being written")
    return 0


def prune(args: argparse.Namespace) -> int:
    limit = location.parse_size(args.max_size) if args.max_size else location.size_limit()
    result = eviction.evict(_store(args), limit)
    print(
        f"removed {len(result.removed)} entries ({_size(result.freed_bytes)}); "
        f"{_size(result.total_bytes)} left (cap {_size(limit)})"
    )
    return 0


def add_parser(commands: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    """Add ``cache`` and its subcommands to the framecache command line."""
    cache = commands.add_parser(
        "cache",
        help="inspect or clean the disk cache",
        description="The disk cache of framecache.compile: info, list, clear, prune, push, pull.",
    )
    cache.add_argument(
        "--dir",
        help="the cache directory (default: $FRAMECACHE_CACHE_DIR, "
        "else $XDG_CACHE_HOME/framecache)",
    )
    sub = cache.add_subparsers(dest="cache_command", metavar="SUBCOMMAND", required=True)
    sub.add_parser("info", help="directory, size, entries, hits").set_defaults(run=info)
    sub.add_parser("list", help="one line per entry").set_defaults(run=list_)
    sub.add_parser("clear", help="remove every entry").set_defaults(run=clear)
    p = sub.add_parser("prune", help="evict least-recently-used entries down to the cap")
    p.add_argument("--max-size", help="the cap (e.g. 512M; default $FRAMECACHE_CACHE_SIZE or 1G)")
    p.set_defaults(run=prune)
    from . import remote_cli

    remote_cli.add_parsers(cache, sub)


__all__ = ["add_parser", "clear", "info", "list_", "prune"]
