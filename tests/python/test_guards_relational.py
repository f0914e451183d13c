"""Relational guards: OBJECT_ALIASING and NO_TENSOR_ALIASING.

A relational guard is one leaf on each of several nodes; it compares the values those
nodes see during one check and is reset after every check. Covers passing, failing and
verbose messages, reset between checks, values that are fresh objects on every fetch,
builder argument errors, and overlapping checks of one tree (a nested check from a
LAMBDA guard, and threads whose guards release the GIL), which must fail rather than
mix their values.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest

from framecache.guards import RootGuardManager


def failures(root: RootGuardManager, f_locals: dict[str, Any]) -> list[str]:
    """check_verbose()'s failures, after checking that check() agrees with it."""
    info = root.check_verbose(f_locals)
    assert root.check(f_locals) is info.result
    assert info.result == (not info.failures)
    return list(info.failures)


class Fresh:
    """Every read of ``.obj`` makes a new object, dropped as soon as the reader does."""

    @property
    def obj(self) -> object:
        return object()


# --- OBJECT_ALIASING ------------------------------------------------------------


def test_object_aliasing_passes_on_the_same_object() -> None:
    root = RootGuardManager()
    assert root.object_aliasing(root.local("a"), root.local("b")) is root
    shared = [1]
    assert root.check({"a": shared, "b": shared})
    assert failures(root, {"a": shared, "b": shared}) == []


def test_object_aliasing_fails_on_equal_but_distinct_objects() -> None:
    root = RootGuardManager()
    root.object_aliasing(root.local("a"), root.local("b"))
    assert failures(root, {"a": [1], "b": [1]}) == [
        "L['b']: L['a'] and L['b'] are not the same object"
    ]


def test_object_aliasing_is_reset_after_every_check() -> None:
    root = RootGuardManager()
    root.object_aliasing(root.local("a"), root.local("b"))
    x, y = object(), object()
    for _ in range(3):
        assert root.check({"a": x, "b": x})
        assert not root.check({"a": x, "b": y})
        assert root.check({"a": y, "b": y})
        assert not root.check_verbose({"a": y, "b": x}).result


def test_object_aliasing_after_an_earlier_guard_failed() -> None:
    root = RootGuardManager()
    a = root.local("a")
    a.type_match(list)
    root.object_aliasing(a, root.local("b"))
    root.local("c").type_match(int)
    shared = [1]
    assert not root.check({"a": shared, "b": shared, "c": "no"})  # stops after L['a']
    assert root.check({"a": shared, "b": shared, "c": 1})
    assert not root.check({"a": shared, "b": [1], "c": 1})


def test_object_aliasing_with_the_source_order_reversed_by_fail_fast() -> None:
    root = RootGuardManager()
    root.object_aliasing(root.local("a"), root.local("b").attr("x"))
    root.local("b").attr("y").type_match(int)

    class Holder:
        def __init__(self, x: object, y: object) -> None:
            self.x, self.y = x, y

    shared = object()
    for _ in range(3):  # L['b'].y fails: L['b']'s accessors get reordered
        assert not root.check({"a": shared, "b": Holder(shared, "not an int")})
    assert root.check({"a": shared, "b": Holder(shared, 1)})
    # L['b'] is now visited first, so the relation fails when it reaches L['a'].
    assert root.accessors() == ["FrameLocal('b')", "FrameLocal('a')"]
    assert failures(root, {"a": shared, "b": Holder(object(), 1)}) == [
        "L['a']: L['a'] and L['b'].x are not the same object"
    ]


def test_object_aliasing_on_fresh_objects_never_passes() -> None:
    # Each fetch makes a new object that its accessor drops right after the check
    # of its node: the guard holds the first until the check ends, so the second
    # can never reuse its address and look "the same".
    root = RootGuardManager()
    root.object_aliasing(root.local("a").attr("obj"), root.local("b").attr("obj"))
    f = Fresh()
    for _ in range(200):
        assert not root.check({"a": f, "b": f})


def test_object_aliasing_introspection() -> None:
    root = RootGuardManager()
    a, b = root.local("a"), root.local("b")
    root.object_aliasing(a, b)
    expected = [("OBJECT_ALIASING", "OBJECT_ALIASING(L['a'], L['b'])")]
    assert a.leaf_guards() == expected
    assert b.leaf_guards() == expected
    assert root.num_guards() == 2
    assert "OBJECT_ALIASING(L['a'], L['b'])" in str(root)


# --- NO_TENSOR_ALIASING ---------------------------------------------------------


def test_no_tensor_aliasing_passes_on_distinct_objects() -> None:
    root = RootGuardManager()
    nodes = [root.local(n) for n in "xyz"]
    assert root.no_tensor_aliasing(nodes) is root
    assert root.check({"x": [1], "y": [1], "z": [1]})


def test_no_tensor_aliasing_fails_on_any_aliased_pair() -> None:
    root = RootGuardManager()
    root.no_tensor_aliasing((root.local("x"), root.local("y"), root.local("z")))
    shared = object()
    assert failures(root, {"x": shared, "y": object(), "z": shared}) == [
        "L['z']: L['x'] and L['z'] are the same object"
    ]
    assert not root.check({"x": object(), "y": shared, "z": shared})
    assert root.check({"x": object(), "y": object(), "z": shared})
    fresh = RootGuardManager()  # no fail-fast reordering yet: visited x, y, z
    fresh.no_tensor_aliasing([fresh.local("x"), fresh.local("y"), fresh.local("z")])
    assert failures(fresh, {"x": shared, "y": shared, "z": shared}) == [
        "L['y']: L['x'] and L['y'] are the same object",
        "L['z']: L['x'] and L['z'] are the same object",
    ]


def test_no_tensor_aliasing_many_sources() -> None:
    root = RootGuardManager()
    names = [f"t{i}" for i in range(100)]
    root.no_tensor_aliasing([root.local(n) for n in names])
    values = {n: object() for n in names}
    for _ in range(3):
        assert root.check(values)
    values["t99"] = values["t3"]
    assert failures(root, values) == ["L['t99']: L['t3'] and L['t99'] are the same object"]
    values["t99"] = object()
    assert root.check(values)
    describe = root.local("t0").leaf_guards()[0][1]
    assert describe.startswith("NO_TENSOR_ALIASING(L['t0'], L['t1'],")
    assert describe.endswith("... 92 more)")


def test_no_tensor_aliasing_on_fresh_objects_always_passes() -> None:
    root = RootGuardManager()
    root.no_tensor_aliasing([root.local("a").attr("obj"), root.local("b").attr("obj")])
    f = Fresh()
    for _ in range(200):
        assert root.check({"a": f, "b": f})


@pytest.mark.torch
def test_no_tensor_aliasing_names_tensors() -> None:
    import torch

    root = RootGuardManager()
    root.no_tensor_aliasing([root.local("x"), root.local("y")])
    t = torch.zeros(2)
    assert root.check({"x": t, "y": torch.zeros(2)})
    assert root.check({"x": t, "y": t.view(2)})  # a view is a distinct tensor object
    assert failures(root, {"x": t, "y": t}) == ["L['y']: L['x'] and L['y'] are the same tensor"]


# --- builder argument errors ----------------------------------------------------


def test_relational_builder_errors() -> None:
    root = RootGuardManager()
    other = RootGuardManager()
    a, b = root.local("a"), root.local("b")
    with pytest.raises(TypeError, match=r"object_aliasing\(\) expects GuardManager nodes"):
        root.object_aliasing(a, "b")
    with pytest.raises(ValueError, match="of another guard tree"):
        root.object_aliasing(a, other.local("b"))
    with pytest.raises(ValueError, match="the root itself"):
        root.object_aliasing(a, root)
    with pytest.raises(ValueError, match=r"got the node L\['a'\] twice"):
        root.object_aliasing(a, a)
    with pytest.raises(TypeError, match=r"a list or tuple of nodes, got .*GuardManager"):
        root.no_tensor_aliasing(a)
    with pytest.raises(ValueError, match="at least two nodes, got 1"):
        root.no_tensor_aliasing([a])
    with pytest.raises(ValueError, match="twice"):
        root.no_tensor_aliasing([a, b, a])
    with pytest.raises(TypeError, match="GuardManager nodes"):
        root.no_tensor_aliasing([a, 3])
    with pytest.raises(AttributeError):
        a.object_aliasing(a, b)  # a method of the root only
    assert root.num_guards() == 0
    assert other.num_guards() == 0
    assert root.check({"a": 1, "b": 1})


def test_relational_guards_cannot_be_added_during_a_check() -> None:
    root = RootGuardManager()
    a, b = root.local("a"), root.local("b")
    errors: list[BaseException] = []

    def grow(value: object) -> bool:
        try:
            root.object_aliasing(a, b)
        except RuntimeError as e:
            errors.append(e)
        return True

    a.lambda_guard(grow, "adds a guard")
    assert root.check({"a": 1, "b": 2})
    assert "while it is being checked" in str(errors[0])
    assert b.leaf_guards() == []


# --- overlapping checks ---------------------------------------------------------


def test_a_nested_check_of_the_same_tree_fails_the_relation() -> None:
    root = RootGuardManager()
    a, b = root.local("a"), root.local("b")
    inner: list[bool] = []
    started: list[bool] = []
    shared = object()

    def reenter(value: object) -> bool:
        if not started:  # once: the nested check must not re-enter again
            started.append(True)
            inner.append(root.check({"a": shared, "b": shared}))
        return True

    # L['a'] is recorded, then a leaf of L['b'] that runs before L['b']'s
    # member checks the whole tree again.
    b.lambda_guard(reenter, "re-enters")
    root.object_aliasing(a, b)
    assert root.check({"a": shared, "b": shared}) is False
    assert inner == [False]
    # The overlap is over: the next checks are judged on their own values again.
    assert root.check({"a": shared, "b": shared})
    assert not root.check({"a": shared, "b": object()})


def test_a_nested_check_never_mixes_values_with_the_outer_one() -> None:
    root = RootGuardManager()
    # Visited in this order: L['a'] (recorded), L['c'] (checks the tree again), L['b'].
    a, c, b = root.local("a"), root.local("c"), root.local("b")
    root.object_aliasing(a, b)
    seen: list[bool] = []
    started: list[bool] = []
    x = object()

    def reenter(value: object) -> bool:
        # The inner check has a == b; the outer has a != b. Mixing the inner's
        # L['a'] with the outer's L['b'] (or the reverse) would pass one of them.
        if not started:
            started.append(True)
            seen.append(root.check({"a": x, "b": x}))
        return True

    c.lambda_guard(reenter, "re-enters")
    assert not root.check({"a": object(), "b": object(), "c": 0})
    assert seen == [False]
    assert root.check({"a": x, "b": x, "c": 0})


def test_threads_checking_one_tree_never_mix_values() -> None:
    root = RootGuardManager()
    a, b = root.local("a"), root.local("b")
    root.object_aliasing(a, b)
    p, m, q = root.local("p"), root.local("m"), root.local("q")
    root.no_tensor_aliasing([p, q])

    def sleepy(value: object) -> bool:
        time.sleep(0.0005)  # lets the GIL go mid-check
        return True

    # Between the two members of each relation, a guard that releases the GIL.
    a.lambda_guard(sleepy, "sleeps")
    m.lambda_guard(sleepy, "sleeps")
    wrong: list[str] = []
    results: dict[bool, int] = {True: 0, False: 0}
    lock = threading.Lock()

    def worker(seed: int) -> None:
        shared = object()
        for i in range(40):
            good = (seed + i) % 2 == 0
            if good:
                f_locals = {"a": shared, "b": shared, "m": 0, "p": object(), "q": object()}
            else:
                f_locals = {"a": shared, "b": object(), "m": 0, "p": shared, "q": shared}
            ok = root.check(f_locals)
            with lock:
                results[ok] += 1
                if ok and not good:
                    wrong.append(f"thread {seed} iteration {i}")

    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(previous)
    assert wrong == []
    assert results[True] + results[False] == 160
    shared = object()
    assert root.check({"a": shared, "b": shared, "m": 0, "p": object(), "q": object()})
