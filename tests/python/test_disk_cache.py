"""The disk cache: warm starts across processes, soundness, options, permissions, stats."""

from __future__ import annotations

import errno
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch

import framecache
from disk_cache_util import CALL_F, CALL_MLP, run, write_module
from framecache.cache import location, session
from framecache.cache.store import Store

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _fresh_stores():
    session.reset_stores()
    framecache.reset()
    yield
    session.reset_stores()
    framecache.reset()


def _entries(directory: Path) -> list[Path]:
    return sorted(directory.glob("*/*/*.entry"))


def test_two_processes_warm_start_eager(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    cold = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    assert cold["compiles"] == 1 and cold["disk_misses"] == 1 and cold["disk_stores"] == 1
    assert len(_entries(cache)) == 1
    # The second process must neither capture (capture_frame raises) nor compile.
    warm = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)), forbid_capture=True)
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1 and warm["disk_misses"] == 0
    assert warm["out"] == cold["out"]
    hits = next(cache.glob("*/*/*.hits"))
    assert hits.stat().st_size == 1  # one load recorded


WARM_IMPORTS = """
import sys
c = framecache.compile(model_mod.mlp, backend="eager", cache_dir={cache_dir!r})
x = torch.randn(5, 8)
out = c(x)
heavy = sorted(m for m in ("sympy", "torch._dynamo") if m in sys.modules)
torch.testing.assert_close(out, model_mod.mlp(x))  # (torch.testing imports sympy itself)
print(json.dumps({{"heavy": heavy, "disk_hits": framecache.stats(c).disk_hits}}))
"""


def test_warm_start_imports_neither_dynamo_nor_sympy(tmp_path):
    # Capturing needs fake tensors and symbolic shapes (torch._dynamo and sympy: ~2 s of
    # imports); a process whose calls all hit the disk cache must not pay for them.
    mod = write_module(tmp_path / "mod")
    cache = str(tmp_path / "cache")
    assert run(mod, CALL_MLP.format(backend="eager", cache_dir=cache))["disk_stores"] == 1
    warm = run(mod, WARM_IMPORTS.format(cache_dir=cache), forbid_capture=True)
    assert warm == {"heavy": [], "disk_hits": 1}


DYNAMIC = """
def d(x):
    return x.sum(0) * 2

c = framecache.compile(d, cache_dir={cache_dir!r}, dynamic=True)
x = torch.ones({rows}, 2)
torch.testing.assert_close(c(x), x.sum(0) * 2)
s = framecache.stats(d)
print(json.dumps({{"compiles": s.compiles, "disk_hits": s.disk_hits}}))
"""


def test_dynamic_entry_warm_start_in_a_new_process(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = str(tmp_path / "cache")
    cold = run(mod, DYNAMIC.format(cache_dir=cache, rows=3))
    assert cold == {"compiles": 1, "disk_hits": 0}
    # Another size: the stored symbolic shape guards are rebuilt and checked.
    warm = run(mod, DYNAMIC.format(cache_dir=cache, rows=7), forbid_capture=True)
    assert warm == {"compiles": 0, "disk_hits": 1}


def test_module_warm_start_uses_this_process_parameters(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    cold = run(mod, CALL_MLP.format(backend="eager", cache_dir=str(cache)))
    assert cold["disk_stores"] == 1, cold
    # Different weights in the warm process: the stored graph takes them as inputs.
    body = "torch.nn.init.constant_(model_mod.mlp.fc1.weight, 0.25)\n" + CALL_MLP.format(
        backend="eager", cache_dir=str(cache)
    )
    warm = run(mod, body, forbid_capture=True)
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1


def test_global_changed_between_processes_misses(tmp_path):
    mod = write_module(tmp_path / "mod", scale=2.0)
    cache = tmp_path / "cache"
    run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    write_module(tmp_path / "mod", scale=3.0)  # SCALE = 3.0 now
    changed = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    assert changed["disk_hits"] == 0 and changed["compiles"] == 1  # and its result checked
    assert len(_entries(cache)) == 2  # one key, two entries with their own guards


def test_helper_code_changed_between_processes_misses(tmp_path):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    source = (mod / "model_mod.py").read_text().replace("return x * SCALE", "return x * SCALE + 1")
    (mod / "model_mod.py").write_text(source)
    changed = run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    assert changed["disk_hits"] == 0 and changed["compiles"] == 1


@pytest.mark.parametrize(
    "patch",
    [
        "framecache.__version__ = '0.0.0+other'",
        "torch.__version__ = '2.0.0+other'",
        # Another revision of framecache's own source under the same version: its guard
        # planner may guard less than this one, so its entries are not this one's.
        "import framecache.cache.key as k; k.package_digest = lambda: 'another-source'",
    ],
)
def test_version_change_misses(tmp_path, patch):
    mod = write_module(tmp_path / "mod")
    cache = tmp_path / "cache"
    run(mod, CALL_F.format(backend="eager", cache_dir=str(cache)))
    other = run(mod, patch + "\n" + CALL_F.format(backend="eager", cache_dir=str(cache)))
    assert other["disk_hits"] == 0 and other["compiles"] == 1
    assert len({p.parent for p in _entries(cache)}) == 2  # another key


def test_in_process_warm_start_after_reset(tmp_path):
    def g(x):
        return torch.sin(x) * 2

    x = torch.randn(4)
    c = framecache.compile(g, cache_dir=tmp_path)
    torch.testing.assert_close(c(x), g(x))
    framecache.reset()  # the in-memory cache is gone, the disk cache is not
    torch.testing.assert_close(c(x), g(x))
    s = framecache.stats(g)
    assert s.compiles == 0 and s.disk_hits == 1


class TwoLinear(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(4, 4)
        self.b = torch.nn.Linear(4, 2)

    def forward(self, x):
        return self.b(torch.relu(self.a(x)))


def test_module_warm_start_exports_its_parameters(tmp_path):
    """An entry loaded from disk hands its guards' parameters to the wrapper, as a fresh
    compile's does (guard exports), and still follows a swapped parameter."""
    Net = TwoLinear
    torch.manual_seed(0)
    net, x = Net(), torch.randn(3, 4)
    with torch.no_grad():
        c = framecache.compile(net, backend="eager", cache_dir=tmp_path)
        torch.testing.assert_close(c(x), net(x))
        framecache.reset()
        torch.testing.assert_close(c(x), net(x))
        s = framecache.stats(Net.forward)
        assert s.compiles == 0 and s.disk_hits == 1
        (entry,) = framecache.cache_entries(Net.forward.__code__)
        assert entry.guard_manager.num_exports == 4  # two weights, two biases
        for _ in range(2):
            torch.testing.assert_close(c(x), net(x))
        net.a.weight = torch.nn.Parameter(torch.randn(4, 4))
        torch.testing.assert_close(c(x), net(x))


def test_cache_false_writes_nothing(tmp_path):
    c = framecache.compile(lambda x: x + 1, cache=False, cache_dir=tmp_path)
    c(torch.ones(2))
    assert _entries(tmp_path) == []


def test_cache_dir_and_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("FRAMECACHE_CACHE_DIR", str(tmp_path / "env"))
    c = framecache.compile(lambda x: x * 3)
    c(torch.ones(2))
    assert len(_entries(tmp_path / "env")) == 1
    explicit = framecache.compile(lambda x: x * 4, cache_dir=tmp_path / "explicit")
    explicit(torch.ones(2))
    assert len(_entries(tmp_path / "explicit")) == 1
    assert stat.S_IMODE(os.stat(tmp_path / "explicit").st_mode) == 0o700


def test_default_location(monkeypatch, tmp_path):
    monkeypatch.delenv("FRAMECACHE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert location.default_dir() == tmp_path / "xdg" / "framecache"
    monkeypatch.delenv("XDG_CACHE_HOME")
    assert location.default_dir() == Path.home() / ".cache" / "framecache"


def test_bad_arguments():
    with pytest.raises(TypeError, match="cache must be a bool"):
        framecache.compile(lambda x: x, cache="yes")
    with pytest.raises(TypeError, match="cache_dir must be a path"):
        framecache.compile(lambda x: x, cache_dir=3)
    with pytest.raises(ValueError, match="cache size"):
        location.parse_size("lots")


def test_world_writable_directory_is_refused(tmp_path):
    cache = tmp_path / "shared"
    cache.mkdir()
    cache.chmod(0o777)
    c = framecache.compile(lambda x: x - 1, cache_dir=cache)
    with pytest.warns(location.DiskCacheWarning, match="writable by other users"):
        torch.testing.assert_close(c(torch.ones(2)), torch.zeros(2))
    assert _entries(cache) == []


def test_entry_writable_by_others_is_refused(tmp_path):
    def h(x):
        return x.cos()

    c = framecache.compile(h, cache_dir=tmp_path)
    c(torch.ones(2))
    (entry,) = _entries(tmp_path)
    entry.chmod(0o666)
    framecache.reset()
    session.reset_stores()
    with pytest.warns(location.DiskCacheWarning, match="another user can write"):
        c(torch.ones(2))
    assert framecache.stats(h).disk_hits == 0


def test_entry_owned_by_another_user_is_refused(tmp_path):
    if os.getuid() != 0:
        pytest.skip("changing a file's owner needs root")

    def h2(x):
        return x.tan()

    c = framecache.compile(h2, cache_dir=tmp_path)
    c(torch.ones(2))
    (entry,) = _entries(tmp_path)
    os.chown(entry, 12345, 12345)
    framecache.reset()
    session.reset_stores()
    with pytest.warns(location.DiskCacheWarning, match="another user can write"):
        c(torch.ones(2))
    assert framecache.stats(h2).disk_hits == 0


@pytest.mark.parametrize("code", [errno.EROFS, errno.ENOSPC])
def test_unwritable_disk_falls_back_to_memory_with_one_warning(tmp_path, monkeypatch, code):
    real_replace = os.replace

    def refuse(src, dst):
        if str(tmp_path) in str(dst):
            raise OSError(code, os.strerror(code))
        return real_replace(src, dst)

    monkeypatch.setattr(os, "replace", refuse)
    fs = [framecache.compile(eval(f"lambda x: x + {i}"), cache_dir=tmp_path) for i in range(3)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for f in fs:
            f(torch.ones(2))
    disk = [w for w in caught if issubclass(w.category, location.DiskCacheWarning)]
    assert len(disk) == 1 and "memory only" in str(disk[0].message)
    assert _entries(tmp_path) == [] and list(tmp_path.glob("*/*/.tmp-*")) == []
    framecache.reset()
    fs[0](torch.ones(2))  # loaded from the memory fallback
    assert framecache.stats(fs[0]).disk_hits == 1


def test_unpicklable_artifact_bypasses_with_reason(tmp_path):
    def backend(gm, example_inputs):
        # The backend rewrites the graph to call a local function: it has no importable
        # name, so the graph cannot be written down.
        def ident(t):
            return t

        output = next(n for n in gm.graph.nodes if n.op == "output")
        (result,) = output.args[0]
        with gm.graph.inserting_before(output):
            wrapped = gm.graph.call_function(ident, (result,))
        output.args = ((wrapped,),)
        gm.recompile()
        return gm.forward

    def k(x):
        return x * 5

    c = framecache.compile(k, backend=backend, cache_dir=tmp_path)
    c(torch.ones(2))
    s = framecache.stats(k)
    assert s.disk_bypasses == 1 and "cannot be pickled" in s.disk_reasons[0]
    assert framecache.stats().bypasses >= 1
    assert _entries(tmp_path) == []


def test_not_portable_guard_bypasses(tmp_path):
    class Local:  # a class defined in a function has no importable name
        scale = 3.0

    globals()["_LOCAL_CONFIG"] = Local()

    def uses_object(x):
        return x * _LOCAL_CONFIG.scale  # noqa: F821

    c = framecache.compile(uses_object, cache_dir=tmp_path)
    torch.testing.assert_close(c(torch.ones(2)), torch.ones(2) * 3)
    s = framecache.stats(uses_object)
    assert s.disk_bypasses == 1
    assert "<locals>" in s.disk_reasons[0] or "Local" in s.disk_reasons[0]
    assert _entries(tmp_path) == []


def test_custom_backend_stores_the_graph_and_recompiles_it(tmp_path):
    calls = []

    def backend(gm, example_inputs):
        calls.append(len(example_inputs))
        return gm.forward

    def m(x, y):
        return x @ y

    c = framecache.compile(m, backend=backend, cache_dir=tmp_path)
    a, b = torch.randn(2, 3), torch.randn(3, 2)
    c(a, b)
    framecache.reset()
    torch.testing.assert_close(c(a, b), a @ b)
    assert calls == [2, 2]  # compiled again from the stored graph, without a capture
    assert framecache.stats(m).disk_hits == 1


def test_other_shapes_are_other_keys(tmp_path):
    def n(x):
        return x * 2

    c = framecache.compile(n, cache_dir=tmp_path, dynamic=False)
    c(torch.ones(2))
    c(torch.ones(3))
    assert len({p.parent for p in _entries(tmp_path)}) == 2


def test_dynamic_entry_warm_start(tmp_path):
    def d(x):
        return x.sum(0) * 2

    c = framecache.compile(d, cache_dir=tmp_path, dynamic=True)
    c(torch.ones(3, 2))
    framecache.reset()
    torch.testing.assert_close(c(torch.ones(5, 2)), torch.ones(5, 2).sum(0) * 2)
    s = framecache.stats(d)
    assert s.disk_hits == 1 and s.compiles == 0


def test_grad_mode_is_guarded(tmp_path):
    def gm_fn(x):
        return x * 2

    c = framecache.compile(gm_fn, cache_dir=tmp_path)
    c(torch.ones(2))
    framecache.reset()
    with torch.no_grad():
        c(torch.ones(2))
    assert framecache.stats(gm_fn).disk_hits == 0


def test_store_lists_entries(tmp_path):
    c = framecache.compile(lambda x: x.exp(), cache_dir=tmp_path)
    c(torch.ones(2))
    (listed,) = Store(tmp_path).list_entries()
    assert listed.size > 0 and listed.hits == 0


def _closure_scale():
    w = torch.full((4,), 3.0)

    def scale(x):
        return x * w

    return scale


class _HoldsAClosure(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fn = _closure_scale()

    def forward(self, x):
        return self.fn(x) + 1


def test_a_tensor_in_a_closure_cell_is_read_by_the_compiled_code(tmp_path):
    # The tensor's source ends in a closure cell (L['self'].fn.__closure__[0].cell_contents):
    # the wrapper reads it with that expression (it raised ValueError before), and the
    # entry is not stored (the function has no importable name), with the reason given.
    m = _HoldsAClosure()
    f = framecache.compile(m, backend="eager", cache_dir=str(tmp_path))
    x = torch.randn(4)
    torch.testing.assert_close(f(x), x * 3.0 + 1)
    m.fn.__closure__[0].cell_contents.fill_(5.0)  # the same tensor, new values
    torch.testing.assert_close(f(x), x * 5.0 + 1)
    s = framecache.stats(f)
    assert s.compiles == 1 and s.disk_stores == 0, s
    assert any("no importable module" in r for r in s.disk_reasons), s.disk_reasons


def test_explain_captures_even_where_the_disk_holds_an_entry(tmp_path, monkeypatch):
    """explain() is a dry run: a stored entry would be a hit with nothing to report."""
    cache = tmp_path / "cache"
    monkeypatch.setenv(location.ENV_DIR, str(cache))
    session.reset_stores()

    def scaled(x):
        return torch.relu(x) * 3

    x = torch.randn(4)
    framecache.compile(scaled, backend="eager")(x)
    assert len(_entries(cache)) == 1
    framecache.reset()  # a new process: only the disk remembers
    report = framecache.explain(scaled, x)
    assert report.graph_count == 1, str(report)

    def shifted(x):
        return torch.relu(x) + 3

    assert framecache.explain(shifted, x).graph_count == 1
    assert len(_entries(cache)) == 1  # explain wrote nothing


NORM_MODULE = """
import functools
import torch


def make_norm(n, eps=1e-5):
    return torch.nn.BatchNorm1d(n, eps=eps)


class Net(torch.nn.Module):
    # Defaults that are a partial, a builtin and a function: the class's fingerprint
    # names them (torchvision's VisionTransformer has norm_layer=partial(LayerNorm, ...)).
    def __init__(self, norm=functools.partial(torch.nn.BatchNorm1d, eps=1e-3), act=torch.relu,
                 build=make_norm):
        super().__init__()
        self.fc = torch.nn.Linear(8, 8)
        self.bn = norm(8)
        self.bn2 = build(8)
        self.act = act

    def forward(self, x):
        return self.bn2(self.act(self.bn(self.fc(x))))
"""

CALL_NORM = """
import norm_mod
torch.manual_seed({seed})
net = norm_mod.Net()
for bn in (net.bn, net.bn2):
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2.0)
net.eval()
c = framecache.compile(net, backend="eager", cache_dir={cache_dir!r})
x = torch.randn(4, 8)
torch.testing.assert_close(c(x), net(x))
s = framecache.stats(c)
print(json.dumps({{"compiles": s.compiles, "disk_hits": s.disk_hits, "disk_stores": s.disk_stores,
                  "reasons": list(s.disk_reasons)}}))
"""


def test_batch_norm_in_eval_and_named_defaults_are_stored(tmp_path):
    """BatchNorm's num_batches_tracked (guarded by the module walk, unused by an eval
    graph) and a class whose methods default to a partial or a function used to make
    every such model a bypass (resnet18, efficientnet, torchvision's ViT)."""
    mod = write_module(tmp_path / "mod")
    (mod / "norm_mod.py").write_text(NORM_MODULE)
    cache = str(tmp_path / "cache")
    cold = run(mod, CALL_NORM.format(seed=0, cache_dir=cache))
    assert cold["compiles"] == 1 and cold["disk_stores"] == 1, cold
    # Other weights and running statistics: the entry reads this process's buffers.
    warm = run(mod, CALL_NORM.format(seed=1, cache_dir=cache), forbid_capture=True)
    assert warm["compiles"] == 0 and warm["disk_hits"] == 1, warm


def test_a_changed_default_function_misses(tmp_path):
    mod = write_module(tmp_path / "mod")
    (mod / "norm_mod.py").write_text(NORM_MODULE)
    cache = str(tmp_path / "cache")
    cold = run(mod, CALL_NORM.format(seed=0, cache_dir=cache))
    assert cold["disk_stores"] == 1, cold
    # The same modules come out, but the default's code changed: the class is not the one
    # the entry was made for (its fingerprint names the function with its code's hash).
    changed = NORM_MODULE.replace(
        "    return torch.nn.BatchNorm1d", "    n = int(n)\n    return torch.nn.BatchNorm1d"
    )
    assert changed != NORM_MODULE
    (mod / "norm_mod.py").write_text(changed)
    again = run(mod, CALL_NORM.format(seed=0, cache_dir=cache))
    assert again["compiles"] == 1 and again["disk_hits"] == 0, again


def _doubled(x):
    return x * 2 + 1


def test_an_entry_holding_its_graph_only_says_it_was_compiled_again(tmp_path):
    """A backend whose output cannot be stored (any callable backend) stores the graph; a
    warm start skips the capture and compiles that graph again, and says so."""
    compiled_graphs = []

    def backend(gm, example_inputs):
        compiled_graphs.append(gm)
        return gm.forward

    x = torch.randn(3)
    first = framecache.compile(_doubled, backend=backend, cache_dir=tmp_path)
    torch.testing.assert_close(first(x), _doubled(x))
    assert framecache.stats(_doubled).disk_stores == 1
    framecache.reset()
    again = framecache.compile(_doubled, backend=backend, cache_dir=tmp_path)
    torch.testing.assert_close(again(x), _doubled(x))
    stats = framecache.stats(_doubled)
    assert stats.disk_hits == 1 and stats.compiles == 0, stats
    assert len(compiled_graphs) == 2  # the backend ran again on the stored graph
    assert any(r.startswith("graph only: loaded and compiled again") for r in stats.disk_reasons), (
        stats.disk_reasons
    )
