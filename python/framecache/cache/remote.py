"""A remote store under the disk cache: framecache entries shared through Redis.

A fleet (CI runners, serving replicas, a cluster's workers) compiles the same graphs on
every machine; with ``FRAMECACHE_REMOTE=redis://host:port/db`` (or
``framecache.compile(..., remote=URL)``) a miss of the local disk cache asks Redis, and
a compile writes its entry to both. The local cache stays the default and needs no server.

Layout on the server: one hash per content key, ``framecache:<namespace>:<key>``, whose
fields are entry ids (the digest of the entry's guards) and whose values are envelopes::

    magic    8 bytes   b"FCREMOT1"
    flags    1 byte    bit 0: signed
    mac     32 bytes   HMAC-SHA256(secret, namespace, key, entry id, entry), zeros if unsigned
    entry    the bytes of an entry file (entry.py: header, sha256, pickle)

The namespace names the versions of the entry format, framecache, torch and Python, so
that incompatible clients never read each other's entries. The hash expires ``ttl``
seconds after its last write or hit (Redis 7.0 has no per-field expiry: the entries of one
key live and die together). An entry over ``max_entry`` bytes is neither written nor read.

Trust (docs/remote_cache.md): a remote entry gets the checks of a local one, and no
fewer. Signed entries are verified before a byte of the entry is parsed; a client with a
secret refuses unsigned and wrongly signed entries. A verified entry goes through
entry.loads (format, length, sha256), its guards are rebuilt and checked against the
frame, and only then is it written to the local cache and used.

Failure is never fatal: a server that is down, slow (``timeout``, 100 ms by default, per
call, no retries), full or returning garbage makes a lookup a miss and a write a no-op,
with one RemoteCacheWarning per store and counters in ``framecache.stats().remote``. After
a connection failure the store is not asked again for ``backoff`` seconds.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import math
import os
import struct
import sys
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from . import location
from .entry import CorruptEntry
from .key import FORMAT_VERSION

log = logging.getLogger("framecache.cache")

ENV_URL = "FRAMECACHE_REMOTE"
ENV_SECRET = "FRAMECACHE_REMOTE_SECRET"
ENV_TIMEOUT = "FRAMECACHE_REMOTE_TIMEOUT"
ENV_TTL = "FRAMECACHE_REMOTE_TTL"
ENV_MAX_ENTRY = "FRAMECACHE_REMOTE_MAX_ENTRY"
DEFAULT_TIMEOUT = 0.1
DEFAULT_TTL = 7 * 24 * 3600
DEFAULT_MAX_ENTRY = 64 * 1024 * 1024
DEFAULT_BACKOFF = 30.0

MAGIC = b"FCREMOT1"
_ENVELOPE = struct.Struct("<8sB32s")
ENVELOPE_SIZE = _ENVELOPE.size
_SIGNED = 1
_NO_MAC = bytes(32)


class RemoteCacheWarning(location.DiskCacheWarning):
    """The remote store failed (down, slow, full, refused or garbage): compiling locally."""


class RefusedEntry(Exception):
    """A remote value that is not used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# -- configuration -------------------------------------------------------------------------
def _versions() -> tuple[str, str]:
    """framecache's and torch's versions, without importing torch (the CLI must not)."""
    import framecache

    try:
        from importlib.metadata import version

        torch_version = version("torch")
    except Exception:  # a source build without metadata: ask torch itself
        import torch

        torch_version = str(torch.__version__)
    return framecache.__version__, torch_version


def namespace() -> str:
    """``f1-fc<version>-torch<version>-py<major.minor>-<impl>``: who may share entries."""
    fc_version, torch_version = _versions()
    py = f"{sys.version_info[0]}.{sys.version_info[1]}-{sys.implementation.cache_tag}"
    return f"f{FORMAT_VERSION}-fc{fc_version}-torch{torch_version}-py{py}"


def _env_float(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{name}={text!r} is not a number of seconds") from None
    if value <= 0:
        raise ValueError(f"{name}={text!r} must be positive")
    return value


def redact(url: str) -> str:
    """``url`` with its password replaced by ``***`` (for messages and ``cache info``)."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urllib.parse.urlunsplit(parts._replace(netloc=f"{user}:***@{host}{port}"))


def check_url(url: str) -> None:
    """ValueError unless ``url`` is a redis://, rediss:// or unix:// URL."""
    scheme = urllib.parse.urlsplit(url).scheme
    if scheme not in ("redis", "rediss", "unix"):
        raise ValueError(
            f"remote cache URL must be redis://host:port/db (or rediss://, unix://), "
            f"got {redact(url)!r}"
        )


# -- the envelope --------------------------------------------------------------------------
def _mac(secret: bytes, ns: str, key: str, entry_id: str, entry: bytes | memoryview) -> bytes:
    h = hmac.new(secret, digestmod=hashlib.sha256)
    for part in (ns.encode(), key.encode(), entry_id.encode()):
        h.update(struct.pack("<I", len(part)))
        h.update(part)
    h.update(entry)
    return h.digest()


def seal(entry: bytes, secret: bytes | None, ns: str, key: str, entry_id: str) -> bytes:
    """The value stored for ``entry``: signed when there is a secret."""
    if secret is None:
        return _ENVELOPE.pack(MAGIC, 0, _NO_MAC) + entry
    mac = _mac(secret, ns, key, entry_id, entry)
    return _ENVELOPE.pack(MAGIC, _SIGNED, mac) + entry


def unseal(value: bytes, secret: bytes | None, ns: str, key: str, entry_id: str) -> bytes:
    """The entry bytes in ``value``; RefusedEntry when it cannot be trusted or parsed.

    With a secret, the value must carry this secret's MAC over its namespace, key and
    entry id (a valid entry replayed under another key is refused too). Without one, the
    MAC is not checked: the server is trusted as the local cache directory is.
    """
    if len(value) < ENVELOPE_SIZE:
        raise RefusedEntry(f"truncated envelope ({len(value)} of {ENVELOPE_SIZE} bytes)")
    magic, flags, mac = _ENVELOPE.unpack_from(value)
    if magic != MAGIC:
        raise RefusedEntry("not a framecache remote entry (bad magic)")
    entry = memoryview(value)[ENVELOPE_SIZE:]
    if secret is not None:
        if not flags & _SIGNED:
            raise RefusedEntry("unsigned entry, and this client has a secret")
        if not hmac.compare_digest(mac, _mac(secret, ns, key, entry_id, entry)):
            raise RefusedEntry("signature does not verify with this client's secret")
    return bytes(entry)


def check_entry_header(data: bytes) -> None:
    """CorruptEntry unless ``data`` has an entry file's header, length and sha256.

    What ``push`` checks before sending a local file (it does not unpickle anything).
    """
    from . import entry as entry_mod

    if len(data) < entry_mod.HEADER_SIZE:
        raise CorruptEntry(f"truncated header ({len(data)} of {entry_mod.HEADER_SIZE} bytes)")
    magic, version, length, digest = entry_mod._HEADER.unpack_from(data)
    if magic != entry_mod.MAGIC or version != FORMAT_VERSION:
        raise CorruptEntry("not an entry of this format")
    payload = memoryview(data)[entry_mod.HEADER_SIZE :]
    if len(payload) != length or hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("length or digest mismatch")


# -- counters ------------------------------------------------------------------------------
@dataclass
class RemoteStats:
    """``framecache.stats().remote``: this process's remote store counters."""

    url: str = ""
    hits: int = 0  # remote entries that held for the frame and were used
    misses: int = 0  # lookups with no usable remote entry
    stores: int = 0  # entries written
    refused: int = 0  # values not used: unverified, corrupt, over the size cap
    too_large: int = 0  # entries not written: over the size cap
    errors: int = 0  # calls that failed: connection, timeout, server error (full)
    skipped: int = 0  # calls not made while the server was backed off
    last_error: str = ""

    def __str__(self) -> str:
        text = (
            f"remote cache {self.url or '(off)'}: {self.hits} hits, {self.misses} misses, "
            f"{self.stores} stores, {self.refused} refused, {self.too_large} too large, "
            f"{self.errors} errors, {self.skipped} skipped"
        )
        return text + (f"\n  last error: {self.last_error}" if self.last_error else "")


# -- the store -----------------------------------------------------------------------------
class RemoteStore:
    """One Redis server's entries in this client's namespace.

    Every method catches the server's failures: lookups answer nothing, writes do nothing,
    and the first failure of the store warns once.
    """

    def __init__(
        self,
        url: str,
        secret: bytes | str | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT,
        ttl: int = DEFAULT_TTL,
        max_entry: int = DEFAULT_MAX_ENTRY,
        backoff: float = DEFAULT_BACKOFF,
        ns: str | None = None,
    ) -> None:
        check_url(url)
        if isinstance(secret, str):
            secret = secret.encode()
        if secret is not None and len(secret) == 0:
            raise ValueError("the remote cache secret is empty")
        if timeout <= 0 or ttl <= 0 or max_entry <= 0:
            raise ValueError("timeout, ttl and max_entry must be positive")
        self.url = url
        self.secret = secret
        self.timeout = timeout
        self.ttl = int(ttl)
        self.max_entry = int(max_entry)
        self.backoff = backoff
        self.ns = ns if ns is not None else namespace()
        self.stats = RemoteStats(url=redact(url))
        self._client: Any = None
        self._down_until = 0.0
        self._warned = False
        self._lock = threading.Lock()

    @classmethod
    def from_env(cls, url: str) -> RemoteStore:
        """A store for ``url`` with the secret, timeout, TTL and size cap of the environment."""
        max_entry = os.environ.get(ENV_MAX_ENTRY)
        return cls(
            url,
            os.environ.get(ENV_SECRET) or None,
            timeout=_env_float(ENV_TIMEOUT, DEFAULT_TIMEOUT),
            ttl=int(_env_float(ENV_TTL, DEFAULT_TTL)),
            max_entry=location.parse_size(max_entry) if max_entry else DEFAULT_MAX_ENTRY,
        )

    def redis_key(self, key: str) -> str:
        return f"framecache:{self.ns}:{key}"

    @property
    def counters_key(self) -> str:
        """The hash of fleet-wide counters (``hits``, ``misses``, ``stores``)."""
        return f"framecache:{self.ns}:~counters"

    @property
    def client(self) -> Any:
        """The redis client: one connection pool, ``timeout`` per call, no retries."""
        if self._client is None:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry

            self._client = redis.Redis.from_url(
                self.url,
                socket_timeout=self.timeout,
                socket_connect_timeout=self.timeout,
                retry=Retry(NoBackoff(), 0),
                retry_on_timeout=False,
                health_check_interval=0,
            )
        return self._client

    def prepare(self) -> None:
        """Import the client and build it (no connection yet), so the first call does not.

        Without redis-py the store is off for the process, with one warning.
        """
        if self._client is not None or self._down_until == math.inf:
            return
        try:
            self.client  # noqa: B018  (builds the client)
        except ImportError as exc:
            self._down_until = math.inf
            self.stats.errors += 1
            self.stats.last_error = f"ImportError: {exc}"
            self.warn_once(
                f"framecache remote cache {self.stats.url}: the redis client is not installed "
                "(pip install 'framecache[remote]'); compiling locally"
            )

    # -- failures --------------------------------------------------------------------------
    def _available(self) -> bool:
        if time.monotonic() < self._down_until:
            self.stats.skipped += 1
            return False
        return True

    def _failed(self, what: str, exc: BaseException, down: bool) -> None:
        import redis

        reason = f"{what}: {type(exc).__name__}: {exc}"
        self.stats.errors += 1
        self.stats.last_error = reason
        # A connection that failed (down, slow) is not asked again for a while; a server
        # error (full: OOM; a key of another type) leaves the other calls working.
        down = down or isinstance(exc, (redis.ConnectionError, redis.TimeoutError, OSError))
        if down:
            self._down_until = time.monotonic() + self.backoff
        self.warn_once(
            f"framecache remote cache {self.stats.url}: {reason}; compiling locally"
            + (f" (not asked again for {self.backoff:g} s)" if down else "")
        )

    def _refused(self, key: str, entry_id: str, reason: str) -> None:
        self.stats.refused += 1
        self.stats.last_error = f"refused {key[:12]}/{entry_id[:12]}: {reason}"
        self.warn_once(
            f"framecache remote cache {self.stats.url}: refused entry {key[:12]}/{entry_id[:12]}: "
            f"{reason}; compiling locally"
        )

    def warn_once(self, message: str) -> None:
        import warnings

        log.info("%s", message)  # every time; the warning below once
        with self._lock:
            if self._warned:
                return
            self._warned = True
        warnings.warn(message, RemoteCacheWarning, stacklevel=5)

    # -- reading ---------------------------------------------------------------------------
    def entries(self, key: str) -> list[tuple[str, bytes]]:
        """``(entry id, entry bytes)`` of each verified remote entry of ``key``.

        One round trip (HGETALL, and EXPIRE to keep a used key alive). Values that fail
        the envelope (size cap, magic, signature) are refused and counted; what is
        returned still goes through entry.loads and the guards.
        """
        if not self._available():
            return []
        import redis

        rkey = self.redis_key(key)
        try:
            with self.client.pipeline(transaction=False) as pipe:
                pipe.hgetall(rkey)
                pipe.expire(rkey, self.ttl, xx=True)
                found, _ = pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("lookup", exc, down=False)
            return []
        out = []
        for field, value in sorted(found.items()):
            entry_id = field.decode(errors="replace")
            try:
                out.append((entry_id, self.check(key, entry_id, value)))
            except RefusedEntry as exc:
                self._refused(key, entry_id, exc.reason)
        return out

    def check(self, key: str, entry_id: str, value: bytes) -> bytes:
        """The entry bytes of one remote value; RefusedEntry when it is not to be used."""
        if len(value) > self.max_entry + ENVELOPE_SIZE:
            raise RefusedEntry(f"{len(value)} bytes, over the cap of {self.max_entry}")
        if not _is_entry_id(entry_id):
            raise RefusedEntry("not an entry id")
        return unseal(value, self.secret, self.ns, key, entry_id)

    # -- writing ---------------------------------------------------------------------------
    def put(self, key: str, entry_id: str, entry: bytes, *, after_miss: bool = False) -> bool:
        """Write one entry (HSET and EXPIRE in one transaction); False when it was not.

        ``after_miss``: the entry is a compile's after a remote miss, counted on the
        server's fleet-wide counters in the same round trip.
        """
        if len(entry) > self.max_entry:
            self.stats.too_large += 1
            log.info(
                "not writing %s/%s to the remote cache: %d bytes, over the cap of %d",
                key[:12],
                entry_id[:12],
                len(entry),
                self.max_entry,
            )
            return False
        if not self._available():
            return False
        import redis

        rkey = self.redis_key(key)
        value = seal(entry, self.secret, self.ns, key, entry_id)
        try:
            with self.client.pipeline(transaction=True) as pipe:
                pipe.hset(rkey, entry_id, value)
                pipe.expire(rkey, self.ttl)
                if after_miss:
                    pipe.hincrby(self.counters_key, "misses", 1)
                pipe.hincrby(self.counters_key, "stores", 1)
                pipe.execute()
        except (redis.RedisError, OSError) as exc:
            self._failed("write", exc, down=False)
            return False
        self.stats.stores += 1
        return True

    def count(self, field: str) -> None:
        """Add one to a fleet-wide counter (``hits``, ``misses``, ``stores``) on the server."""
        if not self._available():
            return
        import redis

        try:
            self.client.hincrby(self.counters_key, field, 1)
        except (redis.RedisError, OSError) as exc:
            self._failed("counter", exc, down=False)

    # -- the command line's view -----------------------------------------------------------
    def ping(self) -> float:
        """Round-trip seconds of one PING; raises the client's error when unreachable."""
        started = time.perf_counter()
        self.client.ping()
        return time.perf_counter() - started

    def fleet_counters(self) -> dict[str, int]:
        """The server's counters of every client of this namespace."""
        raw = self.client.hgetall(self.counters_key)
        return {k.decode(): int(v) for k, v in raw.items()}

    def keys(self, limit: int = 1_000_000) -> Iterator[str]:
        """The content keys stored in this namespace (SCAN: never blocks the server)."""
        prefix = f"framecache:{self.ns}:"
        for n, rkey in enumerate(self.client.scan_iter(match=prefix + "*", count=500)):
            if n >= limit:
                return
            key = rkey.decode(errors="replace")[len(prefix) :]
            if not key.startswith("~"):
                yield key

    def raw_entries(self, key: str) -> dict[str, bytes]:
        """Every value of ``key`` as stored (unchecked)."""
        found = self.client.hgetall(self.redis_key(key))
        return {k.decode(errors="replace"): v for k, v in found.items()}


def _is_entry_id(entry_id: str) -> bool:
    return 0 < len(entry_id) <= 64 and all(c in "0123456789abcdef" for c in entry_id)


# -- one store per configuration -------------------------------------------------------------
_STORES: dict[tuple[Any, ...], RemoteStore] = {}
_STORES_LOCK = threading.Lock()


def store_for(url: str | None) -> RemoteStore | None:
    """The shared store of ``url`` (or of ``$FRAMECACHE_REMOTE``); None when there is none.

    A URL that cannot be used warns once and gives None: the local cache goes on alone.
    """
    if url is None:
        url = os.environ.get(ENV_URL) or None
        if url is None:
            return None
    config = (
        url,
        os.environ.get(ENV_SECRET),
        os.environ.get(ENV_TIMEOUT),
        os.environ.get(ENV_TTL),
        os.environ.get(ENV_MAX_ENTRY),
    )
    with _STORES_LOCK:
        store = _STORES.get(config)
        if store is None and config not in _STORES:
            try:
                store = RemoteStore.from_env(url)
            except (ValueError, ImportError) as exc:
                import warnings

                log.warning("remote cache off: %s", exc)
                warnings.warn(f"framecache remote cache off: {exc}", RemoteCacheWarning, 3)
            _STORES[config] = store  # type: ignore[assignment]
            if store is not None:
                store.prepare()
        if store is not None:
            # Imported here: framecache.compiler needs torch, and `python -m framecache
            # cache info` (which imports this module) must work without it.
            from ..compiler.stats import PROCESS

            PROCESS.remote = store.stats
        return store


def reset_stores() -> None:
    """Forget the remote stores (their clients, warnings, back-offs)."""
    with _STORES_LOCK:
        for store in _STORES.values():
            if store is not None and store._client is not None:
                store._client.close()
        _STORES.clear()


def lookup(
    remote: RemoteStore,
    key: str,
    load: Callable[[bytes], Any],
) -> tuple[Any, str, bytes] | None:
    """The first remote entry of ``key`` that ``load`` accepts: ``(loaded, entry id, bytes)``.

    ``load`` is the disk path's own check of one entry's bytes (entry.loads, then the
    guards rebuilt and checked); it returns None when the entry does not hold and raises
    CorruptEntry when the bytes are not an entry.
    """
    for entry_id, data in remote.entries(key):
        try:
            loaded = load(data)
        except CorruptEntry as exc:
            remote._refused(key, entry_id, exc.reason)
            continue
        if loaded is not None:
            remote.stats.hits += 1
            remote.count("hits")
            return loaded, entry_id, data
    remote.stats.misses += 1
    return None


__all__ = [
    "ENV_MAX_ENTRY",
    "ENV_SECRET",
    "ENV_TIMEOUT",
    "ENV_TTL",
    "ENV_URL",
    "RefusedEntry",
    "RemoteCacheWarning",
    "RemoteStats",
    "RemoteStore",
    "check_entry_header",
    "check_url",
    "lookup",
    "namespace",
    "redact",
    "reset_stores",
    "seal",
    "store_for",
    "unseal",
]
