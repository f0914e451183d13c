"""Tree-level behaviour of guard trees.

Fail-fast reordering, check() and check_verbose() agreeing, num_guards_executed,
introspection and printing, builder argument errors, DICT_VERSION skipping, checks
from many threads at once, and user code that raises or mutates while a guard runs.
"""

from __future__ import annotations

import inspect
import sys
import threading
import time
import types
from collections import OrderedDict
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from framecache.guards import GuardDebugInfo, GuardManager, RootGuardManager


def verbose(root: RootGuardManager, f_locals: dict[str, Any]) -> GuardDebugInfo:
    """check_verbose(), after checking that check() gives the same answer."""
    info = root.check_verbose(f_locals)
    assert root.check(f_locals) is info.result
    assert info.result == (not info.failures)
    return info


class Config:
    """A plain object with two attributes."""

    def __init__(self, mode: str = "fast", depth: int = 2) -> None:
        self.mode = mode
        self.depth = depth


class Counter:
    """A LAMBDA guard body that counts its calls and passes."""

    def __init__(self) -> None:
        self.calls = 0

    def __call__(self, value: object) -> bool:
        self.calls += 1
        return True


# --- fail-fast reordering -------------------------------------------------------


def test_a_failing_accessor_moves_first_and_leaves_keep_their_order() -> None:
    root = RootGuardManager()
    x = root.local("x")
    x.type_match(Config)
    x.not_none()
    x.attr("mode").equals_match("fast")
    x.attr("depth").equals_match(2)
    leaves = x.leaf_guards()
    assert x.accessors() == ["GetAttr('mode')", "GetAttr('depth')"]

    assert not root.check({"x": Config(depth=3)})
    assert x.accessors() == ["GetAttr('depth')", "GetAttr('mode')"]
    assert x.fail_counts() == [1, 0]

    # mode must fail more often than depth did to overtake it.
    assert not root.check({"x": Config(mode="slow")})
    assert x.accessors() == ["GetAttr('depth')", "GetAttr('mode')"]
    assert not root.check({"x": Config(mode="slow")})
    assert x.accessors() == ["GetAttr('mode')", "GetAttr('depth')"]
    assert x.fail_counts() == [2, 1]
    assert x.leaf_guards() == leaves
    assert root.check({"x": Config()})


def test_reordering_applies_to_the_root_and_to_every_level() -> None:
    root = RootGuardManager()
    root.local("a").equals_match(1)
    b = root.local("b")
    b.dict_item("p").equals_match(1)
    b.dict_item("q").equals_match(2)
    assert root.accessors() == ["FrameLocal('a')", "FrameLocal('b')"]
    assert not root.check({"a": 1, "b": {"p": 1, "q": 3}})
    assert root.accessors() == ["FrameLocal('b')", "FrameLocal('a')"]
    assert b.accessors() == ["DictItem('q')", "DictItem('p')"]
    assert root.check({"a": 1, "b": {"p": 1, "q": 2}})


def test_failure_moves_past_every_accessor_that_failed_less() -> None:
    root = RootGuardManager()
    x = root.local("x")
    for i in range(5):
        x.list_item(i).equals_match(i)
    values = [0, 1, 2, 3, 4]
    assert root.check({"x": values})
    assert not root.check({"x": [0, 1, 2, 3, 9]})
    assert x.accessors()[0] == "ListItem(4)"
    assert x.accessors()[1:] == [f"ListItem({i})" for i in range(4)]


def test_check_verbose_does_not_reorder() -> None:
    root = RootGuardManager()
    x = root.local("x")
    x.attr("mode").equals_match("fast")
    x.attr("depth").equals_match(2)
    info = root.check_verbose({"x": Config(depth=3)})
    assert not info.result
    assert x.accessors() == ["GetAttr('mode')", "GetAttr('depth')"]
    assert x.fail_counts() == [0, 0]


# --- check vs check_verbose, num_guards_executed --------------------------------


def mixed_tree() -> RootGuardManager:
    root = RootGuardManager()
    x = root.local("x")
    x.type_match(Config)
    x.attr("mode").equals_match("fast")
    x.attr("depth").equals_match(2)
    y = root.local("y")
    y.type_match(list)
    y.length_check(2)
    y.list_item(0).equals_match("a")
    y.list_item(1).type_().id_match(int)
    root.local("z").dict_item("k").none_match()
    return root


GOOD = {"x": Config(), "y": ["a", 1], "z": {"k": None}}


@pytest.mark.parametrize(
    ("f_locals", "expected"),
    [
        (GOOD, []),
        ({**GOOD, "x": Config(mode="slow")}, ["L['x'].mode: expected 'fast', got 'slow'"]),
        (
            {**GOOD, "x": Config(mode="slow", depth=3)},
            ["L['x'].mode: expected 'fast', got 'slow'", "L['x'].depth: expected 2, got 3"],
        ),
        (
            {**GOOD, "y": ["b", "c"]},
            [
                "L['y'][0]: expected 'a', got 'b'",
                "type(L['y'][1]): expected the object <class 'int'>, got a different object "
                "<class 'str'>",
            ],
        ),
        ({**GOOD, "z": {}}, ["L['z']['k']: no key 'k' in a dict of 0 items"]),
        (
            {"x": 1, "y": ["a", 1], "z": {"k": None}},
            [
                "L['x']: expected type Config, got int",
                "L['x'].mode: could not read attribute 'mode' of an int "
                "(AttributeError: 'int' object has no attribute 'mode')",
                "L['x'].depth: could not read attribute 'depth' of an int "
                "(AttributeError: 'int' object has no attribute 'depth')",
            ],
        ),
        ({"y": ["a", 1], "z": {"k": None}}, ["L['x']: local 'x' is not bound"]),
    ],
)
def test_check_and_check_verbose_agree(f_locals: dict[str, Any], expected: list[str]) -> None:
    root = mixed_tree()
    info = verbose(root, f_locals)
    assert info.failures == expected
    assert bool(info) is (not expected)


def test_num_guards_executed() -> None:
    root = mixed_tree()
    assert root.num_guards() == 8
    assert verbose(root, GOOD).num_guards_executed == 8
    # Verbose checks go on past a failure, so every reachable leaf runs.
    assert verbose(root, {**GOOD, "x": Config(mode="slow")}).num_guards_executed == 8
    # Leaves below a value that cannot be fetched do not run.
    assert verbose(root, {**GOOD, "z": {}}).num_guards_executed == 7
    assert verbose(root, {**GOOD, "y": ["a"]}).num_guards_executed == 7
    assert verbose(root, {"z": {"k": None}}).num_guards_executed == 1


# --- introspection --------------------------------------------------------------


def test_introspection_of_nodes() -> None:
    root = RootGuardManager()
    x = root.local("x")
    x.type_match(Config).not_none()
    mode = x.attr("mode")
    mode.equals_match("fast")
    x.generic_attr("depth").type_match(int)
    assert x.source == "L['x']"
    assert x.leaf_guards() == [("TYPE_MATCH", "TYPE_MATCH(Config)"), ("NOT_NONE", "NOT_NONE")]
    assert x.accessors() == ["GetAttr('mode')", "GenericGetAttr('depth')"]
    assert [c.source for c in x.children()] == [
        "L['x'].mode",
        "object.__getattribute__(L['x'], 'depth')",
    ]
    assert x.children()[0].leaf_guards() == [("EQUALS_MATCH", "EQUALS_MATCH('fast')")]
    assert x.num_guards() == 4
    assert repr(x) == "<GuardManager L['x'] (4 guards)>"
    assert repr(root) == "<RootGuardManager (4 guards)>"
    assert root.children()[0].source == "L['x']"
    assert isinstance(root.children()[0], GuardManager)


def test_the_tree_prints_as_readable_text() -> None:
    root = RootGuardManager()
    self_ = root.local("self")
    self_.type_match(Config)
    layer = self_.attr("layers").list_item(3)
    layer.attr("weight").type_match(float)
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("mode").equals_match("fast")
    assert str(root) == (
        "RootGuardManager\n"
        "  +- FrameLocal('self')\n"
        "    L['self']\n"
        "      | TYPE_MATCH(Config)\n"
        "      +- GetAttr('layers')\n"
        "        L['self'].layers\n"
        "          +- ListItem(3)\n"
        "            L['self'].layers[3]\n"
        "              +- GetAttr('weight')\n"
        "                L['self'].layers[3].weight\n"
        "                  | TYPE_MATCH(float)\n"
        "  +- FrameLocal('cfg')\n"
        "    L['cfg']\n"
        "      | DICT_VERSION (unchanged immutable items are not rechecked)\n"
        "      +- DictItem('mode')\n"
        "        L['cfg']['mode']\n"
        "          | EQUALS_MATCH('fast')\n"
    )
    assert str(layer) == (
        "L['self'].layers[3]\n"
        "  +- GetAttr('weight')\n"
        "    L['self'].layers[3].weight\n"
        "      | TYPE_MATCH(float)\n"
    )


def test_failure_reasons_are_built_only_when_asked_for() -> None:
    """check() never renders a value: only check_verbose() calls repr() for its message."""
    reprs: list[str] = []

    class Loud:
        def __repr__(self) -> str:
            reprs.append("repr")
            return "<Loud>"

        def __len__(self) -> int:
            return 3

    token = object()
    root = RootGuardManager()
    x = root.local("x")
    x.id_match(token)
    y = root.local("y")
    y.length_check(2)
    root.local("z").type_match(int)
    root.local("missing").type_match(int)
    f_locals = {"x": Loud(), "y": Loud(), "z": Loud()}
    for _ in range(3):
        assert not root.check(f_locals)
    assert reprs == []
    info = root.check_verbose(f_locals)
    assert len(info.failures) == 4
    assert reprs  # the verbose path did describe the values
    assert "L['missing']: local 'missing' is not bound" in info.failures


# --- builder argument errors ----------------------------------------------------


def on_node(method: str, *args: Any) -> Callable[[], object]:
    """Calls ``method`` on a fresh node L['x']."""
    return lambda: getattr(RootGuardManager().local("x"), method)(*args)


def on_root(method: str, *args: Any) -> Callable[[], object]:
    """Calls ``method`` on a fresh root."""
    return lambda: getattr(RootGuardManager(), method)(*args)


VALUE_ACCESSORS_WITHOUT_ARGS = [
    "type_",
    "obj_dict",
    "type_dict",
    "func_defaults",
    "func_kwdefaults",
    "func_code",
    "weakref_call",
]


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (on_node("attr", 1), TypeError, r"attr\(\) expects a str name, got int"),
        (on_node("attr", ""), ValueError, r"attr\(\) expects a non-empty name"),
        (on_node("attr", b"x"), TypeError, r"attr\(\) expects a str name, got bytes"),
        (on_node("generic_attr", None), TypeError, r"generic_attr\(\) expects a str name"),
        (on_node("generic_attr", ""), ValueError, r"generic_attr\(\) expects a non-empty name"),
        (on_node("dict_item", []), TypeError, r"dict_item\(\) expects a hashable key, got list"),
        (on_node("dict_item", {}), TypeError, r"dict_item\(\) expects a hashable key, got dict"),
        (on_node("list_item", "0"), TypeError, r"list_item\(\) expects an int index, got str"),
        (on_node("list_item", 1.0), TypeError, r"list_item\(\) expects an int index, got float"),
        (on_node("list_item", True), TypeError, r"list_item\(\) expects an int index, got bool"),
        (on_node("list_item", 2**80), ValueError, r"list_item\(\) index \d+ is out of range"),
        (on_node("tuple_item", None), TypeError, r"tuple_item\(\) expects an int index"),
        (on_node("tuple_item", -(2**80)), ValueError, r"tuple_item\(\) index -\d+ is out of"),
        (on_node("closure_cell", -1), ValueError, r"closure_cell\(\) expects a non-negative"),
        (on_node("closure_cell", "0"), TypeError, r"closure_cell\(\) expects an int index"),
        (on_node("closure_cell", 2**70), ValueError, r"closure_cell\(\) index \d+ is out of"),
        (on_node("attr"), TypeError, r"attr\(\): incompatible function arguments"),
        (on_node("type_", 1), TypeError, r"type_\(\): incompatible function arguments"),
        (on_node("dict_version", 1), TypeError, r"dict_version\(\): incompatible"),
        (on_root("attr", "x"), TypeError, r"attr\(\) reads from a value, and the root has none"),
        (on_root("generic_attr", "x"), TypeError, r"generic_attr\(\) reads from a value"),
        (on_root("item", 0), TypeError, r"item\(\) reads from a value, and the root has none"),
        (on_root("dict_item", "k"), TypeError, r"dict_item\(\) reads from a value"),
        (on_root("list_item", 0), TypeError, r"list_item\(\) reads from a value"),
        (on_root("tuple_item", 0), TypeError, r"tuple_item\(\) reads from a value"),
        (on_root("closure_cell", 0), TypeError, r"closure_cell\(\) reads from a value"),
        (on_root("dict_version"), TypeError, r"dict_version\(\) needs a node whose value"),
        (on_root("type_match", int), ValueError, r"TYPE_MATCH guards a value, and the root"),
        (on_root("equals_match", 1), ValueError, r"EQUALS_MATCH guards a value, and the root"),
        (on_root("local", 1), TypeError, r"local\(\) expects a str name, got int"),
        (on_root("local", ""), ValueError, r"local\(\) expects a non-empty name"),
        (on_root("global_", None), TypeError, r"global_\(\) expects a str name"),
        (on_root("builtin", ""), ValueError, r"builtin\(\) expects a non-empty name"),
        (on_root("check", [1]), TypeError, r"check\(\) expects f_locals as a dict, got list"),
        (on_root("check", {}, 1), TypeError, r"check\(\) expects f_globals as a dict, got int"),
        (on_root("check_verbose", 1), TypeError, r"check\(\) expects f_locals as a dict"),
        (lambda: RootGuardManager(f_globals=[]), TypeError, r"expects a dict, got list"),
    ]
    + [
        (on_root(m), TypeError, rf"{m}\(\) reads from a value, and the root has none")
        for m in VALUE_ACCESSORS_WITHOUT_ARGS
    ]
    + [
        (on_node(m, "extra"), TypeError, rf"{m}\(\): incompatible function arguments")
        for m in VALUE_ACCESSORS_WITHOUT_ARGS
    ],
)
def test_builder_argument_errors(
    call: Callable[[], object], error: type[Exception], match: str
) -> None:
    with pytest.raises(error, match=match):
        call()


def test_builder_errors_leave_the_tree_unchanged() -> None:
    root = RootGuardManager()
    x = root.local("x")
    with pytest.raises(TypeError):
        x.dict_item([])
    with pytest.raises(ValueError):
        x.list_item(2**80)
    assert x.accessors() == []
    assert root.check({"x": 1})


def test_a_tree_cannot_grow_while_it_is_being_checked() -> None:
    root = RootGuardManager()
    errors: list[BaseException] = []

    def grow(value: object) -> bool:
        try:
            root.local("late").not_none()
        except RuntimeError as e:
            errors.append(e)
            raise
        return True

    root.local("x").lambda_guard(grow)
    assert not root.check({"x": 1})
    assert "while it is being checked" in str(errors[0])
    assert root.local_names() == ["x"]


# --- DICT_VERSION ---------------------------------------------------------------


def versioned_tree() -> tuple[RootGuardManager, GuardManager]:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.type_match(dict)
    cfg.dict_item("mode").equals_match("fast")
    cfg.dict_item("depth").equals_match(2)
    cfg.dict_item("dims").tuple_item(0).equals_match(3)
    return root, cfg


def executed(root: RootGuardManager, f_locals: dict[str, Any]) -> int:
    return verbose(root, f_locals).num_guards_executed


def test_dict_version_skips_unchanged_immutable_items() -> None:
    root, _ = versioned_tree()
    d = {"mode": "fast", "depth": 2, "dims": (3, 4)}
    assert executed(root, {"cfg": d}) == 4
    # Only the leaf on the dict node itself runs now.
    assert executed(root, {"cfg": d}) == 1
    assert executed(root, {"cfg": d}) == 1
    d["depth"] = 3
    assert executed(root, {"cfg": d}) == 4
    assert not root.check({"cfg": d})
    d["depth"] = 2
    assert executed(root, {"cfg": d}) == 4
    assert executed(root, {"cfg": d}) == 1


def test_dict_version_learns_from_check_too() -> None:
    root, _ = versioned_tree()
    d = {"mode": "fast", "depth": 2, "dims": (3, 4)}
    assert root.check({"cfg": d})
    assert root.check_verbose({"cfg": d}).num_guards_executed == 1


def test_dict_version_rechecks_a_different_dict_with_the_same_contents() -> None:
    root, _ = versioned_tree()
    d = {"mode": "fast", "depth": 2, "dims": (3, 4)}
    assert executed(root, {"cfg": d}) == 4
    assert executed(root, {"cfg": dict(d)}) == 4
    assert not root.check({"cfg": {**d, "mode": "slow"}})


def test_dict_version_changed_dict_rechecks_every_item() -> None:
    root, _ = versioned_tree()
    d = {"mode": "fast", "depth": 2, "dims": (3, 4)}
    assert executed(root, {"cfg": d}) == 4
    d["unrelated"] = object()
    assert executed(root, {"cfg": d}) == 4
    del d["unrelated"]
    assert executed(root, {"cfg": d}) == 4
    assert executed(root, {"cfg": d}) == 1


def test_dict_version_never_skips_a_failing_item_into_a_pass() -> None:
    root, _ = versioned_tree()
    d = {"mode": "slow", "depth": 2, "dims": (3, 4)}
    for _ in range(3):
        info = verbose(root, {"cfg": d})
        assert info.failures == ["L['cfg']['mode']: expected 'fast', got 'slow'"]
    d["mode"] = "fast"
    assert root.check({"cfg": d})


def test_dict_version_always_checks_mutable_items() -> None:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    counter = Counter()
    cfg.dict_item("layers").lambda_guard(counter)
    cfg.dict_item("layers").list_item(0).equals_match(1)
    d = {"layers": [1, 2]}
    for n in range(1, 4):
        assert root.check({"cfg": d})
        assert counter.calls == n
    d["layers"][0] = 5  # the dict is unchanged, its item is not
    assert not root.check({"cfg": d})


def test_dict_version_does_not_skip_subtrees_with_python_guards() -> None:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    counter = Counter()
    cfg.dict_item("n").lambda_guard(counter)
    d = {"n": 3}
    for n in range(1, 4):
        assert root.check({"cfg": d})
        assert counter.calls == n


def test_dict_version_does_not_skip_relational_members() -> None:
    root = RootGuardManager()
    item = root.local("cfg").dict_version().dict_item("obj")
    item.type_match(int)
    root.object_aliasing(item, root.local("y"))
    big = 10**30
    other = 10**30 + 0 * int("1")
    assert other == big and other is not big
    d = {"obj": big}
    assert root.check({"cfg": d, "y": big})
    for _ in range(3):
        assert not root.check({"cfg": d, "y": other})


def test_adding_a_guard_drops_what_dict_version_learned() -> None:
    root, cfg = versioned_tree()
    d = {"mode": "fast", "depth": 2, "dims": (3, 4)}
    assert executed(root, {"cfg": d}) == 4
    assert executed(root, {"cfg": d}) == 1
    cfg.dict_item("mode").type_match(str)
    assert executed(root, {"cfg": d}) == 5
    root.local("other").not_none()
    assert executed(root, {"cfg": d, "other": 1}) == 6
    assert executed(root, {"cfg": d, "other": 1}) == 2


def test_dict_version_with_a_dict_changed_during_the_check() -> None:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("a").equals_match(1)

    def touch(d: dict[str, Any]) -> bool:
        d["tick"] = d.get("tick", 0) + 1
        return True

    cfg.lambda_guard(touch)  # a leaf on the dict node: runs first, changes the dict
    d = {"a": 1}
    for _ in range(3):
        info = verbose(root, {"cfg": d})
        assert info.num_guards_executed == 2


def test_dict_version_needs_an_exact_dict() -> None:
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("a").equals_match(1)
    od = OrderedDict(a=1)
    assert executed(root, {"cfg": od}) == 1
    assert executed(root, {"cfg": od}) == 1
    assert not root.check({"cfg": [1]})
    assert root.local("cfg").dict_versioned
    assert not root.local("cfg").dict_item("a").dict_versioned


def memo_tree(n: int = 12) -> tuple[RootGuardManager, GuardManager, Counter, dict[str, Any]]:
    """A dict node over n int items and one list item that a LAMBDA guard watches."""
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    for i in range(n):
        cfg.dict_item(f"a{i}").equals_match(i)
    counter = Counter()
    cfg.dict_item("layers").lambda_guard(counter)
    d: dict[str, Any] = {f"a{i}": i for i in range(n)}
    d["layers"] = [1]
    return root, cfg, counter, d


def test_dict_version_node_memo_skips_the_immutable_items_at_once() -> None:
    root, cfg, counter, d = memo_tree()
    assert cfg.dict_version_reruns == -1
    assert root.check({"cfg": d})
    # The next pass over the same unchanged dict runs only the mutable item.
    assert cfg.dict_version_reruns == 1
    for n in range(2, 6):
        assert root.check({"cfg": d})
        assert counter.calls == n
        assert cfg.dict_version_reruns == 1
    d["a3"] = 4
    assert not root.check({"cfg": d})
    assert cfg.dict_version_reruns == -1
    d["a3"] = 3
    assert root.check({"cfg": d})
    assert cfg.dict_version_reruns == 1
    # Another dict with the same contents has another tag: walked in full.
    assert not root.check({"cfg": {**d, "a0": 7}})
    assert root.check({"cfg": dict(d)})


def test_dict_version_node_memo_reruns_mutable_items_and_fails_with_them() -> None:
    root, cfg, counter, d = memo_tree(3)
    assert root.check({"cfg": d})
    assert root.check({"cfg": d})
    assert counter.calls == 2
    failing = [False]
    cfg.dict_item("layers").lambda_guard(lambda v: not failing[0])
    # Adding a guard dropped the memo; it is learned again.
    assert cfg.dict_version_reruns == -1
    assert root.check({"cfg": d})
    assert cfg.dict_version_reruns == 1
    failing[0] = True
    assert not root.check({"cfg": d})
    assert cfg.dict_version_reruns == -1
    failing[0] = False
    assert root.check({"cfg": d})


def test_dict_version_node_memo_when_a_rerun_changes_the_dict() -> None:
    # A mutable item's guard runs Python that breaks an item the memo would skip:
    # the node notices the dict changed under it and walks it in full.
    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("a0").equals_match(0)
    calls = [0]

    def tamper(value: object) -> bool:
        calls[0] += 1
        if calls[0] == 2:
            d["a0"] = 99
        return True

    cfg.dict_item("layers").lambda_guard(tamper)
    d: dict[str, Any] = {"a0": 0, "layers": []}
    assert root.check({"cfg": d})
    assert cfg.dict_version_reruns == 1
    assert not root.check({"cfg": d})
    d["a0"] = 0
    assert root.check({"cfg": d})


def hooks_tree() -> tuple[RootGuardManager, GuardManager]:
    """A module-like dict: two hook dicts (DICT_LENGTH), a plain dict of known keys
    (MAPPING_KEYS_MATCH) and an OrderedDict whose key order is guarded."""
    root = RootGuardManager()
    mod = root.local("mod").dict_version()
    mod.dict_item("_forward_hooks").dict_length(0)
    mod.dict_item("_hooks_plain").dict_length(0)
    mod.dict_item("_buffers").mapping_keys_match(["a", "b"])
    mod.dict_item("_ordered").mapping_keys_match(["x", "y"])
    return root, mod


def hooks_dict() -> dict[str, Any]:
    return {
        "_forward_hooks": OrderedDict(),
        "_hooks_plain": {},
        "_buffers": {"a": 1, "b": 2},
        "_ordered": OrderedDict(x=1, y=2),
    }


def test_dict_items_read_only_for_their_contents_are_answered_by_their_own_tag() -> None:
    root, mod = hooks_tree()
    d = hooks_dict()
    assert root.check({"mod": d})
    # The OrderedDict whose key order is guarded is rerun; the other three are frozen.
    assert (mod.dict_version_reruns, mod.dict_version_frozen_items) == (1, 3)
    for _ in range(3):
        assert root.check({"mod": d})
    assert executed(root, {"mod": d}) > 0  # verbose checks walk everything
    d["_forward_hooks"][1] = print  # a hook added: its dict's tag changes
    assert not root.check({"mod": d})
    del d["_forward_hooks"][1]
    assert root.check({"mod": d})
    d["_buffers"]["c"] = 3
    assert not root.check({"mod": d})
    del d["_buffers"]["c"]
    assert root.check({"mod": d})
    d["_buffers"].pop("a")
    d["_buffers"]["a"] = 1  # same keys, another order: a change of its tag
    assert not root.check({"mod": d})
    d["_buffers"] = {"a": 1, "b": 2}  # the module dict changes: walked in full
    assert root.check({"mod": d})
    d["_ordered"].move_to_end("x")  # reorders without changing the tag
    assert not root.check({"mod": d})
    d["_ordered"].move_to_end("y")
    assert root.check({"mod": d})


def test_a_dict_item_with_keys_that_are_not_constants_is_rerun() -> None:
    class Key:
        pass

    root = RootGuardManager()
    mod = root.local("mod").dict_version()
    mod.dict_item("_hooks").dict_length(1)
    d = {"_hooks": {Key(): 1}}
    assert root.check({"mod": d})
    assert (mod.dict_version_reruns, mod.dict_version_frozen_items) == (1, 0)


def rerun_then_item(
    d: dict[str, Any], change: Callable[[], Any]
) -> tuple[RootGuardManager, GuardManager, Callable[[], None]]:
    """A DICT_VERSION node over ``d``: a LAMBDA guard on d['_first'] (a list) that runs
    ``change`` once the list's first element is set, ahead of the guard the caller adds
    on a later item. Returns the root, the node and the switch that arms it."""

    def body(value: Any) -> bool:
        if value[0]:
            change()
        return True

    root = RootGuardManager()
    mod = root.local("mod").dict_version()
    mod.dict_item("_first").lambda_guard(body)

    def arm() -> None:
        d["_first"][0] = 1  # in place: the module's dict keeps its tag until change() runs

    return root, mod, arm


def test_a_rerun_that_removes_a_frozen_item_fails_the_check_safely() -> None:
    """A rerun ahead of a frozen item may run Python that changes the module's dict and
    frees that item: the node notices the dict changed before reading the item's tag."""
    d: dict[str, Any] = {"_first": [0], "_hooks": {}}
    root, mod, arm = rerun_then_item(d, lambda: d.pop("_hooks", None))
    mod.dict_item("_hooks").dict_length(0)
    assert root.check({"mod": d})
    assert (mod.dict_version_reruns, mod.dict_version_frozen_items) == (1, 1)
    arm()
    assert not root.check({"mod": d})


def test_a_rerun_that_replaces_a_later_item_has_that_item_fetched_again() -> None:
    """Reruns check a remembered item without looking its key up again, only while the
    node's dict keeps its tag: an item replaced by an earlier rerun is read anew."""
    d: dict[str, Any] = {"_first": [0], "_second": []}
    root, mod, arm = rerun_then_item(d, lambda: d.__setitem__("_second", [1, 2]))
    mod.dict_item("_second").length_check(0)
    assert root.check({"mod": d})
    assert root.check({"mod": d})
    assert mod.dict_version_reruns == 2
    arm()
    assert not root.check({"mod": d})


def test_dict_version_node_memo_on_an_instance_dict() -> None:
    class Layer:
        def __init__(self) -> None:
            self.width = 8
            self.name = "l0"
            self.items: list[int] = []

    layer = Layer()
    root = RootGuardManager()
    node = root.local("layer")
    node.type_match(Layer)
    attrs = node.obj_dict().dict_version()
    attrs.dict_item("width").equals_match(8)
    attrs.dict_item("name").equals_match("l0")
    attrs.dict_item("items").length_check(0)
    for _ in range(3):
        assert root.check({"layer": layer})
    if sys.version_info < (3, 13):
        # 3.13 keeps an instance's attributes in inline values that its __dict__
        # shares and stores to them without notifying: such dicts get no tag.
        assert attrs.dict_version_reruns == 1
    layer.items.append(1)  # the dict is unchanged, its list item is not
    assert not root.check({"layer": layer})
    layer.items.clear()
    assert root.check({"layer": layer})
    layer.width = 9
    assert not root.check({"layer": layer})
    layer.width = 8
    assert root.check({"layer": layer})
    assert not root.check({"layer": Layer.__new__(Layer)})


def test_dict_version_on_a_type_dict() -> None:
    class Model:
        LIMIT = 3

    root = RootGuardManager()
    td = root.local("cls").type_dict().dict_version()
    td.dict_item("LIMIT").equals_match(3)
    assert executed(root, {"cls": Model}) == 1
    assert executed(root, {"cls": Model}) == 0
    Model.LIMIT = 4
    assert not root.check({"cls": Model})


# --- check()'s own entry point -----------------------------------------------------
# RootGuardManager.check is a METH_FASTCALL method rather than a pybind11 binding;
# its arguments must behave like any Python method's.


def test_check_arguments_by_position_and_keyword() -> None:
    root = RootGuardManager()
    root.local("x").type_match(int)
    root.global_("G").equals_match(1)
    assert root.check({"x": 1}, {"G": 1}) is True
    assert root.check(f_locals={"x": 1}, f_globals={"G": 1}) is True
    assert root.check({"x": 1}, f_globals={"G": 2}) is False
    assert root.check({"x": 1}, None) is False  # no globals: the global guard fails
    assert RootGuardManager.check(root, {"x": 1}, {"G": 1}) is True
    assert "every guard passes" in (RootGuardManager.check.__doc__ or "")
    assert str(inspect.signature(RootGuardManager.check)) == "(self, /, f_locals, f_globals=None)"


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda r: r.check(), TypeError, r"missing required argument 'f_locals'"),
        (lambda r: r.check({}, {}, {}), TypeError, r"at most 2 arguments \(3 given\)"),
        (lambda r: r.check({}, x=1), TypeError, r"unexpected keyword argument 'x'"),
        (lambda r: r.check({}, f_locals={}), TypeError, r"multiple values for argument 'f_locals'"),
        (lambda r: r.check(f_globals={}), TypeError, r"missing required argument 'f_locals'"),
        (lambda r: r.check(None), TypeError, r"expects f_locals as a dict, got NoneType"),
        (lambda r: r.check({}, []), TypeError, r"expects f_globals as a dict, got list"),
        (lambda r: RootGuardManager.check(object(), {}), TypeError, r"'check' .* 'object'"),
        (
            lambda r: RootGuardManager.check(RootGuardManager.__new__(RootGuardManager), {}),
            TypeError,
            r"root is not initialised",
        ),
    ],
)
def test_check_argument_errors(
    call: Callable[[RootGuardManager], object], error: type, match: str
) -> None:
    root = RootGuardManager()
    with pytest.raises(error, match=match):
        call(root)


def test_check_propagates_fatal_errors_and_works_on_subclasses() -> None:
    class Boom:
        def __getattr__(self, name: str) -> Any:
            raise KeyboardInterrupt

    class MyRoot(RootGuardManager):
        pass

    root = MyRoot()
    root.local("x").attr("a").not_none()
    with pytest.raises(KeyboardInterrupt):
        root.check({"x": Boom()})
    assert root.check({"x": types.SimpleNamespace(a=1)}) is True


# --- threads --------------------------------------------------------------------


class SlowAttrs:
    """Attributes served by a __getattr__ that lets the GIL go."""

    def __init__(self, value: int) -> None:
        self._value = value

    def __getattr__(self, name: str) -> int:
        time.sleep(0)
        if name == "value":
            return self._value
        raise AttributeError(name)


class SleepyIsTwo:
    """A LAMBDA body that lets the GIL go and records how many threads are inside it."""

    def __init__(self) -> None:
        self.inside = 0
        self.most_inside = 0

    def __call__(self, value: object) -> bool:
        self.inside += 1
        self.most_inside = max(self.most_inside, self.inside)
        try:
            time.sleep(0)
            return value == 2
        finally:
            self.inside -= 1


@pytest.fixture
def fast_switching() -> Iterator[None]:
    previous = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        yield
    finally:
        sys.setswitchinterval(previous)


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_checks_of_one_root() -> None:
    root = RootGuardManager()
    root.local("x").attr("value").equals_match(1)
    sleepy = SleepyIsTwo()
    root.local("y").lambda_guard(sleepy, "y == 2 (sleeps)")
    cfg = root.local("z").dict_version()
    cfg.dict_item("k").equals_match("v")
    cfg.dict_item("t").tuple_item(1).equals_match(5)
    root.local("w").list_item(-1).type_().id_match(float)

    shared_z = {"k": "v", "t": (4, 5)}
    cases: list[tuple[dict[str, Any], list[str]]] = [
        ({"x": SlowAttrs(1), "y": 2, "z": shared_z, "w": [1.5]}, []),
        (
            {"x": SlowAttrs(0), "y": 2, "z": shared_z, "w": [1.5]},
            ["L['x'].value: expected 1, got 0"],
        ),
        (
            {"x": SlowAttrs(1), "y": 3, "z": shared_z, "w": [1.5]},
            ["L['y']: LAMBDA guard failed: y == 2 (sleeps) (returned False)"],
        ),
        (
            {"x": SlowAttrs(1), "y": 2, "z": {"k": "v", "t": (4, 6)}, "w": [1.5]},
            ["L['z']['t'][1]: expected 5, got 6"],
        ),
        (
            {"x": SlowAttrs(1), "y": 2, "z": shared_z, "w": [1]},
            [
                "type(L['w'][-1]): expected the object <class 'float'>, got a different "
                "object <class 'int'>"
            ],
        ),
    ]
    n_threads = 8
    rounds = 150
    barrier = threading.Barrier(n_threads)
    errors: list[str] = []

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(rounds):
            f_locals, expected = cases[(i + k) % len(cases)]
            passed = root.check(f_locals)
            if passed is not (not expected):
                errors.append(f"thread {k} round {i}: check() gave {passed}, want {not expected}")
            if i % 5 == k % 5:
                info = root.check_verbose(f_locals)
                if list(info.failures) != expected:
                    errors.append(f"thread {k} round {i}: {info.failures} != {expected}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert sleepy.most_inside > 1  # checks of the one root really overlapped
    for f_locals, expected in cases:
        assert verbose(root, f_locals).failures == expected


class PlainA:
    def __init__(self, v: int) -> None:
        self.v = v


class PlainB:
    def __init__(self, v: int) -> None:
        self.w = 0
        self.v = v


class Lazy:
    def __init__(self, v: int) -> None:
        self.v = v

    def __getattr__(self, name: str) -> int:
        time.sleep(0)  # lets the GIL go in the middle of a check
        return 1


@pytest.mark.usefixtures("fast_switching")
def test_concurrent_checks_through_the_attr_fast_path() -> None:
    """Threads checking one root with values of ever-changing types: the accessors'
    instance-attribute caches are re-learnt under them and every answer stays right."""
    root = RootGuardManager()
    root.local("o").attr("v").equals_match(1)
    root.local("o").attr("u").equals_match(1)  # found only through Lazy.__getattr__
    cases = [
        (Lazy(1), True),
        (Lazy(2), False),
        (PlainA(1), False),  # no attribute u
        (PlainB(1), False),
    ]
    plain = RootGuardManager()
    plain.local("o").attr("v").equals_match(1)
    plain_cases = [(PlainA(1), True), (PlainB(1), True), (PlainA(2), False), (Lazy(1), True)]
    n_threads = 6
    barrier = threading.Barrier(n_threads)
    errors: list[str] = []

    def worker(k: int) -> None:
        barrier.wait()
        for i in range(300):
            obj, want = cases[(i + k) % len(cases)]
            if root.check({"o": obj}) is not want:
                errors.append(f"thread {k} round {i}: {type(obj).__name__} gave {not want}")
            obj, want = plain_cases[(i * 7 + k) % len(plain_cases)]
            if plain.check({"o": obj}) is not want:
                errors.append(f"thread {k} round {i}: plain {type(obj).__name__}")

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(n_threads)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []


# --- user code that raises or mutates -------------------------------------------


class Raising:
    """Every attribute and item read raises."""

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"no {name} today")

    def __getitem__(self, key: object) -> Any:
        raise ValueError(f"no item {key!r}")


def test_getattr_and_getitem_that_raise_fail_the_guard() -> None:
    root = RootGuardManager()
    x = root.local("x")
    x.attr("a").not_none()
    x.item("k").not_none()
    assert verbose(root, {"x": Raising()}).failures == [
        "L['x'].a: could not read attribute 'a' of a Raising (RuntimeError: no a today)",
        "L['x']['k']: could not get item 'k' of a Raising (ValueError: no item 'k')",
    ]


def test_a_getattr_that_empties_a_list_being_checked() -> None:
    items: list[Any] = []

    class Clearing:
        def __getattr__(self, name: str) -> int:
            items.clear()
            return 1

    root = RootGuardManager()
    lst = root.local("lst")
    lst.list_item(0).attr("a").equals_match(1)
    lst.list_item(1).equals_match(2)
    items.extend([Clearing(), 2])
    info = root.check_verbose({"lst": items})
    assert info.failures == ["L['lst'][1]: index 1 out of range for a list of length 0"]
    items.extend([Clearing(), 2])
    assert not root.check({"lst": items})
    assert items == []


def test_a_getattr_that_mutates_a_dict_being_checked() -> None:
    d: dict[str, Any] = {}

    class Mutating:
        def __getattr__(self, name: str) -> int:
            d.clear()
            d.update({f"k{i}": i for i in range(50)})
            return 1

    root = RootGuardManager()
    cfg = root.local("cfg").dict_version()
    cfg.dict_item("obj").attr("a").equals_match(1)
    cfg.dict_item("n").equals_match(3)
    d.update(obj=Mutating(), n=3)
    # obj's __getattr__ replaces the dict's contents (and drops obj itself) before
    # n is read: n is gone.
    assert not root.check({"cfg": d})
    assert verbose(root, {"cfg": d}).failures == [
        "L['cfg']['n']: no key 'n' in a dict of 50 items",
        "L['cfg']['obj']: no key 'obj' in a dict of 50 items",
    ]


def test_a_getattr_that_deletes_the_object_being_checked() -> None:
    holder: dict[str, Any] = {}

    class SelfDeleting:
        def __getattr__(self, name: str) -> int:
            holder.clear()
            return 7

    root = RootGuardManager()
    node = root.local("h").dict_item("obj")
    node.attr("a").equals_match(7)
    node.attr("b").equals_match(7)
    holder["obj"] = SelfDeleting()
    assert root.check({"h": holder})


def test_a_guard_that_checks_the_same_tree_again() -> None:
    root = RootGuardManager()
    inner_results: list[bool] = []
    depth = [0]

    def reenter(value: object) -> bool:
        depth[0] += 1
        try:
            if depth[0] == 1:
                inner_results.append(root.check({"x": 0, "y": 2}))
            return True
        finally:
            depth[0] -= 1

    root.local("x").lambda_guard(reenter)
    root.local("y").equals_match(1)
    assert root.check({"x": 0, "y": 1})
    # The nested check failed on y while the outer one was still running: the
    # nested one must not reorder the tree under the outer walk.
    assert inner_results == [False]
    assert root.accessors() == ["FrameLocal('x')", "FrameLocal('y')"]
    assert root.fail_counts() == [0, 1]


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_fatal_exceptions_in_getattr_propagate(fatal: type[BaseException]) -> None:
    class Interrupting:
        def __getattr__(self, name: str) -> Any:
            raise fatal()

    root = RootGuardManager()
    root.local("x").attr("a").not_none()
    with pytest.raises(fatal):
        root.check({"x": Interrupting()})
    with pytest.raises(fatal):
        root.check_verbose({"x": Interrupting()})
    assert root.check({"x": Config()}) is False
    ok = Config()
    ok.a = 1  # type: ignore[attr-defined]
    assert root.check({"x": ok})


def test_keyboard_interrupt_in_getitem_below_a_dict_version_node() -> None:
    class Interrupting:
        def __getitem__(self, key: object) -> Any:
            raise KeyboardInterrupt

    root = RootGuardManager()
    root.local("cfg").dict_version().dict_item("obj").item(0).not_none()
    with pytest.raises(KeyboardInterrupt):
        root.check({"cfg": {"obj": Interrupting()}})
    with pytest.raises(KeyboardInterrupt):
        root.check_verbose({"cfg": {"obj": Interrupting()}})
    assert root.check({"cfg": {"obj": [1]}})


def test_an_unchanged_dict_skips_the_node_s_own_content_leaves() -> None:
    """A module's _parameters: its keys guarded on the node, its tensors below it. While
    the dict keeps its tag the keys cannot have changed: only the items run."""
    root = RootGuardManager()
    params = root.local("params").dict_version()
    params.type_match(dict).dict_length(2).mapping_keys_match(["weight", "bias"])
    counter = Counter()
    params.dict_item("weight").lambda_guard(counter)
    params.dict_item("bias").lambda_guard(counter)
    d: dict[str, Any] = {"weight": [1], "bias": [2]}
    assert params.dict_version_skips_leaves == -1
    assert root.check({"params": d})
    assert params.dict_version_skips_leaves == 1
    for n in range(2, 5):
        assert root.check({"params": d})
        assert counter.calls == 2 * n  # the items still run on every check
    d["extra"] = [3]
    assert not root.check({"params": d})
    del d["extra"]
    assert root.check({"params": d})
    d.pop("weight")
    d["weight"] = [1]  # the same keys in another order: the keys guard runs and fails
    assert not root.check({"params": d})
    assert root.check({"params": {"weight": [1], "bias": [2]}})


def test_leaves_that_read_more_than_the_contents_always_run() -> None:
    class Key:
        pass

    root = RootGuardManager()
    node = root.local("d").dict_version()
    node.dict_length(1)
    node.lambda_guard(lambda d: True)
    assert root.check({"d": {"a": 1}})
    assert node.dict_version_skips_leaves == 0
    root = RootGuardManager()
    node = root.local("d").dict_version()
    node.dict_length(1)
    assert root.check({"d": {Key(): 1}})
    assert node.dict_version_skips_leaves == 0  # keys that are not constants


def test_skipped_leaves_run_when_a_rerun_changes_the_dict() -> None:
    """A rerun runs Python that adds a key: the node's leaves, skipped while the dict
    had its remembered tag, run after all and fail."""
    d: dict[str, Any] = {"_first": [0]}
    root, mod, arm = rerun_then_item(d, lambda: d.__setitem__("_added", 1))
    mod.mapping_keys_match(["_first"])
    assert root.check({"mod": d})
    assert root.check({"mod": d})
    assert mod.dict_version_skips_leaves == 1
    arm()
    assert not root.check({"mod": d})
    del d["_added"]
    d["_first"][0] = 0
    assert root.check({"mod": d})
