"""framecache.compile never returns a stale result: each change below must recompile."""

from __future__ import annotations

from typing import ClassVar

import pytest
import torch

import framecache

pytestmark = pytest.mark.torch

SCALE = 2.0


def _act(x):
    return torch.relu(x)


def _other_act(x):
    return torch.sigmoid(x)


def uses_global_constant(x):
    return x * SCALE


def uses_global_function(x):
    return _act(x) + 1


def _fx_leaf(x):
    return x * 3 + 1


# Registered like timm's maybe_add_mask and torchvision's stochastic_depth: torch.fx's
# tracer swaps it for a wrapper while make_fx traces a capture.
torch.fx.wrap("_fx_leaf")


def _other_fx_leaf(x):
    return x - 1


def uses_fx_wrapped_function(x):
    return _fx_leaf(x).relu()


@pytest.fixture(autouse=True)
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


def _compiled(fn, **kw):
    return framecache.compile(fn, backend="eager", **kw)


def test_unchanged_inputs_hit():
    f = _compiled(uses_global_constant)
    x = torch.randn(4)
    f(x)
    for _ in range(3):
        torch.testing.assert_close(f(x), x * SCALE)
    s = framecache.stats(f)
    assert s.compiles == 1
    assert s.hits == 3


def test_changed_global_constant_recompiles():
    global SCALE
    f = _compiled(uses_global_constant)
    x = torch.randn(4)
    torch.testing.assert_close(f(x), x * 2.0)
    old = SCALE
    try:
        SCALE = 3.0
        torch.testing.assert_close(f(x), x * 3.0)
    finally:
        SCALE = old
    s = framecache.stats(f)
    assert s.compiles == 2
    assert any("G['SCALE']" in r for r in s.recompile_reasons)


def test_rebound_global_function_recompiles():
    global _act
    f = _compiled(uses_global_function)
    x = torch.randn(4)
    torch.testing.assert_close(f(x), torch.relu(x) + 1)
    old = _act
    try:
        _act = _other_act
        torch.testing.assert_close(f(x), torch.sigmoid(x) + 1)
    finally:
        _act = old
    assert framecache.stats(f).compiles == 2


def test_mutated_closure_cell_recompiles():
    factor = 2.0

    def scaled(x):
        return x * factor

    # In-process identity guards; with the disk cache on, the rebound tensor would be fed
    # to the stored (lifted) graph instead, which test_disk_cache covers.
    f = _compiled(scaled, cache=False)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x * 2.0)
    factor = 5.0
    torch.testing.assert_close(f(x), x * 5.0)
    assert framecache.stats(f).compiles == 2


def test_mutated_closure_cell_of_a_callee_recompiles():
    def make():
        k = 2.0

        def helper(x):
            return x * k

        def set_k(v):
            nonlocal k
            k = v

        return helper, set_k

    helper, set_k = make()

    def outer(x):
        return helper(x) + 1

    f = _compiled(outer)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x * 2.0 + 1)
    set_k(7.0)
    torch.testing.assert_close(f(x), x * 7.0 + 1)


def _scaler(k, bias=0.0):
    def scale(x):
        return x * k + bias

    return scale


def _shifter(k):
    def shift(x):
        return x + k

    return shift


def test_a_closure_made_per_call_is_guarded_by_code_and_cells_not_identity():
    """transformers builds its mask functions anew on every forward and passes them on: a
    frame taking one hits while the closure computes the same thing, and recompiles when
    a cell it reads or its code differs."""

    def apply(x, fn):
        return fn(x) + 1

    f = _compiled(apply)
    x = torch.randn(3)
    for _ in range(3):
        torch.testing.assert_close(f(x, _scaler(2.0)), x * 2.0 + 1)
    s = framecache.stats(apply)
    assert (s.compiles, s.hits) == (1, 2), s
    torch.testing.assert_close(f(x, _scaler(3.0)), x * 3.0 + 1)  # a cell differs
    torch.testing.assert_close(f(x, _shifter(2.0)), x + 3.0)  # another code, same cell
    assert framecache.stats(apply).compiles == 3


def test_a_closure_default_is_guarded():
    def make(k):
        def scale(x, bias=1.0):
            return x * k + bias

        return scale

    def apply(x, fn):
        return fn(x)

    f = _compiled(apply)
    x = torch.randn(3)
    torch.testing.assert_close(f(x, make(2.0)), x * 2.0 + 1.0)
    other = make(2.0)
    other.__defaults__ = (4.0,)
    torch.testing.assert_close(f(x, other), x * 2.0 + 4.0)
    assert framecache.stats(apply).compiles == 2


def test_one_closure_under_two_names_stays_one():
    """``a is b`` was true at capture: two equal closures that are not one object miss."""

    def pick(x, a, b):
        return a(x) if a is b else x - 1

    f = _compiled(pick)
    x = torch.randn(3)
    same = _scaler(2.0)
    torch.testing.assert_close(f(x, same, same), x * 2.0)
    torch.testing.assert_close(f(x, _scaler(2.0), _scaler(2.0)), x - 1)
    assert framecache.stats(pick).compiles == 2


class _Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 3)
        self.drop = torch.nn.Dropout(0.5)

    def forward(self, x):
        return self.drop(self.lin(x))


def test_swapped_module_weight_is_read_by_the_cached_graph():
    torch.manual_seed(0)
    net = _Net().eval()
    # The in-memory cache on its own: parameters are graph inputs, read from the module
    # on every call, so a swapped weight with the same metadata needs no recompile.
    m = framecache.compile(net, cache=False)
    x = torch.randn(2, 4)
    torch.testing.assert_close(m(x), net(x))
    net.lin.weight = torch.nn.Parameter(torch.randn(3, 4))
    torch.testing.assert_close(m(x), net(x))
    assert framecache.stats(m).compiles == 1
    # Other metadata is another graph.
    net.lin.weight = torch.nn.Parameter(torch.randn(3, 4, dtype=torch.float64))
    net.lin.bias = torch.nn.Parameter(torch.randn(3, dtype=torch.float64))
    torch.testing.assert_close(m(x.double()), net(x.double()))
    assert framecache.stats(m).compiles == 2


def test_swapped_module_weight_with_the_disk_cache_on():
    torch.manual_seed(0)
    net = _Net().eval()
    m = framecache.compile(net)
    x = torch.randn(2, 4)
    torch.testing.assert_close(m(x), net(x))
    net.lin.weight = torch.nn.Parameter(torch.randn(3, 4))
    torch.testing.assert_close(m(x), net(x))  # the new weight, through the same entry
    s = framecache.stats(m)
    assert (s.compiles, s.hits, s.entries, s.disk_stores) == (1, 1, 1, 1), s


def test_train_versus_eval_recompiles():
    torch.manual_seed(0)
    net = _Net().eval()
    m = framecache.compile(net)
    x = torch.ones(64, 4)
    torch.testing.assert_close(m(x), net(x))
    net.train()
    out = m(x)
    # Dropout is active: some outputs are zeroed, unlike eval mode.
    assert (out == 0).any()
    assert framecache.stats(m).compiles == 2
    assert any("training" in r for r in framecache.stats(m).recompile_reasons)


@pytest.mark.parametrize(
    ("first", "second", "what"),
    [
        (torch.randn(4), torch.randn(4, dtype=torch.float64), "dtype"),
        (torch.randn(4), torch.randn(4, requires_grad=True), "requires_grad"),
        (torch.randn(4), torch.randn(5), "size"),
        (torch.randn(4), torch.randn(4, device="meta"), "device"),
        (torch.randn(4, 4), torch.randn(4, 4).t(), "stride"),
    ],
)
def test_changed_tensor_metadata_recompiles(first, second, what):
    def double(x):
        return x * 2 + 1

    f = _compiled(double, dynamic=False)
    torch.testing.assert_close(f(first), double(first))
    out = f(second)
    expected = double(second)
    assert out.dtype == expected.dtype
    assert out.device == expected.device
    assert out.requires_grad == expected.requires_grad
    if second.device.type != "meta":
        torch.testing.assert_close(out, expected)
    else:
        assert out.shape == expected.shape
    s = framecache.stats(f)
    assert s.compiles == 2, s
    assert any(what in r for r in s.recompile_reasons), s.recompile_reasons


def test_changed_python_scalar_argument_recompiles():
    def add(x, k):
        return x + k

    f = _compiled(add)
    x = torch.randn(3)
    torch.testing.assert_close(f(x, 1), x + 1)
    torch.testing.assert_close(f(x, 2), x + 2)
    torch.testing.assert_close(f(x, 1), x + 1)
    s = framecache.stats(f)
    assert s.compiles == 2
    assert s.hits == 1


def test_no_grad_after_grad_recompiles():
    def mul(x, w):
        return x * w

    f = _compiled(mul)
    x = torch.randn(3)
    w = torch.randn(3, requires_grad=True)
    assert f(x, w).requires_grad
    with torch.no_grad():
        out = f(x, w)
    assert not out.requires_grad
    assert framecache.stats(f).compiles == 2
    assert any("grad" in r for r in framecache.stats(f).recompile_reasons)


def test_autocast_after_plain_recompiles():
    def mm(a, b):
        return a @ b

    f = _compiled(mm)
    a, b = torch.randn(8, 8), torch.randn(8, 8)
    assert f(a, b).dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = f(a, b)
        expected = a @ b
    assert out.dtype == expected.dtype == torch.bfloat16
    assert framecache.stats(f).compiles == 2


def test_aliased_inputs_recompile():
    def addmul(a, b):
        a.add_(1)
        return a * b

    f = _compiled(addmul)
    a, b = torch.ones(3), torch.ones(3)
    torch.testing.assert_close(f(a, b), torch.full((3,), 2.0))
    c = torch.ones(3)
    # Same object twice: the in-place add is visible through b.
    torch.testing.assert_close(f(c, c), torch.full((3,), 4.0))
    assert framecache.stats(f).compiles == 2


def test_nan_scalar_argument_is_guarded_as_nan():
    def add(x, k):
        return x + k

    f = _compiled(add)
    x = torch.zeros(2)
    assert torch.isnan(f(x, float("nan"))).all()
    assert torch.isnan(f(x, float("nan"))).all()
    torch.testing.assert_close(f(x, 1.0), x + 1.0)
    s = framecache.stats(f)
    assert (s.compiles, s.hits) == (2, 1)


WEIGHT = torch.ones(3)


def uses_global_tensor(x):
    return x * WEIGHT


def test_rebound_global_tensor_recompiles():
    # Same shape, dtype and device: only the tensor's identity tells the two apart (the
    # graph holds the first one as a constant).
    global WEIGHT
    # In-process identity guards; with the disk cache on, the rebound tensor would be fed
    # to the stored (lifted) graph instead, which test_disk_cache covers.
    f = _compiled(uses_global_tensor, cache=False)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x)
    old = WEIGHT
    try:
        WEIGHT = torch.full((3,), 2.0)
        torch.testing.assert_close(f(x), x * 2.0)
    finally:
        WEIGHT = old
    assert framecache.stats(f).compiles == 2
    # In-place updates of the same tensor are seen by the graph without recompiling.
    with torch.no_grad():
        WEIGHT.fill_(4.0)
    try:
        torch.testing.assert_close(f(x), x * 4.0)
    finally:
        WEIGHT.fill_(1.0)
    assert framecache.stats(f).compiles == 2


def test_rebound_closure_tensor_recompiles():
    w = torch.ones(3)

    def scaled(x):
        return x * w

    # In-process identity guards; with the disk cache on, the rebound tensor would be fed
    # to the stored (lifted) graph instead, which test_disk_cache covers.
    f = _compiled(scaled, cache=False)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x)
    w = torch.full((3,), 3.0)
    torch.testing.assert_close(f(x), x * 3.0)
    assert framecache.stats(f).compiles == 2


class _Scaled(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(4, 4)
        self.scale = 2.0
        self.register_buffer("shift", torch.zeros(4))

    def forward(self, x):
        return self.lin(x) * self.scale + self.shift


def test_changed_module_attribute_and_buffer_recompile():
    torch.manual_seed(0)
    net = _Scaled()
    # In-process identity guards; with the disk cache on, the rebound tensor would be fed
    # to the stored (lifted) graph instead, which test_disk_cache covers.
    m = framecache.compile(net, cache=False)
    x = torch.randn(2, 4)
    torch.testing.assert_close(m(x), net(x))
    net.scale = 3.0
    torch.testing.assert_close(m(x), net(x))
    # A buffer is a graph input: the graph reads the new one.
    net.shift = torch.ones(4)
    torch.testing.assert_close(m(x), net(x))
    s = framecache.stats(m)
    assert s.compiles == 2, s
    assert any("scale" in r for r in s.recompile_reasons), s.recompile_reasons
    torch.testing.assert_close(m(x), net(x))
    assert framecache.stats(m).hits == 2
    # A plain attribute that becomes a tensor is read differently: a recompile.
    net.scale = torch.full((4,), 2.0)
    torch.testing.assert_close(m(x), net(x))
    assert framecache.stats(m).compiles == 3


def test_parameter_requires_grad_recompiles():
    torch.manual_seed(0)
    net = torch.nn.Linear(3, 2)
    m = framecache.compile(net)
    x = torch.randn(2, 3)
    assert m(x).requires_grad
    for p in net.parameters():
        p.requires_grad_(False)
    out = m(x)
    assert not out.requires_grad
    torch.testing.assert_close(out, net(x))
    assert framecache.stats(m).compiles == 2


def test_default_dtype_change_recompiles():
    def with_ones(x):
        return torch.ones(2), x + 1

    f = _compiled(with_ones)
    x = torch.randn(3)
    assert f(x)[0].dtype == torch.float32
    previous = torch.get_default_dtype()
    try:
        torch.set_default_dtype(torch.float64)
        assert f(x)[0].dtype == torch.float64
    finally:
        torch.set_default_dtype(previous)
    assert f(x)[0].dtype == torch.float32
    s = framecache.stats(f)
    assert (s.compiles, s.hits) == (2, 1), s
    assert any("default dtype" in r for r in s.recompile_reasons), s.recompile_reasons


# --- reads whose key the frame holds: getattr/hasattr, d[k], d.get(k), vars(o)[k] ---------


class _Cfg:
    """A plain config object: its attributes are guarded where the capture reads them."""

    def __init__(self) -> None:
        self.scale = 2.0
        self.shift = 1.0


class _Reader(torch.nn.Module):
    """Reads its config and tables through keys it is given or computes."""

    def __init__(self) -> None:
        super().__init__()
        self.config = _Cfg()
        # More items than a read walks one by one: only the item read is guarded.
        self.table = {f"k{i}": float(i) for i in range(100)}
        self.factors = [float(i) for i in range(100)]


class _GetattrArg(_Reader):
    def forward(self, x, name):
        return x * getattr(self.config, name)


class _GetattrLoop(_Reader):
    def forward(self, x):
        for key in ("scale", "shift"):
            x = x * getattr(self.config, key)
        return x


class _GetattrComprehension(_Reader):
    def forward(self, x):
        cfg = self.config
        values = [getattr(cfg, k) for k in ("scale", "shift")]
        return x * values[0] + values[1]


class _GetattrDefault(_Reader):
    def forward(self, x, name):
        return x * getattr(self.config, name, 1.0)


class _Hasattr(_Reader):
    def forward(self, x):
        if hasattr(self.config, "bias"):
            return x + self.config.bias
        return x


class _ComputedName(_Reader):
    def forward(self, x, suffix):
        return x * getattr(self.config, "sc" + suffix)


class _DictLocalKey(_Reader):
    def forward(self, x, key):
        return x * self.table[key]


class _DictGet(_Reader):
    def forward(self, x, key):
        return x * self.table.get(key, 0.5)


class _ListLocalIndex(_Reader):
    def forward(self, x, i):
        return x * self.factors[i]


class _InstanceDictGet(_Reader):
    def forward(self, x, name):
        return x * self.config.__dict__.get(name, 1.0)


class _VarsItem(_Reader):
    def forward(self, x, name):
        return x * vars(self.config)[name]


def _recompiles_on(model, args, change, expected):
    f = framecache.compile(model, backend="eager")
    x = torch.randn(4)
    torch.testing.assert_close(f(x, *args), model(x, *args))
    change(model)
    torch.testing.assert_close(f(x, *args), expected(x))
    torch.testing.assert_close(f(x, *args), model(x, *args))
    s = framecache.stats(f)
    assert s.compiles == 2, s
    return s


def _set(path, value):
    def change(model):
        obj = model
        *head, last = path
        for name in head:
            obj = getattr(obj, name)
        if isinstance(obj, (dict, list)):
            obj[last] = value
        else:
            setattr(obj, last, value)

    return change


def test_getattr_with_an_argument_name_recompiles():
    s = _recompiles_on(_GetattrArg(), ("scale",), _set(("config", "scale"), 3.0), lambda x: x * 3.0)
    assert any("scale" in r for r in s.recompile_reasons), s.recompile_reasons


def test_getattr_in_a_loop_recompiles():
    _recompiles_on(_GetattrLoop(), (), _set(("config", "shift"), 5.0), lambda x: x * 2.0 * 5.0)


def test_getattr_in_a_comprehension_guards_every_name():
    # The comprehension rebinds k within one line: each read is resolved as it runs.
    _recompiles_on(
        _GetattrComprehension(), (), _set(("config", "shift"), 4.0), lambda x: x * 2.0 + 4.0
    )


def test_getattr_default_then_attribute_added_recompiles():
    _recompiles_on(_GetattrDefault(), ("gain",), _set(("config", "gain"), 7.0), lambda x: x * 7.0)


def test_hasattr_flip_recompiles_both_ways():
    m = _Hasattr()
    f = framecache.compile(m, backend="eager")
    x = torch.randn(4)
    torch.testing.assert_close(f(x), x)
    m.config.bias = 3.0
    torch.testing.assert_close(f(x), x + 3.0)
    del m.config.bias
    torch.testing.assert_close(f(x), x)
    assert framecache.stats(f).compiles >= 2


def test_getattr_with_a_computed_name_guards_the_object_whole():
    _recompiles_on(_ComputedName(), ("ale",), _set(("config", "scale"), 6.0), lambda x: x * 6.0)


def test_dict_item_through_a_local_key_recompiles():
    _recompiles_on(_DictLocalKey(), ("k3",), _set(("table", "k3"), 9.0), lambda x: x * 9.0)


def test_dict_get_of_an_absent_key_then_added_recompiles():
    _recompiles_on(_DictGet(), ("new",), _set(("table", "new"), 8.0), lambda x: x * 8.0)


def test_dict_get_of_a_present_key_recompiles():
    _recompiles_on(_DictGet(), ("k5",), _set(("table", "k5"), -1.0), lambda x: x * -1.0)


def test_list_item_through_a_local_index_recompiles():
    _recompiles_on(_ListLocalIndex(), (7,), _set(("factors", 7), 11.0), lambda x: x * 11.0)


def test_instance_dict_get_recompiles():
    _recompiles_on(
        _InstanceDictGet(), ("scale",), _set(("config", "scale"), 12.0), lambda x: x * 12.0
    )


def test_vars_item_recompiles():
    _recompiles_on(_VarsItem(), ("shift",), _set(("config", "shift"), 13.0), lambda x: x * 13.0)


class _GetattrAcrossABranch(_Reader):
    def forward(self, x, name, flag):
        # The name is chosen by a conditional expression: the parser loses the call, the
        # C call of getattr is seen and the frame is not captured (never served stale).
        return x * getattr(self.config, name if flag else "shift")


def test_getattr_the_parser_cannot_follow_is_not_served_stale():
    m = _GetattrAcrossABranch()
    f = framecache.compile(m, backend="eager")
    x = torch.randn(4)
    torch.testing.assert_close(f(x, "scale", True), x * 2.0)
    m.config.scale = 3.0
    torch.testing.assert_close(f(x, "scale", True), x * 3.0)
    s = framecache.stats(f)
    assert s.compiles == 0 and s.fallbacks >= 1, s
    framecache.reset()
    out = framecache.explain(m, x, "scale", True)
    assert any("getattr()" in r and "could not follow" in r for r in out.fallback_reasons), (
        out.fallback_reasons
    )


class _AliasedCfg:
    """A config whose own Python ``__getattribute__`` maps alias names (as Hugging Face
    configs do): every attribute read runs it."""

    aliases: ClassVar[dict[str, str]] = {"gain": "scale"}

    def __init__(self) -> None:
        self.scale = 2.0
        self.shift = 1.0

    def __getattribute__(self, name):
        if name != "aliases" and name in type(self).aliases:
            name = type(self).aliases[name]
        return super().__getattribute__(name)


class _FormattedName(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.config = _AliasedCfg()

    def forward(self, x, suffix):
        # The name is an f-string: out of the parser's reach; the config's
        # __getattribute__ receives it, and the read is guarded there.
        return x * getattr(self.config, f"{suffix}", 1.0) + self.config.shift


def test_getattr_with_a_formatted_name_on_a_hooked_config_is_captured_and_guarded():
    m = _FormattedName()
    f = framecache.compile(m, backend="eager")
    x = torch.randn(4)
    torch.testing.assert_close(f(x, "gain"), x * 2.0 + 1.0)
    assert framecache.stats(f).compiles == 1 and framecache.stats(f).fallbacks == 0
    m.config.scale = 5.0  # what the alias reads
    torch.testing.assert_close(f(x, "gain"), x * 5.0 + 1.0)
    _AliasedCfg.aliases = {"gain": "shift"}  # the alias map itself
    try:
        torch.testing.assert_close(f(x, "gain"), x * 1.0 + 1.0)
    finally:
        _AliasedCfg.aliases = {"gain": "scale"}
    torch.testing.assert_close(f(x, "bias"), x + 1.0)  # absent: the default
    m.config.bias = 3.0
    torch.testing.assert_close(f(x, "bias"), x * 3.0 + 1.0)
    assert framecache.stats(f).compiles >= 4


_WRAPPED_INIT_HELPER = """
class WrapInitMeta(type):
    # Wraps each class's __init__ in a closure, as transformers' ModelOutput does.
    def __setattr__(cls, name, value):
        if name == "__init__":
            init = value

            def __init__(self, *args, **kwargs):
                init(self, *args, **kwargs)

            value = __init__
        super().__setattr__(name, value)


class Out(metaclass=WrapInitMeta):
    pass


def plain_init(self, value):
    self.value = value


def doubled_init(self, value):
    self.value = value * 2.0


Out.__init__ = plain_init
"""


def _third_party_module(tmp_path, monkeypatch, name, source):
    """``source`` imported as an installed (site-packages) module: what it reads is
    guarded, its side effects are its own (side_effects.is_third_party_code)."""
    import importlib
    import os
    import sys

    from framecache.compiler import side_effects

    stdlib = tmp_path / "lib" / "python3"
    site = stdlib / "site-packages"
    site.mkdir(parents=True, exist_ok=True)
    (site / f"{name}.py").write_text(source)
    stdlib_dirs = (*side_effects._STDLIB_DIRS, str(stdlib) + os.sep)
    monkeypatch.setattr(side_effects, "_STDLIB_DIRS", stdlib_dirs)
    monkeypatch.setattr(side_effects, "_SITE_DIRS", (*side_effects._SITE_DIRS, str(site) + os.sep))
    monkeypatch.syspath_prepend(str(site))
    module = importlib.import_module(name)
    monkeypatch.delitem(sys.modules, name)
    return module


def test_a_class_with_a_wrapped_init_closure_is_captured_and_its_init_guarded(
    tmp_path, monkeypatch
):
    helper = _third_party_module(
        tmp_path, monkeypatch, "fc_wrapped_init_helper", _WRAPPED_INIT_HELPER
    )

    def f(x):
        return helper.Out(x * 2.0).value

    g = _compiled(f)
    x = torch.randn(4)
    torch.testing.assert_close(g(x), x * 2.0)
    assert framecache.stats(g).compiles == 1 and framecache.stats(g).fallbacks == 0
    helper.Out.__init__ = helper.doubled_init  # a new closure around another init
    torch.testing.assert_close(g(x), x * 4.0)
    assert framecache.stats(g).compiles == 2


class _SliceOfList(_Reader):
    def forward(self, x, n):
        return x * sum(self.factors[1:n])


def test_list_slice_with_a_local_bound_guards_the_list():
    _recompiles_on(_SliceOfList(), (3,), _set(("factors", 2), 20.0), lambda x: x * 21.0)


class _TensorSlice(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("ids", torch.arange(16))

    def forward(self, x, n):
        return x + self.ids[:n]


def test_tensor_slice_with_a_local_bound_still_compiles():
    m = _TensorSlice()
    f = framecache.compile(m, backend="eager")
    x = torch.randn(4)
    torch.testing.assert_close(f(x, 4), x + torch.arange(4))
    assert framecache.stats(f).compiles == 1


class _KeyIn(_Reader):
    def forward(self, x, key):
        if key in self.table:
            return x + 1
        return x - 1


def test_key_in_a_large_dict_flip_recompiles():
    _recompiles_on(_KeyIn(), ("extra",), _set(("table", "extra"), 0.0), lambda x: x + 1)


_THIRD_PARTY_HELPER = """
def scaled(holder, x):
    return x * holder.factor
"""


def test_attribute_read_in_a_site_packages_module_recompiles(tmp_path, monkeypatch):
    """A pyenv/system layout: site-packages sits under the stdlib directory.

    Code installed there is third-party, not standard library: what it reads is guarded.
    """
    from framecache.compiler import side_effects

    helper = _third_party_module(
        tmp_path, monkeypatch, "fc_third_party_helper", _THIRD_PARTY_HELPER
    )
    assert not side_effects.is_library_code(helper.scaled.__code__)
    assert side_effects.is_third_party_code(helper.scaled.__code__)

    class Holder:
        factor = 2.0

    holder = Holder()

    def f(x):
        return helper.scaled(holder, x) + 1

    g = _compiled(f)
    x = torch.randn(4)
    torch.testing.assert_close(g(x), x * 2.0 + 1)
    holder.factor = 3.0
    torch.testing.assert_close(g(x), x * 3.0 + 1)
    assert framecache.stats(g).compiles == 2


def test_tiny_bert_attention_scaling_change_is_seen():
    """transformers' BertSelfAttention reads ``self.scaling`` in forward: changing it recompiles."""
    pytest.importorskip("transformers")
    import os
    import sys

    sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "benchmarks"))
    try:
        import zoo_models
    finally:
        sys.path.pop(0)
    model, args = zoo_models.MODELS["hf_bert"].build(torch.device("cpu"))
    attention = model.encoder.layer[0].attention.self
    with torch.no_grad():
        compiled = framecache.compile(model, backend="eager", cache=False)
        first = compiled(*args).last_hidden_state
        torch.testing.assert_close(first, model(*args).last_hidden_state)
        attention.scaling = attention.scaling * 4.0
        expected = model(*args).last_hidden_state
        assert not torch.allclose(expected, first)
        torch.testing.assert_close(compiled(*args).last_hidden_state, expected)


class _Registry:
    """A class-level table, updated by a classmethod (transformers' GeneralInterface)."""

    table: ClassVar[dict] = {"act": torch.relu}

    @classmethod
    def register(cls, key, fn):
        cls.table[key] = fn


_REGISTRY = _Registry()


def test_a_class_level_registry_updated_recompiles():
    """A dict held by a class, read through an instance or through the class: the class
    guards nothing of its members (before the fix, both served relu after tanh was
    registered)."""

    def through_instance(x):
        return _REGISTRY.table["act"](x)

    def through_class(x):
        return _Registry.table["act"](x)

    x = torch.tensor([-1.0, 2.0])
    for fn in (through_instance, through_class):
        framecache.reset()
        _Registry.register("act", torch.relu)
        f = _compiled(fn)
        try:
            torch.testing.assert_close(f(x), torch.relu(x))
            _Registry.register("act", torch.tanh)
            torch.testing.assert_close(f(x), torch.tanh(x))
            assert framecache.stats(fn).compiles == 2
        finally:
            _Registry.register("act", torch.relu)


def test_a_method_monkeypatched_on_the_class_recompiles():
    class Model:
        def act(self, x):
            return torch.relu(x)

        def forward(self, x):
            return self.act(x) + 1

    m = Model()
    f = _compiled(m.forward)
    x = torch.tensor([-1.0, 2.0])
    torch.testing.assert_close(f(x), torch.relu(x) + 1)
    torch.testing.assert_close(f(x), torch.relu(x) + 1)
    Model.act = lambda self, x: torch.tanh(x)
    torch.testing.assert_close(f(x), torch.tanh(x) + 1)
    s = framecache.stats(Model.forward)
    assert (s.compiles, s.hits) == (2, 1), s


def test_a_class_level_object_changed_recompiles():
    class Settings:
        def __init__(self):
            self.scale = 2.0

    class Model:
        settings = Settings()

        def forward(self, x):
            return x * self.settings.scale

    m = Model()
    f = _compiled(m.forward)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x * 2.0)
    Model.settings.scale = 3.0
    torch.testing.assert_close(f(x), x * 3.0)
    Model.settings = Settings()  # another object, the same value: reads the same
    torch.testing.assert_close(f(x), x * 2.0)


class _SharedSettings:
    def __init__(self, scale):
        self.scale = scale


class _Inner(torch.nn.Module):
    def __init__(self, settings):
        super().__init__()
        self.settings = settings

    def forward(self, x):
        return x * self.settings.scale


class _Outer(torch.nn.Module):
    """One settings object under two paths (a transformers config held by every layer):
    the inner path's reads are guarded once, through the first path."""

    def __init__(self):
        super().__init__()
        self.settings = _SharedSettings(2.0)
        self.inner = _Inner(self.settings)

    def forward(self, x):
        return self.inner(x) + self.settings.scale


@pytest.mark.parametrize("cache", [False, True], ids=["memory", "disk"])
def test_an_object_under_two_paths_is_guarded_on_both(cache):
    """With the disk cache, where identity guards become type checks, too."""
    m = _Outer()
    f = _compiled(m, cache=cache)
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x * 2.0 + 2.0)
    m.settings.scale = 3.0  # the shared object changes: seen through either path
    torch.testing.assert_close(f(x), x * 3.0 + 3.0)
    m.inner.settings = _SharedSettings(5.0)  # the paths part: the inner one is its own
    torch.testing.assert_close(f(x), x * 5.0 + 3.0)
    m.inner.settings = m.settings
    torch.testing.assert_close(f(x), x * 3.0 + 3.0)


# Reads after Python library code returns, and in user code library code calls back: on
# 3.11 the capture runs library frames with no trace events (capture_profile.h), and the
# line tracer must still see every line of user code around them.
AFTER_LIBRARY = 2.0
CALLED_BACK = 5.0


def _reads_after_a_library_frame(x: torch.Tensor) -> torch.Tensor:
    y = torch.nn.functional.relu(x)  # a Python function of torch
    z = torch.nn.functional.dropout(y, p=0.0, training=False)  # and another
    return z * AFTER_LIBRARY


class _CalledBack(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.nn.functional.gelu(x)
        return y + CALLED_BACK


def test_a_global_read_after_library_code_returns_is_guarded():
    global AFTER_LIBRARY
    f = _compiled(_reads_after_a_library_frame)
    x = torch.randn(4)
    torch.testing.assert_close(f(x), torch.relu(x) * 2.0)
    try:
        AFTER_LIBRARY = 7.0
        torch.testing.assert_close(f(x), torch.relu(x) * 7.0)
    finally:
        AFTER_LIBRARY = 2.0
    assert any("AFTER_LIBRARY" in r for r in framecache.stats(f).recompile_reasons)


def test_a_global_read_in_user_code_that_library_code_calls_back_is_guarded():
    global CALLED_BACK
    inner = _CalledBack()

    def outer(x: torch.Tensor) -> torch.Tensor:
        # sorted() (C) and Module.__call__ (Python library code) each call user code.
        order = sorted([2, 1], key=lambda k: k * CALLED_BACK)
        return inner(x) * order[0]

    f = _compiled(outer)
    x = torch.randn(4)
    torch.testing.assert_close(f(x), torch.nn.functional.gelu(x) + 5.0)
    try:
        CALLED_BACK = -1.0
        torch.testing.assert_close(f(x), (torch.nn.functional.gelu(x) - 1.0) * 2)
    finally:
        CALLED_BACK = 5.0
    assert framecache.stats(f).compiles == 2


@pytest.mark.parametrize("cache", [False, True], ids=["memory", "disk"])
def test_a_function_registered_with_torch_fx_wrap_is_guarded_as_itself(
    cache, tmp_path, monkeypatch
):
    # The capture reads the tracer's wrapper; the guard checks the function itself, so the
    # entry hits after the trace puts it back (torchvision's Swin Transformer recompiled on
    # every call until the recompile limit) and still fails when the global is rebound.
    monkeypatch.setenv("FRAMECACHE_CACHE_DIR", str(tmp_path))
    f = _compiled(uses_fx_wrapped_function, cache=cache)
    x = torch.randn(6)
    for _ in range(4):
        torch.testing.assert_close(f(x), (x * 3 + 1).relu())
    s = framecache.stats(f)
    assert (s.compiles, s.hits) == (1, 3), s
    monkeypatch.setitem(globals(), "_fx_leaf", _other_fx_leaf)
    torch.testing.assert_close(f(x), (x - 1).relu())
    assert framecache.stats(f).compiles == 2


_THIRD_PARTY_CACHE = """
import torch


class Layer:
    def __init__(self):
        self.keys = None
        self.seen = 0

    def update(self, k):
        if self.keys is None:
            self.keys = k[:, :0]
        self.seen += k.shape[1]
        self.keys = torch.cat([self.keys, k], dim=1)
        return self.keys


class Cache:
    def __init__(self):
        self.layers = [Layer()]

    def update(self, k):
        return self.layers[0].update(k)
"""


def test_a_package_updating_a_callers_object_in_place_runs_it_for_real(tmp_path, monkeypatch):
    # transformers' KV cache: a package's code stores the step's keys on a cache object the
    # caller made and passes in every step. A package's bookkeeping is not judged, but this
    # write is: the capture ran it on fake tensors (which stayed on the caller's object and
    # broke its next eager step), and a graph would not replay it.
    helper = _third_party_module(tmp_path, monkeypatch, "fc_third_party_cache", _THIRD_PARTY_CACHE)

    def step(cache, x):
        return cache.update(x * 2.0).sum(dim=1)

    g = _compiled(step)
    eager_cache, cache = helper.Cache(), helper.Cache()
    for i in range(4):
        x = torch.full((1, 3), float(i))
        torch.testing.assert_close(g(cache, x), step(eager_cache, x))
        layer, eager_layer = cache.layers[0], eager_cache.layers[0]
        assert type(layer.keys) is torch.Tensor  # a real tensor, never a capture's fake
        torch.testing.assert_close(layer.keys, eager_layer.keys)
        assert layer.seen == eager_layer.seen == 3 * (i + 1)  # ``+=`` ran once per step
    s = framecache.stats(g)
    assert s.compiles == 0 and s.fallbacks >= 1, s
    assert any("does not restore it" in r for r in s.fallback_reasons), s.fallback_reasons


class _Accumulator:
    def __init__(self, t):
        self.t = t
        self.n = 2


def test_an_object_made_during_the_capture_is_its_own_state():
    # Attributes an object's __init__ sets, and later writes to it, are state the frame
    # makes anew each time it runs: no side effect, the frame is captured.
    def f(x):
        acc = _Accumulator(x)
        acc.t = acc.t * 3
        acc.n += 1
        return acc.t + acc.n

    g = _compiled(f)
    x = torch.randn(4)
    for _ in range(3):
        torch.testing.assert_close(g(x), x * 3 + 3)
    s = framecache.stats(g)
    assert (s.compiles, s.hits, s.fallbacks) == (1, 2, 0), s


def test_an_augmented_attribute_write_to_an_outside_object_is_a_side_effect():
    acc = _Accumulator(torch.zeros(1))

    def f(x):
        acc.n += 1
        return x + acc.n

    g = _compiled(f)
    x = torch.zeros(2)
    torch.testing.assert_close(g(x), x + 3)
    torch.testing.assert_close(g(x), x + 4)
    assert acc.n == 4  # incremented once per call, by the frame run for real
    assert framecache.stats(g).compiles == 0
