"""Property-based fuzzing of the guard builder and of check/check_verbose (hypothesis).

Every builder method of a guard node is called with wrong types, huge and negative sizes
and hostile objects (whose ``__eq__``, ``__hash__``, ``__getattr__``, ``__len__`` raise or
mutate the value under check); the trees built are checked against hostile locals. Each
case ends in a Python exception or a correct result (see tests/python/fuzz_programs.py).
The coverage-guided pass over the same programs is `tests/fuzz/fuzz.py guards` (make fuzz).
"""

from __future__ import annotations

import math
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from framecache.guards import GuardManager, RootGuardManager
from fuzz_programs import (
    METHODS,
    VALUES,
    EqReturnsRaisingBool,
    HypothesisChoices,
    MutatingBox,
    RaisingEq,
    RaisingGetattr,
    RaisingHash,
    RaisingLen,
    run_guard_program,
)

FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    database=None,
)


@FUZZ
@given(st.data())
def test_random_guard_programs_end_in_an_exception_or_a_correct_result(data: Any) -> None:
    run_guard_program(HypothesisChoices(data))


def test_every_builder_method_is_fuzzed() -> None:
    # The method list comes from the bindings: a new builder method is fuzzed without
    # touching the fuzzer, and the list is not empty by accident.
    for name in (
        "local",
        "type_match",
        "equals_match",
        "length_check",
        "dict_item",
        "lambda_guard",
        "attr",
        "object_aliasing",
        "range_iterator_match",
    ):
        assert name in METHODS


@pytest.mark.parametrize("method", METHODS)
def test_each_builder_method_rejects_every_pool_value_cleanly(method: str) -> None:
    # Every method, on a value node and on the root, with each pool value as its only
    # argument, with none, and with three: a GuardManager or a Python exception.
    for factory in VALUES:
        for node_factory in (RootGuardManager, lambda: RootGuardManager().local("x")):
            node = node_factory()
            for args in ((factory(),), (), (factory(), factory(), factory())):
                try:
                    out = getattr(node, method)(*args)
                except (Exception, KeyboardInterrupt) as exc:
                    assert isinstance(exc, Exception) or "FatalEq" in str(exc)
                    continue
                assert isinstance(out, GuardManager)


SIZES = [-1, -(2**63), 2**63, 2**64 + 5, 2**200, -(2**200), True]


@pytest.mark.parametrize(
    "method",
    [
        "length_check",
        "dict_length",
        "tuple_iterator_len",
        "list_item",
        "tuple_item",
        "closure_cell",
    ],
)
@pytest.mark.parametrize("size", SIZES)
def test_huge_negative_and_bool_sizes_are_value_or_type_errors(method: str, size: int) -> None:
    node = RootGuardManager().local("x")
    if method in ("list_item", "tuple_item") and size in (-1, -(2**63)):
        # Negative indexes count from the end, as in Python, where accepted.
        try:
            getattr(node, method)(size)
        except ValueError:
            pass
        return
    with pytest.raises((ValueError, TypeError, OverflowError)):
        getattr(node, method)(size)


@pytest.mark.parametrize(
    "start,stop,step", [(0, 2**70, 1), (0, 1, 0), (-(2**70), 0, 1), (0, 10, 2**70), ("a", 1, 1)]
)
def test_range_iterator_match_with_unrepresentable_bounds(start: Any, stop: Any, step: Any) -> None:
    with pytest.raises((ValueError, TypeError, OverflowError)):
        RootGuardManager().local("x").range_iterator_match(start, stop, step)


HOSTILE = [RaisingEq, RaisingHash, RaisingLen, RaisingGetattr, EqReturnsRaisingBool, MutatingBox]


def _py(predicate: Any) -> Any:
    """The guard's meaning in Python: an exception while evaluating it is a failure."""

    def run(v: Any) -> bool:
        try:
            return bool(predicate(v))
        except Exception:
            return False

    return run


# (builder, the same test in Python)
GUARDS = [
    (lambda n: n.equals_match(5), _py(lambda v: v == 5)),
    (lambda n: n.length_check(3), _py(lambda v: len(v) == 3)),
    (lambda n: n.type_match(int), _py(lambda v: type(v) is int)),
    (lambda n: n.attr("x").equals_match(1), _py(lambda v: v.x == 1)),
    (lambda n: n.generic_attr("x").not_none(), _py(lambda v: v.x is not None)),
    (lambda n: n.no_hasattr("zzz"), _py(lambda v: not hasattr(v, "zzz"))),
    (lambda n: n.item("x").equals_match(1), _py(lambda v: v["x"] == 1)),
    (lambda n: n.list_item(0).equals_match(1), _py(lambda v: type(v) is list and v[0] == 1)),
    (lambda n: n.lambda_guard(lambda v: v == v, "v == v"), _py(lambda v: v == v)),
]


@pytest.mark.parametrize("hostile", HOSTILE)
@pytest.mark.parametrize("guard", range(len(GUARDS)))
def test_hostile_values_fail_the_guard_or_give_pythons_answer(hostile: type, guard: int) -> None:
    # An ordinary exception while checking fails the guard; otherwise the guard answers
    # what Python answers. MutatingBox changes with every look: only a bool is required.
    build, meaning = GUARDS[guard]
    root = RootGuardManager()
    build(root.local("x"))
    for check in (root.check, lambda f: root.check_verbose(f).result):
        value = hostile()
        passed = check({"x": value})
        assert isinstance(passed, bool)
        if hostile is not MutatingBox:
            assert passed is meaning(hostile())
    info = root.check_verbose({"x": hostile()})
    assert all(isinstance(f, str) for f in info.failures)
    assert info.result or info.failures


def test_a_mutating_eq_inside_a_checked_dict_does_not_crash_or_pass_wrongly() -> None:
    # The value's __eq__ clears the very dict the guard tree is walking.
    root = RootGuardManager()
    node = root.local("d")
    node.dict_item("a").equals_match(1)
    node.dict_item("b").equals_match(2)
    d: dict[str, Any] = {}
    box = MutatingBox()
    box.victims.append(d)
    d["a"] = box
    d["b"] = 2
    assert root.check({"d": d}) is False
    d2: dict[str, Any] = {"a": box, "b": 2}
    box.victims.append(d2)
    assert root.check_verbose({"d": d2}).result is False


@FUZZ
@given(
    value=st.one_of(
        st.integers(),
        st.floats(allow_nan=True),
        st.text(),
        st.binary(),
        st.lists(st.integers(), max_size=5),
        st.tuples(st.integers(), st.text()),
        st.dictionaries(st.text(max_size=3), st.integers(), max_size=4),
        st.none(),
        st.booleans(),
    ),
    other=st.one_of(st.integers(), st.floats(allow_nan=True), st.text(), st.none()),
)
def test_leaf_guards_agree_with_python(value: Any, other: Any) -> None:
    # The correct-result half: for ordinary values each leaf answers what Python says.
    cases = [
        (lambda n: n.type_match(type(other)), type(value) is type(other)),
        (lambda n: n.none_match(), value is None),
        (lambda n: n.not_none(), value is not None),
        (lambda n: n.id_match(other), value is other),
    ]
    if isinstance(value, (list, tuple, dict, str, bytes)):
        cases.append((lambda n: n.length_check(len(value)), True))
        cases.append((lambda n: n.length_check(len(value) + 1), False))
    if isinstance(value, dict):
        cases.append((lambda n: n.dict_contains("a"), "a" in value))
        cases.append((lambda n: n.mapping_keys_match(list(value)), True))
    if isinstance(value, float) and math.isnan(value):
        cases.append((lambda n: n.float_is_nan(), True))
    for build, expected in cases:
        root = RootGuardManager()
        build(root.local("x"))
        assert root.check({"x": value}) is expected
        assert root.check_verbose({"x": value}).result is expected
        assert root.check({}) is False  # a missing local fails
