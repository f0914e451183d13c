"""Python attribute hooks the guards perform in C (framecache/_attr_hooks.py decides which).

A config class written the way transformers writes ``PreTrainedConfig`` (a
``__getattribute__`` that renames keys through ``attribute_map``, a pass-through
``__getattribute__`` on a mixin, properties that return another attribute) has its
attribute guards performed without calling into Python. These tests check the
recognition (exact shapes only) and that guards on such objects still see every change
that changes what ``getattr`` returns.
"""

from __future__ import annotations

import sys
import types
from typing import Any, ClassVar

import pytest

import framecache
from framecache import _C
from framecache._attr_hooks import recognise
from framecache.guards import RootGuardManager


class Layered:
    def __getattribute__(self, key):
        layer_spec = super().__getattribute__("__dict__").get("_spec")
        if layer_spec is not None:
            if key in layer_spec:
                return layer_spec[key]
        return super().__getattribute__(key)


class BaseConfig(Layered):
    attribute_map: ClassVar[dict[str, str]] = {"hidden_size": "n_embd"}
    return_dict = True

    def __getattribute__(self, key):
        if key != "attribute_map" and key in super().__getattribute__("attribute_map"):
            key = super().__getattribute__("attribute_map")[key]
        return super().__getattribute__(key)

    @property
    def attn(self) -> Any:
        """The implementation in use."""
        return self._attn_internal


class Config(BaseConfig):
    def __init__(self) -> None:
        self.n_embd = 64
        self._attn_internal = "sdpa"
        self.use_cache = False


def _verdict(fn: Any) -> str:
    return _C.guards._attr_hook_verdict(fn.__code__)


def test_the_shapes_are_recognised_with_their_parameters() -> None:
    assert recognise(BaseConfig.__dict__["__getattribute__"].__code__) == (
        "redirect",
        "attribute_map",
    )
    assert recognise(Layered.__dict__["__getattribute__"].__code__) == ("pass_through", "_spec")
    assert recognise(BaseConfig.__dict__["attn"].fget.__code__) == ("alias", "_attn_internal")
    assert _verdict(BaseConfig.__dict__["__getattribute__"]) == "redirect"
    assert _verdict(BaseConfig.__dict__["attn"].fget) == "alias"


def _hooks(source: str) -> types.SimpleNamespace:
    namespace: dict[str, Any] = {}
    exec(compile(source, "<hooks>", "exec"), namespace)
    return types.SimpleNamespace(**namespace)


@pytest.mark.parametrize(
    "source",
    [
        # Operands of `and` swapped.
        "class C:\n def __getattribute__(self, key):\n"
        "  if key in super().__getattribute__('attribute_map') and key != 'attribute_map':\n"
        "   key = super().__getattribute__('attribute_map')[key]\n"
        "  return super().__getattribute__(key)\n",
        # Two different maps.
        "class C:\n def __getattribute__(self, key):\n"
        "  if key != 'attribute_map' and key in super().__getattribute__('attribute_map'):\n"
        "   key = super().__getattribute__('other_map')[key]\n"
        "  return super().__getattribute__(key)\n",
        # A statement more.
        "class C:\n def __getattribute__(self, key):\n"
        "  print(key)\n"
        "  if key != 'attribute_map' and key in super().__getattribute__('attribute_map'):\n"
        "   key = super().__getattribute__('attribute_map')[key]\n"
        "  return super().__getattribute__(key)\n",
        # A pass-through whose compared path is inside a try block.
        "class C:\n def __getattribute__(self, key):\n"
        "  try:\n"
        "   spec = super().__getattribute__('__dict__').get('_spec')\n"
        "   if spec is not None:\n    print(spec)\n"
        "   return super().__getattribute__(key)\n"
        "  except KeyError:\n   return None\n",
        # A pass-through that returns something else when the spec is None.
        "class C:\n def __getattribute__(self, key):\n"
        "  spec = super().__getattribute__('__dict__').get('_spec')\n"
        "  if spec is not None:\n   print(spec)\n"
        "  return super().__getattribute__(key.lower())\n",
    ],
)
def test_other_code_is_not_recognised(source: str) -> None:
    hook = _hooks(source).C.__dict__["__getattribute__"]
    assert recognise(hook.__code__) is None
    assert _verdict(hook) == ""


@pytest.mark.parametrize(
    "body",
    ["return self.x.y", "return self.x()", "return other.x", "return self.x + 1", "x = 1"],
)
def test_getters_other_than_aliases_are_not_recognised(body: str) -> None:
    getter = _hooks(f"def getter(self):\n    {body}\n").getter
    assert recognise(getter.__code__) is None


def _guard(attrs: dict[str, Any], absent: tuple[str, ...] = ()) -> RootGuardManager:
    root = RootGuardManager()
    node = root.local("c")
    for name, value in attrs.items():
        node.attr(name).equals_match(value)
    for name in absent:
        node.no_hasattr(name)
    return root


def test_guards_see_every_change_getattr_sees() -> None:
    c = Config()
    root = _guard(
        {"hidden_size": 64, "use_cache": False, "attn": "sdpa", "return_dict": True},
        absent=("is_causal",),
    )
    assert root.check({"c": c})

    c.n_embd = 32  # what the map points at
    assert not root.check({"c": c})
    c.n_embd = 64
    BaseConfig.attribute_map["use_cache"] = "n_embd"  # the map itself
    try:
        assert not root.check({"c": c})
    finally:
        del BaseConfig.attribute_map["use_cache"]
    assert root.check({"c": c})

    c._attn_internal = "eager"  # what the property returns
    assert not root.check({"c": c})
    c._attn_internal = "sdpa"
    c.is_causal = True  # hasattr turns true
    assert not root.check({"c": c})
    del c.is_causal
    c.return_dict = False  # an instance attribute shadows the class's
    assert not root.check({"c": c})
    del c.return_dict

    c._spec = {"use_cache": True}  # the pass-through's other branch
    assert not root.check({"c": c})
    c._spec = None
    assert root.check({"c": c})

    prop = BaseConfig.__dict__["attn"]
    original = prop.fget
    prop.__init__(lambda self: "replaced")  # the getter swapped in place
    try:
        assert not root.check({"c": c})
    finally:
        prop.__init__(original)
    assert root.check({"c": c})


def _python_calls_during(fn: Any, codes: set[types.CodeType]) -> int:
    """How many times a Python frame of one of ``codes`` started while ``fn()`` ran."""
    calls = 0

    def profile(frame: types.FrameType, event: str, arg: object) -> None:
        nonlocal calls
        if event == "call" and frame.f_code in codes:
            calls += 1

    previous = sys.getprofile()
    sys.setprofile(profile)
    try:
        fn()
    finally:
        sys.setprofile(previous)
    return calls


def test_a_modelled_read_runs_no_python() -> None:
    c = Config()
    hooks = {
        BaseConfig.__dict__["__getattribute__"].__code__,
        Layered.__dict__["__getattribute__"].__code__,
        BaseConfig.__dict__["attn"].fget.__code__,
    }
    root = _guard({"hidden_size": 64, "attn": "sdpa"}, absent=("is_causal",))
    assert root.check({"c": c})
    assert _python_calls_during(lambda: root.check({"c": c}), hooks) == 0
    # The same reads through getattr() run all three (11 frames: every super() call of
    # the redirect enters the pass-through).
    assert _python_calls_during(lambda: (c.hidden_size, c.attn), hooks) == 11
    # A hook the model steps aside for runs as Python.
    c._spec = {"attn": "other"}
    assert _python_calls_during(lambda: root.check({"c": c}), hooks) > 0
    assert not root.check({"c": c})


@pytest.mark.torch
def test_a_compiled_function_recompiles_when_a_config_changes() -> None:
    c = Config()

    def width(x: int, cfg: Config) -> int:
        if cfg.attn == "sdpa" and not hasattr(cfg, "is_causal"):
            return x * cfg.hidden_size
        return -x

    compiled = framecache.compile(width, backend="eager", cache=False)
    assert compiled(2, c) == 128
    c.n_embd = 3
    assert compiled(2, c) == 6
    c._attn_internal = "eager"
    assert compiled(2, c) == -2
    c._attn_internal = "sdpa"
    c.is_causal = True
    assert compiled(2, c) == -2
    del c.is_causal
    BaseConfig.attribute_map["hidden_size"] = "use_cache"
    try:
        assert compiled(2, c) == 0
    finally:
        BaseConfig.attribute_map["hidden_size"] = "n_embd"
    assert compiled(2, c) == 6


@pytest.mark.torch
def test_transformers_configs_are_read_in_c() -> None:
    import transformers

    config = transformers.GPT2Config(n_embd=64, n_layer=2, n_head=2, vocab_size=1000)
    hooks = [
        k.__dict__["__getattribute__"]
        for k in type(config).__mro__
        if "__getattribute__" in k.__dict__ and k is not object
    ]
    assert [_verdict(h) for h in hooks] in (["redirect"], ["redirect", "pass_through"])
    names = ["use_cache", "return_dict", "output_attentions", "_attn_implementation", "hidden_size"]
    root = _guard({n: getattr(config, n) for n in names}, absent=("is_causal",))
    assert root.check({"c": config})
    codes = {h.__code__ for h in hooks}
    assert _python_calls_during(lambda: root.check({"c": config}), codes) == 0
    config.n_embd = 32
    assert not root.check({"c": config})
