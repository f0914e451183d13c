"""The guard plan: its kinds (framecache.plan) and the guards a capture's reads give."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from typing import Any

import pytest

import framecache
from framecache.plan import KINDS, GuardPlan, guards, materialize, sources

# -- the plan package, torch-free ----------------------------------------------------------


def test_importing_the_plan_imports_neither_torch_nor_the_compiler():
    code = textwrap.dedent(
        """
        import sys
        import framecache.plan
        bad = [m for m in ("torch", "framecache.compiler", "framecache.cache") if m in sys.modules]
        print(bad)
        """
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _leaf_kinds(root: Any) -> list[str]:
    """Every leaf kind in a C++ tree, depth first."""
    kinds: list[str] = []

    def walk(node: Any) -> None:
        kinds.extend(kind for kind, _ in node.leaf_guards())
        for child in node.children():
            walk(child)

    walk(root)
    return kinds


def test_each_kind_lowers_to_the_cpp_leaf_of_its_name():
    x = sources.local("x")
    cases: list[guards.Guard] = [
        guards.TypeMatch(x, int),
        guards.IdMatch(x, len),
        guards.EqualsMatch(x, 3),
        guards.NoneMatch(sources.local("n")),
        guards.FloatIsNan(sources.local("f")),
        guards.LengthCheck(sources.local("t"), 2),
        guards.DictLength(sources.local("d"), 1),
        guards.MappingKeysMatch(sources.local("m"), ("a",)),
        guards.DictContains(sources.local("d"), "k", False),
        guards.NoHasattr(sources.local("o"), "gain"),
    ]
    for guard in cases:
        plan = GuardPlan()
        plan.add(guard)
        assert _leaf_kinds(materialize(plan)) == [guard.KIND], guard
        assert guard.describe().startswith(f"{sources.render(guard.source)}: {guard.KIND}")
    assert KINDS["MAPPING_KEYS_MATCH"] is guards.MappingKeysMatch
    assert "DICT_KEYS" not in KINDS


def test_materialized_plan_checks_what_it_describes():
    plan = GuardPlan()
    plan.add(guards.TypeMatch(sources.local("x"), int))
    plan.add(guards.EqualsMatch(sources.local("x"), 3))
    plan.add(guards.EqualsMatch(sources.item(sources.local("d"), "k"), "v"))
    root = materialize(plan)
    assert root.check({"x": 3, "d": {"k": "v"}})
    info = root.check_verbose({"x": 4, "d": {"k": "v"}})
    assert not info.result and "L['x']" in info.failures[0]
    assert not root.check({"x": 3, "d": {"k": "w"}})


def test_absence_guards_check_absence_and_keep_one_guard_per_key():
    plan = GuardPlan()
    d, o = sources.local("d"), sources.local("o")
    for key in ("a", "b", "a"):
        plan.add(guards.DictContains(d, key, False))
    plan.add(guards.DictContains(d, 1, False))
    plan.add(guards.NoHasattr(o, "gain"))
    plan.add(guards.NoHasattr(o, "bias"))
    assert len(plan.guards) == 5
    root = materialize(plan)

    class Obj:
        pass

    obj = Obj()
    assert root.check({"d": {"c": 1}, "o": obj})
    assert not root.check({"d": {"b": 1}, "o": obj})
    assert not root.check({"d": {1: 0}, "o": obj})
    obj.bias = 1.0
    assert not root.check({"d": {}, "o": obj})
    codec = _Codec()
    again = GuardPlan.decode(codec, plan.encode(codec, set()))
    assert again.describe() == plan.describe()


def test_a_plan_holds_a_guard_once():
    plan = GuardPlan()
    for _ in range(3):
        plan.add(guards.EqualsMatch(sources.local("x"), 1))
    plan.add(guards.ObjectAliasing((), sources.local("a"), sources.local("b")))
    plan.add(guards.ObjectAliasing((), sources.local("a"), sources.local("b")))
    assert len(plan.guards) == 2
    assert plan.describe()[1] == "OBJECT_ALIASING L['a'] is L['b']"


class _Codec:
    """A codec naming objects from a table, as the disk cache names them by reference."""

    NotPortable = ValueError

    def __init__(self) -> None:
        self.table = {"int": int, "len": len}

    def ref(self, obj: Any) -> Any:
        for name, value in self.table.items():
            if value is obj:
                return name
        raise self.NotPortable(f"no name for {obj!r}")

    def resolve(self, ref: Any) -> Any:
        return self.table[ref]

    def identity(self, obj: Any, lifted: set[int]) -> list[tuple[str, Any]]:
        return [("ref", self.ref(obj))]

    def tensor_meta(self, tensor: Any, dynamic_dims: frozenset[int]) -> tuple[Any, ...]:
        raise self.NotPortable("no tensors here")

    def example_tensor(self, meta: tuple[Any, ...]) -> Any:
        raise LookupError("no tensors here")

    def ambient_state(self) -> tuple[Any, ...]:
        return ("state",)

    def torch_constant(self, name: str) -> Any:
        raise LookupError(name)


def test_encode_decode_round_trip_through_a_codec():
    codec = _Codec()
    plan = GuardPlan()
    plan.add(guards.TypeMatch(sources.local("x"), int))
    plan.add(guards.IdMatch(sources.global_("f"), len))
    plan.add(guards.MappingKeysMatch(sources.local("d"), ("a", "b")))
    plan.add(guards.EqualsMatch(sources.attr(sources.local("o"), "k"), 2.5))
    plan.add(guards.GlobalState(()))
    encoded = plan.encode(codec, set())
    assert [e[0] for e in encoded] == [
        "TYPE_MATCH",
        "ID_MATCH",
        "MAPPING_KEYS_MATCH",
        "EQUALS_MATCH",
        "GLOBAL_STATE",
    ]
    again = GuardPlan.decode(codec, encoded)
    assert again.describe() == plan.describe()
    codec.ambient_state = lambda: ("other",)  # type: ignore[method-assign]
    with pytest.raises(LookupError, match="ambient state"):
        GuardPlan.decode(codec, encoded)
    with pytest.raises(LookupError, match="unknown guard kind"):
        GuardPlan.decode(codec, [("DICT_KEYS", sources.local("d"), (("a",),))])
    bad = GuardPlan()
    bad.add(guards.EqualsMatch(sources.local("x"), object()))
    with pytest.raises(ValueError, match="constant of type object"):
        bad.encode(codec, set())


# -- what the capture read ------------------------------------------------------------------


class _Node:
    def __init__(self, nxt: Any, size: int) -> None:
        self.next = nxt
        self.payload = list(range(size))
        self.children = {str(i): [i] * 4 for i in range(size)}


def _chain(n: int) -> _Node | None:
    head = None
    for _ in range(n):
        head = _Node(head, 50)
    return head


class _Config:
    def __init__(self) -> None:
        self.scale = 2.0
        self.shift = 1.0


GRAPH = _chain(2000)  # a global reaching a large object graph
CONFIG = _Config()


def _reads_little(x):
    head = GRAPH
    return x * CONFIG.scale + (1.0 if head is not None else 0.0)


@pytest.fixture
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_globals_are_guarded_where_read_not_walked():
    import torch

    out = framecache.explain(_reads_little, torch.ones(2))
    guards_text = out.guards[0]
    assert len(guards_text) < 20, guards_text
    assert any("CONFIG'].scale: EQUALS_MATCH 2.0" in g for g in guards_text), guards_text
    assert not any("shift" in g for g in guards_text)  # never read
    assert not any("payload" in g or "next" in g for g in guards_text)


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_an_attribute_read_through_a_global_object_recompiles_when_it_changes():
    import torch

    f = framecache.compile(_reads_little, cache=False)
    x = torch.ones(2)
    torch.testing.assert_close(f(x), x * 2.0 + 1.0)
    CONFIG.scale = 3.0
    try:
        torch.testing.assert_close(f(x), x * 3.0 + 1.0)
    finally:
        CONFIG.scale = 2.0
    s = framecache.stats(f)
    assert s.compiles == 2 and any("scale" in r for r in s.recompile_reasons), s


def _helper_reads(cfg, x):
    c = cfg
    return x * c.scale


def _calls_helper_with_a_global(x):
    return _helper_reads(CONFIG, x)


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_a_callee_read_is_guarded_at_the_caller_source():
    import torch

    out = framecache.explain(_calls_helper_with_a_global, torch.ones(2))
    assert any("['CONFIG'].scale: EQUALS_MATCH" in g for g in out.guards[0]), out.guards[0]


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_instances_of_one_module_class_share_an_entry():
    import torch

    class Layer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = torch.nn.Linear(4, 4)
            self.k = 2

        def forward(self, x):
            return self.lin(x) * self.k

    class Stack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList(Layer() for _ in range(12))

        def forward(self, x):
            print("falls back")  # the top frame is not captured: each Layer.forward is
            for layer in self.layers:
                x = layer(x)
            return x

    torch.manual_seed(0)
    stack = Stack()
    compiled = framecache.compile(stack, cache=False)
    x = torch.randn(2, 4)
    # (pytest turns warnings into errors: a RecompileLimitWarning would fail here)
    with torch.no_grad():  # one entry: every layer's input has requires_grad=False
        torch.testing.assert_close(compiled(x), stack(x))
        torch.testing.assert_close(compiled(x), stack(x))
        s = framecache.stats(Layer.forward)
        assert (s.compiles, s.hits) == (1, 23), s
        assert len(framecache.cache_entries(Layer.forward.__code__)) == 1
        # A layer whose state differs gets its own entry; the others keep sharing.
        stack.layers[3].k = 5
        torch.testing.assert_close(compiled(x), stack(x))
        assert framecache.stats(Layer.forward).compiles == 2


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_tied_submodules_stay_tied():
    import torch

    class Tied(torch.nn.Module):
        def __init__(self, a: torch.nn.Module, b: torch.nn.Module) -> None:
            super().__init__()
            self.a = a
            self.b = b

        def forward(self, x):
            return self.a(x) + self.b(x)

    torch.manual_seed(0)
    shared = torch.nn.Linear(3, 3)
    tied = Tied(shared, shared)
    x = torch.randn(2, 3)
    text = "\n".join(framecache.explain(tied, x).guards[0])
    assert "OBJECT_ALIASING" in text, text
    compiled = framecache.compile(tied, cache=False)
    torch.testing.assert_close(compiled(x), tied(x))
    tied.b = torch.nn.Linear(3, 3)  # no longer the same module
    torch.testing.assert_close(compiled(x), tied(x))
    assert framecache.stats(compiled).compiles == 2


def _scaled_by(k):
    def decorate(fn):
        def wrapper(self, x):
            return fn(self, x) * k

        return wrapper

    return decorate


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_a_decorated_method_of_a_submodule_has_its_cells_guarded_through_its_class():
    import torch

    class Inner(torch.nn.Module):
        @_scaled_by(3.0)
        def forward(self, x):
            return x + 1

    class Outer(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.inner = Inner()

        def forward(self, x):
            return self.inner(x) * 2

    outer = Outer()
    x = torch.ones(2)
    out = framecache.explain(outer, x)
    assert out.graph_count == 1, out
    text = "\n".join(out.guards[0])
    assert "type(L['self'].__dict__['_modules']['inner']).forward" in text, text
    compiled = framecache.compile(outer, cache=False)
    torch.testing.assert_close(compiled(x), outer(x))
    # Rebinding the class's forward to another wrapper (other cells) is a recompile.
    Inner.forward = _scaled_by(5.0)(lambda self, x: x + 1)
    torch.testing.assert_close(compiled(x), outer(x))
    assert framecache.stats(compiled).compiles == 2


def _registered(k):
    """A decorator whose wrapper keeps itself in one of its cells (as transformers'
    output-capturing and deprecation wrappers do) and a scale in another."""

    def decorate(fn):
        scale = [k]

        def wrapper(self, x):
            if wrapper.__name__ != "wrapper":  # reads its own cell
                raise AssertionError
            return fn(self, x) * scale[0]

        return wrapper

    return decorate


@pytest.mark.torch
@pytest.mark.usefixtures("_fresh")
def test_a_closure_reached_again_is_tied_to_its_first_path_not_walked_again():
    import torch

    class Block(torch.nn.Module):
        @_registered(2.0)
        def forward(self, x):
            return x + 1

    class Model(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.block = Block()

        def forward(self, x):
            return self.block(x) * 3

    model = Model()
    x = torch.ones(2)
    out = framecache.explain(model, x)
    assert out.graph_count == 1, out
    text = "\n".join(out.guards[0])
    forward = "type(L['self'].__dict__['_modules']['block']).forward"
    # The wrapper's own cell holds the wrapper: one aliasing guard, no second subtree.
    assert f"{forward}.__closure__[" in text, text
    assert ".cell_contents.__code__" not in text.replace(f"{forward}.__code__", ""), text
    assert "OBJECT_ALIASING" in text, text
    compiled = framecache.compile(model, cache=False)
    torch.testing.assert_close(compiled(x), model(x))
    # The other cell still counts: a new scale list is a recompile with the new result.
    Block.forward.__closure__[1].cell_contents = [5.0]
    torch.testing.assert_close(compiled(x), model(x))
    assert framecache.stats(compiled).compiles == 2
