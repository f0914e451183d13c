"""The remote cache against a real redis-server (loopback, a port chosen at run time).

Covers: a second process with its own local cache warm-starting from the remote entry
the first wrote; a server killed or paused mid-run; corrupt and truncated values; a value
signed with another secret; another version's namespace; eight processes writing one key
at once; the TTL and the size cap; push and pull; a full server.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest
import torch

import framecache
import redis_server
from conftest import run_python
from disk_cache_util import PRELUDE, write_module
from framecache.cache import entry as entry_mod
from framecache.cache import remote, session

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(
        redis_server.available() is None,
        reason="redis-server is not installed (Debian package redis-server; `make deps` "
        "installs it)",
    ),
]

redis = pytest.importorskip("redis")


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """One redis-server for the module, stopped afterwards."""
    srv = redis_server.RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield srv
    srv.stop()


@pytest.fixture
def url(server):
    """The module's server, emptied for each test."""
    client = redis.Redis.from_url(server.url)
    client.flushall()
    client.close()
    return server.url


@pytest.fixture
def client(url):
    c = redis.Redis.from_url(url)
    yield c
    c.close()


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    for name in (
        remote.ENV_URL,
        remote.ENV_SECRET,
        remote.ENV_TTL,
        remote.ENV_MAX_ENTRY,
        remote.ENV_TIMEOUT,
    ):
        monkeypatch.delenv(name, raising=False)
    # A loaded test machine can leave a healthy server silent for more than the default
    # 100 ms; the tests about a slow server set the timeout back themselves.
    monkeypatch.setenv(remote.ENV_TIMEOUT, "5")
    _new_process()
    yield
    _new_process()


def _new_process() -> None:
    """What a fresh process would have: no in-memory entries, stores or warnings."""
    framecache.reset()
    session.reset_stores()
    remote.reset_stores()
    framecache.stats().remote = None


def scaled(x, w):
    return torch.relu(x @ w).sum(dim=0) * 2


X = torch.arange(12.0).reshape(3, 4) - 5
W = torch.linspace(-1, 1, 8).reshape(4, 2)


def _call(cache_dir: Path, url: str | bool | None, fn=scaled):
    c = framecache.compile(fn, backend="eager", cache_dir=cache_dir, remote=url)
    out = c(X, W)
    torch.testing.assert_close(out, fn(X, W))
    return framecache.stats(fn)


def _data_keys(client) -> list[bytes]:
    return sorted(k for k in client.scan_iter(match=b"framecache:*") if b":~" not in k)


def _only_value(client) -> tuple[bytes, bytes, bytes]:
    (key,) = _data_keys(client)
    ((field, value),) = client.hgetall(key).items()
    return key, field, value


# -- without a server ------------------------------------------------------------------------
def test_envelope_signs_and_refuses_without_a_server():
    data = b"entry bytes"
    signed = remote.seal(data, b"s1", "ns", "k" * 64, "e1")
    assert remote.unseal(signed, b"s1", "ns", "k" * 64, "e1") == data
    assert remote.unseal(signed, None, "ns", "k" * 64, "e1") == data  # no secret: trusted
    for secret, ns, key, eid in (
        (b"s2", "ns", "k" * 64, "e1"),  # another secret
        (b"s1", "other", "k" * 64, "e1"),  # replayed into another namespace
        (b"s1", "ns", "j" * 64, "e1"),  # under another key
        (b"s1", "ns", "k" * 64, "e2"),  # as another entry
    ):
        with pytest.raises(remote.RefusedEntry, match="signature"):
            remote.unseal(signed, secret, ns, key, eid)
    unsigned = remote.seal(data, None, "ns", "k" * 64, "e1")
    with pytest.raises(remote.RefusedEntry, match="unsigned"):
        remote.unseal(unsigned, b"s1", "ns", "k" * 64, "e1")
    with pytest.raises(remote.RefusedEntry, match="truncated"):
        remote.unseal(signed[:10], None, "ns", "k" * 64, "e1")
    with pytest.raises(remote.RefusedEntry, match="magic"):
        remote.unseal(b"x" * 100, None, "ns", "k" * 64, "e1")


def test_bad_urls_and_options_are_clear_errors():
    with pytest.raises(ValueError, match="redis://"):
        framecache.compile(scaled, remote="http://127.0.0.1:1/0")
    with pytest.raises(TypeError, match="remote"):
        framecache.compile(scaled, remote=3)  # type: ignore[call-overload]
    with pytest.raises(ValueError, match="secret is empty"):
        remote.RemoteStore("redis://127.0.0.1:1/0", b"")


def test_no_server_configured_is_the_local_cache_alone(tmp_path):
    s = _call(tmp_path / "a", None)
    assert s.compiles == 1 and s.disk_stores == 1
    assert framecache.stats().remote is None


def test_nothing_listens_one_warning_and_local_compiles(tmp_path):
    url = f"redis://127.0.0.1:{redis_server._free_port()}/0"
    with pytest.warns(remote.RemoteCacheWarning, match="compiling locally") as record:
        s = _call(tmp_path / "a", url)
        _new_local(tmp_path / "b")
        s2 = _call(tmp_path / "b", url, fn=scaled_again)
    assert len(record) == 1
    assert s.compiles == 1 and s2.compiles == 1
    r = framecache.stats().remote
    assert r.errors == 1 and r.skipped >= 1 and r.hits == 0


def scaled_again(x, w):
    return torch.relu(x @ w).sum(dim=0) * 3


def _new_local(directory: Path) -> None:
    """A new local cache in the same process (keeping the remote store and its state)."""
    framecache.reset()
    session.reset_stores()
    directory.mkdir(parents=True, exist_ok=True)


# -- with the real server --------------------------------------------------------------------
def test_compile_writes_both_and_a_fresh_local_cache_hits_the_remote(tmp_path, url, client):
    cold = _call(tmp_path / "a", url)
    assert cold.compiles == 1 and cold.disk_stores == 1
    assert len(list((tmp_path / "a").glob("*/*/*.entry"))) == 1
    key, _field, value = _only_value(client)
    assert value.startswith(remote.MAGIC)
    assert 0 < client.ttl(key) <= remote.DEFAULT_TTL
    r = framecache.stats().remote
    assert (r.misses, r.stores, r.hits) == (1, 1, 0)

    _new_process()
    warm = _call(tmp_path / "b", url)
    assert warm.compiles == 0 and warm.disk_hits == 1
    assert framecache.stats().remote.hits == 1
    # ...and the remote entry was written to the new local cache, byte for byte.
    local = list((tmp_path / "b").glob("*/*/*.entry"))
    assert [p.read_bytes() for p in local] == [value[remote.ENVELOPE_SIZE :]]
    counters = {
        k.decode(): int(v)
        for k, v in client.hgetall(key.rsplit(b":", 1)[0] + b":~counters").items()
    }
    assert counters == {"hits": 1, "misses": 1, "stores": 1}


TWO_PROCESS_BODY = """
c = framecache.compile(model_mod.mlp, backend={backend!r}, cache_dir={cache_dir!r}, remote={url!r})
x = torch.randn(5, 8, generator=torch.Generator().manual_seed(1))
with torch.no_grad():
    out = c(x)
    torch.testing.assert_close(out, model_mod.mlp(x))
s, r = framecache.stats(c), framecache.stats().remote
print(json.dumps({{"compiles": s.compiles, "disk_hits": s.disk_hits, "remote_hits": r.hits,
                  "remote_stores": r.stores, "remote_misses": r.misses, "out": out.tolist()}}))
"""


def _run(module_dir: Path, body: str, forbid_capture: bool = False, env: dict | None = None):
    source = textwrap.dedent(PRELUDE.format(path=str(module_dir), forbid=forbid_capture))
    source += textwrap.dedent(body)
    saved = dict(os.environ)
    os.environ.update(env or {})
    try:
        proc = run_python(source)
    finally:
        os.environ.clear()
        os.environ.update(saved)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_second_process_warm_starts_from_the_remote(tmp_path, url, backend):
    mod = write_module(tmp_path / "mod")
    first = _run(
        mod, TWO_PROCESS_BODY.format(backend=backend, cache_dir=str(tmp_path / "a"), url=url)
    )
    assert first["compiles"] == 1 and first["remote_stores"] == 1 and first["remote_misses"] == 1
    # Another machine: its own (empty) local cache; capture raises if it is reached.
    second = _run(
        mod,
        TWO_PROCESS_BODY.format(backend=backend, cache_dir=str(tmp_path / "b"), url=url),
        forbid_capture=True,
    )
    assert second["compiles"] == 0 and second["disk_hits"] == 1 and second["remote_hits"] == 1
    assert second["remote_stores"] == 0
    assert second["out"] == first["out"]
    assert len(list((tmp_path / "b").glob("*/*/*.entry"))) == 1


def test_server_killed_mid_run(tmp_path):
    srv = redis_server.RedisServer(tmp_path / "redis").start()
    try:
        s1 = _call(tmp_path / "a", srv.url)
        assert s1.compiles == 1 and framecache.stats().remote.stores == 1
        srv.kill()
        _new_local(tmp_path / "b")
        with pytest.warns(remote.RemoteCacheWarning, match="ConnectionError") as record:
            s2 = _call(tmp_path / "b", srv.url, fn=scaled_again)  # lookup fails
            _new_local(tmp_path / "c")
            s3 = _call(tmp_path / "c", srv.url)  # backed off: not asked
        assert len(record) == 1
        assert s2.compiles == 1 and s3.compiles == 1
        r = framecache.stats().remote
        assert r.errors == 1 and r.skipped >= 2 and r.hits == 0
    finally:
        srv.stop()


def test_paused_server_times_out_instead_of_hanging(tmp_path, monkeypatch):
    srv = redis_server.RedisServer(tmp_path / "redis").start()
    try:
        _call(tmp_path / "a", srv.url)  # connected, entry written
        srv.pause()
        monkeypatch.setenv(remote.ENV_TIMEOUT, str(remote.DEFAULT_TIMEOUT))
        _new_process()
        started = time.monotonic()
        with pytest.warns(remote.RemoteCacheWarning, match="Timeout") as record:
            s = _call(tmp_path / "b", srv.url, fn=scaled_again)
        assert len(record) == 1 and s.compiles == 1
        r = framecache.stats().remote
        assert r.errors == 1 and "Timeout" in r.last_error
        # Bounded, not timed: far below any hang (the default timeout is 100 ms per call).
        assert time.monotonic() - started < 60
    finally:
        srv.stop()


def _corrupt_truncated_envelope(value: bytes) -> bytes:
    return value[:10]


def _corrupt_truncated_entry(value: bytes) -> bytes:
    return value[:-100]


def _corrupt_flipped_byte(value: bytes) -> bytes:
    i = len(value) - 50
    return value[:i] + bytes([value[i] ^ 0xFF]) + value[i + 1 :]


def _corrupt_not_an_entry(value: bytes) -> bytes:
    import hashlib
    import pickle
    import struct

    payload = pickle.dumps(["not", "an", "entry"])
    header = struct.pack(
        "<8sIQ32s", entry_mod.MAGIC, 1, len(payload), hashlib.sha256(payload).digest()
    )
    return remote.seal(header + payload, None, "", "", "")


def _corrupt_garbage(value: bytes) -> bytes:
    return os.urandom(len(value))


@pytest.mark.parametrize(
    "corrupt",
    [
        _corrupt_truncated_envelope,
        _corrupt_truncated_entry,
        _corrupt_flipped_byte,
        _corrupt_not_an_entry,
        _corrupt_garbage,
    ],
)
def test_corrupt_or_truncated_value_compiles_locally_and_is_replaced(
    tmp_path, url, client, corrupt
):
    _call(tmp_path / "a", url)
    key, field, good = _only_value(client)
    bad = corrupt(good)
    client.hset(key, field, bad)
    _new_process()
    with pytest.warns(remote.RemoteCacheWarning, match="refused") as record:
        s = _call(tmp_path / "b", url)
    assert len(record) == 1
    assert s.compiles == 1 and s.disk_hits == 0
    r = framecache.stats().remote
    assert r.refused == 1 and r.hits == 0
    # The compile wrote a good entry back over the bad one.
    rewritten = client.hget(key, field)
    assert rewritten != bad
    assert entry_mod.loads(rewritten[remote.ENVELOPE_SIZE :]).qualname == "scaled"


def test_value_signed_with_another_secret_is_refused(tmp_path, url, client, monkeypatch):
    monkeypatch.setenv(remote.ENV_SECRET, "secret-A")
    _call(tmp_path / "a", url)
    _key, _field, value = _only_value(client)
    assert value[8] == 1  # signed

    monkeypatch.setenv(remote.ENV_SECRET, "secret-B")
    _new_process()
    with pytest.warns(remote.RemoteCacheWarning, match="does not verify") as record:
        s = _call(tmp_path / "b", url)
    assert len(record) == 1 and s.compiles == 1
    assert framecache.stats().remote.refused == 1

    monkeypatch.setenv(remote.ENV_SECRET, "secret-A")  # B's compile re-signed it with B
    _new_process()
    with pytest.warns(remote.RemoteCacheWarning, match="does not verify"):
        s = _call(tmp_path / "c", url)
    assert s.compiles == 1  # and wrote it back, signed with A
    _new_process()
    s = _call(tmp_path / "d", url)
    assert s.compiles == 0 and framecache.stats().remote.hits == 1


def test_unsigned_value_is_refused_by_a_client_with_a_secret(tmp_path, url, monkeypatch):
    _call(tmp_path / "a", url)  # no secret: unsigned
    monkeypatch.setenv(remote.ENV_SECRET, "secret-A")
    _new_process()
    with pytest.warns(remote.RemoteCacheWarning, match="unsigned"):
        s = _call(tmp_path / "b", url)
    assert s.compiles == 1 and framecache.stats().remote.refused == 1


def test_namespace_of_another_version_is_never_read(tmp_path, url, client, monkeypatch):
    real_versions = remote._versions
    monkeypatch.setattr(remote, "_versions", lambda: ("0.0.1", "2.1.0+cpu"))
    _call(tmp_path / "a", url)
    (other_key,) = _data_keys(client)
    assert b"torch2.1.0+cpu" in other_key and b"fc0.0.1" in other_key

    monkeypatch.setattr(remote, "_versions", real_versions)
    _new_process()
    s = _call(tmp_path / "b", url)
    assert s.compiles == 1
    r = framecache.stats().remote
    assert r.misses == 1 and r.hits == 0 and r.refused == 0
    keys = _data_keys(client)
    assert len(keys) == 2
    assert remote.namespace().encode() in next(k for k in keys if k != other_key)


EIGHT_BODY = """
import os, time
gate = {gate!r}
for _ in range(600):  # bounded: at most 60 s for every writer to be ready
    if os.path.exists(gate):
        break
    time.sleep(0.1)
c = framecache.compile(model_mod.f, backend="eager", cache_dir={cache_dir!r}, remote={url!r})
x = torch.arange(12.0).reshape(3, 4) - 5
y = torch.ones(3, 4)
out = c(x, y)
torch.testing.assert_close(out, model_mod.f(x, y))
s, r = framecache.stats(model_mod.f), framecache.stats().remote
print(json.dumps({{"compiles": s.compiles, "remote_hits": r.hits, "stores": r.stores,
                  "errors": r.errors, "refused": r.refused}}))
"""


def test_eight_processes_write_the_same_key_at_once(tmp_path, url, client):
    mod = write_module(tmp_path / "mod")
    gate = tmp_path / "go"
    source = textwrap.dedent(PRELUDE.format(path=str(mod), forbid=False))
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))
    env["PYTHONPATH"] = package_root + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                source
                + textwrap.dedent(
                    EIGHT_BODY.format(gate=str(gate), cache_dir=str(tmp_path / f"c{i}"), url=url)
                ),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env,
        )
        for i in range(8)
    ]
    gate.touch()
    results = []
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, out + err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert all(r["errors"] == 0 and r["refused"] == 0 for r in results)
    assert all(r["compiles"] + r["remote_hits"] == 1 for r in results)
    assert sum(r["stores"] for r in results) == sum(r["compiles"] for r in results) >= 1
    # One key, one entry (the same guards give the same entry id), and it is whole:
    (key,) = _data_keys(client)
    assert client.hlen(key) == 1
    ninth = _run(
        mod,
        EIGHT_BODY.format(gate=str(gate), cache_dir=str(tmp_path / "c9"), url=url),
        forbid_capture=True,
    )
    assert ninth["compiles"] == 0 and ninth["remote_hits"] == 1


def test_ttl_expires_the_key(tmp_path, url, client, monkeypatch):
    monkeypatch.setenv(remote.ENV_TTL, "1")
    _call(tmp_path / "a", url)
    (key,) = _data_keys(client)
    assert 0 < client.pttl(key) <= 1000
    for _ in range(100):  # bounded: Redis expires the key within about a second
        if not client.exists(key):
            break
        time.sleep(0.05)
    assert not client.exists(key)
    _new_process()
    s = _call(tmp_path / "b", url)
    assert s.compiles == 1 and framecache.stats().remote.misses == 1


def test_a_hit_keeps_the_key_alive(tmp_path, url, client, monkeypatch):
    monkeypatch.setenv(remote.ENV_TTL, "100")
    _call(tmp_path / "a", url)
    (key,) = _data_keys(client)
    client.expire(key, 50)
    _new_process()
    assert _call(tmp_path / "b", url).compiles == 0
    assert client.ttl(key) > 50


def test_size_cap_on_write_and_on_read(tmp_path, url, client, monkeypatch):
    monkeypatch.setenv(remote.ENV_MAX_ENTRY, "100")
    s = _call(tmp_path / "a", url)
    assert s.compiles == 1 and s.disk_stores == 1  # stored locally
    r = framecache.stats().remote
    assert r.too_large == 1 and r.stores == 0 and _data_keys(client) == []

    monkeypatch.delenv(remote.ENV_MAX_ENTRY)
    _new_process()
    _call(tmp_path / "b", url)
    assert len(_data_keys(client)) == 1
    monkeypatch.setenv(remote.ENV_MAX_ENTRY, "100")
    _new_process()
    with pytest.warns(remote.RemoteCacheWarning, match="over the cap"):
        s = _call(tmp_path / "c", url)
    assert s.compiles == 1 and framecache.stats().remote.refused == 1


def test_full_server_leaves_reads_working(tmp_path, url, client):
    _call(tmp_path / "a", url)
    client.config_set("maxmemory-policy", "noeviction")
    client.config_set("maxmemory", "1")  # every write is refused with OOM
    try:
        _new_process()
        with pytest.warns(remote.RemoteCacheWarning, match="OOM|maxmemory") as record:
            s = _call(tmp_path / "b", url, fn=scaled_again)
            _new_local(tmp_path / "c")
            s2 = _call(tmp_path / "c", url)  # reads still work
        assert len(record) == 1
        assert s.compiles == 1 and s2.compiles == 0
        r = framecache.stats().remote
        # The write and the hit's counter were refused; nothing was backed off.
        assert r.errors >= 1 and r.hits == 1 and r.skipped == 0 and "maxmemory" in r.last_error
    finally:
        client.config_set("maxmemory", "0")


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    full = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))
    full["PYTHONPATH"] = package_root + os.pathsep + full.get("PYTHONPATH", "")
    full.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "framecache", "cache", *args],
        capture_output=True,
        text=True,
        env=full,
        timeout=120,
        check=False,
    )


def test_cli_info_push_pull(tmp_path, url, client):
    _call(tmp_path / "a", False)  # local only
    assert _data_keys(client) == []
    out = _cli("--dir", str(tmp_path / "a"), "--remote", url, "push")
    assert out.returncode == 0 and "pushed 1 entries" in out.stdout, out.stdout + out.stderr
    assert len(_data_keys(client)) == 1

    out = _cli("--dir", str(tmp_path / "b"), "pull", env={remote.ENV_URL: url})
    assert out.returncode == 0 and "pulled 1 entries" in out.stdout, out.stdout + out.stderr
    _new_process()
    s = _call(tmp_path / "b", False)  # the pulled entry serves a local-only process
    assert s.compiles == 0 and s.disk_hits == 1

    _new_process()
    _call(tmp_path / "c", url)  # a remote hit, counted on the server
    out = _cli("--dir", str(tmp_path / "a"), "--remote", url, "info")
    assert out.returncode == 0, out.stderr
    assert f"remote:    {url}" in out.stdout and "reachable: yes" in out.stdout
    assert "remote entries: 1 in 1 keys" in out.stdout
    assert "remote counters: 1 hits, 0 misses, 1 stores" in out.stdout

    down = f"redis://127.0.0.1:{redis_server._free_port()}/0"
    out = _cli("--dir", str(tmp_path / "a"), "--remote", down, "info")
    assert out.returncode == 0 and "reachable: no" in out.stdout
    out = _cli("--dir", str(tmp_path / "a"), "--remote", down, "push")
    assert out.returncode != 0 and "does not answer" in out.stderr


def test_pull_refuses_keys_that_are_not_content_keys(tmp_path, url, client):
    ns = remote.namespace()
    client.hset(f"framecache:{ns}:../../escape", "ab", b"x")
    out = _cli("--dir", str(tmp_path / "a"), "--remote", url, "pull")
    assert out.returncode == 0 and "not a content key" in out.stdout
    assert not any(p.name == "escape" for p in tmp_path.rglob("*"))


def test_stats_show_the_remote_counters(tmp_path, url):
    _call(tmp_path / "a", url)
    text = str(framecache.stats())
    assert f"remote cache {url}: 0 hits, 1 misses, 1 stores" in text


def test_warnings_are_not_errors_by_default_in_a_plain_process(tmp_path):
    # RemoteCacheWarning is a DiskCacheWarning: filters for the disk cache cover it.
    assert issubclass(remote.RemoteCacheWarning, framecache.cache.DiskCacheWarning)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", framecache.cache.DiskCacheWarning)
        url = f"redis://127.0.0.1:{redis_server._free_port()}/0"
        assert _call(tmp_path / "a", url).compiles == 1
