"""Inductor warm starts: the second process loads the compiled artifact, builds no C++
and spawns no process (inductor's vector-ISA probes are answered from the entry)."""

from __future__ import annotations

import pytest
import torch

from disk_cache_util import CALL_MLP, run, write_module

pytestmark = pytest.mark.torch

NO_CPP = """
import subprocess, sys
ALLOW_HEADER_PREPROCESSING = {allow_header}
_real_popen = subprocess.Popen.__init__

def _spy(self, args, *a, **k):
    argv = args if isinstance(args, (list, tuple)) else [args]
    is_compiler = str(argv[0]).rsplit("/", 1)[-1] in ("g++", "gcc", "c++", "cc", "clang++")
    # Version probes (g++ --version) are not compiles; building or preprocessing is.
    builds = any(str(a) in ("-o", "-c", "-E", "-shared") for a in argv[1:])
    # A grad-mode graph is compiled with precompiled headers (artifact.py): finding its
    # kernels runs the preprocessor over inductor's prefix header, once; nothing compiles.
    header = "-E" in map(str, argv) and str(argv[1]).endswith("header.hpp")
    if is_compiler and builds and not (ALLOW_HEADER_PREPROCESSING and header):
        raise AssertionError("a C++ compiler ran on a warm start: " + " ".join(map(str, argv)))
    if str(argv[0]) == sys.executable:  # inductor's dlopen probe of a vector ISA
        raise AssertionError("a Python was spawned on a warm start: " + " ".join(map(str, argv)))
    return _real_popen(self, args, *a, **k)

subprocess.Popen.__init__ = _spy
"""

CALL_BOTH = """
c = framecache.compile(model_mod.f, backend="inductor", cache_dir={cache_dir!r})
x = torch.arange(12.0).reshape(3, 4) - 5
y = torch.ones(3, 4)
torch.testing.assert_close(c(x, y), model_mod.f(x, y))
m = framecache.compile(model_mod.mlp, backend="inductor", cache_dir={cache_dir!r})
x = torch.randn(5, 8)
torch.testing.assert_close(m(x), model_mod.mlp(x))
print(json.dumps({{which: {{"compiles": s.compiles, "disk_hits": s.disk_hits}}
                  for which, s in (("f", framecache.stats(model_mod.f)),
                                   ("mlp", framecache.stats(m)))}}))
"""


def _inductor_dir(path) -> str:
    return f"import os; os.environ['TORCHINDUCTOR_CACHE_DIR'] = {str(path)!r}\n"


def _cold_then_warm(tmp_path, prelude: str, allow_header: bool) -> None:
    """The MLP compiled cold (stored), then loaded by a process with a fresh inductor
    cache (nothing may come from torch's own caches) that must compile nothing."""
    mod = write_module(tmp_path / "mod")
    body = prelude + CALL_MLP.format(backend="inductor", cache_dir=str(tmp_path / "cache"))
    cold = run(mod, _inductor_dir(tmp_path / "ind1") + body)
    assert cold["compiles"] == 1 and cold["disk_stores"] == 1, cold
    no_cpp = NO_CPP.format(allow_header=allow_header)
    warm = run(mod, _inductor_dir(tmp_path / "ind2") + no_cpp + body, forbid_capture=True)
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm


def test_inductor_warm_start_compiles_nothing(tmp_path):
    # The MLP runs in grad mode (its weights require grad): precompiled headers.
    _cold_then_warm(tmp_path, "", allow_header=True)


def test_inductor_warm_start_of_an_inference_graph_runs_no_compiler_at_all(tmp_path):
    _cold_then_warm(tmp_path, "torch.set_grad_enabled(False)\n", allow_header=False)


def test_second_compile_of_a_process_warm_starts_without_probing(tmp_path):
    # The cold process probes once, for its first compile; the entry of its second
    # compile must still carry the answers and test libraries a warm process needs.
    mod = write_module(tmp_path / "mod")
    body = CALL_BOTH.format(cache_dir=str(tmp_path / "cache"))
    cold = run(mod, _inductor_dir(tmp_path / "ind1") + body)
    assert cold == {"f": {"compiles": 1, "disk_hits": 0}, "mlp": {"compiles": 1, "disk_hits": 0}}
    # Only the MLP in the warm process: its entry alone must answer every probe.
    only_mlp = CALL_MLP.format(backend="inductor", cache_dir=str(tmp_path / "cache"))
    warm = run(
        mod,
        _inductor_dir(tmp_path / "ind2") + NO_CPP.format(allow_header=True) + only_mlp,
        forbid_capture=True,
    )
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm


def test_only_training_graphs_compile_with_precompiled_headers():
    """Precompiled headers make a warm start run the C++ preprocessor (inference graphs go
    without), but save most of a training graph's cold compile (it goes with them); the
    bundle records the choice so that the load uses the same library keys."""
    from framecache.cache import artifact

    weight = torch.randn(3, requires_grad=True)
    x = torch.randn(3)
    assert artifact._precompiled_headers_for([x, weight])
    with torch.no_grad():
        assert not artifact._precompiled_headers_for([x, weight])
    assert not artifact._precompiled_headers_for([x, weight.detach()])
    assert not artifact._precompiled_headers_for([1, "a"])
