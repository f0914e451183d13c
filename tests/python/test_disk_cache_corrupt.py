"""Truncated, empty, garbage and foreign entry files: a logged miss, then replaced.

The fuzzing (hypothesis) also serves the hardening issue: random bytes and truncations
of a valid entry never raise anything but CorruptEntry, and never crash a compiled call.
"""

from __future__ import annotations

import logging
import struct

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import framecache
from framecache.cache import entry as entry_mod
from framecache.cache import session
from framecache.cache.entry import CorruptEntry, Entry

pytestmark = pytest.mark.torch

FUZZ_EXAMPLES = 400
FUZZ_CALL_EXAMPLES = 25


def target(x):
    return (x * 3).relu()


def _valid_bytes(tmp_path) -> tuple[bytes, object]:
    session.reset_stores()
    framecache.reset()
    c = framecache.compile(target, cache_dir=tmp_path)
    c(torch.ones(3))
    (path,) = tmp_path.glob("*/*/*.entry")
    return path.read_bytes(), path


@pytest.fixture
def valid(tmp_path):
    data, path = _valid_bytes(tmp_path)
    return data, path, tmp_path


def _reload_and_call(tmp_path):
    framecache.reset()
    session.reset_stores()
    c = framecache.compile(target, cache_dir=tmp_path)
    x = torch.tensor([-1.0, 2.0, 3.0])
    torch.testing.assert_close(c(x), target(x))
    return framecache.stats(target)


def _variants(data: bytes) -> dict[str, bytes]:
    header = entry_mod.HEADER_SIZE
    magic, version, length, digest = struct.unpack_from("<8sIQ32s", data)
    return {
        "empty": b"",
        "truncated header": data[: header // 2],
        "truncated payload": data[: header + (len(data) - header) // 2],
        "garbage": b"\x00garbage" * 40,
        "other magic": b"NOTENTRY" + data[8:],
        "future version": struct.pack("<8sIQ32s", magic, version + 1, length, digest)
        + data[header:],
        "old version": struct.pack("<8sIQ32s", magic, 0, length, digest) + data[header:],
        "flipped byte": data[:-1] + bytes([data[-1] ^ 0xFF]),
        "valid header, not an Entry": _wrap(b"\x80\x04K\x01."),  # pickle of the int 1
    }


def _wrap(payload: bytes) -> bytes:
    import hashlib

    return (
        struct.pack(
            "<8sIQ32s",
            entry_mod.MAGIC,
            entry_mod.FORMAT_VERSION,
            len(payload),
            hashlib.sha256(payload).digest(),
        )
        + payload
    )


def test_each_corruption_is_a_logged_miss_and_is_replaced(valid, caplog):
    data, path, directory = valid
    for name, bad in _variants(data).items():
        with pytest.raises(CorruptEntry):
            entry_mod.loads(bad)
        path.write_bytes(bad)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="framecache.cache"):
            s = _reload_and_call(directory)
        assert s.compiles == 1 and s.disk_hits == 0, name
        assert any("corrupt disk cache entry" in r.getMessage() for r in caplog.records), name
        # Replaced by the compile that followed: a valid entry again.
        assert isinstance(entry_mod.loads(path.read_bytes()), Entry), name


def test_valid_entry_round_trips(valid):
    data, _, _ = valid
    stored = entry_mod.loads(data)
    assert stored.qualname == "target" and stored.artifact_kind == "eager"
    assert entry_mod.loads(entry_mod.dumps(stored)) == stored


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(data=st.binary(max_size=4096))
def test_random_bytes_are_corrupt_entries(data):
    with pytest.raises(CorruptEntry):
        entry_mod.loads(data)


_VALID: list[bytes] = []


def _valid_once(tmp_path_factory) -> bytes:
    if not _VALID:
        data, _ = _valid_bytes(tmp_path_factory.mktemp("valid"))
        _VALID.append(data)
    return _VALID[0]


@settings(max_examples=FUZZ_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(cut=st.integers(min_value=0), flip=st.integers(min_value=0), bit=st.integers(0, 7))
def test_truncations_and_bit_flips_of_a_valid_entry(tmp_path_factory, cut, flip, bit):
    data = _valid_once(tmp_path_factory)
    truncated = data[: cut % len(data)]
    with pytest.raises(CorruptEntry):
        entry_mod.loads(truncated)
    i = flip % len(data)
    flipped = data[:i] + bytes([data[i] ^ (1 << bit)]) + data[i + 1 :]
    with pytest.raises(CorruptEntry):
        entry_mod.loads(flipped)


@settings(max_examples=FUZZ_CALL_EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck))
@given(noise=st.binary(max_size=512), keep=st.integers(min_value=0))
def test_fuzzed_entry_files_never_break_a_call(tmp_path_factory, noise, keep):
    directory = tmp_path_factory.mktemp("fuzz")
    data, path = _valid_bytes(directory)
    path.write_bytes(data[: keep % len(data)] + noise)
    s = _reload_and_call(directory)
    assert s.compiles + s.disk_hits == 1
    entry_mod.loads(path.read_bytes())
