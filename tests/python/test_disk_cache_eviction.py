"""The size cap, least-recently-used eviction, and the ``cache`` command line."""

from __future__ import annotations

import os
import time

import pytest
import torch

import framecache
from framecache.__main__ import main
from framecache.cache import eviction, location, session
from framecache.cache.store import Store

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _fresh_stores():
    session.reset_stores()
    yield
    session.reset_stores()


def _fill(directory, count: int) -> list:
    fns = [eval(f"lambda x: x * {i + 2}") for i in range(count)]
    for i, f in enumerate(fns):
        framecache.compile(f, cache_dir=directory)(torch.ones(i + 1))
    return fns


def _age(store: Store) -> None:
    """Give the entries distinct last uses, oldest first in creation order."""
    now = time.time()
    for i, e in enumerate(sorted(store.list_entries(), key=lambda e: e.last_use)):
        os.utime(e.path, (now - 1000 + i, now - 1000 + i))


def test_eviction_keeps_the_most_recently_used_under_the_cap(tmp_path):
    _fill(tmp_path, 5)
    store = Store(tmp_path)
    _age(store)
    entries = sorted(store.list_entries(), key=lambda e: e.last_use)
    size = entries[0].size
    result = eviction.evict(store, limit=size * 2 + size // 2)
    left = store.list_entries()
    assert len(left) == 2 and sum(e.size for e in left) <= size * 2 + size // 2
    assert {e.entry_id for e in left} == {e.entry_id for e in entries[-2:]}
    assert len(result.removed) == 3


def test_the_cap_applies_when_writing(tmp_path, monkeypatch):
    _fill(tmp_path, 1)
    one = Store(tmp_path).list_entries()[0].size
    monkeypatch.setenv("FRAMECACHE_CACHE_SIZE", str(int(one * 2.5)))
    _fill(tmp_path / ".." / tmp_path.name, 4)  # same directory, more entries
    assert eviction.total_size(Store(tmp_path)) <= int(one * 2.5)


def test_a_key_being_written_is_never_evicted(tmp_path):
    _fill(tmp_path, 3)
    store = Store(tmp_path)
    busy = store.list_entries()[0]
    with store.locked(busy.key):  # another writer holds the key
        result = eviction.clear(store)
    assert busy.key in result.skipped_busy
    assert [e.key for e in store.list_entries()] == [busy.key]


def test_size_parsing():
    assert location.parse_size("1G") == 1 << 30
    assert location.parse_size("512M") == 512 << 20
    assert location.parse_size("64KiB") == 64 << 10
    assert location.parse_size("1000") == 1000
    with pytest.raises(ValueError):
        location.parse_size("-1")


def test_cli_info_list_prune_clear(tmp_path, capsys):
    fns = _fill(tmp_path, 3)
    framecache.reset()
    session.reset_stores()
    framecache.compile(fns[0], cache_dir=tmp_path)(torch.ones(1))  # one hit
    assert main(["cache", "--dir", str(tmp_path), "info"]) == 0
    out = capsys.readouterr().out
    assert "entries:   3 in 3 keys" in out and "hits:      1" in out
    assert main(["cache", "--dir", str(tmp_path), "list"]) == 0
    out = capsys.readouterr().out
    assert out.count("<lambda>") == 3 and "eager/eager" in out
    assert main(["cache", "--dir", str(tmp_path), "prune", "--max-size", "1"]) == 0
    assert "removed 3 entries" in capsys.readouterr().out
    _fill(tmp_path, 2)
    assert main(["cache", "--dir", str(tmp_path), "clear"]) == 0
    assert "removed 2 entries" in capsys.readouterr().out
    assert Store(tmp_path).list_entries() == []


def test_cli_refuses_a_shared_directory(tmp_path):
    tmp_path.chmod(0o777)
    with pytest.raises(SystemExit, match="writable by other users"):
        main(["cache", "--dir", str(tmp_path), "info"])
