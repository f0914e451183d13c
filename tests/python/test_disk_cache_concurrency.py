"""Eight processes compiling and writing the same key at once never corrupt an entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

import pytest

import framecache
from disk_cache_util import CALL_F, run, write_module
from framecache.cache import entry as entry_mod

# serial: the eight writers start together 20 s after launch, once their imports are done;
# beside another pytest worker on a 2-core machine eight torch imports outlast that head
# start, and the writes no longer overlap (see .ci/pytest-passes).
pytestmark = [pytest.mark.torch, pytest.mark.serial]

WRITER = """
import json, os, sys, time
sys.path.insert(0, {mod!r})
import torch, framecache, model_mod
start = float(sys.argv[1])
c = framecache.compile(model_mod.f, cache_dir={cache!r})
x = torch.arange(12.0).reshape(3, 4) - 5
y = torch.ones(3, 4)
while time.time() < start:
    time.sleep(0.001)
out = c(x, y)
torch.testing.assert_close(out, model_mod.f(x, y))
s = framecache.stats(model_mod.f)
print(json.dumps({{"compiles": s.compiles, "hits": s.disk_hits, "stores": s.disk_stores}}))
"""


def test_eight_processes_write_one_key(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    source = textwrap.dedent(WRITER.format(mod=str(mod), cache=str(cache)))
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    # Every process starts compiling at the same moment, after its imports.
    start = time.time() + 20.0
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", source, str(start)],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(8)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["compiles"] + r["hits"] for r in results) == 8
    entries = sorted(cache.glob("*/*/*.entry"))
    assert len(entries) == 1  # same key, same guards: one entry, replaced atomically
    entry_mod.loads(entries[0].read_bytes())  # intact
    assert list(cache.glob("*/*/.tmp-*")) == []  # no temporary left behind
    warm = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)), forbid_capture=True)
    assert warm["disk_hits"] == 1 and warm["compiles"] == 0
