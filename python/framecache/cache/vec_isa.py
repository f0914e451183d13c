"""Inductor's vector-ISA probes: recorded with an entry at compile, replayed at load.

Before inductor builds or even looks up a C++ kernel it decides which vector ISAs
(avx2, avx512, avx512 with VNNI or bf16, AMX) it may use. It decides by probing: per
candidate it builds a tiny test library (unless its cache holds one) and spawns a
fresh Python to ``dlopen`` it. A process pays that once, about a second of wall time
on this machine kind, and a warm start would pay it before running a stored kernel.

The process that compiles an entry records each probe's answer, by the test
library's file name (a hash of its source and compiler flags), and the entry stores
the answers with the test libraries themselves. A warm process answers those probes
from the record instead of spawning Pythons; a probe the record lacks runs as usual.
The entry's key includes the CPU capability, so a record only meets the machine kind
that produced it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import threading
from collections.abc import Callable, Iterator
from typing import Any

log = logging.getLogger("framecache.cache")

# Probe answers of this process: test library file name -> it loaded; and the test
# libraries themselves, by path relative to inductor's cache directory.
_answers: dict[str, bool] = {}
_test_libraries: dict[str, bytes] = {}
_lock = threading.RLock()


def _isa_module() -> Any:
    """inductor's cpu_vec_isa, or None when this torch lacks the probe hook (torch_compat)."""
    from .torch_compat import vec_isa_module

    return vec_isa_module()


def _decided(mod: Any) -> bool:
    """Whether inductor has already settled its ISA list in this process."""
    return bool(mod.valid_vec_isa_list.cache_info().currsize)


@contextlib.contextmanager
def _probes_through(probe: Callable[[Any, Any, str], bool]) -> Iterator[None]:
    """Within the block inductor's dlopen probe is ``probe(original, isa, library)``."""
    mod = _isa_module()
    original = mod.VecISA._probe_load

    def patched(self: Any, output_path: str) -> bool:
        return probe(original, self, output_path)

    with _lock:
        mod.VecISA._probe_load = patched
        try:
            yield
        finally:
            mod.VecISA._probe_load = original


def record() -> None:
    """Settle inductor's ISA list now, recording each probe's answer (once per process).

    Does nothing when inductor settled it earlier (then there is nothing to record and
    warm starts of this process's entries probe as usual).
    """
    try:
        mod = _isa_module()
        if mod is None or _decided(mod):
            return

        from torch._inductor.runtime.cache_dir_utils import cache_dir

        root = cache_dir()

        def recording(original: Any, isa: Any, path: str) -> bool:
            answer = bool(original(isa, path))
            _answers[os.path.basename(path)] = answer
            rel = os.path.relpath(path, root)
            if not rel.startswith(".."):
                with contextlib.suppress(OSError):
                    with open(path, "rb") as fh:
                        _test_libraries[rel] = fh.read()
            return answer

        with _probes_through(recording):
            mod.pick_vec_isa()
    except Exception as exc:  # torch internals moved: record nothing, probe at load
        log.debug("cannot record inductor's vector ISA probes: %s", exc)


def recorded() -> dict[str, bool] | None:
    """This process's probe answers (None when it recorded none)."""
    return dict(_answers) or None


def test_libraries() -> dict[str, bytes]:
    """The test libraries behind the recorded answers, by path relative to the cache dir.

    An entry bundles them, so that a warm process finds them built and only the
    (replayed) dlopen probe would remain.
    """
    return dict(_test_libraries)


def replay(answers: dict[str, bool] | None) -> bool:
    """Settle inductor's ISA list now, its probes answered from ``answers``.

    A probe the answers lack runs as usual. Returns whether the answers were used: not
    when there are none or inductor had already settled the list in this process.
    """
    try:
        mod = _isa_module()
        if mod is None or not answers or _decided(mod):
            return False

        def replaying(original: Any, isa: Any, path: str) -> bool:
            answer = answers.get(os.path.basename(path))
            return bool(original(isa, path)) if answer is None else answer

        with _probes_through(replaying):
            mod.valid_vec_isa_list()
        return True
    except Exception as exc:  # torch internals moved: inductor probes as usual
        log.debug("cannot replay inductor's vector ISA probes: %s", exc)
        return False


__all__ = ["record", "recorded", "replay", "test_libraries"]
