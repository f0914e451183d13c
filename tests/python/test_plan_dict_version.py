"""Guards on values read from an object's ``__dict__`` go through DICT_VERSION nodes.

The plan lowers a module's ``__dict__`` and its tables, and a plain object's instance-dict
attributes, to dict nodes that skip their unchanged immutable items
(include/framecache/guards/dict_version.h). These tests check that the lowering uses the
memo and that it stays sound: a change anywhere under an otherwise unchanged tree still
fails the guard, on the compiled path.
"""

from __future__ import annotations

from typing import Any

import pytest

import framecache
from framecache.plan import GuardPlan, guards, materialize, sources


class _Config:
    def __init__(self) -> None:
        self.scale = 2.0
        self.bias = 1.0


CFG = _Config()


def _reads_cfg(x):
    return x * CFG.scale + CFG.bias


def _find(node: Any, source: str) -> Any:
    if node.source == source:
        return node
    for child in node.children():
        found = _find(child, source)
        if found is not None:
            return found
    return None


@pytest.fixture
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


# -- lowering -------------------------------------------------------------------------------


def test_an_instance_dict_attribute_is_shown_as_an_attribute_and_lowered_through_the_dict():
    src = sources.dict_attr(sources.local("cfg"), "scale")
    assert sources.render(src) == "L['cfg'].scale"
    assert sources.python_expr(src) == "cfg.scale"
    plan = GuardPlan()
    plan.add(guards.EqualsMatch(src, 2.0))
    root = materialize(plan)
    node = _find(root, "L['cfg'].__dict__")
    assert node is not None and node.dict_versioned, str(root)
    cfg = _Config()
    assert root.check({"cfg": cfg})
    assert root.check({"cfg": cfg})  # now through the memo
    cfg.scale = 3.0
    assert not root.check({"cfg": cfg})
    cfg.scale = 2.0
    assert root.check({"cfg": cfg})
    del cfg.scale  # no instance entry any more
    assert not root.check({"cfg": cfg})


def test_dicts_read_by_key_are_dict_version_nodes():
    layer = sources.item(sources.obj_dict(sources.local("m")), "_modules")
    plan = GuardPlan()
    plan.add(guards.EqualsMatch(sources.item(sources.obj_dict(sources.local("m")), "k"), 1))
    plan.add(guards.NoneMatch(sources.item(layer, "sub")))
    plan.add(guards.EqualsMatch(sources.item(sources.local("xs"), 0), 1))  # a list: item()
    root = materialize(plan)
    assert _find(root, "L['m'].__dict__").dict_versioned
    assert _find(root, "L['m'].__dict__['_modules']").dict_versioned
    assert not _find(root, "L['xs']").dict_versioned


# -- the compiled path ----------------------------------------------------------------------


def _stack(n: int) -> Any:
    import torch

    class Layer(torch.nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 4) * 0.3)
            self.bias = torch.nn.Parameter(torch.randn(4) * 0.1)
            for k in range(12):
                setattr(self, f"a{k}", i + k)

        def forward(self, x):
            s = (
                self.a0 + self.a1 + self.a2 + self.a3 + self.a4 + self.a5
                + self.a6 + self.a7 + self.a8 + self.a9 + self.a10 + self.a11
            )  # fmt: skip
            return torch.tanh(x @ self.weight + self.bias) + s * 1e-2

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer(i) for i in range(n))

        def forward(self, x):
            for layer in self.layers:
                x = layer(x)
            return x

    torch.manual_seed(0)
    return Stack()


def _layer_dict_node(stack: Any, i: int) -> Any:
    code = type(stack).forward.__code__
    (entry,) = framecache.cache_entries(code)
    return _find(
        entry.guard_manager,
        f"L['self'].__dict__['_modules']['layers'].__dict__['_modules']['{i}'].__dict__",
    )


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_a_hit_reruns_only_the_mutable_items_of_an_unchanged_layer():
    import torch

    stack = _stack(6)
    compiled = framecache.compile(stack, cache=False)
    x = torch.randn(2, 4)
    with torch.no_grad():
        for _ in range(3):
            torch.testing.assert_close(compiled(x), stack(x))
        s = framecache.stats(type(stack).forward)
        assert (s.compiles, s.hits) == (1, 2), s
        node = _layer_dict_node(stack, 3)
        assert node is not None and node.dict_versioned
        # The 12 integers and the training flag are memoised; the tables and hook dicts
        # (mutable) are rerun.
        reruns = node.dict_version_reruns
        assert 0 < reruns < len(node.accessors()) - 12, (reruns, node.accessors())


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
@pytest.mark.parametrize("which", [0, 17, 35])
def test_one_layers_attribute_change_recompiles_in_an_unchanged_tree(which):
    import torch

    stack = _stack(36)
    compiled = framecache.compile(stack, cache=False)
    x = torch.randn(2, 4)
    with torch.no_grad():
        for _ in range(3):  # the memo is recorded by passing checks
            torch.testing.assert_close(compiled(x), stack(x))
        stack.layers[which].a5 = 1000
        torch.testing.assert_close(compiled(x), stack(x))
        s = framecache.stats(type(stack).forward)
        assert s.compiles == 2, s
        assert any(f"['{which}'].__dict__['a5']" in r for r in s.recompile_reasons), s
        # Back to the old value: the first entry serves again, unchanged layers still memoised.
        stack.layers[which].a5 = which + 5
        torch.testing.assert_close(compiled(x), stack(x))
        assert framecache.stats(type(stack).forward).compiles == 2


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_in_place_tensor_and_table_changes_under_an_unchanged_dict_are_seen():
    import torch

    stack = _stack(8)
    compiled = framecache.compile(stack, cache=False)
    x = torch.randn(2, 4)
    for _ in range(3):
        torch.testing.assert_close(compiled(x), stack(x))
    layer = stack.layers[5]
    # requires_grad changes in place: no dict changes.
    layer.weight.requires_grad_(False)
    torch.testing.assert_close(compiled(x), stack(x))
    assert framecache.stats(type(stack).forward).compiles == 2
    # A forward hook goes into a hooks dict: the layer's __dict__ is unchanged.
    handle = layer.register_forward_hook(lambda m, a, out: out * 2)
    try:
        torch.testing.assert_close(compiled(x), stack(x))
    finally:
        handle.remove()
    # Swapping a parameter for another of the same metadata changes only _parameters.
    layer.bias = torch.nn.Parameter(torch.ones(4))
    torch.testing.assert_close(compiled(x), stack(x))
    # Train/eval of one layer.
    stack.layers[2].eval()
    torch.testing.assert_close(compiled(x), stack(x))


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_a_plain_objects_attribute_is_guarded_through_its_dict_and_recompiles():
    import torch

    out = framecache.explain(_reads_cfg, torch.ones(2))
    text = "\n".join(out.guards[0])
    assert "G['CFG'].scale: EQUALS_MATCH 2.0" in text, text
    f = framecache.compile(_reads_cfg, cache=False)
    x = torch.ones(2)
    for _ in range(2):
        torch.testing.assert_close(f(x), x * 2.0 + 1.0)
    CFG.bias = 5.0
    try:
        torch.testing.assert_close(f(x), x * 2.0 + 5.0)
        assert framecache.stats(f).compiles == 2
        # An instance entry shadowed by a class change: the object's class is guarded.
        CFG.__class__ = type("_Other", (_Config,), {"scale": property(lambda self: 7.0)})
        torch.testing.assert_close(f(x), x * 7.0 + 5.0)
    finally:
        CFG.__class__ = _Config
        CFG.bias = 1.0
