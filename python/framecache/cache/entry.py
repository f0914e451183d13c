"""The entry file format: a checked header and a pickled payload.

::

    magic      8 bytes   b"FCENTRY\\n"
    version    4 bytes   little-endian u32, FORMAT_VERSION
    length     8 bytes   little-endian u64, payload size
    digest    32 bytes   sha256 of the payload
    payload   length     pickle of an Entry

Anything else — a truncated or empty file, other magic, another format version, a
length or digest that does not match, a payload that does not unpickle into an Entry —
is a CorruptEntry: the caller logs it, treats it as a miss and writes a new entry.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import struct
from dataclasses import dataclass, field
from typing import Any

from .key import FORMAT_VERSION

MAGIC = b"FCENTRY\n"
_HEADER = struct.Struct("<8sIQ32s")
HEADER_SIZE = _HEADER.size
SUFFIX = ".entry"


class CorruptEntry(Exception):
    """An entry file that cannot be used; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class UnpicklableArtifact(Exception):
    """The compiled artifact cannot be written down; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


@dataclass
class Entry:
    """One compiled graph of a key, with the guards under which it may run.

    ``guards`` is the portable guard description (portable.py), ``shape_guards`` the
    symbolic shape guard expressions over ``L``; ``call_args`` are the Python expressions
    giving the graph's inputs in the wrapper (frame tensors, then lifted parameters);
    ``out_spec`` is the output's pytree spec (``treespec_dumps``) or None for a single
    output. ``artifact_kind`` is ``"graph"`` (a pickled GraphModule, recompiled by the
    backend on load), ``"eager"`` (a pickled GraphModule run as it is), ``"aoti"`` (an
    AOTInductor package, ``artifact`` its bytes; ``graph`` kept for a recompile when it
    does not load) or ``"inductor"`` (a torch CompiledArtifact, ``artifact`` its saved bytes).
    """

    qualname: str
    backend: str
    guards: list[Any]
    shape_guards: list[str]
    call_args: list[str]
    out_spec: str | None
    artifact_kind: str
    artifact: bytes
    graph: bytes
    dynamic: str = "static"
    created: float = 0.0
    info: dict[str, Any] = field(default_factory=dict)


def dumps(entry: Entry) -> bytes:
    """The bytes of an entry file; UnpicklableArtifact when something cannot be pickled."""
    try:
        payload = pickle.dumps(entry, protocol=pickle.HIGHEST_PROTOCOL)
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise UnpicklableArtifact(f"{type(exc).__name__}: {exc}") from None
    digest = hashlib.sha256(payload).digest()
    return _HEADER.pack(MAGIC, FORMAT_VERSION, len(payload), digest) + payload


class _Unpickler(pickle.Unpickler):
    """Unpickling that turns any failure into CorruptEntry at the caller."""


def loads(data: bytes) -> Entry:
    """The Entry in ``data``; CorruptEntry when the bytes are not a valid entry."""
    if len(data) == 0:
        raise CorruptEntry("empty file")
    if len(data) < HEADER_SIZE:
        raise CorruptEntry(f"truncated header ({len(data)} of {HEADER_SIZE} bytes)")
    magic, version, length, digest = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise CorruptEntry("not a framecache entry (bad magic)")
    if version != FORMAT_VERSION:
        raise CorruptEntry(f"format version {version}, this framecache reads {FORMAT_VERSION}")
    payload = memoryview(data)[HEADER_SIZE:]
    if len(payload) != length:
        raise CorruptEntry(f"payload is {len(payload)} bytes, header says {length}")
    if hashlib.sha256(payload).digest() != digest:
        raise CorruptEntry("payload digest mismatch")
    try:
        entry = _Unpickler(io.BytesIO(payload)).load()
    except Exception as exc:
        raise CorruptEntry(f"payload does not unpickle: {type(exc).__name__}: {exc}") from None
    if not isinstance(entry, Entry):
        raise CorruptEntry(f"payload is a {type(entry).__name__}, not an Entry")
    return entry


__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "SUFFIX",
    "CorruptEntry",
    "Entry",
    "UnpicklableArtifact",
    "dumps",
    "loads",
]
