"""Where the disk cache lives, and whether it is safe to load code from it.

The directory is ``$FRAMECACHE_CACHE_DIR`` when set, else ``$XDG_CACHE_HOME/framecache``
(``~/.cache/framecache``): never a shared temporary directory, which other users can
write and which gets cleaned under running jobs. It is created private to the user
(0700). Loading an entry runs code (unpickling), so a directory that another user can
write, or that someone else owns, is refused with a warning.
"""

from __future__ import annotations

import os
import stat
import warnings
from pathlib import Path

ENV_DIR = "FRAMECACHE_CACHE_DIR"
ENV_SIZE = "FRAMECACHE_CACHE_SIZE"
DEFAULT_SIZE_BYTES = 1 << 30


class DiskCacheWarning(UserWarning):
    """The disk cache was refused or turned off for this process (unsafe or unwritable)."""


class UnsafeCacheError(Exception):
    """A cache directory or entry that another user can write (or owns)."""


def default_dir() -> Path:
    """The cache directory from the environment (not created)."""
    explicit = os.environ.get(ENV_DIR)
    if explicit:
        return Path(explicit).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "framecache"


def size_limit() -> int:
    """The size cap in bytes: ``$FRAMECACHE_CACHE_SIZE`` (``512M``, ``2G``, ``1000000``)."""
    text = os.environ.get(ENV_SIZE, "").strip()
    if not text:
        return DEFAULT_SIZE_BYTES
    return parse_size(text)


def parse_size(text: str) -> int:
    """Bytes from ``"123"``, ``"64K"``, ``"512M"``, ``"1G"`` (binary units)."""
    units = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}
    t = text.strip().upper().removesuffix("B").removesuffix("I")
    scale = 1
    if t and t[-1] in units:
        scale = units[t[-1]]
        t = t[:-1]
    try:
        value = float(t)
    except ValueError:
        raise ValueError(f"cannot read a cache size from {text!r} (e.g. 512M, 1G)") from None
    if value < 0 or value != value:
        raise ValueError(f"cache size must be a non-negative number, got {text!r}")
    return int(value * scale)


def check_private(path: Path) -> None:
    """Raise UnsafeCacheError unless ``path`` is owned by us and writable by nobody else."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if stat.S_ISLNK(st.st_mode):
        raise UnsafeCacheError(f"{path} is a symbolic link")
    if hasattr(os, "getuid") and st.st_uid != os.getuid():
        raise UnsafeCacheError(f"{path} is owned by uid {st.st_uid}, not by this user")
    if st.st_mode & (stat.S_IWGRP | stat.S_IWOTH):
        raise UnsafeCacheError(
            f"{path} is writable by other users (mode {stat.S_IMODE(st.st_mode):o})"
        )


def prepare(path: Path) -> Path:
    """Create ``path`` (0700, parents as needed) and check that it is private.

    Raises UnsafeCacheError for a directory another user can write, OSError when it
    cannot be created.
    """
    path = Path(os.path.abspath(path))
    if not path.is_dir():
        # Parents keep their default mode (they may be shared, like ~/.cache); the cache
        # directory itself is private.
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            path.mkdir(mode=0o700)
        except FileExistsError:
            pass
    check_private(path)
    return path


def warn(message: str) -> None:
    """One DiskCacheWarning, attributed to the caller of the compiled function."""
    warnings.warn(message, DiskCacheWarning, stacklevel=4)


__all__ = [
    "DEFAULT_SIZE_BYTES",
    "ENV_DIR",
    "ENV_SIZE",
    "DiskCacheWarning",
    "UnsafeCacheError",
    "check_private",
    "default_dir",
    "parse_size",
    "prepare",
    "size_limit",
]
