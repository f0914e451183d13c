"""Non-tensor leaf guards: each kind's passing path, failing path and verbose message.

Covers LENGTH_CHECK, DICT_LENGTH, DICT_CONTAINS, MAPPING_KEYS_MATCH, NO_HASATTR,
FLOAT_IS_NAN, EQUALS_MATCH's exactness (signed zeros, element types, NaN),
RANGE_ITERATOR_MATCH, TUPLE_ITERATOR_LEN and LAMBDA; their builder argument errors;
and user code (__len__, __eq__, __hash__, __getattr__, __bool__, ...) that raises,
raises a fatal exception, or mutates the value under check.
"""

from __future__ import annotations

import math
import types
from collections import OrderedDict
from collections.abc import Iterator
from typing import Any

import pytest

from framecache.guards import GuardManager, RootGuardManager


def failures(root: RootGuardManager, f_locals: dict[str, Any]) -> list[str]:
    """check_verbose()'s failures, after checking that check() agrees with it."""
    info = root.check_verbose(f_locals)
    assert root.check(f_locals) is info.result
    assert info.result == (not info.failures)
    return list(info.failures)


def guarded(build: Any) -> RootGuardManager:
    """A root whose local ``x`` gets the guards ``build(node)`` adds."""
    root = RootGuardManager()
    build(root.local("x"))
    return root


class Interrupt:
    """Raises KeyboardInterrupt from every dunder the guards may call."""

    def __len__(self) -> int:
        raise KeyboardInterrupt

    def __contains__(self, key: object) -> bool:
        raise KeyboardInterrupt

    def keys(self) -> list[str]:
        raise KeyboardInterrupt

    def __getattr__(self, name: str) -> Any:
        raise KeyboardInterrupt


class CollidingKey:
    """A key that hashes like 'a' and whose __eq__ runs ``on_eq``."""

    def __init__(self, on_eq: Any) -> None:
        self.on_eq = on_eq

    def __hash__(self) -> int:
        return hash("a")

    def __eq__(self, other: object) -> bool:
        return self.on_eq(other)

    def __repr__(self) -> str:
        return "CollidingKey()"


# --- TYPE_MATCH, ID_MATCH, NONE/TRUE/FALSE_MATCH, NOT_NONE ---------------------------


def test_type_match_is_exact() -> None:
    class MyInt(int):
        pass

    root = guarded(lambda x: x.type_match(int))
    assert root.check({"x": 3})
    assert failures(root, {"x": True}) == ["L['x']: expected type int, got bool"]
    assert failures(root, {"x": MyInt(3)}) == ["L['x']: expected type int, got MyInt"]
    assert failures(root, {"x": "3"}) == ["L['x']: expected type int, got str"]
    assert root.local("x").leaf_guards() == [("TYPE_MATCH", "TYPE_MATCH(int)")]
    with pytest.raises(TypeError, match=r"type_match\(\) expects a type, got int"):
        root.local("x").type_match(3)


def test_id_match_is_identity() -> None:
    token = ["a"]
    root = guarded(lambda x: x.id_match(token))
    assert root.check({"x": token})
    assert failures(root, {"x": ["a"]}) == [
        "L['x']: expected the object ['a'], got a different object ['a']"
    ]
    assert root.local("x").leaf_guards() == [("ID_MATCH", "ID_MATCH(['a'])")]


@pytest.mark.parametrize(
    ("method", "kind", "good", "bad", "reason"),
    [
        ("none_match", "NONE_MATCH", None, 0, "expected None, got 0"),
        ("true_match", "TRUE_MATCH", True, 1, "expected True, got 1"),
        ("false_match", "FALSE_MATCH", False, 0, "expected False, got 0"),
        ("not_none", "NOT_NONE", 0, None, "expected a value other than None, got None"),
    ],
)
def test_singleton_guards(method: str, kind: str, good: object, bad: object, reason: str) -> None:
    root = guarded(lambda x: getattr(x, method)())
    assert root.check({"x": good})
    assert failures(root, {"x": bad}) == [f"L['x']: {reason}"]
    assert root.local("x").leaf_guards() == [(kind, kind)]


# --- EQUALS_MATCH's direct comparisons ---------------------------------------------
# Exact int, str and bytes compare their data without the generic ==; these check
# that every kind of equal-but-distinct and unequal value still gets getattr's answer.


@pytest.mark.parametrize(
    ("expected", "equal", "unequal"),
    [
        (12345, [int("12345")], [12346, -12345, 12345.0, True, 2**64 + 12345]),
        (-7, [int("-7")], [7, -8, -7.0]),
        (0, [int("0")], [False, 0.0, -0.0, 1]),
        (1, [int("1")], [True, 1.0, complex(1, 0)]),
        (2**70, [int(str(2**70))], [2**70 + 1, -(2**70), float(2**70)]),
        (-(2**63), [int(str(-(2**63)))], [2**63, -(2**63) - 1]),
        ("fast", ["".join(["fa", "st"])], ["fast ", "Fast", "fas", b"fast", ""]),
        ("é", ["".join(["", "é"])], ["e", "é" + "x", "\u00e9\u0301"]),
        ("\U0001f600", ["".join(["\U0001f600"])], ["\u00f6", "\U0001f601"]),
        ("", ["".join([])], [" ", b""]),
        (b"ab", [bytes([97, 98])], [b"abc", b"a", "ab", bytearray(b"ab")]),
        (True, [], [1, False, 1.0]),
        (False, [], [0, True, None]),
    ],
)
def test_equals_match_direct_comparison_agrees_with_exact_equality(
    expected: object, equal: list[object], unequal: list[object]
) -> None:
    root = guarded(lambda x: x.equals_match(expected))
    assert root.check({"x": expected})
    for value in equal:  # equal, and (except for cached small ints) a distinct object
        assert root.check({"x": value}), value
    for value in unequal:
        assert not root.check({"x": value}), value


def test_equals_match_int_and_str_subclasses_fail() -> None:
    class MyInt(int):
        def __eq__(self, other: object) -> bool:
            return True

        __hash__ = int.__hash__

    class MyStr(str):
        pass

    assert not guarded(lambda x: x.equals_match(3)).check({"x": MyInt(3)})
    assert not guarded(lambda x: x.equals_match("a")).check({"x": MyStr("a")})


# --- LENGTH_CHECK ---------------------------------------------------------------


@pytest.mark.parametrize(
    "value", [[1, 2, 3], (1, 2, 3), {1: 1, 2: 2, 3: 3}, {1, 2, 3}, frozenset({1, 2, 3}), "abc"]
)
def test_length_check_passes_on_containers_of_that_length(value: Any) -> None:
    root = guarded(lambda x: x.length_check(3))
    assert root.check({"x": value})
    assert failures(root, {"x": value}) == []


def test_length_check_fails_with_both_lengths() -> None:
    root = guarded(lambda x: x.length_check(3))
    assert failures(root, {"x": [1, 2]}) == ["L['x']: expected length 3, got 2"]
    assert failures(root, {"x": {}}) == ["L['x']: expected length 3, got 0"]


def test_length_check_uses_len_for_subclasses_and_other_types() -> None:
    class Lying(list):
        def __len__(self) -> int:
            return 7

    root = guarded(lambda x: x.length_check(7))
    assert root.check({"x": Lying([1])})
    assert root.check({"x": range(7)})
    assert not root.check({"x": [1]})


def test_length_check_on_a_value_without_len() -> None:
    root = guarded(lambda x: x.length_check(1))
    assert failures(root, {"x": 5}) == [
        "L['x']: expected length 1, but len() of an int raised "
        "TypeError: object of type 'int' has no len()"
    ]


def test_length_check_when_len_raises_or_mutates() -> None:
    class Raising:
        def __len__(self) -> int:
            raise ValueError("no length today")

    class Growing:
        def __init__(self) -> None:
            self.items: list[int] = []

        def __len__(self) -> int:
            self.items.append(1)
            return len(self.items)

    root = guarded(lambda x: x.length_check(1))
    assert failures(root, {"x": Raising()}) == [
        "L['x']: expected length 1, but len() of a Raising raised ValueError: no length today"
    ]
    g = Growing()
    assert root.check({"x": g})  # len() gave 1
    assert not root.check({"x": g})  # and then 2
    with pytest.raises(KeyboardInterrupt):
        root.check({"x": Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        root.check_verbose({"x": Interrupt()})


# --- DICT_LENGTH ----------------------------------------------------------------


def test_dict_length_passes_and_fails() -> None:
    root = guarded(lambda x: x.dict_length(2))
    assert root.check({"x": {"a": 1, "b": 2}})
    assert root.check({"x": OrderedDict(a=1, b=2)})
    assert failures(root, {"x": {"a": 1}}) == ["L['x']: expected a dict of length 2, got length 1"]
    assert failures(root, {"x": [1, 2]}) == ["L['x']: expected a dict of length 2, got a list"]


def test_dict_length_reads_the_dicts_own_count_not_len() -> None:
    class Lying(dict):
        def __len__(self) -> int:
            raise RuntimeError("never called")

    root = guarded(lambda x: x.dict_length(1))
    assert root.check({"x": Lying(a=1)})
    assert not root.check({"x": Lying()})


# --- DICT_CONTAINS --------------------------------------------------------------


def test_dict_contains_present_and_absent() -> None:
    root = guarded(lambda x: x.dict_contains("mode"))
    assert root.check({"x": {"mode": 1}})
    assert failures(root, {"x": {"other": 1}}) == [
        "L['x']: expected key 'mode' to be present, but it is missing"
    ]


def test_dict_contains_false_guards_absence() -> None:
    root = guarded(lambda x: x.dict_contains("debug", contains=False))
    assert root.check({"x": {"mode": 1}})
    assert failures(root, {"x": {"debug": True}}) == [
        "L['x']: expected key 'debug' to be absent, but it is present"
    ]
    assert root.local("x").leaf_guards() == [
        ("DICT_CONTAINS", "DICT_CONTAINS('debug', contains=False)")
    ]


def test_dict_contains_uses_contains_for_other_mappings() -> None:
    root = guarded(lambda x: x.dict_contains("a"))
    assert root.check({"x": types.MappingProxyType({"a": 1})})
    assert root.check({"x": OrderedDict(a=1)})
    assert root.check({"x": ["a"]})  # `in` on a list
    assert not root.check({"x": types.MappingProxyType({"b": 1})})


def test_dict_contains_when_a_lookup_raises() -> None:
    class NoContains:
        pass

    class Raising:
        def __contains__(self, key: object) -> bool:
            raise LookupError("broken")

    root = guarded(lambda x: x.dict_contains("a", contains=False))
    # A failed lookup fails the guard whichever answer was expected.
    assert failures(root, {"x": Raising()}) == [
        "L['x']: expected key 'a' to be absent, but the lookup in a Raising raised "
        "LookupError: broken"
    ]
    assert not root.check({"x": NoContains()})
    with pytest.raises(KeyboardInterrupt):
        root.check({"x": Interrupt()})


def test_dict_contains_when_a_stored_keys_eq_raises_or_mutates_the_dict() -> None:
    def raising(other: object) -> bool:
        raise ValueError("eq")

    root = guarded(lambda x: x.dict_contains("a"))
    assert not root.check({"x": {CollidingKey(raising): 1}})

    d: dict[Any, int] = {}

    def mutating(other: object) -> bool:
        d["calls"] = d.get("calls", 0) + 1
        return other == "a"

    d[CollidingKey(mutating)] = 1
    # The key compares equal, but the dict changed under the lookup: no answer.
    assert failures(root, {"x": d}) == [
        "L['x']: expected key 'a' to be present, but the lookup in a dict raised "
        "RuntimeError: the dict changed while it was being searched"
    ]


def test_dict_contains_builder_errors() -> None:
    x = RootGuardManager().local("x")
    with pytest.raises(TypeError, match=r"dict_contains\(\) expects hashable keys"):
        x.dict_contains(["a"])
    with pytest.raises(TypeError, match="contains=True or False"):
        x.dict_contains("a", contains=1)
    assert x.leaf_guards() == []


# --- MAPPING_KEYS_MATCH ---------------------------------------------------------


def test_mapping_keys_match_dict_keys_in_order() -> None:
    root = guarded(lambda x: x.mapping_keys_match(["a", "b"]))
    assert root.check({"x": {"a": 1, "b": 2}})
    assert failures(root, {"x": {"b": 2, "a": 1}}) == [
        "L['x']: expected keys ['a', 'b'], got ['b', 'a']"
    ]
    assert failures(root, {"x": {"a": 1}}) == ["L['x']: expected keys ['a', 'b'], got ['a']"]
    assert not root.check({"x": {"a": 1, "b": 2, "c": 3}})


def test_mapping_keys_match_on_other_mappings_uses_their_keys_order() -> None:
    root = guarded(lambda x: x.mapping_keys_match(("a", "b")))
    od = OrderedDict(a=1, b=2)
    assert root.check({"x": od})
    od.move_to_end("a")
    assert not root.check({"x": od})
    assert root.check({"x": types.MappingProxyType({"a": 1, "b": 2})})
    assert failures(root, {"x": 3}) == [
        "L['x']: expected keys ['a', 'b'], but reading the keys of an int raised "
        "AttributeError: 'int' object has no attribute 'keys'"
    ]


def test_mapping_keys_match_keys_of_different_types_differ() -> None:
    root = guarded(lambda x: x.mapping_keys_match([1, "b"]))
    assert root.check({"x": {1: "one", "b": 2}})
    assert not root.check({"x": {True: "one", "b": 2}})
    assert not root.check({"x": {1.0: "one", "b": 2}})


def test_mapping_keys_match_with_user_keys() -> None:
    class Key:
        def __init__(self, name: str) -> None:
            self.name = name

        def __hash__(self) -> int:
            return hash(self.name)

        def __eq__(self, other: object) -> bool:
            return isinstance(other, Key) and other.name == self.name

    root = guarded(lambda x: x.mapping_keys_match([Key("a"), "b"]))
    assert root.check({"x": {Key("a"): 1, "b": 2}})
    assert not root.check({"x": {Key("z"): 1, "b": 2}})


def test_mapping_keys_match_when_a_keys_eq_raises_or_mutates() -> None:
    expected = CollidingKey(lambda other: True)
    root = guarded(lambda x: x.mapping_keys_match([expected]))

    def raising(other: object) -> bool:
        raise ValueError("eq")

    assert failures(root, {"x": {CollidingKey(raising): 1}}) == [
        "L['x']: expected keys [CollidingKey()], but comparing them raised ValueError: eq"
    ]
    d: dict[Any, int] = {}

    def mutating(other: object) -> bool:
        d.clear()
        return True

    d[CollidingKey(mutating)] = 1
    assert not root.check({"x": d})  # equal keys, but the dict changed meanwhile
    with pytest.raises(KeyboardInterrupt):
        root.check({"x": Interrupt()})


def test_mapping_keys_match_builder_errors() -> None:
    x = RootGuardManager().local("x")
    with pytest.raises(TypeError, match="an iterable of keys"):
        x.mapping_keys_match("ab")
    with pytest.raises(TypeError, match="an iterable of keys"):
        x.mapping_keys_match(3)
    with pytest.raises(TypeError, match="hashable keys"):
        x.mapping_keys_match([["a"]])
    with pytest.raises(ValueError, match="twice"):
        x.mapping_keys_match(["a", "b", "a"])
    assert x.leaf_guards() == []
    x.mapping_keys_match({"a": 1, "b": 2})  # a dict gives its keys
    assert x.leaf_guards() == [("MAPPING_KEYS_MATCH", "MAPPING_KEYS_MATCH(['a', 'b'])")]


# --- NO_HASATTR -----------------------------------------------------------------


class Plain:
    """An object with one attribute."""

    def __init__(self) -> None:
        self.present = 1


def test_no_hasattr_passes_when_absent_and_fails_when_present() -> None:
    root = guarded(lambda x: x.no_hasattr("missing"))
    assert root.check({"x": Plain()})
    assert root.check({"x": 3})
    p = Plain()
    p.missing = 0  # type: ignore[attr-defined]
    assert failures(root, {"x": p}) == [
        "L['x']: expected no attribute 'missing', but a Plain has one"
    ]


def test_no_hasattr_sees_class_attributes_and_getattr() -> None:
    class Dynamic:
        def __getattr__(self, name: str) -> Any:
            if name == "made_up":
                return 1
            raise AttributeError(name)

    root = guarded(lambda x: x.no_hasattr("made_up"))
    assert not root.check({"x": Dynamic()})
    root2 = guarded(lambda x: x.no_hasattr("other"))
    assert root2.check({"x": Dynamic()})
    root3 = guarded(lambda x: x.no_hasattr("__init__"))
    assert not root3.check({"x": Plain()})


def test_no_hasattr_fails_when_the_lookup_raises_something_else() -> None:
    class Broken:
        def __getattr__(self, name: str) -> Any:
            raise RuntimeError("lookup broke")

    root = guarded(lambda x: x.no_hasattr("a"))
    assert failures(root, {"x": Broken()}) == [
        "L['x']: expected no attribute 'a', but looking it up on a Broken raised "
        "RuntimeError: lookup broke"
    ]
    with pytest.raises(KeyboardInterrupt):
        root.check({"x": Interrupt()})
    with pytest.raises(KeyboardInterrupt):
        root.check_verbose({"x": Interrupt()})


def test_no_hasattr_builder_errors() -> None:
    class Name(str):
        pass

    x = RootGuardManager().local("x")
    with pytest.raises(TypeError, match=r"no_hasattr\(\) expects a str attribute name, got int"):
        x.no_hasattr(3)
    with pytest.raises(ValueError, match="non-empty"):
        x.no_hasattr("")
    assert x.no_hasattr(Name("sub")) is x
    assert x.leaf_guards() == [("NO_HASATTR", "NO_HASATTR('sub')")]


# --- FLOAT_IS_NAN ---------------------------------------------------------------


def test_float_is_nan() -> None:
    class MyFloat(float):
        pass

    root = guarded(lambda x: x.float_is_nan())
    assert root.check({"x": math.nan})
    assert root.check({"x": float("-nan")})
    assert root.check({"x": MyFloat("nan")})
    assert failures(root, {"x": 1.5}) == ["L['x']: expected a float NaN, got 1.5"]
    assert failures(root, {"x": "nan"}) == ["L['x']: expected a float NaN, got a str"]
    assert not root.check({"x": complex(math.nan, 0)})
    assert root.local("x").leaf_guards() == [("FLOAT_IS_NAN", "FLOAT_IS_NAN")]


# --- EQUALS_MATCH exactness -----------------------------------------------------


def test_equals_match_keeps_signed_zeros_apart() -> None:
    root = guarded(lambda x: x.equals_match(0.0))
    assert root.check({"x": 0.0})
    assert failures(root, {"x": -0.0}) == ["L['x']: expected 0.0, got -0.0"]
    neg = guarded(lambda x: x.equals_match(-0.0))
    assert neg.check({"x": -1.0 * 0.0})
    assert not neg.check({"x": 0.0})
    cplx = guarded(lambda x: x.equals_match(complex(1.0, 0.0)))
    assert cplx.check({"x": complex(1.0, 0.0)})
    assert not cplx.check({"x": complex(1.0, -0.0)})


@pytest.mark.parametrize(
    ("expected", "same", "different"),
    [
        ((1, 2), (1, 2), [(True, 2), (1.0, 2), (1, 2.0), (1, 2, 3)]),
        ((0.0, "a"), (0.0, "a"), [(-0.0, "a"), (0, "a"), (False, "a")]),
        (((1,), b"x"), ((1,), b"x"), [((True,), b"x"), ((1,), "x")]),
        (frozenset({1, "a"}), frozenset({"a", 1}), [frozenset({True, "a"}), frozenset({1.0, "a"})]),
        (frozenset({0.0}), frozenset({0.0}), [frozenset({-0.0}), frozenset({0})]),
        (frozenset({(1, 2)}), frozenset({(1, 2)}), [frozenset({(1, True)})]),
        (range(0, 3, 2), range(0, 3, 2), [range(0, 4, 2), range(0, 3, 3), range(1, 3, 2)]),
        (range(0), range(0), [range(5, 5), range(0, 0, 2)]),
    ],
)
def test_equals_match_compares_elements_exactly(
    expected: Any, same: Any, different: list[Any]
) -> None:
    root = guarded(lambda x: x.equals_match(expected))
    assert expected == same
    assert root.check({"x": same})
    for other in different:
        assert not root.check({"x": other}), other
        assert failures(root, {"x": other}) == [f"L['x']: expected {expected!r}, got {other!r}"]


def test_equals_match_does_not_call_user_code_inside_containers() -> None:
    calls: list[str] = []

    class Sneaky:
        def __eq__(self, other: object) -> bool:
            calls.append("eq")
            return True

        def __hash__(self) -> int:
            calls.append("hash")
            return hash(1)

    tuple_root = guarded(lambda x: x.equals_match((1, 2)))
    set_root = guarded(lambda x: x.equals_match(frozenset({1})))
    in_tuple = (Sneaky(), 2)
    in_set = frozenset({Sneaky()})
    calls.clear()  # building in_set hashed its element
    assert not tuple_root.check({"x": in_tuple})
    assert not set_root.check({"x": in_set})
    assert not tuple_root.check_verbose({"x": in_tuple}).result
    assert not set_root.check_verbose({"x": in_set}).result
    assert calls == []


def test_equals_match_rejects_nan() -> None:
    x = RootGuardManager().local("x")
    for bad in [math.nan, (1, math.nan), frozenset({math.nan}), complex(0, math.nan)]:
        with pytest.raises(ValueError, match=r"cannot match NaN .*float_is_nan\(\)"):
            x.equals_match(bad)
    assert x.leaf_guards() == []


# --- RANGE_ITERATOR_MATCH and TUPLE_ITERATOR_LEN -------------------------------


@pytest.fixture(params=["struct", "portable"])
def iterator_path(request: pytest.FixtureRequest) -> Iterator[str]:
    """Runs a test with the iterator guards reading C structs, then through methods."""
    if request.param == "struct":
        assert GuardManager._iterator_struct_reads(), "the iterator layout was not verified"
    previous = GuardManager._set_iterator_struct_reads(request.param == "struct")
    try:
        yield request.param
    finally:
        GuardManager._set_iterator_struct_reads(previous)


def advanced(it: Iterator[Any], n: int) -> Iterator[Any]:
    for _ in range(n):
        next(it)
    return it


def test_range_iterator_match_fresh_and_advanced(iterator_path: str) -> None:
    root = guarded(lambda x: x.range_iterator_match(0, 10, 2))
    it = iter(range(0, 10, 2))
    assert root.check({"x": it})
    assert list(it) == [0, 2, 4, 6, 8]  # the check did not consume anything
    # What is left is what counts: range(4, 10, 2) is range(0, 10, 2) advanced twice.
    later = guarded(lambda x: x.range_iterator_match(4, 10, 2))
    assert later.check({"x": advanced(iter(range(0, 10, 2)), 2)})
    assert later.check({"x": iter(range(4, 9, 2))})  # same values, different stop
    assert failures(root, {"x": advanced(iter(range(0, 10, 2)), 2)}) == [
        "L['x']: expected a range_iterator yielding range(0, 10, 2), "
        "got one yielding range(4, 10, 2)"
    ]


def test_range_iterator_match_compares_values(iterator_path: str) -> None:
    root = guarded(lambda x: x.range_iterator_match(10, 0, -3))
    assert root.check({"x": iter(range(10, 0, -3))})
    assert root.check({"x": iter(range(10, -1, -3))})  # 10, 7, 4, 1 either way
    assert not root.check({"x": iter(range(10, 0, 3))})
    assert not root.check({"x": iter(range(10, 0, -2))})
    empty = guarded(lambda x: x.range_iterator_match(5, 5, 3))
    assert empty.check({"x": iter(range(0))})
    assert empty.check({"x": advanced(iter(range(3)), 3)})
    assert failures(empty, {"x": iter(range(1))}) == [
        "L['x']: expected a range_iterator yielding range(5, 5, 3), got one yielding only 0"
    ]
    one = guarded(lambda x: x.range_iterator_match(7, 8, 1))
    assert one.check({"x": iter(range(7, 50, 50))})  # a single 7 left, whatever the step
    assert one.check({"x": advanced(iter(range(1, 8, 3)), 2)})
    assert failures(one, {"x": iter(range(0))}) == [
        "L['x']: expected a range_iterator yielding range(7, 8), got one yielding nothing"
    ]


def test_range_iterator_match_needs_a_range_iterator(iterator_path: str) -> None:
    root = guarded(lambda x: x.range_iterator_match(0, 3, 1))
    assert failures(root, {"x": iter([0, 1, 2])}) == [
        "L['x']: expected a range_iterator yielding range(0, 3), got a list_iterator"
    ]
    assert not root.check({"x": range(0, 3)})
    assert not root.check({"x": iter(range(2**70, 2**70 + 3))})  # a longrange_iterator


def test_range_iterator_match_large_values(iterator_path: str) -> None:
    big = 2**62
    root = guarded(lambda x: x.range_iterator_match(big, big + 10**6, 10**5))
    it = iter(range(big, big + 10**6, 10**5))
    assert root.check({"x": it})
    next(it)
    assert failures(root, {"x": it}) == [
        f"L['x']: expected a range_iterator yielding range({big}, {big + 10**6}, 100000), "
        f"got one yielding range({big + 10**5}, {big + 10**6}, 100000)"
    ]


def test_range_iterator_match_builder_errors() -> None:
    x = RootGuardManager().local("x")
    with pytest.raises(ValueError, match="non-zero step"):
        x.range_iterator_match(0, 10, 0)
    with pytest.raises(TypeError, match="expects an int start, got str"):
        x.range_iterator_match("0", 10, 1)
    with pytest.raises(TypeError, match="expects an int step, got bool"):
        x.range_iterator_match(0, 10, True)
    with pytest.raises(ValueError, match="fits a C long"):
        x.range_iterator_match(0, 2**70, 1)
    with pytest.raises(ValueError, match="longrange_iterator"):
        x.range_iterator_match(-(2**62), 2**62, 1)  # 2**63 values: not a range_iterator
    assert x.leaf_guards() == []
    assert x.range_iterator_match(0, 5) is x
    assert x.leaf_guards() == [("RANGE_ITERATOR_MATCH", "RANGE_ITERATOR_MATCH(range(0, 5))")]


def test_tuple_iterator_len(iterator_path: str) -> None:
    root = guarded(lambda x: x.tuple_iterator_len(2))
    it = iter((1, 2, 3))
    assert not root.check({"x": it})
    next(it)
    assert root.check({"x": it})
    assert list(it) == [2, 3]  # not consumed by the check
    assert failures(root, {"x": it}) == [
        "L['x']: expected a tuple_iterator with 2 items left, got one with 0 left"
    ]
    assert failures(root, {"x": iter([1, 2])}) == [
        "L['x']: expected a tuple_iterator with 2 items left, got a list_iterator"
    ]
    empty = guarded(lambda x: x.tuple_iterator_len(0))
    assert empty.check({"x": iter(())})
    assert empty.check({"x": advanced(iter((1, 2)), 2)})
    exhausted = iter((1,))
    assert list(exhausted) == [1]  # drops its tuple
    assert empty.check({"x": exhausted})


def test_tuple_iterator_len_builder_errors() -> None:
    x = RootGuardManager().local("x")
    with pytest.raises(ValueError, match=">= 0"):
        x.tuple_iterator_len(-1)
    with pytest.raises(TypeError, match="int length"):
        x.tuple_iterator_len(2.0)
    with pytest.raises(ValueError, match="Py_ssize_t"):
        x.tuple_iterator_len(2**64)
    assert x.leaf_guards() == []
    assert x.tuple_iterator_len(3) is x
    assert x.leaf_guards() == [("TUPLE_ITERATOR_LEN", "TUPLE_ITERATOR_LEN(3)")]


# --- LAMBDA ---------------------------------------------------------------------


def test_lambda_passes_when_truthy_and_fails_when_falsy() -> None:
    root = guarded(lambda x: x.lambda_guard(lambda v: v > 3, "x > 3"))
    assert root.check({"x": 4})
    assert failures(root, {"x": 2}) == ["L['x']: LAMBDA guard failed: x > 3 (returned False)"]
    counts = guarded(lambda x: x.lambda_guard(len, "len(x)"))
    assert counts.check({"x": [1]})
    assert failures(counts, {"x": []}) == ["L['x']: LAMBDA guard failed: len(x) (returned 0)"]


def test_lambda_fails_when_fn_or_its_result_raises() -> None:
    class BadBool:
        def __bool__(self) -> bool:
            raise ValueError("no truth")

    def boom(v: object) -> bool:
        raise ValueError("boom")

    root = guarded(lambda x: x.lambda_guard(boom, "boom"))
    assert failures(root, {"x": 1}) == [
        "L['x']: LAMBDA guard failed: boom (raised ValueError: boom)"
    ]
    bad = guarded(lambda x: x.lambda_guard(lambda v: BadBool(), "bad bool"))
    assert failures(bad, {"x": 1}) == [
        "L['x']: LAMBDA guard failed: bad bool (raised ValueError: no truth)"
    ]


@pytest.mark.parametrize("fatal", [KeyboardInterrupt, SystemExit])
def test_lambda_fatal_exceptions_propagate(fatal: type[BaseException]) -> None:
    def interrupt(v: object) -> bool:
        raise fatal()

    root = guarded(lambda x: x.lambda_guard(interrupt, "interrupt"))
    with pytest.raises(fatal):
        root.check({"x": 1})
    with pytest.raises(fatal):
        root.check_verbose({"x": 1})


def test_lambda_that_mutates_the_value() -> None:
    def pop(v: list[int]) -> bool:
        return bool(v.pop())

    root = RootGuardManager()
    x = root.local("x")
    x.lambda_guard(pop, "pop")
    x.length_check(1)  # runs after the lambda, sees the mutation
    assert root.check({"x": [5, 1]})  # pops 1: truthy, and one item left
    assert not root.check({"x": [5, 0]})  # pops 0: falsy
    assert not root.check({"x": [5, 5, 1]})  # pops 1, but two items left


def test_lambda_verbose_when_fn_passes_the_second_time() -> None:
    calls: list[int] = []

    def flaky(v: object) -> bool:
        calls.append(1)
        return len(calls) % 2 == 0

    root = guarded(lambda x: x.lambda_guard(flaky, "flaky"))
    info = root.check_verbose({"x": 1})
    assert info.failures == [
        "L['x']: LAMBDA guard failed: flaky (it passed when called again for this message)"
    ]


def test_lambda_builder_errors_and_default_description() -> None:
    x = RootGuardManager().local("x")
    with pytest.raises(TypeError, match=r"lambda_guard\(\) expects a callable, got int"):
        x.lambda_guard(3, "three")
    with pytest.raises(TypeError, match="str description, got int"):
        x.lambda_guard(bool, 3)
    assert x.leaf_guards() == []
    assert x.lambda_guard(bool) is x
    assert x.leaf_guards() == [("LAMBDA", "LAMBDA(<class 'bool'>)")]


# --- arguments shared by the length guards --------------------------------------


@pytest.mark.parametrize("method", ["length_check", "dict_length", "tuple_iterator_len"])
def test_length_arguments_are_checked(method: str) -> None:
    class Index:
        def __index__(self) -> int:
            return 2

    x = RootGuardManager().local("x")
    build = getattr(x, method)
    with pytest.raises(ValueError, match=">= 0, got -1"):
        build(-1)
    with pytest.raises(TypeError, match="int length, got str"):
        build("3")
    with pytest.raises(TypeError, match="int length, got bool"):
        build(True)
    with pytest.raises(ValueError):
        build(2**80)
    with pytest.raises(TypeError):
        build()
    assert x.leaf_guards() == []
    assert build(Index()) is x  # chaining: the node comes back
    assert len(x.leaf_guards()) == 1
    assert x.leaf_guards()[0][1].endswith("(2)")


def test_builders_chain() -> None:
    root = RootGuardManager()
    x = root.local("x")
    out = (
        x.dict_length(1)
        .dict_contains("a")
        .mapping_keys_match(["a"])
        .length_check(1)
        .no_hasattr("zzz")
        .lambda_guard(bool, "truthy")
    )
    assert out is x
    assert [kind for kind, _ in x.leaf_guards()] == [
        "DICT_LENGTH",
        "DICT_CONTAINS",
        "MAPPING_KEYS_MATCH",
        "LENGTH_CHECK",
        "NO_HASATTR",
        "LAMBDA",
    ]
    assert root.check({"x": {"a": 1}})
    assert failures(root, {"x": {"b": 1}}) == [
        "L['x']: expected key 'a' to be present, but it is missing",
        "L['x']: expected keys ['a'], got ['b']",
    ]
