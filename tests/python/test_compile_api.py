"""framecache.compile's API, side-effect fallbacks, explain, stats and logging."""

from __future__ import annotations

import inspect
import logging
import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

import framecache

pytestmark = pytest.mark.torch

LOG: list[int] = []
COUNTER = 0


@pytest.fixture(autouse=True)
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


def test_decorator_forms():
    @framecache.compile
    def a(x):
        return x + 1

    @framecache.compile(backend="eager", dynamic=False)
    def b(x):
        return x + 2

    x = torch.zeros(2)
    torch.testing.assert_close(a(x), x + 1)
    torch.testing.assert_close(b(x), x + 2)
    assert a.__name__ == "a"
    assert a.__qualname__.endswith("test_decorator_forms.<locals>.a")
    assert a.__wrapped__ is a._framecache_original
    assert str(inspect.signature(a)) == "(x)"
    assert "framecache.compile of <function" in repr(a)
    # Keyword arguments and errors pass through the C wrapper unchanged.
    torch.testing.assert_close(a(x=x), x + 1)
    with pytest.raises(TypeError):
        a(x, x)
    assert framecache.get_eval_frame() is None


def test_stances_apply_to_compiled_functions():
    @framecache.compile
    def c(x):
        return x * 2

    x = torch.ones(2)
    with framecache.stance("eager"):
        torch.testing.assert_close(c(x), x * 2)
    assert framecache.stats(c).compiles == 0
    with framecache.stance("run_only"):
        torch.testing.assert_close(c(x), x * 2)
    assert framecache.stats(c).compiles == 0
    with framecache.stance("default"):
        torch.testing.assert_close(c(x), x * 2)
    assert framecache.stats(c).compiles == 1
    with framecache.stance("fail_on_recompile"):
        torch.testing.assert_close(c(x), x * 2)
        with pytest.raises(framecache.RecompileError):
            c(x.double())


def test_custom_backend_contract():
    seen = []

    def backend(gm, example_inputs):
        assert isinstance(gm, torch.fx.GraphModule)
        seen.append([tuple(t.shape) for t in example_inputs])
        return gm.forward

    f = framecache.compile(lambda x, y: x @ y, backend=backend)
    a, b = torch.randn(2, 3), torch.randn(3, 4)
    torch.testing.assert_close(f(a, b), a @ b)
    assert seen == [[(2, 3), (3, 4)]]


def test_bad_arguments():
    with pytest.raises(ValueError, match="unknown backend"):
        framecache.compile(lambda x: x, backend="nope")
    with pytest.raises(TypeError):
        framecache.compile(lambda x: x, backend=3)
    with pytest.raises(TypeError):
        framecache.compile(42)
    with pytest.raises(TypeError):
        framecache.compile(lambda x: x, dynamic="yes")


def test_backend_failure_is_a_clear_error():
    def broken(gm, example_inputs):
        raise RuntimeError("boom")

    f = framecache.compile(lambda x: x * 2, backend=broken)
    with pytest.raises(framecache.BackendCompileError, match="boom"):
        f(torch.ones(2))


def _prints(x):
    print("side effect")
    return x + 1


def _appends(x):
    LOG.append(1)
    return x + 1


def _writes_global(x):
    global COUNTER
    COUNTER += 1
    return x + 1


def _sets_attribute(obj, x):
    obj.calls = getattr(obj, "calls", 0) + 1
    return x + 1


class _Holder:
    pass


@pytest.mark.parametrize(
    ("fn", "args", "why"),
    [
        (_prints, (torch.ones(2),), "print"),
        (_appends, (torch.ones(2),), "mutates a list"),
        (_writes_global, (torch.ones(2),), "global 'COUNTER'"),
        (_sets_attribute, (_Holder(), torch.ones(2)), "attribute .calls"),
    ],
)
def test_side_effects_run_normally(fn, args, why, capsys):
    global COUNTER
    LOG.clear()
    COUNTER = 0
    f = framecache.compile(fn)
    for _ in range(3):
        torch.testing.assert_close(f(*args), args[-1] + 1)
    s = framecache.stats(fn)
    assert s.compiles == 0
    assert why in s.fallback_reasons[0]
    if fn is _prints:
        assert capsys.readouterr().out.count("side effect") == 3
    if fn is _appends:
        assert LOG == [1, 1, 1]
    if fn is _writes_global:
        assert COUNTER == 3
    if fn is _sets_attribute:
        assert args[0].calls == 3


def test_local_containers_are_fine():
    def collect(x):
        outs = []
        for i in range(3):
            outs.append(x * i)
        d = {}
        d["a"] = x
        return torch.stack(outs) + d["a"]

    f = framecache.compile(collect)
    x = torch.randn(2)
    torch.testing.assert_close(f(x), collect(x))
    assert framecache.stats(collect).compiles == 1


def test_module_wrapper_shares_parameters_and_original_keeps_working():
    model = torch.nn.Linear(3, 2)
    compiled = framecache.compile(model)
    assert isinstance(compiled, torch.nn.Module)
    assert next(iter(compiled.parameters())) is model.weight
    x = torch.randn(4, 3)
    torch.testing.assert_close(compiled(x), model(x))
    with torch.no_grad():
        model.weight.add_(1.0)
    torch.testing.assert_close(compiled(x), model(x))
    assert not framecache.hook_installed()


def test_explain():
    def f(x):
        return torch.relu(x) * 2

    out = framecache.explain(f, torch.randn(3))
    assert out.graph_count == 1
    text = str(out)
    assert "aten.relu" in text
    assert "TENSOR_MATCH" in text
    assert framecache.cache_entries(f.__code__) == []

    def g(x):
        if x.sum() > 0:
            return x
        return -x

    out = framecache.explain(g, torch.randn(3))
    assert out.graph_count == 0
    assert "data-dependent" in out.fallback_reasons[0]


def test_explain_a_torch_module_reports_its_graph():
    """torch's own modules live in library code, which the hook skips unless asked for:
    explain asks, as framecache.compile does (it said "0 graph(s)" before)."""
    model = torch.nn.Sequential(torch.nn.Linear(4, 8), torch.nn.ReLU()).eval()
    x = torch.randn(2, 4)
    for target in (model, framecache.compile(model)):
        out = framecache.explain(target, x)
        assert out.graph_count == 1, str(out)
        assert "aten.relu" in str(out)


def test_stats_text():
    f = framecache.compile(lambda x: x - 1)
    f(torch.ones(2))
    f(torch.ones(2))
    f(torch.ones(3, dtype=torch.float64))
    s = framecache.stats(f)
    assert (s.hits, s.misses, s.compiles) == (1, 2, 2)
    assert "recompiled" in str(s)


def test_recompile_logging(caplog):
    f = framecache.compile(lambda x: x * 3)
    with caplog.at_level(logging.INFO, logger="framecache.recompiles"):
        f(torch.ones(2))
        f(torch.ones(2, dtype=torch.int64))
    messages = [r.getMessage() for r in caplog.records if r.name == "framecache.recompiles"]
    assert len(messages) == 1
    assert "dtype" in messages[0]


def test_logs_environment_variable():
    code = textwrap.dedent(
        """
        import torch, framecache
        f = framecache.compile(lambda x: x + 1)
        f(torch.ones(2)); f(torch.ones(3, dtype=torch.int32))
        """
    )
    env = dict(os.environ, FRAMECACHE_LOGS="recompiles,guards,graph")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr
    assert "[framecache.recompiles] recompiling" in proc.stderr
    assert "[framecache.guards]" in proc.stderr and "TENSOR_MATCH" in proc.stderr
    assert "[framecache.graph]" in proc.stderr and "aten.add" in proc.stderr


def test_long_compiles_say_what_they_are_doing(monkeypatch, caplog):
    from framecache.compiler import callback

    monkeypatch.setattr(callback, "_SLOW_COMPILE_SECONDS", 0.05)

    def slow_backend(gm, example_inputs):
        time.sleep(0.5)
        return gm.forward

    f = framecache.compile(lambda x: x + 1, backend=slow_backend)
    with caplog.at_level(logging.INFO, logger="framecache.compile"):
        torch.testing.assert_close(f(torch.ones(2)), torch.full((2,), 2.0))
    messages = [r.getMessage() for r in caplog.records if r.name == "framecache.compile"]
    assert any(m.startswith("capturing ") and "<lambda>" in m for m in messages), messages
    assert any(
        m.startswith("still compiling ") and "<lambda>" in m and "slow_backend" in m
        for m in messages
    ), messages
    assert any(m.startswith("compiled ") and "<lambda>" in m for m in messages), messages


def test_eager_hit_runs_the_operators_in_the_cached_code():
    def add_mul(x, y):
        return (x + y) * 2, x

    f = framecache.compile(add_mul, backend="eager")
    x, y = torch.randn(3), torch.randn(3)
    out = f(x, y)
    torch.testing.assert_close(out[0], (x + y) * 2)
    assert out[1] is x
    (entry,) = framecache.cache_entries(add_mul.__code__)
    code = entry.code
    # The graph's operators are constants of the cached code: no graph function to call,
    # no global or attribute lookups, the output tuple built in place.
    assert any(c is torch.add for c in code.co_consts)
    assert any(c is torch.mul for c in code.co_consts)
    assert code.co_names == ()
    assert code.co_varnames[:2] == ("x", "y")


class _Config:
    def __init__(self):
        self.causal = False


class _SetsAndRestores(torch.nn.Module):
    """transformers' merge_with_config_defaults: a config attribute set for the call and
    restored after it, the arguments copied with list() and changed."""

    def __init__(self):
        super().__init__()
        self.config = _Config()

    def forward(self, *args, causal=True):
        args = list(args)
        args[0] = args[0] * 2
        original = self.config.causal
        self.config.causal = causal
        try:
            return self.inner(*args)
        finally:
            self.config.causal = original

    def inner(self, x):
        return x + 1 if self.config.causal else x - 1


def test_an_attribute_set_and_restored_within_the_call_is_captured():
    m = _SetsAndRestores()
    f = framecache.compile(m)
    x = torch.randn(3)
    for _ in range(3):
        torch.testing.assert_close(f(x), x * 2 + 1)
        assert m.config.causal is False  # restored, by the capture's run too
    torch.testing.assert_close(f(x, causal=False), x * 2 - 1)
    s = framecache.stats(_SetsAndRestores.forward)
    assert not s.fallback_reasons, s.fallback_reasons
    assert (s.compiles, s.hits) == (2, 2), s
    # What the frame read of the config before setting it is guarded; the value it set is
    # no input (else the guard would compare the set value with the one found before the
    # call, and fail every time).
    m.config.causal = True
    torch.testing.assert_close(f(x), x * 2 + 1)
    assert m.config.causal is True


class _SetsOnly(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.config = _Config()

    def forward(self, x):
        self.config.causal = not self.config.causal
        return x + 1


def test_an_attribute_left_changed_is_a_side_effect_and_is_put_back_before_the_real_run():
    m = _SetsOnly()
    f = framecache.compile(m)
    x = torch.randn(3)
    for i in range(3):
        torch.testing.assert_close(f(x), x + 1)
        assert m.config.causal is (i % 2 == 0)  # flipped once per call, never by the capture
    s = framecache.stats(_SetsOnly.forward)
    assert s.compiles == 0
    reason = "sets the attribute .causal of a _Config and does not restore it"
    assert reason in s.fallback_reasons[0]


class _Settings:
    scale = 3


def _scale_of(settings, name):
    return getattr(settings, name) * 2


def test_a_frame_without_tensor_operations_runs_as_it_is():
    # A config's __getattribute__, a flag check: cached code would be guards in place of a
    # few lines, one entry per argument value, walked on every call. Such a frame is
    # left to run as it is (once decided, its calls never reach the compiler again).
    f = framecache.compile(_scale_of, backend="eager")
    settings = _Settings()
    for _ in range(4):
        assert f(settings, "scale") == 6
    s = framecache.stats(f)
    assert (s.misses, s.compiles, s.entries, s.fallbacks) == (1, 0, 0, 1), s
    assert "no tensor operations" in s.fallback_reasons[0], s.fallback_reasons
    _Settings.scale = 5
    try:
        assert f(settings, "scale") == 10  # the original ran: nothing stale
    finally:
        _Settings.scale = 3


def test_a_frame_without_tensor_operations_still_compiles_under_fullgraph():
    f = framecache.compile(_scale_of, backend="eager", fullgraph=True)
    settings = _Settings()
    assert f(settings, "scale") == 6
    assert f(settings, "scale") == 6
    s = framecache.stats(f)
    assert (s.compiles, s.hits, s.fallbacks) == (1, 1, 0), s


def test_a_frame_calling_one_without_tensor_operations_is_captured_whole():
    def uses(x, settings):
        return x * _scale_of(settings, "scale")

    f = framecache.compile(uses, backend="eager")
    x, settings = torch.randn(3), _Settings()
    for _ in range(3):
        torch.testing.assert_close(f(x, settings), x * 6)
    s = framecache.stats(f)
    assert (s.compiles, s.hits, s.fallbacks) == (1, 2, 0), s


class _Scaled:
    def __init__(self, x):
        self.doubled = x * 2


def _make_scaled(x):
    return _Scaled(x)  # returns an object: this frame falls back, its callees are asked


def test_a_constructor_of_a_new_object_on_every_call_is_not_compiled():
    # Its entry would pin the new object, which the next call replaces: compiling it on
    # every call until the recompile limit (transformers' DynamicCache.__init__ in each
    # forward) made a model run 50x slower than eager.
    import warnings

    f = framecache.compile(_make_scaled, backend="eager")
    x = torch.randn(3)
    with warnings.catch_warnings():
        warnings.simplefilter("error", framecache.RecompileLimitWarning)
        for _ in range(12):
            torch.testing.assert_close(f(x).doubled, x * 2)
    assert framecache.cache_entries(_Scaled.__init__.__code__) == []
    s = framecache.stats(_Scaled.__init__)
    assert (s.misses, s.compiles, s.fallbacks) == (1, 0, 1), s  # asked once, then left
    assert "a constructor" in s.fallback_reasons[0]
    assert "returns a _Scaled" in framecache.stats(f).fallback_reasons[0]


def test_a_module_constructor_called_in_a_frame_is_still_captured():
    def build_and_apply(x):
        torch.manual_seed(0)
        return torch.nn.Linear(3, 2)(x)

    f = framecache.compile(build_and_apply, backend="eager")
    x = torch.randn(4, 3)
    torch.testing.assert_close(f(x), build_and_apply(x))
