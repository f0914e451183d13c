"""``python -m framecache cache push|pull`` and the remote part of ``cache info``.

* ``info``: the remote store (password hidden), its namespace, whether it answers (and
  how fast), how many entries it holds, and the fleet-wide hit/miss/store counters that
  every client of the namespace adds to on the server.
* ``push``: every valid local entry (header, length and sha256 checked; nothing is
  unpickled) is written to the remote store, signed when ``$FRAMECACHE_REMOTE_SECRET``
  is set.
* ``pull``: every remote entry of this namespace that passes the remote checks (size
  cap, envelope, signature when a secret is set, entry header and sha256) is written to
  the local cache. Its guards are checked when a process loads it, as for any entry.

The remote store is ``--remote URL``, else ``$FRAMECACHE_REMOTE``. None of them imports torch.
"""

from __future__ import annotations

import argparse
import os
from typing import Any

from . import location
from .entry import CorruptEntry
from .remote import ENV_URL, RefusedEntry, RemoteStore, check_entry_header, redact


def _remote(args: argparse.Namespace, required: bool) -> RemoteStore | None:
    url = getattr(args, "remote", None) or os.environ.get(ENV_URL)
    if not url:
        if required:
            raise SystemExit(
                f"framecache cache: no remote store (give --remote URL or set {ENV_URL})"
            )
        return None
    try:
        store = RemoteStore.from_env(url)
    except ValueError as exc:
        raise SystemExit(f"framecache cache: {exc}") from None
    store._warned = True  # the command reports failures itself
    return store


def _reachable(store: RemoteStore) -> tuple[bool, str]:
    import redis

    try:
        seconds = store.ping()
    except (redis.RedisError, OSError) as exc:
        return False, f"{type(exc).__name__}: {exc}"
    return True, f"{seconds * 1e3:.2f} ms round trip"


def _connected(args: argparse.Namespace, what: str) -> RemoteStore:
    store = _remote(args, required=True)
    assert store is not None
    ok, detail = _reachable(store)
    if not ok:
        raise SystemExit(f"framecache cache {what}: {store.stats.url} does not answer: {detail}")
    return store


def info(args: argparse.Namespace) -> None:
    """Print the remote store's part of ``cache info``."""
    store = _remote(args, required=False)
    if store is None:
        print(f"remote:    none (set {ENV_URL}=redis://host:port/db or --remote URL)")
        return
    print(f"remote:    {store.stats.url}")
    print(f"namespace: {store.ns}")
    print(f"signing:   {'HMAC-SHA256 (secret set)' if store.secret else 'off (no secret)'}")
    ok, detail = _reachable(store)
    print(f"reachable: {'yes' if ok else 'no'} ({detail})")
    if not ok:
        return
    import redis

    try:
        keys = list(store.keys())
        counters = store.fleet_counters()
    except (redis.RedisError, OSError) as exc:
        print(f"remote entries: unknown ({type(exc).__name__}: {exc})")
        return
    entries = 0
    for key in keys:
        try:
            entries += int(store.client.hlen(store.redis_key(key)))
        except (redis.RedisError, OSError):
            pass
    print(f"remote entries: {entries} in {len(keys)} keys")
    print(
        f"remote counters: {counters.get('hits', 0)} hits, {counters.get('misses', 0)} misses, "
        f"{counters.get('stores', 0)} stores (every client of this namespace)"
    )


def push(args: argparse.Namespace) -> int:
    """Copy the local entries to the remote store."""
    from . import cli

    local = cli._store(args)
    store = _connected(args, "push")
    pushed = skipped = failed = 0
    for e in local.list_entries():
        data = local._read(e.path)
        try:
            if data is None:
                raise CorruptEntry("unreadable")
            check_entry_header(data)
        except CorruptEntry as exc:
            print(f"skipped {e.key[:12]}/{e.entry_id[:12]}: {exc.reason}")
            skipped += 1
            continue
        if store.put(e.key, e.entry_id, data):
            pushed += 1
        elif len(data) > store.max_entry:
            print(f"skipped {e.key[:12]}/{e.entry_id[:12]}: {len(data)} bytes, over the cap")
            skipped += 1
        else:
            failed += 1
    print(f"pushed {pushed} entries to {store.stats.url}; {skipped} skipped, {failed} failed")
    if store.stats.last_error:
        print(f"last error: {store.stats.last_error}")
    return 1 if failed else 0


def pull(args: argparse.Namespace) -> int:
    """Copy the remote store's entries of this namespace to the local cache."""
    import redis

    from . import cli

    local = cli._store(args)
    try:
        location.prepare(local.root)
    except (OSError, location.UnsafeCacheError) as exc:
        raise SystemExit(f"framecache cache pull: cannot use {local.root}: {exc}") from None
    store = _connected(args, "pull")
    have = {(e.key, e.entry_id) for e in local.list_entries()}
    pulled = present = refused = 0
    try:
        for key in store.keys():
            if not _is_key(key):
                print(f"refused {key[:40]!r}: not a content key")
                refused += 1
                continue
            for entry_id, value in store.raw_entries(key).items():
                if (key, entry_id) in have:
                    present += 1
                    continue
                try:
                    data = store.check(key, entry_id, value)
                    check_entry_header(data)
                except (RefusedEntry, CorruptEntry) as exc:
                    print(f"refused {key[:12]}/{entry_id[:12]}: {exc.reason}")
                    refused += 1
                    continue
                local.write(key, entry_id, data)
                pulled += 1
    except (redis.RedisError, OSError) as exc:
        raise SystemExit(
            f"framecache cache pull: {redact(store.url)} failed after {pulled} entries: "
            f"{type(exc).__name__}: {exc}"
        ) from None
    print(f"pulled {pulled} entries into {local.root}; {present} already there, {refused} refused")
    return 0


def _is_key(key: str) -> bool:
    return len(key) == 64 and all(c in "0123456789abcdef" for c in key)


def add_parsers(cache: argparse.ArgumentParser, sub: Any) -> None:
    """Add ``--remote`` to ``cache`` and the ``push`` and ``pull`` subcommands."""
    cache.add_argument(
        "--remote", help=f"the remote store, redis://host:port/db (default ${ENV_URL})"
    )
    sub.add_parser("push", help="copy local entries to the remote store").set_defaults(run=push)
    sub.add_parser("pull", help="copy the remote store's entries here").set_defaults(run=pull)


__all__ = ["add_parsers", "info", "pull", "push"]
