"""Accessors of guard trees: each one's passing path, failing path and verbose message.

An accessor fetches a child value from its node's value (an attribute, an item, a
function's closure cell, ...). Its child node's source composes from the parent's, so a
failure names the whole path, e.g. ``L['self'].layers[3].weight: ...``.
"""

from __future__ import annotations

import collections
import gc
import sys
import types
import weakref
from typing import Any

import pytest

from framecache.guards import RootGuardManager


def failures(root: RootGuardManager, f_locals: dict[str, Any]) -> list[str]:
    """check_verbose()'s failures, after checking that check() agrees with it."""
    info = root.check_verbose(f_locals)
    assert root.check(f_locals) is info.result
    assert info.result == (not info.failures)
    return list(info.failures)


class Config:
    """A plain object with an instance __dict__."""

    def __init__(self, mode: str = "fast", depth: int = 2) -> None:
        self.mode = mode
        self.depth = depth


# --- local, global_, builtin ---------------------------------------------------------


def test_local_passes_fails_and_explains_an_unbound_local() -> None:
    root = RootGuardManager()
    root.local("x").type_match(int)
    assert root.check({"x": 1})
    assert failures(root, {"x": "a"}) == ["L['x']: expected type int, got str"]
    assert failures(root, {"y": 1}) == ["L['x']: local 'x' is not bound"]


def test_global_reads_the_globals_given_or_bound() -> None:
    root = RootGuardManager()
    g = root.global_("LIMIT")
    g.equals_match(3)
    assert g.source == "G['LIMIT']"
    assert root.accessors() == ["GlobalsItem('LIMIT')"]
    assert root.check({}, {"LIMIT": 3})
    assert not root.check({}, {"LIMIT": 4})
    assert root.check_verbose({}, {"LIMIT": 4}).failures == ["G['LIMIT']: expected 3, got 4"]
    assert root.check_verbose({}, {}).failures == ["G['LIMIT']: global 'LIMIT' is not defined"]
    assert root.check_verbose({}).failures == [
        "G['LIMIT']: no globals to check against "
        "(ValueError: no globals were given to check global guards against)"
    ]
    bound = RootGuardManager(f_globals={"LIMIT": 3})
    bound.global_("LIMIT").equals_match(3)
    assert bound.check({})
    assert not bound.check({}, {"LIMIT": 5})  # globals passed win over the bound ones


def test_builtin_reads_the_globals_builtins() -> None:
    import builtins

    root = RootGuardManager()
    b = root.builtin("len")
    b.id_match(len)
    assert b.source == "B['len']"
    assert root.check({}, {"__builtins__": builtins})
    assert root.check({}, {"__builtins__": {"len": len}})
    assert root.check_verbose({}, {"__builtins__": {"len": print}}).failures == [
        "B['len']: expected the object <built-in function len>, got a different object "
        "<built-in function print>"
    ]
    assert root.check_verbose({}, {"__builtins__": {}}).failures == [
        "B['len']: builtin 'len' is not defined"
    ]


# --- attr -----------------------------------------------------------------------


def test_attr_passes_and_fails_on_the_attribute_value() -> None:
    root = RootGuardManager()
    root.local("cfg").attr("mode").equals_match("fast")
    assert root.check({"cfg": Config("fast")})
    assert failures(root, {"cfg": Config("slow")}) == ["L['cfg'].mode: expected 'fast', got 'slow'"]


def test_attr_missing_attribute_fails_with_the_lookup_error() -> None:
    root = RootGuardManager()
    root.local("cfg").attr("mode").equals_match("fast")
    assert failures(root, {"cfg": object()}) == [
        "L['cfg'].mode: could not read attribute 'mode' of an object "
        "(AttributeError: 'object' object has no attribute 'mode')"
    ]


def test_attr_runs_getattr_and_properties() -> None:
    class Lazy:
        @property
        def size(self) -> int:
            return 4

        def __getattr__(self, name: str) -> str:
            return "computed-" + name

    root = RootGuardManager()
    x = root.local("x")
    x.attr("size").equals_match(4)
    x.attr("other").equals_match("computed-other")
    assert root.check({"x": Lazy()})


def test_attr_source_of_a_name_that_is_not_an_identifier() -> None:
    obj = Config()
    setattr(obj, "not valid", 1)
    setattr(obj, "class", 2)
    root = RootGuardManager()
    x = root.local("x")
    assert x.attr("not valid").source == "getattr(L['x'], 'not valid')"
    assert x.attr("class").source == "getattr(L['x'], 'class')"
    x.attr("not valid").equals_match(1)
    x.attr("class").equals_match(2)
    assert root.check({"x": obj})


# --- generic_attr ---------------------------------------------------------------


class Wrapper:
    """Overrides both attribute hooks and counts how often they run."""

    def __init__(self, inner: int) -> None:
        object.__setattr__(self, "calls", [])
        object.__setattr__(self, "inner", inner)

    def __getattribute__(self, name: str) -> Any:
        object.__getattribute__(self, "calls").append(("getattribute", name))
        if name == "inner":
            return "overridden"
        return object.__getattribute__(self, name)

    def __getattr__(self, name: str) -> str:
        object.__getattribute__(self, "calls").append(("getattr", name))
        return "from __getattr__"


def test_generic_attr_reads_the_instance_dict_without_the_overrides() -> None:
    w = Wrapper(7)
    root = RootGuardManager()
    node = root.local("w").generic_attr("inner")
    node.equals_match(7)
    assert node.source == "object.__getattribute__(L['w'], 'inner')"
    assert root.check({"w": w})
    assert object.__getattribute__(w, "calls") == []
    # attr() goes through the overrides: a different value, and user code ran.
    other = RootGuardManager()
    other.local("w").attr("inner").equals_match("overridden")
    assert other.check({"w": w})
    assert object.__getattribute__(w, "calls") == [("getattribute", "inner")]


def test_generic_attr_does_not_fall_back_to_getattr() -> None:
    w = Wrapper(7)
    root = RootGuardManager()
    root.local("w").generic_attr("missing").equals_match("from __getattr__")
    assert failures(root, {"w": w}) == [
        "object.__getattribute__(L['w'], 'missing'): object.__getattribute__ found no "
        "attribute 'missing' on a Wrapper (a __getattr__ is not consulted) "
        "(AttributeError: 'Wrapper' object has no attribute 'missing')"
    ]
    assert object.__getattribute__(w, "calls") == []


def test_generic_attr_finds_class_attributes_and_descriptors() -> None:
    class WithClassAttr:
        LIMIT = 3

        @property
        def doubled(self) -> int:
            return 2 * self.LIMIT

    root = RootGuardManager()
    x = root.local("x")
    x.generic_attr("LIMIT").equals_match(3)
    x.generic_attr("doubled").equals_match(6)
    assert root.check({"x": WithClassAttr()})


# --- attr's direct read of instance storage ----------------------------------------
# attr() and generic_attr() read a plain instance's attribute straight from its
# storage once they have seen its type (instance_attr.h). These check that the guard
# still sees exactly what getattr sees after every change that must turn that off.


def _guarded_x(expected: object, generic: bool = False) -> RootGuardManager:
    root = RootGuardManager()
    node = root.local("o")
    (node.generic_attr("x") if generic else node.attr("x")).equals_match(expected)
    return root


@pytest.mark.parametrize("generic", [False, True])
def test_attr_fast_path_follows_class_changes(generic: bool) -> None:
    class C:
        def __init__(self) -> None:
            self.x = "instance"

    o = C()
    root = _guarded_x("instance", generic)
    for _ in range(3):
        assert root.check({"o": o})
    C.x = "class attribute"  # a non-data class attribute: the instance still wins
    assert root.check({"o": o})
    C.x = property(lambda self: "property")  # a data descriptor shadows the instance
    assert not root.check({"o": o})
    assert _guarded_x("property", generic).check({"o": o})
    del C.x
    assert root.check({"o": o})


def test_attr_fast_path_sees_a_descriptor_class_gaining_set() -> None:
    class Descr:
        def __get__(self, obj: object, owner: object = None) -> str:
            return "descriptor"

    class C:
        x = Descr()

        def __init__(self) -> None:
            self.__dict__["x"] = "instance"

    o = C()
    root = _guarded_x("instance")
    assert root.check({"o": o})
    Descr.__set__ = lambda self, obj, value: None  # now a data descriptor
    assert o.x == "descriptor"
    assert not root.check({"o": o})


def test_attr_fast_path_after_dict_replaced_or_deleted() -> None:
    class C:
        def __init__(self, x: object) -> None:
            self.x = x

    a, b = C(1), C(1)
    root = _guarded_x(1)
    assert root.check({"o": a})
    a.__dict__["x"] = 2  # the values move to a real dict
    assert not root.check({"o": a})
    a.__dict__ = {"x": 1}
    assert root.check({"o": a})
    del b.x
    assert failures(root, {"o": b}) == [
        "L['o'].x: could not read attribute 'x' of a C "
        "(AttributeError: 'C' object has no attribute 'x')"
    ]
    C.x = 1  # now found on the class
    assert root.check({"o": b})


def test_attr_fast_path_with_slots_getattr_class_assignment_and_modules() -> None:
    class Slotted:
        __slots__ = ("x",)

    class Lazy:
        def __getattr__(self, name: str) -> str:
            return "lazy"

    class Plain:
        pass

    class Other:
        pass

    s = Slotted()
    s.x = 1
    lazy, plain = Lazy(), Plain()
    lazy.x = 1
    plain.x = 1
    root = _guarded_x(1)
    for o in (s, lazy, plain, s, lazy, plain):
        assert root.check({"o": o})
    del lazy.x
    assert _guarded_x("lazy").check({"o": lazy})
    assert not root.check({"o": lazy})
    plain.__class__ = Other
    assert root.check({"o": plain})
    mod = types.ModuleType("m")
    mod.x = 1
    assert root.check({"o": mod})
    mod.x = 2
    assert not root.check({"o": mod})
    ns = types.SimpleNamespace(x=1)
    assert root.check({"o": ns})
    del ns.x
    assert not root.check({"o": ns})


# --- type_, obj_dict, type_dict -------------------------------------------------


def test_type_accessor() -> None:
    root = RootGuardManager()
    node = root.local("x").type_()
    node.id_match(int)
    assert node.source == "type(L['x'])"
    assert root.check({"x": 3})
    [message] = failures(root, {"x": "3"})
    assert message.startswith("type(L['x']): expected the object <class 'int'>")


def test_obj_dict_accessor() -> None:
    root = RootGuardManager()
    d = root.local("cfg").obj_dict()
    assert d.source == "L['cfg'].__dict__"
    d.dict_item("mode").equals_match("fast")
    assert d.dict_item("mode").source == "L['cfg'].__dict__['mode']"
    assert root.check({"cfg": Config("fast")})
    assert failures(root, {"cfg": Config("slow")}) == [
        "L['cfg'].__dict__['mode']: expected 'fast', got 'slow'"
    ]


def test_obj_dict_fails_without_an_instance_dict() -> None:
    class Slotted:
        __slots__ = ("mode",)

    root = RootGuardManager()
    root.local("x").obj_dict().dict_length(0)
    [message] = failures(root, {"x": Slotted()})
    assert message.startswith("L['x'].__dict__: a Slotted has no instance __dict__ (AttributeError")


def test_obj_dict_reads_the_real_dict_not_a_dict_property() -> None:
    class Masked:
        def __init__(self) -> None:
            self.real = 1

        @property
        def __dict__(self) -> dict[str, int]:  # type: ignore[override]
            return {"fake": 2}

    root = RootGuardManager()
    root.local("x").obj_dict().dict_item("real").equals_match(1)
    assert root.check({"x": Masked()})


def test_type_dict_accessor() -> None:
    class Model:
        LIMIT = 3

    root = RootGuardManager()
    td = root.local("cls").type_dict()
    assert td.source == "L['cls'].__dict__"
    td.dict_item("LIMIT").equals_match(3)
    assert root.check({"cls": Model})
    Model.LIMIT = 4
    assert failures(root, {"cls": Model}) == ["L['cls'].__dict__['LIMIT']: expected 3, got 4"]
    assert failures(root, {"cls": 5}) == ["L['cls'].__dict__: expected a type, got an int"]


# --- item, dict_item, list_item, tuple_item -------------------------------------


def test_item_runs_getitem() -> None:
    class Table:
        def __getitem__(self, key: str) -> str:
            return key.upper()

    root = RootGuardManager()
    node = root.local("t").item("ab")
    node.equals_match("AB")
    assert node.source == "L['t']['ab']"
    assert root.check({"t": Table()})
    assert root.check({"t": {"ab": "AB"}})
    assert failures(root, {"t": {}}) == [
        "L['t']['ab']: could not get item 'ab' of a dict (KeyError: 'ab')"
    ]


def test_item_calls_missing_of_a_dict_subclass() -> None:
    root = RootGuardManager()
    root.local("d").item("k").equals_match(0)
    d: collections.defaultdict[str, int] = collections.defaultdict(int)
    assert root.check({"d": d})
    assert "k" in d  # value[key] is what the guard read, with its side effect


def test_item_with_an_int_and_a_slice_key() -> None:
    root = RootGuardManager()
    seq = root.local("s")
    assert seq.item(-1).source == "L['s'][-1]"
    seq.item(-1).equals_match(3)
    seq.item(slice(0, 2)).equals_match((1, 2))
    assert root.check({"s": (1, 2, 3)})
    assert not root.check({"s": (1, 2, 4)})


def test_dict_item_reads_dict_storage_without_getitem() -> None:
    class Loud(dict):  # type: ignore[type-arg]
        def __getitem__(self, key: object) -> object:
            raise AssertionError("dict_item must not call __getitem__")

    root = RootGuardManager()
    node = root.local("cfg").dict_item("mode")
    node.equals_match("fast")
    assert node.source == "L['cfg']['mode']"
    assert root.check({"cfg": {"mode": "fast"}})
    assert root.check({"cfg": Loud(mode="fast")})
    d: collections.defaultdict[str, str] = collections.defaultdict(str)
    assert not root.check({"cfg": d})
    assert "mode" not in d  # __missing__ was not called


def test_dict_item_failure_messages() -> None:
    root = RootGuardManager()
    root.local("cfg").dict_item("mode").equals_match("fast")
    assert failures(root, {"cfg": {"mode": "slow"}}) == [
        "L['cfg']['mode']: expected 'fast', got 'slow'"
    ]
    assert failures(root, {"cfg": {"a": 1, "b": 2}}) == [
        "L['cfg']['mode']: no key 'mode' in a dict of 2 items"
    ]
    assert failures(root, {"cfg": ["mode"]}) == ["L['cfg']['mode']: expected a dict, got a list"]


def test_dict_item_with_non_str_keys() -> None:
    root = RootGuardManager()
    d = root.local("d")
    d.dict_item(1).equals_match("one")
    d.dict_item(("a", 2)).equals_match("pair")
    d.dict_item(None).equals_match("none")
    assert d.dict_item(("a", 2)).source == "L['d'][('a', 2)]"
    assert root.check({"d": {1: "one", ("a", 2): "pair", None: "none"}})
    assert not root.check({"d": {1: "one", ("a", 2): "pair"}})


def test_dict_item_key_whose_hash_raises_fails_the_guard() -> None:
    class BadHash:
        def __hash__(self) -> int:
            raise RuntimeError("no hash today")

    key = BadHash()
    calls = []

    class FlakyHash:
        def __hash__(self) -> int:
            calls.append(1)
            if len(calls) > 1:
                raise RuntimeError("hash failed")
            return 1

    root = RootGuardManager()
    root.local("d").dict_item(FlakyHash()).not_none()
    [message] = failures(root, {"d": {}})
    assert message.endswith("(RuntimeError: hash failed)")
    with pytest.raises(TypeError, match="dict_item\\(\\) expects a hashable key"):
        root.local("d").dict_item(key)


@pytest.mark.parametrize(
    ("kind", "make"),
    [("list", list), ("tuple", tuple)],
)
def test_sequence_items(kind: str, make: Any) -> None:
    root = RootGuardManager()
    seq = root.local("s")
    method = getattr(seq, f"{kind}_item")
    first = method(0)
    last = method(-1)
    first.equals_match(10)
    last.equals_match(30)
    assert first.source == "L['s'][0]"
    assert last.source == "L['s'][-1]"
    assert root.check({"s": make([10, 20, 30])})
    assert root.check({"s": make([10, 30])})  # -1 counts from the end at check time
    assert failures(root, {"s": make([10, 20, 31])}) == ["L['s'][-1]: expected 30, got 31"]
    # [-1] failed the last check(), so fail-fast now checks it first.
    assert seq.accessors() == [f"{kind.title()}Item(-1)", f"{kind.title()}Item(0)"]
    assert failures(root, {"s": make([])}) == [
        f"L['s'][-1]: index -1 out of range for a {kind} of length 0",
        f"L['s'][0]: index 0 out of range for a {kind} of length 0",
    ]
    assert failures(root, {"s": {0: 10}}) == [
        f"L['s'][-1]: expected a {kind}, got a dict",
        f"L['s'][0]: expected a {kind}, got a dict",
    ]
    wrong = tuple if kind == "list" else list
    assert not root.check({"s": wrong([10, 30])})


def test_list_item_ignores_a_subclass_getitem() -> None:
    class Shifted(list):  # type: ignore[type-arg]
        def __getitem__(self, i: Any) -> Any:
            return super().__getitem__(i + 1)

    root = RootGuardManager()
    root.local("s").list_item(0).equals_match("a")
    assert root.check({"s": Shifted(["a", "b"])})


# --- closure_cell, func_defaults, func_kwdefaults, func_code --------------------


def make_closure(value: Any) -> Any:
    def inner() -> Any:
        return value

    return inner


def make_empty_cell() -> Any:
    def inner() -> Any:
        return later

    return inner
    later = 1  # never runs: `later` stays an empty cell


def test_closure_cell() -> None:
    root = RootGuardManager()
    node = root.local("f").closure_cell(0)
    node.equals_match(5)
    assert node.source == "L['f'].__closure__[0].cell_contents"
    assert root.check({"f": make_closure(5)})
    assert failures(root, {"f": make_closure(6)}) == [
        "L['f'].__closure__[0].cell_contents: expected 5, got 6"
    ]
    assert failures(root, {"f": lambda: 1}) == [
        "L['f'].__closure__[0].cell_contents: the function has 0 closure cells, no cell 0"
    ]
    assert failures(root, {"f": make_empty_cell()}) == [
        "L['f'].__closure__[0].cell_contents: closure cell 0 is empty"
    ]
    assert failures(root, {"f": 5}) == [
        "L['f'].__closure__[0].cell_contents: expected a function, got an int"
    ]


def test_function_parts() -> None:
    def f(a: int, b: int = 2, *, k: int = 3) -> int:
        return a + b + k

    def g(a: int) -> int:
        return a

    root = RootGuardManager()
    fn = root.local("f")
    fn.func_defaults().equals_match((2,))
    fn.func_kwdefaults().dict_item("k").equals_match(3)
    fn.func_code().id_match(f.__code__)
    assert fn.func_defaults().source == "L['f'].__defaults__"
    assert fn.func_kwdefaults().source == "L['f'].__kwdefaults__"
    assert fn.func_code().source == "L['f'].__code__"
    assert root.check({"f": f})
    messages = failures(root, {"f": g})
    assert messages[0] == "L['f'].__defaults__: expected a tuple equal to (2,), got NoneType None"
    assert messages[1] == "L['f'].__kwdefaults__['k']: expected a dict, got a NoneType"
    assert messages[2].startswith("L['f'].__code__: expected the object <code object f")
    assert failures(root, {"f": len}) == [
        "L['f'].__defaults__: expected a function, got a builtin_function_or_method",
        "L['f'].__kwdefaults__: expected a function, got a builtin_function_or_method",
        "L['f'].__code__: expected a function, got a builtin_function_or_method",
    ]


def test_func_globals() -> None:
    f = make_closure(1)
    g = types.FunctionType(f.__code__, {"__builtins__": __builtins__}, "g", None, f.__closure__)
    root = RootGuardManager()
    root.local("f").func_globals().id_match(f.__globals__)
    assert root.local("f").func_globals().source == "L['f'].__globals__"
    assert root.check({"f": f})
    assert failures(root, {"f": g})[0].startswith("L['f'].__globals__: expected the object")
    assert failures(root, {"f": 3}) == ["L['f'].__globals__: expected a function, got an int"]


def test_function_parts_look_through_bound_methods() -> None:
    class Holder:
        def method(self, x: int = 9) -> int:
            return x

    root = RootGuardManager()
    root.local("m").func_defaults().equals_match((9,))
    root.local("m").func_code().id_match(Holder.method.__code__)
    assert root.check({"m": Holder().method})


def test_func_defaults_is_none_when_there_are_none() -> None:
    root = RootGuardManager()
    root.local("f").func_defaults().none_match()
    root.local("f").func_kwdefaults().none_match()
    assert root.check({"f": make_closure(1)})


# --- weakref_call ---------------------------------------------------------------


class Target:
    """A weakly referenceable object."""


def test_weakref_call() -> None:
    target = Target()
    ref = weakref.ref(target)
    root = RootGuardManager()
    node = root.local("w").weakref_call()
    node.type_match(Target)
    assert node.source == "L['w']()"
    assert root.check({"w": ref})
    del target
    gc.collect()
    assert failures(root, {"w": ref}) == ["L['w'](): expected type Target, got NoneType"]
    assert failures(root, {"w": 1}) == ["L['w'](): expected a weakref.ref, got an int"]


def test_weakref_call_of_a_dead_referent_is_none() -> None:
    target = Target()
    ref = weakref.ref(target)
    root = RootGuardManager()
    root.local("w").weakref_call().none_match()
    assert not root.check({"w": ref})
    del target
    gc.collect()
    assert root.check({"w": ref})


def test_weakref_call_of_a_subclass_calls_it() -> None:
    class Remembering(weakref.ref):  # type: ignore[type-arg]
        def __call__(self) -> Any:
            return "overridden"

    target = Target()
    root = RootGuardManager()
    root.local("w").weakref_call().equals_match("overridden")
    assert root.check({"w": Remembering(target)})
    assert failures(root, {"w": weakref.proxy(target)}) == [
        "L['w'](): expected a weakref.ref, got a weakref.ProxyType"
    ]


# --- sources compose, accessors are shared --------------------------------------


class Layer:
    """Stands for a module layer holding one parameter."""

    def __init__(self, weight: Any) -> None:
        self.weight = weight


class Net:
    """Stands for a module with a list of layers."""

    def __init__(self, weights: list[Any]) -> None:
        self.layers = [Layer(w) for w in weights]


def test_sources_compose_through_accessors() -> None:
    root = RootGuardManager()
    weight = root.local("self").attr("layers").list_item(3).attr("weight")
    assert weight.source == "L['self'].layers[3].weight"
    weight.type_match(float)
    assert root.check({"self": Net([0.0, 1.0, 2.0, 3.0])})
    assert failures(root, {"self": Net([0.0, 1.0, 2.0, "3"])}) == [
        "L['self'].layers[3].weight: expected type float, got str"
    ]
    assert failures(root, {"self": Net([0.0])}) == [
        "L['self'].layers[3]: index 3 out of range for a list of length 1"
    ]


@pytest.mark.torch
def test_tensor_failure_reads_with_the_full_source() -> None:
    import torch

    root = RootGuardManager()
    root.local("self").attr("layers").list_item(3).attr("weight").tensor_match(torch.zeros(64, 64))
    net = Net([torch.zeros(64, 64) for _ in range(3)] + [torch.zeros(64, 32)])
    [message] = failures(root, {"self": net})
    assert message.startswith("L['self'].layers[3].weight: ")
    assert "size mismatch" in message


def test_the_same_accessor_key_gives_the_same_child() -> None:
    root = RootGuardManager()
    x = root.local("x")
    built = [
        (x.attr("a"), x.attr("a")),
        (x.generic_attr("a"), x.generic_attr("a")),
        (x.type_(), x.type_()),
        (x.obj_dict(), x.obj_dict()),
        (x.type_dict(), x.type_dict()),
        (x.item("k"), x.item("k")),
        (x.item(("k", 1)), x.item(("k", 1))),
        (x.dict_item("k"), x.dict_item("k")),
        (x.dict_item(1), x.dict_item(1)),
        (x.list_item(2), x.list_item(2)),
        (x.tuple_item(-1), x.tuple_item(-1)),
        (x.closure_cell(0), x.closure_cell(0)),
        (x.func_defaults(), x.func_defaults()),
        (x.func_kwdefaults(), x.func_kwdefaults()),
        (x.func_code(), x.func_code()),
        (x.weakref_call(), x.weakref_call()),
    ]
    for first, second in built:
        first.not_none()
        second.not_none()
        assert first.leaf_guards() == [("NOT_NONE", "NOT_NONE")] * 2, first.source
    assert len(x.children()) == len(built)
    # Keys of different types are different accessors, even when they compare equal.
    assert x.dict_item(True).source == "L['x'][True]"
    assert len(x.children()) == len(built) + 1


def test_equal_but_distinct_non_constant_keys_get_their_own_accessor() -> None:
    class Key:
        def __repr__(self) -> str:
            return "Key()"

    root = RootGuardManager()
    x = root.local("x")
    a, b = Key(), Key()
    x.item(a).equals_match(1)
    x.item(b).equals_match(2)
    assert len(x.children()) == 2
    assert root.check({"x": {a: 1, b: 2}})
    assert not root.check({"x": {a: 2, b: 2}})


# --- references -----------------------------------------------------------------


def test_checks_leave_reference_counts_unchanged() -> None:
    target = Target()
    leaf_value = Target()
    holder = Config()
    holder.mode = leaf_value  # type: ignore[assignment]
    fn = make_closure(leaf_value)
    values: dict[str, Any] = {
        "a": holder,
        "d": {"k": leaf_value},
        "l": [leaf_value],
        "t": (leaf_value,),
        "f": fn,
        "w": weakref.ref(target),
        "i": {"k": leaf_value},
    }
    root = RootGuardManager()
    root.local("a").attr("mode").not_none()
    root.local("a").generic_attr("mode").not_none()
    root.local("a").obj_dict().dict_item("mode").not_none()
    root.local("a").type_().type_dict().dict_item("__init__").not_none()
    root.local("d").dict_item("k").not_none()
    root.local("d").dict_item("missing").not_none()
    root.local("l").list_item(0).not_none()
    root.local("l").list_item(5).not_none()
    root.local("t").tuple_item(-1).not_none()
    root.local("f").closure_cell(0).not_none()
    root.local("f").func_code().not_none()
    root.local("f").func_defaults().none_match()
    root.local("w").weakref_call().not_none()
    root.local("i").item("k").not_none()
    root.local("i").item("missing").not_none()
    watched = [leaf_value, target, holder, fn, fn.__code__, values["d"], values["l"]]
    before = [sys.getrefcount(v) for v in watched]
    for _ in range(100):
        assert not root.check(values)
        assert not root.check_verbose(values).result
    assert [sys.getrefcount(v) for v in watched] == before
