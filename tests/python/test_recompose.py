"""The eager backend puts linear layers back as one aten.linear (compiler/recompose.py):
only where the nodes are exactly what aten.linear records, with the same result."""

from __future__ import annotations

import pytest
import torch
from torch.fx.experimental.proxy_tensor import make_fx

import framecache
from framecache.cache import graph_codec
from framecache.compiler.backends import eager
from framecache.compiler.lean_graph import lean_forward
from framecache.compiler.recompose import linear_calls, unused_results

pytestmark = pytest.mark.torch

aten = torch.ops.aten
_GEN = torch.Generator().manual_seed(0)
_W = torch.randn(5, 8, generator=_GEN)
_B = torch.randn(5, generator=_GEN)


def _targets(gm: torch.fx.GraphModule) -> list[object]:
    return [n.target for n in gm.graph.nodes if n.op == "call_function"]


def _trace(fn, *args, mode="fake"):
    return make_fx(fn, tracing_mode=mode)(*args)


@pytest.mark.parametrize("shape", [(4, 8), (2, 4, 8), (2, 3, 4, 8)], ids=["2d", "3d", "4d"])
@pytest.mark.parametrize("bias", [True, False], ids=["bias", "no-bias"])
def test_a_linear_layer_becomes_one_call_with_the_same_bits(shape, bias):
    x = torch.randn(*shape, generator=_GEN)

    def fn(x, w, b):
        return torch.nn.functional.linear(x, w, b if bias else None) * 2

    gm = _trace(fn, x, _W, _B)
    expected = gm(x, _W, _B)
    assert aten.linear.default not in _targets(gm)
    assert linear_calls(gm) == 1
    assert _targets(gm) == [aten.linear.default, aten.mul.Tensor]
    torch.testing.assert_close(gm(x, _W, _B), expected, rtol=0, atol=0)
    (got,) = lean_forward(gm)(x, _W, _B)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


@pytest.mark.parametrize("shape", [(4, 8), (2, 4, 8)], ids=["2d", "3d"])
def test_a_linear_feeding_linears_directly_is_read_through_its_rewrite(shape):
    # ELECTRA and ALBERT project their embeddings with a linear layer whose result goes
    # straight into the query, key and value layers: the projection's last node is erased
    # when its group is rewritten, so the layers after it must read the new linear.
    x = torch.randn(*shape[:-1], 5, generator=_GEN)
    w_in = torch.randn(8, 5, generator=_GEN)
    w_q, w_k = _W, torch.randn(5, 8, generator=_GEN)

    def fn(x, w_in, w_q, w_k, b):
        h = torch.nn.functional.linear(x, w_in)
        return torch.nn.functional.linear(h, w_q, b) + torch.nn.functional.linear(h, w_k)

    operands = (x, w_in, w_q, w_k, _B)
    gm = _trace(fn, *operands)
    expected = gm(*operands)
    assert linear_calls(gm) == 3
    gm.graph.lint()  # every node defined before it is read
    assert _targets(gm).count(aten.linear.default) == 3
    torch.testing.assert_close(gm(*operands), expected, rtol=0, atol=0)
    (got,) = lean_forward(gm)(*operands)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_gradients_through_the_recomposed_graph_are_eagers():
    x = torch.randn(2, 4, 8, generator=_GEN, requires_grad=True)
    w = _W.clone().requires_grad_()
    b = _B.clone().requires_grad_()

    def fn(x, w, b):
        return torch.nn.functional.linear(x, w, b).tanh().sum()

    fn(x, w, b).backward()
    expected = [t.grad.clone() for t in (x, w, b)]
    for t in (x, w, b):
        t.grad = None
    gm = _trace(fn, x.detach(), w.detach(), b.detach())
    assert linear_calls(gm) == 1
    gm(x, w, b).backward()
    for t, e in zip((x, w, b), expected, strict=True):
        torch.testing.assert_close(t.grad, e, rtol=0, atol=0)


def test_a_non_contiguous_input_is_left_as_recorded():
    x = torch.randn(8, 4, 2, generator=_GEN).permute(2, 1, 0)  # (2, 4, 8), not contiguous
    gm = _trace(lambda x, w, b: torch.nn.functional.linear(x, w, b), x, _W, _B)
    expected = gm(x, _W, _B)
    before = _targets(gm)
    assert linear_calls(gm) == 0
    assert _targets(gm) == before
    torch.testing.assert_close(gm(x, _W, _B), expected, rtol=0, atol=0)


def test_a_group_whose_intermediate_is_read_elsewhere_is_left_alone():
    x = torch.randn(2, 4, 8, generator=_GEN)

    def fn(x, w, b):
        flat = x.view(8, 8)
        wt = w.t()
        return torch.addmm(b, flat, wt).view(2, 4, 5), flat.sum(), wt

    gm = _trace(fn, x, _W, _B)
    expected = gm(x, _W, _B)
    assert linear_calls(gm) == 0
    for got, want in zip(gm(x, _W, _B), expected, strict=True):
        torch.testing.assert_close(got, want, rtol=0, atol=0)


def test_beta_alpha_and_other_shapes_are_not_the_n_d_linear():
    x = torch.randn(2, 4, 8, generator=_GEN)

    def scaled(x, w, b):  # beta != 1: not what linear records
        return torch.addmm(b, x.view(8, 8), w.t(), beta=2.0).view(2, 4, 5)

    def regrouped(x, w, b):  # the same product, viewed back to another shape
        return torch.addmm(b, x.view(8, 8), w.t()).view(4, 2, 5)

    gm = _trace(scaled, x, _W, _B)
    expected = gm(x, _W, _B)
    assert linear_calls(gm) == 0
    torch.testing.assert_close(gm(x, _W, _B), expected, rtol=0, atol=0)

    # Only the 2-D product is a linear (of the flattened input); the views stay.
    gm = _trace(regrouped, x, _W, _B)
    expected = gm(x, _W, _B)
    assert linear_calls(gm) == 1
    assert _targets(gm) == [aten.view.default, aten.linear.default, aten.view.default]
    torch.testing.assert_close(gm(x, _W, _B), expected, rtol=0, atol=0)


def test_symbolic_shapes_are_left_alone():
    x = torch.randn(2, 4, 8, generator=_GEN)
    gm = _trace(lambda x, w, b: torch.nn.functional.linear(x, w, b), x, _W, _B, mode="symbolic")
    assert linear_calls(gm) == 0


def test_the_recomposed_graph_round_trips_through_the_disk_codec():
    x = torch.randn(2, 4, 8, generator=_GEN)
    gm = _trace(lambda x, w, b: torch.nn.functional.linear(x, w, b).relu(), x, _W, _B)
    expected = gm(x, _W, _B)
    assert linear_calls(gm) == 1
    loaded = graph_codec.decode(graph_codec.encode(gm), module=False)
    assert aten.linear.default in _targets(loaded)
    (got,) = lean_forward(loaded)(x, _W, _B)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_results_nobody_reads_are_not_computed():
    bn = torch.nn.BatchNorm2d(3).eval()
    x = torch.randn(2, 3, 4, 4, generator=_GEN)
    with torch.no_grad():
        gm = _trace(lambda x: bn(x).relu(), x, mode="real")
    dead = [n for n in gm.graph.nodes if n.op == "call_function" and not n.users]
    assert dead  # the reserve tensor and the statistics' tuple items
    expected = gm(x)
    assert unused_results(gm) == len(dead)
    assert all(n.users for n in gm.graph.nodes if n.op == "call_function")
    torch.testing.assert_close(gm(x), expected, rtol=0, atol=0)


def test_random_draws_and_mutations_stay_even_when_unread():
    x = torch.randn(4, 4, generator=_GEN)

    def fn(x):
        torch.rand(3)  # unread, but it advances the generator
        y = x.clone()
        y.add_(1)  # unread result of an in-place op
        torch.empty(5)  # unread and without effect
        return x * 2, torch.rand(2)

    gm = _trace(fn, x, mode="real")
    assert unused_results(gm) == 1
    targets = _targets(gm)
    assert aten.empty.memory_format not in targets
    assert targets.count(aten.rand.default) == 2 and aten.add_.Tensor in targets
    torch.manual_seed(3)
    expected = fn(x)
    torch.manual_seed(3)
    got = gm(x)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


class _MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(8, 16)
        self.fc2 = torch.nn.Linear(16, 8, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc2(torch.relu(self.fc1(x))) + x


def test_the_eager_backend_runs_linear_layers_as_one_call_each():
    graphs: list[torch.fx.GraphModule] = []

    def spy(gm, example_inputs):
        fn = eager(gm, example_inputs)
        graphs.append(gm)
        return fn

    torch.manual_seed(0)
    model = _MLP().eval()
    x = torch.randn(2, 3, 8)
    with torch.no_grad():
        expected = model(x)
        got = framecache.compile(model, backend=spy)(x)
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    (gm,) = graphs
    assert _targets(gm).count(aten.linear.default) == 2
    assert aten.addmm.default not in _targets(gm) and aten.mm.default not in _targets(gm)
