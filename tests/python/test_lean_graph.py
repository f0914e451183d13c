"""The eager backend's lean graph calls each aten overload through torch's generated binding
when there is one (lean_graph.fast_callable): the same result as the overload itself."""

from __future__ import annotations

import pytest
import torch

from framecache.compiler.lean_graph import fast_callable, lean_forward, with_binding_defaults

pytestmark = pytest.mark.torch

aten = torch.ops.aten
_X = torch.randn(2, 16, 12, generator=torch.Generator().manual_seed(0))
_Q = torch.randn(2, 2, 16, 8, generator=torch.Generator().manual_seed(1))
_IMG = torch.randn(1, 3, 8, 8, generator=torch.Generator().manual_seed(2))
_T = torch.arange(16) % 12

CASES = [
    ("add", aten.add.Tensor, (_X, _X), {}, True),
    ("view", aten.view.default, (_X, [2, 192]), {}, True),
    ("split", aten.split.Tensor, (_X, 4, 2), {}, True),
    ("gelu tanh", aten.gelu.default, (_X,), {"approximate": "tanh"}, True),
    ("silu", aten.silu.default, (_X,), {}, True),
    (
        "flash attention (CPU)",
        aten._scaled_dot_product_flash_attention_for_cpu.default,
        (_Q, _Q, _Q, 0.0, True),
        {},
        True,
    ),
    (
        "max_pool2d_with_indices",
        aten.max_pool2d_with_indices.default,
        (_IMG, [2, 2], [2, 2]),
        {},
        True,
    ),
    ("slice (no binding)", aten.slice.Tensor, (_X, 1, 2, 9), {}, False),
    # The binding's own default for reduction is "none": the schema's (Mean) must be passed.
    ("cross_entropy_loss, defaults", aten.cross_entropy_loss.default, (_X[0], _T), {}, True),
    ("sum.dim_IntList", aten.sum.dim_IntList, (_X, [1]), {}, True),
]


@pytest.mark.parametrize(
    ("op", "args", "kwargs", "bound"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
def test_the_binding_computes_what_the_overload_computes(op, args, kwargs, bound):
    fn = fast_callable(op)
    assert (fn is not op._op) == bound
    expected = op(*args, **kwargs)
    got = fn(*with_binding_defaults(op, args, kwargs), **kwargs)
    expected = expected if isinstance(expected, (tuple, list)) else [expected]
    got = got if isinstance(got, (tuple, list)) else [got]
    assert len(got) == len(expected)
    for a, b in zip(got, expected, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_a_lean_graph_keeps_the_schema_defaults():
    """A pre-dispatch graph calls cross_entropy_loss(x, t) with every default left out."""
    graph = torch.fx.Graph()
    x, t = graph.placeholder("x"), graph.placeholder("t")
    graph.output((graph.call_function(aten.cross_entropy_loss.default, (x, t)),))
    gm = torch.fx.GraphModule(torch.nn.Module(), graph)
    lean = lean_forward(gm)
    assert lean is not gm.forward
    (got,) = lean(_X[0], _T)
    assert got.shape == ()
    torch.testing.assert_close(got, torch.nn.functional.cross_entropy(_X[0], _T))
