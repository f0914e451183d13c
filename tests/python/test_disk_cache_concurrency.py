"""Eight processes compiling and writing the same key at once never corrupt an entry."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

import framecache
from disk_cache_util import CALL_F, run, write_module
from framecache.cache import entry as entry_mod

pytestmark = pytest.mark.torch

# The eight writers start together: each says it is ready (its imports done) and waits
# for the others, so their compiles and writes overlap however long eight torch imports
# take. (A fixed head start of 20 s made this test serial: beside another pytest worker
# on a 2-core machine the imports outlasted it, and the writes no longer overlapped.)
WRITER = """
import json, os, sys, time
sys.path.insert(0, {mod!r})
import torch, framecache, model_mod
ready = {ready!r}
c = framecache.compile(model_mod.f, cache_dir={cache!r})
x = torch.arange(12.0).reshape(3, 4) - 5
y = torch.ones(3, 4)
open(os.path.join(ready, str(os.getpid())), "w").close()
deadline = time.time() + 300
while len(os.listdir(ready)) < {writers}:
    if time.time() > deadline:
        sys.exit("the other writers never got ready")
    time.sleep(0.002)
out = c(x, y)
torch.testing.assert_close(out, model_mod.f(x, y))
s = framecache.stats(model_mod.f)
print(json.dumps({{"compiles": s.compiles, "hits": s.disk_hits, "stores": s.disk_stores}}))
"""


WRITERS = 8


def test_eight_processes_write_one_key(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    ready = tmp_path / "ready"
    ready.mkdir()
    source = textwrap.dedent(
        WRITER.format(mod=str(mod), cache=str(cache), ready=str(ready), writers=WRITERS)
    )
    env = dict(os.environ)
    root = os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", source],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(WRITERS)
    ]
    results = []
    for p in procs:
        out, err = p.communicate(timeout=600)
        assert p.returncode == 0, err
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sum(r["compiles"] + r["hits"] for r in results) == WRITERS
    entries = sorted(cache.glob("*/*/*.entry"))
    assert len(entries) == 1  # same key, same guards: one entry, replaced atomically
    entry_mod.loads(entries[0].read_bytes())  # intact
    assert list(cache.glob("*/*/.tmp-*")) == []  # no temporary left behind
    warm = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)), forbid_capture=True)
    assert warm["disk_hits"] == 1 and warm["compiles"] == 0
