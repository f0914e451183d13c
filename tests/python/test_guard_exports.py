"""Guard exports: the values a passing check hands on to the cached code.

A node marked ``export(slot)`` gives the root the value it checked; a hit moves those
values into the compiled code's locals instead of the code reading the same paths again.
The tree-level tests need no torch; the end-to-end ones compile modules.
"""

from __future__ import annotations

import types
from typing import Any

import pytest

from framecache.guards import RootGuardManager


class Obj:
    """A plain object whose attributes live in its instance dict."""

    def __init__(self, **kw: Any) -> None:
        self.__dict__.update(kw)


def exporting_tree() -> RootGuardManager:
    """L['o'].__dict__['w'] (export 0, an identity guard) and ['k'] (export 1, == 3)."""
    root = RootGuardManager()
    d = root.local("o").obj_dict().dict_version()
    d.dict_item("w").type_match(list).export(0)
    d.dict_item("k").equals_match(3).export(1)
    return root


def test_a_passing_check_hands_on_each_value_once() -> None:
    root = exporting_tree()
    o = Obj(w=[1], k=3)
    assert root.num_exports == 2
    assert root.check({"o": o})
    got = root.take_exports()
    assert got is not None and got[0] is o.w and got[1] == 3
    assert root.take_exports() is None  # moved out
    assert root.check({"o": o})
    assert root.take_exports() == (o.w, 3)


def test_unchanged_dict_still_reaches_every_export() -> None:
    """An immutable item under an unchanged dict is normally skipped (DICT_VERSION);
    an exported one is reached by every check."""
    root = exporting_tree()
    o = Obj(w=[1], k=3)
    for _ in range(3):
        assert root.check({"o": o})
        assert root.take_exports() == (o.w, 3)
    o.w = [2]  # a new object under the same key: the export follows it
    assert root.check({"o": o})
    exports = root.take_exports()
    assert exports is not None and exports[0] is o.w


def test_failed_check_gives_nothing_and_keeps_nothing() -> None:
    import gc
    import weakref

    class Box:
        pass

    root = RootGuardManager()
    d = root.local("o").obj_dict().dict_version()
    d.dict_item("w").type_match(Box).export(0)  # reached first ...
    d.dict_item("k").equals_match(3)  # ... then this fails
    o = Obj(w=Box(), k=4)
    ref = weakref.ref(o.w)
    assert not root.check({"o": o})
    assert root.take_exports() is None
    del o
    gc.collect()
    assert ref() is None  # the tree holds no reference to what it saw


def test_a_check_overlapped_by_another_gives_no_exports() -> None:
    """A guard that runs Python may check the same tree again: neither check's values
    are handed on from the outer one (the slots may hold the inner one's)."""
    root = RootGuardManager()
    depth = [0]

    def nested(value: object) -> bool:
        depth[0] += 1
        try:
            if depth[0] == 1:
                assert root.check({"o": o})
            return True
        finally:
            depth[0] -= 1

    d = root.local("o").obj_dict().dict_version()
    d.dict_item("w").type_match(list).export(0)
    d.dict_item("k").lambda_guard(nested, "nested check")
    o = Obj(w=[1], k=3)
    assert root.check({"o": o})
    assert root.take_exports() is None
    depth[0] = 1  # no nesting now
    assert root.check({"o": o})
    assert root.take_exports() == (o.w,)


def test_export_arguments_are_checked() -> None:
    root = RootGuardManager()
    node = root.local("o").attr("w")
    node.export(0)
    node.export(0)  # the same slot again: no change
    with pytest.raises(ValueError, match="already export 0"):
        node.export(1)
    with pytest.raises(ValueError, match="already"):
        root.local("o").attr("v").export(0)
    with pytest.raises(ValueError, match="non-negative"):
        root.local("o").attr("u").export(-1)
    with pytest.raises(ValueError, match="root"):
        root.export(0)
    assert "EXPORT(0)" in str(root)
    assert node.export_slot == 0


# --- end to end: compiled modules --------------------------------------------------


def _stack(n: int = 3) -> Any:
    """A Stack of n Layers (a weight and a bias each), built once torch is imported."""
    import torch

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(4, 4))
            self.bias = torch.nn.Parameter(torch.randn(4))

        def forward(self, x: Any) -> Any:
            return torch.tanh(x @ self.weight + self.bias)

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(n))

        def forward(self, x: Any) -> Any:
            for layer in self.layers:
                x = layer(x)
            return x

    return Stack()


def _compiled_stack() -> tuple[Any, Any, Any]:
    """A seeded 3-layer Stack, an input, and framecache.compile of it (eager backend)."""
    import torch

    import framecache

    torch.manual_seed(0)
    stack = _stack()
    return stack, torch.randn(2, 4), framecache.compile(stack, backend="eager", cache=False)


def _entry(code: types.CodeType) -> Any:
    import framecache

    (entry,) = framecache.cache_entries(code)
    return entry


@pytest.mark.torch
def test_compiled_module_exports_its_parameters() -> None:
    import torch

    import framecache

    stack, x, compiled = _compiled_stack()
    Stack = type(stack)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), stack(x))
        root = _entry(Stack.forward.__code__).guard_manager
        assert root.num_exports == 6  # three layers' weight and bias
        for _ in range(3):
            torch.testing.assert_close(compiled(x), stack(x))
        # A swapped parameter with the same metadata passes the guards: the hit runs on
        # the new one (the value the guards just checked), not on a stale copy.
        stack.layers[1].weight = torch.nn.Parameter(torch.randn(4, 4))
        torch.testing.assert_close(compiled(x), stack(x))
        stack.layers[2].bias.data.mul_(3.0)
        torch.testing.assert_close(compiled(x), stack(x))
    assert framecache.stats(Stack.forward).compiles == 1


@pytest.mark.torch
def test_compiled_module_without_exports_reads_its_parameters() -> None:
    """When a hit cannot hand the exports on (a check of the same tree overlapped it),
    the compiled code reads the parameters from their paths itself, with the same result."""
    import torch

    import framecache

    stack, x, compiled = _compiled_stack()
    Stack = type(stack)
    with torch.no_grad():
        compiled(x)
        root = _entry(Stack.forward.__code__).guard_manager
        calls = [0]

        def check_again(value: object) -> bool:
            calls[0] += 1
            if calls[0] % 2 == 1:  # nest once per outer check
                root.check({"self": stack, "x": x}, Stack.forward.__globals__)
            return True

        root.local("self").lambda_guard(check_again, "checks the tree again")
        hits = framecache.stats(Stack.forward).hits
        for _ in range(3):
            torch.testing.assert_close(compiled(x), stack(x))
        assert framecache.stats(Stack.forward).hits == hits + 3
        assert calls[0] >= 6  # every hit's check nested another one
        stack.layers[0].weight = torch.nn.Parameter(torch.randn(4, 4))
        torch.testing.assert_close(compiled(x), stack(x))


def test_export_locals_must_fit_the_code() -> None:
    import framecache
    from framecache import _C

    def f(x: int) -> int:
        y = x
        return y

    root = RootGuardManager()
    root.local("x").equals_match(1).export(0)

    def answering(names: list[str]) -> Any:
        def callback(frame: Any, entry: Any, state: Any) -> Any:
            if frame.f_code is not f.__code__:
                return None  # pytest's own frames: run as they are
            return _C.CallbackResult(_C.GuardedCode(f.__code__, root, export_locals=names))

        return callback

    for names, message in (
        (["y", "x"], "not an argument"),
        (["y"], "expected 2 names"),
        (["y", "z"], "not a local"),
        (["y", "y"], "named twice"),
    ):
        previous = framecache.set_eval_frame(answering(names))
        try:
            with pytest.raises(ValueError, match=message):
                f(1)
        finally:
            framecache.set_eval_frame(previous)
        _C.reset_code(f.__code__)
