"""The recompile limits, dynamo's way: ``accumulated`` caps the entries of one code object;
``limit`` counts the entries compiled for the same identity-guarded objects
(GuardedCode.identity_locals), so a compile per instance of a class is not a recompile."""

from __future__ import annotations

import types
import warnings
from typing import Any

import pytest

import framecache
from framecache import RecompileLimitWarning
from framecache.guards import RootGuardManager


class Layer:
    def __init__(self, scale: int) -> None:
        self.scale = scale


def step(layer: Layer, x: Any) -> Any:
    return x * layer.scale


class IdentitySpecialiser:
    """Compiles ``step`` guarded on the identity of ``layer`` and the type of ``x``, and
    says so through identity_locals (as framecache.compile does for an ID_MATCH on a
    local)."""

    def __init__(self, *, declare: bool = True) -> None:
        self.declare = declare
        self.compiles = 0

    def __call__(self, frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code is not step.__code__:
            return None
        self.compiles += 1
        f_locals = frame.f_locals
        root = RootGuardManager()
        root.local("layer").id_match(f_locals["layer"])
        root.local("x").type_match(type(f_locals["x"]))
        names = ["layer"] if self.declare else []
        return framecache.CallbackResult(
            framecache.GuardedCode(frame.f_code.replace(), root, identity_locals=names)
        )


def test_instances_of_one_class_are_first_compiles_not_recompiles() -> None:
    layers = [Layer(i) for i in range(36)]
    callback = IdentitySpecialiser()
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileLimitWarning)
        with framecache.optimize(callback):
            for layer in layers:
                assert step(layer, 2) == 2 * layer.scale
            for layer in layers:  # all hits now
                assert step(layer, 2) == 2 * layer.scale
    assert callback.compiles == 36
    assert len(framecache.cache_entries(step.__code__)) == 36


def test_without_identity_locals_every_entry_counts() -> None:
    callback = IdentitySpecialiser(declare=False)
    with framecache.optimize(callback), pytest.warns(RecompileLimitWarning) as record:
        for i in range(12):
            step(Layer(i), 2)
    assert callback.compiles == 8
    assert len(record) == 1
    assert "reached the recompile limit (8 compiles)" in str(record[0].message)


def test_the_limit_counts_recompiles_of_one_instance_only() -> None:
    framecache.set_recompile_limit(3)
    callback = IdentitySpecialiser()
    first, second = Layer(2), Layer(3)
    inputs = [1, 1.5, "a", [1], (1,)]
    with framecache.optimize(callback), pytest.warns(RecompileLimitWarning) as record:
        for x in inputs:
            assert step(first, x) == x * 2
        assert callback.compiles == 3  # past 3 entries for `first`: runs uncompiled
        for x in inputs[:3]:
            assert step(second, x) == x * 3
        assert callback.compiles == 6  # `second` has its own count
    assert len(record) == 1
    message = str(record[0].message)
    assert "reached the recompile limit (3 compiles)" in message
    # The warning lists the entries it counted: those of `first`.
    assert message.count("failed:") == 3
    # The code still compiles for others: it did not switch to RUN_ONLY.
    assert framecache.get_code_strategy(step.__code__).cur_action == framecache.FrameAction.DEFAULT


def test_the_accumulated_limit_caps_one_code_object() -> None:
    framecache.set_recompile_limit(8, accumulated=5)
    callback = IdentitySpecialiser()
    with framecache.optimize(callback), pytest.warns(RecompileLimitWarning) as record:
        for i in range(9):
            assert step(Layer(i), 2) == 2 * i
    assert callback.compiles == 5
    assert len(record) == 1
    assert "reached the accumulated recompile limit (5 entries on this code)" in str(
        record[0].message
    )
    assert framecache.get_code_strategy(step.__code__).cur_action == framecache.FrameAction.RUN_ONLY


def make_functions(n: int) -> list[types.FunctionType]:
    """``n`` functions, each with a code object of its own."""
    out = []
    for i in range(n):
        namespace: dict[str, Any] = {}
        exec(f"def f_{i}(x):\n    return x + {i}\n", namespace)
        out.append(namespace[f"f_{i}"])
    return out


def test_the_accumulated_limit_is_per_code_not_per_process() -> None:
    # Before: past 256 compiles across all code, nothing in the process compiled.
    functions = make_functions(300)
    codes = {f.__code__ for f in functions}
    compiled: list[types.CodeType] = []

    def callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
        if frame.f_code not in codes:
            return None
        compiled.append(frame.f_code)
        return framecache.CallbackResult(
            framecache.GuardedCode(frame.f_code.replace(), RootGuardManager())
        )

    framecache.set_recompile_limit(8, accumulated=256)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileLimitWarning)
        with framecache.optimize(callback):
            for i, f in enumerate(functions):
                assert f(1) == 1 + i
    assert len(compiled) == 300
    assert all(len(framecache.cache_entries(f.__code__)) == 1 for f in functions)
    assert framecache.get_recompile_limits()[2] == 300


def test_identity_locals_must_be_strings() -> None:
    with pytest.raises(TypeError):
        framecache.GuardedCode(step.__code__, RootGuardManager(), identity_locals=[1])
    code = framecache.GuardedCode(step.__code__, RootGuardManager(), identity_locals=("layer",))
    assert code.identity_locals == ["layer"]


def test_an_identity_local_that_died_no_longer_counts() -> None:
    framecache.set_recompile_limit(1)
    callback = IdentitySpecialiser()
    with framecache.optimize(callback):
        layer = Layer(1)
        step(layer, 1)
        step(layer, 1)  # its entry ran again: the object was worth a compile
        del layer
        # New instances, one maybe at the dead one's address: first compiles.
        layers = [Layer(i) for i in range(5)]
        with warnings.catch_warnings():
            warnings.simplefilter("error", RecompileLimitWarning)
            for i, other in enumerate(layers):
                assert step(other, 2) == 2 * i
    assert callback.compiles == 6


def test_a_new_object_on_every_call_stops_compiling_at_the_limit() -> None:
    # An __init__, or a cache made per call: each compile pins an object that dies before
    # its entry runs again. Those count, on their own, so that the frame does not compile
    # on every call until the accumulated limit.
    framecache.set_recompile_limit(4, accumulated=256)
    callback = IdentitySpecialiser()
    with framecache.optimize(callback), pytest.warns(RecompileLimitWarning) as record:
        for i in range(20):
            assert step(Layer(i), 2) == 2 * i
    assert callback.compiles == 4
    assert len(record) == 1
    message = str(record[0].message)
    assert "compiles for objects that died before their entry ran again" in message
    assert "expected the object" in message  # why each counted entry failed
    assert framecache.get_code_strategy(step.__code__).cur_action == framecache.FrameAction.RUN_ONLY
    # Objects that live on are still first compiles elsewhere: another code is unaffected.
    assert framecache.get_code_strategy(Layer.__init__.__code__).cur_action != (
        framecache.FrameAction.RUN_ONLY
    )


@pytest.mark.torch
def test_compiling_36_instances_of_one_layer_class_warns_nothing() -> None:
    import torch

    layers = [torch.nn.Linear(4, 4) for _ in range(36)]

    def apply(layer: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
        return layer(x)

    compiled = framecache.compile(apply)
    x = torch.ones(2, 4)
    with warnings.catch_warnings():
        warnings.simplefilter("error", RecompileLimitWarning)
        for layer in layers:
            torch.testing.assert_close(compiled(layer, x), layer(x))
        # Whether the guards tell the layers apart (by identity) or share one entry,
        # none was a recompile past the limit: each layer now hits an entry.
        hits_before = sum(e.hit_count for e in framecache.cache_entries(apply.__code__))
        for layer in layers:
            torch.testing.assert_close(compiled(layer, x), layer(x))
    hits_after = sum(e.hit_count for e in framecache.cache_entries(apply.__code__))
    assert hits_after - hits_before == 36
