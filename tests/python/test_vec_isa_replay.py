"""Inductor's vector-ISA probes: recorded in one process, replayed in another.

Each scenario runs in fresh interpreters, because inductor settles its ISA list once
per process.
"""

from __future__ import annotations

import json
import os

import pytest

from conftest import run_python

pytestmark = pytest.mark.torch

# Counts inductor's real dlopen probes (the spawned Pythons) of a process.
SPY = """
import json, os, sys
os.environ["TORCHINDUCTOR_CACHE_DIR"] = sys.argv[1] if len(sys.argv) > 1 else {ind!r}
from torch._inductor import cpu_vec_isa
from framecache.cache import vec_isa
REAL = []
_original = cpu_vec_isa.VecISA._probe_load
def _counting(self, path):
    REAL.append(os.path.basename(path))
    return _original(self, path)
cpu_vec_isa.VecISA._probe_load = _counting
"""


def _run(source: str) -> dict:
    proc = run_python(source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _record(ind_dir: str) -> dict:
    return _run(
        SPY.format(ind=ind_dir)
        + """
vec_isa.record()
vec_isa.record()  # settled: a second call probes nothing more
print(json.dumps({"answers": vec_isa.recorded(), "real": REAL,
                  "libs": sorted(vec_isa.test_libraries()),
                  "isas": [str(i) for i in cpu_vec_isa.valid_vec_isa_list()]}))
"""
    )


@pytest.fixture(scope="module")
def rec(tmp_path_factory) -> dict:
    """One recording process (with an empty inductor cache) shared by the tests."""
    return _record(str(tmp_path_factory.mktemp("ind_rec")))


def test_record_keeps_every_probe_answer_and_its_test_library(rec):
    if not rec["real"]:
        pytest.skip("inductor probes no vector ISA on this machine")
    assert sorted(rec["answers"]) == sorted(rec["real"])  # each real probe answered once
    assert sorted(os.path.basename(p) for p in rec["libs"]) == sorted(rec["real"])


def _replay(ind_dir: str, answers: dict) -> dict:
    return _run(
        SPY.format(ind=ind_dir)
        + f"""
used = vec_isa.replay({answers!r})
again = vec_isa.replay({answers!r})
print(json.dumps({{"used": used, "again": again, "real": REAL,
                  "isas": [str(i) for i in cpu_vec_isa.valid_vec_isa_list()]}}))
"""
    )


def test_replay_settles_the_same_isas_without_probing(tmp_path, rec):
    if not rec["real"]:
        pytest.skip("inductor probes no vector ISA on this machine")
    out = _replay(str(tmp_path / "ind2"), rec["answers"])
    assert out["used"] is True and out["again"] is False  # settled once per process
    assert out["real"] == []
    assert out["isas"] == rec["isas"]


def test_probes_the_answers_lack_run_as_usual(tmp_path, rec):
    if not rec["real"]:
        pytest.skip("inductor probes no vector ISA on this machine")
    partial = dict(list(rec["answers"].items())[1:])
    partial["not-a-probe.so"] = False
    out = _replay(str(tmp_path / "ind2"), partial)
    assert out["used"] is True
    assert out["real"] == [next(iter(rec["answers"]))]
    assert out["isas"] == rec["isas"]


def test_no_answers_means_inductor_probes(tmp_path, rec):
    out = _replay(str(tmp_path / "ind"), {})
    assert out["used"] is False and out["again"] is False
    assert out["isas"] == rec["isas"]
