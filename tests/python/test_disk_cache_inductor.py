"""Inductor warm starts: the second process loads the compiled artifact and builds no C++."""

from __future__ import annotations

import pytest

from disk_cache_util import CALL_MLP, run, write_module

pytestmark = pytest.mark.torch

NO_CPP = """
import subprocess
_real_popen = subprocess.Popen.__init__
COMPILERS = []

def _spy(self, args, *a, **k):
    argv = args if isinstance(args, (list, tuple)) else [args]
    is_compiler = str(argv[0]).rsplit("/", 1)[-1] in ("g++", "gcc", "c++", "cc", "clang++")
    # Version probes (g++ --version) are not compiles; building or preprocessing is.
    builds = any(str(a) in ("-o", "-c", "-E", "-shared") for a in argv[1:])
    if is_compiler and builds:
        COMPILERS.append(argv[0])
        raise AssertionError("a C++ compiler ran on a warm start: " + " ".join(map(str, argv)))
    return _real_popen(self, args, *a, **k)

subprocess.Popen.__init__ = _spy
"""


def test_inductor_warm_start_compiles_nothing(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    body = CALL_MLP.format(backend="inductor", cache_dir=str(cache))
    env = f"import os; os.environ['TORCHINDUCTOR_CACHE_DIR'] = {str(tmp_path / 'ind1')!r}\n"
    cold = run(mod, env + body)
    assert cold["compiles"] == 1 and cold["disk_stores"] == 1, cold
    # A fresh inductor cache: nothing may come from torch's own caches.
    env = f"import os; os.environ['TORCHINDUCTOR_CACHE_DIR'] = {str(tmp_path / 'ind2')!r}\n"
    warm = run(mod, env + NO_CPP + body, forbid_capture=True)
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm
