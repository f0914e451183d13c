"""Warm starts without the compiler stack: a process that loads its graphs from the disk
cache imports neither torch._inductor nor torch._dynamo, for the eager and inductor
backends (inductor entries are AOTInductor packages run by torch's C++ loader).

Every scenario is a cold process that fills the cache and a fresh warm process that
must hit it, capture nothing, and leave the compiler modules unimported.
"""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python
from framecache.cache import torch_compat

pytestmark = [
    pytest.mark.torch,
    pytest.mark.skipif(
        torch_compat.torch_version() < torch_compat.AOTI_SINCE,
        reason="inductor entries are AOTInductor packages on the supported torches only",
    ),
]

MODULE = """
import torch

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(64, 128)
        self.fc2 = torch.nn.Linear(128, 64)
        self.norm = torch.nn.LayerNorm(64)

    def forward(self, x):
        h = self.fc2(torch.nn.functional.gelu(self.fc1(x)))
        return torch.softmax(self.norm(x + h), dim=-1)

def parts(x, y):
    s = x + y
    return {"sum": s, "pair": (torch.relu(s), (x * y).sum(dim=-1))}
"""

PRELUDE = """
import json, os, sys
os.environ["TORCHINDUCTOR_CACHE_DIR"] = {ind!r}
os.environ["FRAMECACHE_AOTI_BUILD"] = "background"  # the default (the suite's is inline)
sys.path.insert(0, {path!r})
import torch, framecache
import framecache.cache
import framecache.compiler.callback as _cb
if {warm}:
    def _forbid(*a, **k):
        raise AssertionError("captured on a warm start")
    _cb.capture_frame = _forbid
import lean_mod
torch.manual_seed({seed})
def report(c, wait=True, **extra):
    s = framecache.stats(c)
    # A cold inductor call hands its package to a builder process: wait for it to write.
    built = framecache.cache.wait_for_builds(1200) if wait else None
    print(json.dumps(dict(compiles=s.compiles, disk_hits=s.disk_hits, disk_stores=s.disk_stores,
                          disk_builds=s.disk_builds, built=built,
                          inductor="torch._inductor" in sys.modules,
                          dynamo="torch._dynamo" in sys.modules, **extra)))
"""


def _run(tmp: Path, body: str, *, warm: bool, seed: int = 0, ind: str = "ind") -> dict[str, Any]:
    mod_dir = tmp / "mod"
    mod_dir.mkdir(exist_ok=True)
    (mod_dir / "lean_mod.py").write_text(textwrap.dedent(MODULE))
    source = textwrap.dedent(
        PRELUDE.format(ind=str(tmp / ind), path=str(mod_dir), warm=warm, seed=seed)
    )
    # An AOTInductor compile takes minutes on a loaded two-core machine.
    proc = run_python(source + textwrap.dedent(body), timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CALL_MLP = """
model = lean_mod.MLP()
c = framecache.compile(model, backend={backend!r}, cache_dir={cache!r}, dynamic={dynamic!r})
with torch.no_grad():
    outs = [c(torch.randn(n, 64)) for n in {sizes!r}]
    x = torch.randn({last}, 64)
    out = c(x)
    torch.testing.assert_close(out, model(x))
report(c)
"""


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_warm_process_imports_neither_inductor_nor_dynamo(tmp_path, backend):
    cache = str(tmp_path / "cache")
    body = CALL_MLP.format(backend=backend, cache=cache, sizes=[], last=8, dynamic=None)
    cold = _run(tmp_path, body, warm=False)
    assert cold["compiles"] == 1 and cold["built"], cold
    # The eager entry is written by the call; inductor's by its background build.
    assert (cold["disk_stores"], cold["disk_builds"]) == (
        (1, 0) if backend == "eager" else (0, 1)
    ), cold
    # Another seed: the entry takes the parameters as inputs and serves these weights.
    warm = _run(tmp_path, body, warm=True, seed=1, ind="ind_warm")
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm
    assert not warm["inductor"] and not warm["dynamo"], warm


def test_dynamic_entry_serves_a_new_size_without_the_compiler_stack(tmp_path):
    cache = str(tmp_path / "cache")
    # dynamic=True: the batch dimension is symbolic in the package; a fresh process's first
    # call with another size finds it (an automatic-dynamic entry is keyed by the dims a
    # process has seen change, so a first call looks up static entries only).
    cold = _run(
        tmp_path,
        CALL_MLP.format(backend="inductor", cache=cache, sizes=[], last=8, dynamic=True),
        warm=False,
    )
    assert cold["compiles"] == 1 and cold["disk_builds"] == 1 and cold["built"], cold
    warm = _run(
        tmp_path,
        CALL_MLP.format(backend="inductor", cache=cache, sizes=[3], last=11, dynamic=True),
        warm=True,
        ind="ind_warm",
    )
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm
    assert not warm["inductor"] and not warm["dynamo"], warm


CALL_PARTS = """
c = framecache.compile(lean_mod.parts, backend="inductor", cache_dir={cache!r})
x, y = torch.randn(4, 3), torch.randn(4, 3)
out = c(x, y)
torch.testing.assert_close(out, lean_mod.parts(x, y))
assert isinstance(out, dict) and isinstance(out["pair"], tuple), out
report(lean_mod.parts)
"""


def test_pytree_outputs_come_back_from_a_package(tmp_path):
    cache = str(tmp_path / "cache")
    cold = _run(tmp_path, CALL_PARTS.format(cache=cache), warm=False)
    assert cold["compiles"] == 1 and cold["disk_builds"] == 1 and cold["built"], cold
    warm = _run(tmp_path, CALL_PARTS.format(cache=cache), warm=True, ind="ind_warm")
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm
    assert not warm["inductor"] and not warm["dynamo"], warm


SHORT_SCRIPT = """
model = lean_mod.MLP()
c = framecache.compile(model, backend="inductor", cache_dir={cache!r})
with torch.no_grad():
    x = torch.randn(8, 64)
    torch.testing.assert_close(c(x), model(x))
from framecache.cache import builds
report(c, wait=False, pending=builds.pending())
"""


def test_a_short_script_leaves_its_entry_behind(tmp_path):
    """The package is built after the call returns, by a process that outlives the script."""
    cache = tmp_path / "cache"
    cold = _run(tmp_path, SHORT_SCRIPT.format(cache=str(cache)), warm=False)
    assert cold["compiles"] == 1 and cold["disk_builds"] == 1 and cold["disk_stores"] == 0, cold
    assert cold["pending"] == 1, cold  # the call returned before its package existed
    deadline = time.monotonic() + 1200
    while not list(cache.glob("*/*/*.entry")):
        assert time.monotonic() < deadline, "the background build wrote no entry"
        assert list(cache.glob(".builds/*.job")), "the build ended without an entry: " + "".join(
            p.read_text() for p in cache.glob(".builds/*.log")
        )
        time.sleep(0.5)
    deadline = time.monotonic() + 60  # the builder removes its job and log after writing
    while list(cache.glob(".builds/*")) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not list(cache.glob(".builds/*")), list(cache.glob(".builds/*"))
    warm = _run(
        tmp_path,
        CALL_MLP.format(backend="inductor", cache=str(cache), sizes=[], last=8, dynamic=None),
        warm=True,
        ind="ind_warm",
    )
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm
    assert not warm["inductor"] and not warm["dynamo"], warm
