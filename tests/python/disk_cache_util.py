"""Helpers of the disk cache tests: a module of compiled functions, run in fresh processes."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Any

from conftest import run_python

MODULE = """
import torch
import framecache

SCALE = {scale}

def helper(x):
    return x * SCALE

def f(x, y):
    return torch.relu(helper(x) + y).sum(dim=0)

class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 4)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))

torch.manual_seed(0)
mlp = MLP()
"""

PRELUDE = """
import json, sys
sys.path.insert(0, {path!r})
import torch, framecache
import framecache.compiler.callback as _cb
from framecache.compiler import stats as _stats

def forbid_capture(*a, **k):
    raise AssertionError("captured on a warm start")

if {forbid}:
    _cb.capture_frame = forbid_capture
import model_mod
"""


def write_module(directory: Path, scale: float = 2.0) -> Path:
    """``model_mod.py`` in ``directory``: a function ``f`` (reads the global SCALE), ``mlp``."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model_mod.py").write_text(textwrap.dedent(MODULE.format(scale=scale)))
    return directory


def run(module_dir: Path, body: str, forbid_capture: bool = False) -> dict[str, Any]:
    """Run ``body`` in a fresh interpreter after importing model_mod; it prints one JSON line."""
    source = textwrap.dedent(PRELUDE.format(path=str(module_dir), forbid=forbid_capture))
    source += textwrap.dedent(body)
    proc = run_python(source)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout.strip().splitlines()[-1])


CALL_F = """
c = framecache.compile(model_mod.f, backend={backend!r}, cache_dir={cache_dir!r})
x = torch.arange(12.0).reshape(3, 4) - 5
y = torch.ones(3, 4)
out = c(x, y)
torch.testing.assert_close(out, model_mod.f(x, y))
s = framecache.stats(model_mod.f)
print(json.dumps({{"compiles": s.compiles, "disk_hits": s.disk_hits, "disk_misses": s.disk_misses,
                  "disk_stores": s.disk_stores, "disk_bypasses": s.disk_bypasses,
                  "reasons": list(s.disk_reasons), "out": out.tolist()}}))
"""

CALL_MLP = """
c = framecache.compile(model_mod.mlp, backend={backend!r}, cache_dir={cache_dir!r})
x = torch.randn(5, 8)
out = c(x)
torch.testing.assert_close(out, model_mod.mlp(x))
s = framecache.stats(c)
print(json.dumps({{"compiles": s.compiles, "disk_hits": s.disk_hits, "disk_misses": s.disk_misses,
                  "disk_stores": s.disk_stores, "disk_bypasses": s.disk_bypasses,
                  "reasons": list(s.disk_reasons)}}))
"""
