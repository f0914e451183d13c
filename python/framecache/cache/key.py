"""The cache key: a content hash of everything that decides what a compile produces.

Never an object address: the key of a function is the same in every process that runs
the same source with the same inputs, torch, Python, framecache and CPU. It covers

* the code: bytecode, constants (recursively, nested code objects included), names,
  qualified name and file;
* the input signature: the type of each argument, and for a tensor its dtype, device,
  requires_grad, sizes and strides, with dynamic dimensions by name instead of size;
* the backend's identity and options;
* the versions of framecache, torch and Python, and the CPU's instruction-set level;
* a digest of framecache's own Python source, whose guard planner decides what an entry's
  guards check: an entry written by another revision of it (a development checkout, a
  patched install) is never read back under the same version number.

What the key does not cover (values of globals, closure cells, constants passed as
arguments, module structure) is checked by the entry's stored guards.
"""

from __future__ import annotations

import functools
import hashlib
import os
import platform
import sys
import types
import weakref
from collections.abc import Iterable
from typing import Any

FORMAT_VERSION = 1


def _feed(h: Any, value: Any, depth: int = 0) -> None:
    """Hash ``value`` by content; raise TypeError for what has no stable content."""
    if depth > 64:
        raise TypeError("value nested too deeply to hash")
    t = type(value)
    if value is None or t in (bool, int, float, complex, str, bytes):
        h.update(f"{t.__name__}:{value!r};".encode())
    elif t is types.CodeType:
        h.update(b"code(")
        feed_code(h, value, depth + 1)
        h.update(b")")
    elif t in (tuple, list, frozenset, set):
        items = sorted(value, key=repr) if t in (frozenset, set) else value
        h.update(f"{t.__name__}[{len(items)}](".encode())
        for item in items:
            _feed(h, item, depth + 1)
        h.update(b")")
    elif t is dict:
        h.update(f"dict[{len(value)}](".encode())
        for k in sorted(value, key=repr):
            _feed(h, k, depth + 1)
            _feed(h, value[k], depth + 1)
        h.update(b")")
    elif value is Ellipsis:
        h.update(b"...;")
    else:
        module = getattr(t, "__module__", "")
        if module == "torch" and t.__name__ in ("dtype", "device", "layout", "memory_format"):
            h.update(f"torch.{t.__name__}:{value};".encode())
        else:
            raise TypeError(f"no content hash for a {t.__qualname__}")


def feed_code(h: Any, code: types.CodeType, depth: int = 0) -> None:
    """Feed a code object's content (not its line table) into hash ``h``."""
    h.update(code.co_code)
    for part in (
        code.co_qualname,
        code.co_filename,
        code.co_names,
        code.co_varnames,
        code.co_freevars,
        code.co_cellvars,
        code.co_argcount,
        code.co_posonlyargcount,
        code.co_kwonlyargcount,
        code.co_flags,
    ):
        _feed(h, part, depth + 1)
    _feed(h, code.co_consts, depth + 1)


# Weakly keyed: a strong cache (functools.lru_cache) kept every hashed code object alive,
# and with it, through its co_extra slot, every cache entry and compiled graph of a dead
# function. Code objects compare by content, so equal codes share one (equal) hash.
_code_hashes: weakref.WeakKeyDictionary[types.CodeType, str] = weakref.WeakKeyDictionary()


def code_hash(code: types.CodeType) -> str:
    """Content hash of a code object (cached while the code object lives; it is immutable)."""
    cached = _code_hashes.get(code)
    if cached is None:
        h = hashlib.sha256()
        feed_code(h, code)
        cached = _code_hashes[code] = h.hexdigest()
    return cached


def value_hash(value: Any) -> str:
    """Content hash of a constant (ints, strings, tuples, code objects...)."""
    h = hashlib.sha256()
    _feed(h, value)
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def package_digest() -> str:
    """A digest of framecache's ``.py`` files (about 1 ms, once per process).

    The guards stored with an entry are the planner's answer at the time it was written;
    a later planner may guard more (a class-level registry, a monkeypatched method), and
    an entry with the older, weaker guards must not be reused by it. The version number
    does not change with each such fix; the source does.
    """
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    h = hashlib.blake2b(digest_size=16)
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if d != "__pycache__")
        for name in sorted(filenames):
            if name.endswith(".py"):
                path = os.path.join(dirpath, name)
                h.update(os.path.relpath(path, root).encode() + b"\0")
                with open(path, "rb") as f:
                    h.update(f.read())
    return h.hexdigest()


@functools.lru_cache(maxsize=1)
def environment() -> tuple[str, ...]:
    """Versions and CPU level that compiled artifacts depend on."""
    import torch

    import framecache

    try:
        capability = str(torch.backends.cpu.get_cpu_capability())
    except Exception:  # an old or unusual build: fall back to the machine name
        capability = "unknown"
    return (
        f"format={FORMAT_VERSION}",
        f"framecache={framecache.__version__}",
        f"framecache-source={package_digest()}",
        f"torch={torch.__version__}",
        f"python={sys.version}",
        f"impl={sys.implementation.cache_tag}",
        f"machine={platform.machine()}",
        f"cpu={capability}",
    )


def tensor_signature(tensor: Any, dynamic_dims: Iterable[int], names: list[str]) -> str:
    """``float32 cpu rg=0 [s0, 3] (3, 1)``: dynamic sizes named, strides that follow them too."""
    dyn = set(dynamic_dims)
    sizes = [names[i] if i in dyn else str(int(s)) for i, s in enumerate(tensor.shape)]
    strides = [int(s) for s in tensor.stride()]
    # A stride that contains a dynamic size is itself dynamic (as the tensor guard derives).
    shown = [
        "*"
        if any(j in dyn and strides[j] <= st for j in range(len(strides)) if j != i)
        else str(st)
        for i, st in enumerate(strides)
    ]
    return (
        f"{type(tensor).__module__}.{type(tensor).__qualname__} {tensor.dtype} {tensor.device} "
        f"rg={int(tensor.requires_grad)} [{', '.join(sizes)}] ({', '.join(shown)})"
    )


def input_signature(args: Any, dims: dict[Any, set[int]]) -> list[str]:
    """The signature of a frame's arguments: types, and tensor metadata with named dims."""
    from ..plan import sources

    out = [f"{name}: {_type_name(args.values[name])}" for name in args.names]
    counter = 0
    for tensor, source in zip(args.tensors, args.tensor_sources, strict=False):
        dyn = dims.get(source, set())
        names = []
        for i in range(tensor.dim()):
            names.append(f"s{counter}" if i in dyn else "")
            counter += i in dyn
        out.append(f"{sources.render(source)}: {tensor_signature(tensor, dyn, names)}")
    return out


def _type_name(value: Any) -> str:
    t = type(value)
    return f"{t.__module__}.{t.__qualname__}"


def cache_key(code: types.CodeType, signature: list[str], backend: str, options: Any = None) -> str:
    """The hex key of one compile: code, input signature, backend, environment."""
    h = hashlib.sha256()
    h.update(code_hash(code).encode())
    _feed(h, tuple(signature))
    _feed(h, backend)
    _feed(h, repr(options) if options is not None else None)
    _feed(h, environment())
    return h.hexdigest()


__all__ = [
    "FORMAT_VERSION",
    "cache_key",
    "code_hash",
    "environment",
    "input_signature",
    "package_digest",
    "tensor_signature",
    "value_hash",
]
