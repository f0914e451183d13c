"""The on-disk store: ``<dir>/<key[:2]>/<key>/<entry id>.entry``, written atomically.

Writers take an exclusive ``fcntl.flock`` on ``<key dir>/.lock``, write a temporary
file in the key's directory and ``os.replace`` it onto the entry's name, so a reader
sees either the old file or the new one, never half of one; readers take no lock and
never wait. Eviction takes the same lock without blocking and skips a key whose lock
is held, so it never removes an entry another process is writing.

Each load appends one byte to ``<entry id>.hits`` (an O_APPEND write, atomic without a
lock): its size is the entry's hit count and its mtime the entry's last use.

A write that fails because the disk is read-only, full or not ours turns the store into
a memory store for the rest of the process, with one DiskCacheWarning.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import logging
import os
import stat
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from . import location
from .entry import SUFFIX

log = logging.getLogger("framecache.cache")
LOCK = ".lock"
HITS = ".hits"
TMP_PREFIX = ".tmp-"
_DISK_ERRNOS = {errno.EROFS, errno.ENOSPC, errno.EACCES, errno.EPERM, errno.EDQUOT}


@dataclass
class EntryFile:
    """One entry on disk (or in memory) as the store lists it."""

    key: str
    entry_id: str
    path: Path
    size: int
    hits: int
    last_use: float


class Store:
    """The entries of one cache directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.usable = True  # False: refused or unwritable, memory only
        self._memory: dict[str, dict[str, bytes]] = {}
        self._warned = False

    # -- paths ---------------------------------------------------------------------------
    def key_dir(self, key: str) -> Path:
        return self.root / key[:2] / key

    def entry_path(self, key: str, entry_id: str) -> Path:
        return self.key_dir(key) / (entry_id + SUFFIX)

    # -- reading (never locks) -------------------------------------------------------------
    def entries(self, key: str) -> list[tuple[str, bytes]]:
        """``(entry id, bytes)`` of each entry of ``key``: memory first, then disk.

        Entries another user could have written are refused with a warning.
        """
        out = list(self._memory.get(key, {}).items())
        if not self.usable:
            return out
        directory = self.key_dir(key)
        try:
            names = sorted(os.listdir(directory))
        except OSError:
            return out
        seen = {entry_id for entry_id, _ in out}
        for name in names:
            if not name.endswith(SUFFIX) or name.startswith("."):
                continue
            entry_id = name[: -len(SUFFIX)]
            if entry_id in seen:
                continue
            data = self._read(directory / name)
            if data is not None:
                out.append((entry_id, data))
        return out

    def _read(self, path: Path) -> bytes | None:
        try:
            fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            return None
        try:
            st = os.fstat(fd)
            if st.st_uid != os.getuid() or st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
                self.warn_once(
                    f"framecache disk cache: refusing {path}: another user can write it "
                    f"(owner uid {st.st_uid}, mode {stat.S_IMODE(st.st_mode):o}); loading an "
                    "entry runs code"
                )
                return None
            chunks = []
            while True:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    break
                chunks.append(chunk)
            return b"".join(chunks)
        except OSError as exc:
            log.info("cannot read %s: %s", path, exc)
            return None
        finally:
            os.close(fd)

    def record_hit(self, key: str, entry_id: str) -> None:
        """Count one load of an entry (hit count and last use)."""
        if not self.usable or entry_id in self._memory.get(key, {}):
            return
        path = self.key_dir(key) / (entry_id + HITS)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, b".")
            finally:
                os.close(fd)
        except OSError as exc:
            log.info("cannot record a hit in %s: %s", path, exc)

    # -- writing ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self, key: str, blocking: bool = True) -> Iterator[bool]:
        """Hold the key's writer lock; yields False when ``blocking`` is off and it is busy."""
        directory = self.key_dir(key)
        directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            try:
                yield True
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def write(self, key: str, entry_id: str, data: bytes) -> bool:
        """Write one entry atomically; False (and memory only) when the disk refuses."""
        if not self.usable:
            self._memory.setdefault(key, {})[entry_id] = data
            return False
        try:
            with self.locked(key):
                directory = self.key_dir(key)
                tmp = directory / f"{TMP_PREFIX}{os.getpid()}-{entry_id}"
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_EXCL, 0o600)
                try:
                    view = memoryview(data)
                    while view:
                        view = view[os.write(fd, view) :]
                finally:
                    os.close(fd)
                try:
                    os.replace(tmp, directory / (entry_id + SUFFIX))
                except OSError:
                    with contextlib.suppress(OSError):
                        os.unlink(tmp)
                    raise
            return True
        except OSError as exc:
            if exc.errno in _DISK_ERRNOS or isinstance(exc, PermissionError):
                self.fall_back(f"cannot write {self.root}: {exc.strerror or exc}")
                self._memory.setdefault(key, {})[entry_id] = data
                return False
            raise

    def remove(self, key: str, entry_id: str) -> None:
        """Drop a (corrupt) entry, under the key's lock."""
        self._memory.get(key, {}).pop(entry_id, None)
        if not self.usable:
            return
        with contextlib.suppress(OSError), self.locked(key):
            for suffix in (SUFFIX, HITS):
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(self.key_dir(key) / (entry_id + suffix))

    def fall_back(self, reason: str) -> None:
        """Stop using the disk for this process; one warning."""
        self.usable = False
        self.warn_once(
            f"framecache disk cache: {reason}; compiled graphs are kept in memory only "
            "for this process"
        )

    def warn_once(self, message: str) -> None:
        log.warning("%s", message)
        if not self._warned:
            self._warned = True
            location.warn(message)

    # -- listing ---------------------------------------------------------------------------
    def list_entries(self) -> list[EntryFile]:
        """Every entry on disk with its size, hit count and last use."""
        out: list[EntryFile] = []
        try:
            shards = sorted(os.listdir(self.root))
        except OSError:
            return out
        for shard in shards:
            shard_dir = self.root / shard
            if len(shard) != 2 or not shard_dir.is_dir():
                continue
            for key in sorted(os.listdir(shard_dir)):
                key_dir = shard_dir / key
                try:
                    names = os.listdir(key_dir)
                except OSError:
                    continue
                for name in names:
                    if not name.endswith(SUFFIX) or name.startswith("."):
                        continue
                    entry_id = name[: -len(SUFFIX)]
                    path = key_dir / name
                    try:
                        st = path.stat()
                    except OSError:
                        continue
                    hits, last = 0, st.st_mtime
                    try:
                        hst = (key_dir / (entry_id + HITS)).stat()
                        hits, last = hst.st_size, max(last, hst.st_mtime)
                    except OSError:
                        pass
                    out.append(EntryFile(key, entry_id, path, st.st_size, hits, last))
        return out

    def stale_temporaries(self, older_than: float = 3600.0) -> list[Path]:
        """Temporary files left by writers that died (older than ``older_than`` seconds)."""
        now = time.time()
        out = []
        for tmp in self.root.glob(f"*/*/{TMP_PREFIX}*"):
            with contextlib.suppress(OSError):
                if now - tmp.stat().st_mtime > older_than:
                    out.append(tmp)
        return out


__all__ = ["HITS", "LOCK", "EntryFile", "Store"]
