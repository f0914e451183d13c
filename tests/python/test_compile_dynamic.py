"""Dynamic shapes: static first, symbolic after a size change, explicit marks."""

from __future__ import annotations

import pytest
import torch

import framecache

pytestmark = pytest.mark.torch


def rowsum(x, y):
    return (x * 2 + y).sum(-1)


@pytest.fixture(autouse=True)
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


def test_static_then_symbolic_then_hit():
    f = framecache.compile(rowsum)
    for n in (3, 4, 7):
        x, y = torch.randn(n, 5), torch.randn(n, 5)
        torch.testing.assert_close(f(x, y), rowsum(x, y))
    s = framecache.stats(f)
    assert s.compiles == 2, s
    assert s.hits == 1, s
    entries = framecache.cache_entries(rowsum.__code__)
    assert "dims [0]" in entries[0].trace_annotation
    assert "static" in entries[-1].trace_annotation
    # A change in the static dimension still recompiles.
    x, y = torch.randn(7, 6), torch.randn(7, 6)
    torch.testing.assert_close(f(x, y), rowsum(x, y))
    assert framecache.stats(f).compiles == 3


def test_inductor_static_then_symbolic_then_hit():
    # The symbolic graph is compiled by inductor from fake inputs with symbolic sizes.
    f = framecache.compile(rowsum, backend="inductor")
    for n in (3, 4, 7):
        x, y = torch.randn(n, 5), torch.randn(n, 5)
        torch.testing.assert_close(f(x, y), rowsum(x, y))
    s = framecache.stats(f)
    assert (s.compiles, s.hits) == (2, 1), s
    assert "dims [0]" in framecache.cache_entries(rowsum.__code__)[0].trace_annotation


def test_frame_state_records_sizes():
    f = framecache.compile(rowsum)
    f(torch.randn(3, 5), torch.randn(3, 5))
    f(torch.randn(4, 5), torch.randn(4, 5))
    sizes = framecache.frame_state(rowsum.__code__)["framecache.sizes"]
    assert sizes["L['x']"] == [None, 5]


def test_dynamic_true_compiles_symbolic_from_the_start():
    f = framecache.compile(rowsum, dynamic=True)
    for n in (3, 4, 9):
        x, y = torch.randn(n, 5), torch.randn(n, 5)
        torch.testing.assert_close(f(x, y), rowsum(x, y))
    assert framecache.stats(f).compiles == 1


def test_dynamic_false_always_specialises():
    f = framecache.compile(rowsum, dynamic=False)
    for n in (3, 4, 9):
        x, y = torch.randn(n, 5), torch.randn(n, 5)
        torch.testing.assert_close(f(x, y), rowsum(x, y))
    assert framecache.stats(f).compiles == 3


def test_mark_dynamic():
    f = framecache.compile(rowsum)
    for n in (3, 8):
        x, y = torch.randn(n, 5), torch.randn(n, 5)
        framecache.mark_dynamic(x, 0)
        framecache.mark_dynamic(y, 0)
        torch.testing.assert_close(f(x, y), rowsum(x, y))
    assert framecache.stats(f).compiles == 1


def test_mark_dynamic_rejects_bad_input():
    with pytest.raises(TypeError):
        framecache.mark_dynamic([1, 2], 0)
    with pytest.raises(ValueError):
        framecache.mark_dynamic(torch.randn(2), 3)
    with pytest.raises(TypeError):
        framecache.mark_dynamic(torch.randn(2), "0")


def test_symbolic_graph_guards_broadcast_relation():
    def add(x, y):
        return x + y

    f = framecache.compile(add, dynamic=True)
    torch.testing.assert_close(f(torch.ones(3), torch.ones(3)), torch.full((3,), 2.0))
    # The graph assumed equal sizes; broadcasting a size-1 tensor must not reuse it blindly.
    out = f(torch.ones(4), torch.ones(1))
    torch.testing.assert_close(out, torch.full((4,), 2.0))


def test_shape_dependent_control_flow_under_symbolic_shapes():
    def branchy(x):
        if x.shape[0] > 4:
            return x.sum(0)
        return x * 3

    f = framecache.compile(branchy)
    for n in (2, 3, 6, 8, 3):
        x = torch.randn(n, 2)
        torch.testing.assert_close(f(x), branchy(x))


def _rotary(p):
    # transformers' rotary embedding: an expand to the positions' batch, then a matmul
    # whose result has the positions' length.
    return torch.arange(4.0)[None, :, None].expand(p.shape[0], -1, 1) @ p[:, None, :].float()


def test_a_size_of_one_is_never_compiled_as_symbolic():
    # Prefill (6 positions), then decode steps of 1: the recompile for 1 was made dynamic,
    # torch's symbolic shapes turned the size 1 into a constant with no guard, and the
    # next prefill ran that entry: RuntimeError, where a broadcast would have been a
    # silently wrong result.
    f = framecache.compile(_rotary, backend="eager", cache=False)
    for n in (6, 1, 1, 6, 3, 1, 6, 5):
        p = torch.arange(n)[None]
        torch.testing.assert_close(f(p), _rotary(p))


def test_a_size_of_one_under_dynamic_true_is_static_and_guarded():
    def add_row(x, row):
        return x + row

    f = framecache.compile(add_row, backend="eager", dynamic=True, cache=False)
    x = torch.randn(3, 4)
    for rows in (1, 3, 1):
        row = torch.randn(rows, 4)
        torch.testing.assert_close(f(x, row), x + row)
