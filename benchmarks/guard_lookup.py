"""Guard lookup: framecache's guard trees against torch's own, side by side in one process.

    python benchmarks/guard_lookup.py [--quick] [--json PATH] [--python-reader] [--clock wall]
    python benchmarks/guard_lookup.py --no-torch [--quick] [--json PATH]

It needs framecache's C++ tensor reader, framecache._torch_C: prebuilt when torch was
importable at build time, else compiled against the running torch on first use (any
``pip install``; ``python -m framecache doctor`` says which, docs/torch_fast_path.md).
``--no-torch`` times framecache's side alone, on torch-free cases (bn, cn, d, e below),
for interpreters where torch==2.13.0 cannot be installed (CPython 3.12 and 3.13 here).

The same guards are built in framecache (``framecache.guards``) and in torch's C++
guard managers (``torch._C._dynamo.guards``, torch==2.13.0), then timed in two ways:

hook
    What a call pays. A function whose cache holds the guards' entries is called with
    each runtime's real PEP 523 hook in run-only mode (``framecache.run_only()``;
    torch's ``set_eval_frame(False)``), LRU off on both sides so that the entry order
    stays fixed. Reported: the call's time minus a plain call of the same function
    without any hook, i.e. the hook's whole per-call overhead: reading the frame,
    checking the guards of each entry in order, and running the cached code (the
    function's own code) in place of the frame.
check
    The guard tree alone, called from Python: ``root.check(f_locals)`` with a dict
    of locals on both sides (one Python-to-C++ call per root, included on both sides).

Cases:
    a. 100 tensor arguments, each with TENSOR_MATCH, plus NO_TENSOR_ALIASING over them
       (which torch's compiler installs for several tensor inputs) and the ambient state
       (framecache's GLOBAL_STATE; torch's GLOBAL_STATE, TORCH_FUNCTION_MODE_STACK and
       DEFAULT_DEVICE, as in d1); a1 is the same with TENSOR_MATCH alone.
    b. 10 cache entries on one code object where only the last passes; each entry
       guards L['n'] (TYPE_MATCH int, EQUALS_MATCH k) and L['x'] (TENSOR_MATCH), and
       the 9 failing ones fail on EQUALS_MATCH. framecache puts a new entry first and
       torch (LRU off) puts it last, so the passing entry is planted first in one and
       last in the other; the benchmark asserts that each looks it up last, before and
       after timing. In the check view: the 10 roots checked in sequence from Python
       until one passes, which is what both hooks' cache lookups do in C++.
    c. A model-like tree L['self'].layers[i].<attr>: 36 layers x 14 attributes each
       (4 tensors with TENSOR_MATCH, 10 Python values with EQUALS_MATCH or NONE_MATCH),
       with TYPE_MATCH on self, the list (and its LENGTH_CHECK) and each layer.
    m. A 36-layer torch.nn.Module as torch.compile guards it, through the modules'
       dicts: L['self'].__dict__['_modules']['layers'].__dict__['_modules'][str(i)] is
       layer i, with TYPE_MATCH, TENSOR_MATCH on weight and bias (reached through
       __dict__['_parameters']) and EQUALS_MATCH on 12 int attributes (in __dict__).
       framecache marks every dict node DICT_VERSION (an unchanged dict's int items are
       skipped at once; its tensors are still read, since their metadata can change in
       place without the dict changing); torch's tree gets torch.compile's recursive
       dict-tag marking (GuardManagerWrapper.find_tag_safe_roots), which skips a whole
       layer, its tensors' TENSOR_MATCH included, while the layer's dicts are unchanged.
    d. A single TYPE_MATCH on an int argument.
    d1. The same plus torch's ambient state: framecache's GLOBAL_STATE; on torch's side
        GLOBAL_STATE, TORCH_FUNCTION_MODE_STACK and DEFAULT_DEVICE (together what
        framecache's one guard covers).
    e. No guards at all: each side's fixed cost (hook: one entry with an empty tree).
    bn, cn (``--no-torch`` only). b without the tensor argument (each entry guards
       L['n'] alone), and c without the 4 tensors per layer (36 x 10 Python values).

Each figure is the median over ``--repeats`` samples (about 5 ms each) of ns per call,
timed by the thread's CPU time (``--clock wall`` for wall time), so that time spent
preempted on a shared machine is not counted; samples of all the runs of a case
alternate so that what drifts hits every run alike. torch/fc is the ratio of the medians.
``--python-reader`` times framecache with its Python reader of tensors instead of
framecache._torch_C.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import statistics
import sys
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import framecache
from framecache._C import guards as fc_guards
from framecache.guards import RootGuardManager

try:
    import torch
    import torch._C._dynamo.eval_frame as torch_eval_frame
    from torch._C._dynamo import guards as torch_guards
    from torch._dynamo.guards import GuardManagerType
    from torch.overrides import _get_current_function_mode_stack
except ImportError:  # --no-torch only
    torch = None  # type: ignore[assignment]
    _TORCH_NODE = None
else:
    _TORCH_NODE = GuardManagerType.GUARD_MANAGER
_TARGET_SAMPLE_NS = 5_000_000  # each sample runs for about 5 ms

# The clock of every sample: the thread's CPU time by default, which time spent
# preempted by other processes on a shared machine does not inflate; --clock wall
# switches to time.perf_counter_ns.
_clock: Callable[[], int] = time.thread_time_ns


# --- what is guarded ---------------------------------------------------------------------


class Layer:
    """A plain object standing for one layer of a model (14 attributes)."""

    def __init__(self, i: int, tensors: bool = True) -> None:
        if tensors:
            self.weight = torch.randn(8, 8)
            self.bias = torch.randn(8)
            self.running_mean = torch.zeros(8)
            self.running_var = torch.ones(8)
        self.training = False
        self.eps = 1e-5
        self.momentum = 0.1
        self.in_features = 8
        self.out_features = 8
        self.name = f"layer{i}"
        self.activation = None
        self.dropout_p = 0.0
        self.use_bias = True
        self.mode = "fast"


LAYER_TENSORS = ("weight", "bias", "running_mean", "running_var")
LAYER_VALUES = (
    "training",
    "eps",
    "momentum",
    "in_features",
    "out_features",
    "name",
    "activation",
    "dropout_p",
    "use_bias",
    "mode",
)


class Model:
    """A plain object with a list of 36 layers."""

    def __init__(self, tensors: bool = True) -> None:
        self.layers = [Layer(i, tensors) for i in range(36)]


# --- building the same guards on both sides ----------------------------------------------


def _torch_local(root: Any, name: str, index: int, value: object) -> Any:
    return root.framelocals_manager(
        key=(name, index),
        source=f"L['{name}']",
        example_value=value,
        guard_manager_enum=_TORCH_NODE,
    )


def _torch_tensor_match(node: Any, name: str, t: torch.Tensor) -> None:
    node.add_tensor_match_guard(
        t,
        list(t.size()),
        list(t.stride()),
        name,
        [f"tensor {name}"],
        None,
        type(t),
        torch._C._dispatch_keys(t),
    )


def _torch_type_match(node: Any, t: type) -> None:
    node.add_type_match_guard(id(t), [f"type is {t.__name__}"], None)


def _torch_value_match(node: Any, value: object) -> None:
    if value is None:
        node.add_none_match_guard(["is None"], None)
    else:
        node.add_equals_match_guard(value, [f"== {value!r}"], None)


def _fc_value_match(node: Any, value: object) -> None:
    if value is None:
        node.none_match()
    else:
        node.equals_match(value)


def tensors_framecache(names: Sequence[str], tensors: Sequence[torch.Tensor], alias: bool) -> Any:
    """TENSOR_MATCH on each, plus (alias) NO_TENSOR_ALIASING and the ambient state."""
    root = RootGuardManager()
    nodes = []
    for name, t in zip(names, tensors, strict=True):
        node = root.local(name)
        node.tensor_match(t)
        nodes.append(node)
    if alias:
        root.no_tensor_aliasing(nodes)
        root.global_state()
    return root


def tensors_torch(names: Sequence[str], tensors: Sequence[torch.Tensor], alias: bool) -> Any:
    root = torch_guards.RootGuardManager()
    nodes = []
    for i, (name, t) in enumerate(zip(names, tensors, strict=True)):
        node = _torch_local(root, name, i, t)
        _torch_tensor_match(node, name, t)
        nodes.append(node)
    if alias:
        torch_guards.install_no_tensor_aliasing_guard(nodes, list(names), ["no aliasing"], None)
        _torch_ambient_state(root)
    return root


# --- the module tree (case m) ---------------------------------------------------------------

MODULE_INTS = tuple(f"a{k}" for k in range(12))


def module_stack() -> Any:
    """A 36-layer nn.Module: each layer a weight, a bias and 12 int attributes."""

    class BenchLayer(torch.nn.Module):
        def __init__(self, i: int) -> None:
            super().__init__()
            self.weight = torch.nn.Parameter(torch.randn(8, 8))
            self.bias = torch.nn.Parameter(torch.randn(8))
            for k, name in enumerate(MODULE_INTS):
                setattr(self, name, i + k)

    class BenchStack(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = torch.nn.ModuleList([BenchLayer(i) for i in range(36)])

    return BenchStack()


def _fc_modules(node: Any) -> Any:
    """node.__dict__['_modules'], both dicts DICT_VERSION."""
    return node.obj_dict().dict_version().dict_item("_modules").dict_version()


def module_framecache(stack: Any) -> Any:
    root = RootGuardManager()
    self_node = root.local("self")
    self_node.type_match(type(stack))
    layers = _fc_modules(self_node).dict_item("layers")
    layers.type_match(type(stack.layers))
    modules = _fc_modules(layers)
    for i, layer in enumerate(stack.layers):
        node = modules.dict_item(str(i))
        node.type_match(type(layer))
        attrs = node.obj_dict().dict_version()
        params = attrs.dict_item("_parameters").dict_version()
        params.dict_item("weight").tensor_match(layer.weight)
        params.dict_item("bias").tensor_match(layer.bias)
        for name in MODULE_INTS:
            attrs.dict_item(name).equals_match(getattr(layer, name))
    return root


def _torch_modules(node: Any, source: str, value: Any) -> Any:
    d = node.get_generic_dict_manager(
        source=f"{source}.__dict__", example_value=value.__dict__, guard_manager_enum=_TORCH_NODE
    )
    return d.dict_getitem_manager(
        key="_modules",
        source=f"{source}._modules",
        example_value=value._modules,
        guard_manager_enum=_TORCH_NODE,
    )


def module_torch(stack: Any) -> Any:
    from torch._dynamo.guards import GuardManagerWrapper

    root = torch_guards.RootGuardManager()
    self_node = _torch_local(root, "self", 0, stack)
    _torch_type_match(self_node, type(stack))
    layers = _torch_modules(self_node, "L['self']", stack).dict_getitem_manager(
        key="layers",
        source="L['self'].layers",
        example_value=stack.layers,
        guard_manager_enum=_TORCH_NODE,
    )
    _torch_type_match(layers, type(stack.layers))
    modules = _torch_modules(layers, "L['self'].layers", stack.layers)
    for i, layer in enumerate(stack.layers):
        source = f"L['self'].layers[{i}]"
        node = modules.dict_getitem_manager(
            key=str(i), source=source, example_value=layer, guard_manager_enum=_TORCH_NODE
        )
        _torch_type_match(node, type(layer))
        attrs = node.get_generic_dict_manager(
            source=f"{source}.__dict__",
            example_value=layer.__dict__,
            guard_manager_enum=_TORCH_NODE,
        )
        params = attrs.dict_getitem_manager(
            key="_parameters",
            source=f"{source}._parameters",
            example_value=layer._parameters,
            guard_manager_enum=_TORCH_NODE,
        )
        for name in ("weight", "bias"):
            t = getattr(layer, name)
            child = params.dict_getitem_manager(
                key=name, source=f"{source}.{name}", example_value=t, guard_manager_enum=_TORCH_NODE
            )
            _torch_tensor_match(child, f"{source}.{name}", t)
        for name in MODULE_INTS:
            value = getattr(layer, name)
            child = attrs.dict_getitem_manager(
                key=name,
                source=f"{source}.{name}",
                example_value=value,
                guard_manager_enum=_TORCH_NODE,
            )
            _torch_value_match(child, value)
    # What torch.compile does when it finalizes a tree: mark the subtrees that its
    # recursive dict-tag matching may skip (nn.Module layers here).
    GuardManagerWrapper(root).find_tag_safe_roots()
    return root


def entry_framecache(k: int, x: torch.Tensor) -> Any:
    root = RootGuardManager()
    n = root.local("n")
    n.type_match(int)
    n.equals_match(k)
    root.local("x").tensor_match(x)
    return root


def entry_torch(k: int, x: torch.Tensor) -> Any:
    root = torch_guards.RootGuardManager()
    n = _torch_local(root, "n", 0, k)
    _torch_type_match(n, int)
    n.add_equals_match_guard(k, [f"n == {k}"], None)
    _torch_tensor_match(_torch_local(root, "x", 1, x), "x", x)
    return root


def model_framecache(model: Model) -> Any:
    root = RootGuardManager()
    self_node = root.local("self")
    self_node.type_match(Model)
    layers = self_node.attr("layers")
    layers.type_match(list)
    layers.length_check(len(model.layers))
    for i, layer in enumerate(model.layers):
        node = layers.list_item(i)
        node.type_match(Layer)
        for name in LAYER_TENSORS:
            if hasattr(layer, name):  # Model(tensors=False) has none
                node.attr(name).tensor_match(getattr(layer, name))
        for name in LAYER_VALUES:
            _fc_value_match(node.attr(name), getattr(layer, name))
    return root


def model_torch(model: Model) -> Any:
    root = torch_guards.RootGuardManager()
    self_node = _torch_local(root, "self", 0, model)
    _torch_type_match(self_node, Model)
    layers = self_node.getattr_manager(
        attr="layers",
        source="L['self'].layers",
        example_value=model.layers,
        guard_manager_enum=_TORCH_NODE,
    )
    _torch_type_match(layers, list)
    layers.add_length_check_guard(len(model.layers), ["len == 36"], None)
    for i, layer in enumerate(model.layers):
        source = f"L['self'].layers[{i}]"
        node = layers.list_getitem_manager(
            key=i, source=source, example_value=layer, guard_manager_enum=_TORCH_NODE
        )
        _torch_type_match(node, Layer)
        for name in (*LAYER_TENSORS, *LAYER_VALUES):
            value = getattr(layer, name)
            child = node.getattr_manager(
                attr=name,
                source=f"{source}.{name}",
                example_value=value,
                guard_manager_enum=_TORCH_NODE,
            )
            if isinstance(value, torch.Tensor):
                _torch_tensor_match(child, f"{source}.{name}", value)
            else:
                _torch_value_match(child, value)
    return root


def entry_int_framecache(k: int) -> Any:
    """entry_framecache without the tensor argument (--no-torch)."""
    root = RootGuardManager()
    n = root.local("n")
    n.type_match(int)
    n.equals_match(k)
    return root


def int_framecache(global_state: bool) -> Any:
    root = RootGuardManager()
    root.local("n").type_match(int)
    if global_state:
        root.global_state()
    return root


def int_torch(global_state: bool) -> Any:
    root = torch_guards.RootGuardManager()
    _torch_type_match(_torch_local(root, "n", 0, 3), int)
    if global_state:
        _torch_ambient_state(root)
    return root


def _torch_ambient_state(root: Any) -> None:
    """torch's guards on what framecache's GLOBAL_STATE covers."""
    root.add_global_state_guard(torch_guards.GlobalStateGuard(), ["global state"], None)
    root.add_torch_function_mode_stack_guard(
        _get_current_function_mode_stack(), ["mode stack"], None
    )
    root.add_default_device_guard(["default device"], None)


# --- cache entries through each runtime's hook -------------------------------------------


class _TorchGuardFn:
    """What torch's CacheEntry reads from GuardedCode.guard_manager."""

    def __init__(self, root: Any) -> None:
        self.root = root
        self.diff_guard_root = None
        self.cache_entry = None
        self.extra_state = None


class _TorchGuardedCode:
    def __init__(self, code: Any, root: Any) -> None:
        self.code = code
        self.guard_manager = _TorchGuardFn(root)
        self.compile_id = None
        self.trace_annotation = "guard_lookup benchmark"


class _TorchCallbackResult:
    def __init__(self, code: Any, root: Any) -> None:
        default = torch_eval_frame._FrameAction.DEFAULT
        self.frame_exec_strategy = torch_eval_frame._FrameExecStrategy(default, default)
        self.apply_to_code = False
        self.guarded_code = _TorchGuardedCode(code, root)


def make_function(params: Sequence[str]) -> Callable[..., Any]:
    """A fresh function object (own code object) taking ``params`` and returning None."""
    namespace: dict[str, Any] = {}
    exec(f"def guarded({', '.join(params)}):\n    return None\n", namespace)
    return namespace["guarded"]


def plant_framecache(fn: Callable[..., Any], roots: Sequence[Any], calls: Sequence[tuple]) -> None:
    """Makes ``roots`` the cache entries of ``fn``, planted in this order by ``calls``.

    ``calls[i]`` must fail every root before ``roots[i]``, so that it misses.
    """
    queue = list(roots)

    def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
        return framecache.CallbackResult(
            framecache.GuardedCode(frame.f_code.replace(), queue.pop(0))
        )

    with framecache.optimize(callback):
        for args in calls:
            fn(*args)
    assert len(framecache.cache_entries(fn.__code__)) == len(roots)


def plant_torch(fn: Callable[..., Any], roots: Sequence[Any], calls: Sequence[tuple]) -> None:
    """Like plant_framecache, through torch's hook."""
    queue = list(roots)

    def callback(frame: Any, cache_entry: Any, frame_state: Any) -> Any:
        return _TorchCallbackResult(frame.f_code, queue.pop(0))

    previous = torch_eval_frame.set_eval_frame(callback)
    try:
        for args in calls:
            fn(*args)
    finally:
        torch_eval_frame.set_eval_frame(previous)
    assert len(torch_eval_frame._debug_get_cache_entry_list(fn.__code__)) == len(roots)


# --- timing ------------------------------------------------------------------------------


def _calls_per_sample(run: Callable[[int], float]) -> int:
    """How many iterations make a sample of about _TARGET_SAMPLE_NS."""
    n = 16
    while True:
        per = run(n)
        if per * n > _TARGET_SAMPLE_NS / 8 or n > 1 << 24:
            return max(16, int(_TARGET_SAMPLE_NS / max(per, 1.0)))
        n *= 4


def _loop_call(fn: Callable[..., Any], args: tuple) -> Callable[[int], float]:
    def run(n: int) -> float:
        repeat = itertools.repeat(None, n)
        start = _clock()
        for _ in repeat:
            fn(*args)
        return (_clock() - start) / n

    return run


def _loop_check(roots: Sequence[Any], f_locals: dict) -> Callable[[int], float]:
    if len(roots) == 1:
        check = roots[0].check

        def run(n: int) -> float:
            repeat = itertools.repeat(None, n)
            start = _clock()
            for _ in repeat:
                check(f_locals)
            return (_clock() - start) / n

        return run
    checks = [r.check for r in roots]

    def run_many(n: int) -> float:
        repeat = itertools.repeat(None, n)
        start = _clock()
        for _ in repeat:
            for check in checks:
                if check(f_locals):
                    break
        return (_clock() - start) / n

    return run_many


def _with_framecache_hook(run: Callable[[int], float]) -> Callable[[int], float]:
    def hooked(n: int) -> float:
        with framecache.run_only():
            return run(n)

    return hooked


def _with_torch_hook(run: Callable[[int], float]) -> Callable[[int], float]:
    def hooked(n: int) -> float:
        previous = torch_eval_frame.set_eval_frame(False)
        try:
            return run(n)
        finally:
            torch_eval_frame.set_eval_frame(previous)

    return hooked


def sample_medians(runs: dict[str, Callable[[int], float]], repeats: int) -> dict[str, float]:
    """Median ns per iteration of each run, with samples of the runs interleaved.

    Short samples, many of them, alternating between the runs: on a shared machine
    a preemption spoils a few samples of every run rather than all of one.
    """
    sizes = {name: _calls_per_sample(run) for name, run in runs.items()}
    samples: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            samples[name].append(run(sizes[name]))
    return {name: statistics.median(values) for name, values in samples.items()}


# --- the cases ---------------------------------------------------------------------------


@dataclass
class Case:
    key: str
    title: str
    # One tuple of positional arguments for the guarded function, with its parameter names.
    params: list[str]
    args: tuple
    framecache_roots: list[Any]
    torch_roots: list[Any]
    # The roots' first one passes, the others fail; plant_calls[i] is a call that
    # roots[i] passes and every other root fails (it plants roots[i] as an entry).
    plant_calls: list[tuple]
    f_locals: dict = field(default_factory=dict)


def build_cases_without_torch() -> list[Case]:
    """The --no-torch cases: framecache's side only (torch_roots stay empty)."""
    ks = [9, *range(9)]
    model = Model(tensors=False)
    cases = [
        Case(
            "bn",
            "10 cache entries, only the last passes (no tensor)",
            ["n"],
            (9,),
            [entry_int_framecache(k) for k in ks],
            [],
            [(k,) for k in ks],
        ),
        Case(
            "cn",
            "model tree 36 layers x 10 Python attributes",
            ["self"],
            (model,),
            [model_framecache(model)],
            [],
            [(model,)],
        ),
        Case(
            "d", "TYPE_MATCH on one int argument", ["n"], (3,), [int_framecache(False)], [], [(3,)]
        ),
        Case("e", "no guards (fixed cost)", ["n"], (3,), [RootGuardManager()], [], [(3,)]),
    ]
    for case in cases:
        case.f_locals = {sys.intern(k): v for k, v in zip(case.params, case.args, strict=True)}
        for root in case.framecache_roots:
            assert root.check(case.f_locals) is (root is case.framecache_roots[0])
    return cases


def build_cases() -> list[Case]:
    cases = []
    names = [sys.intern(f"x{i}") for i in range(100)]
    tensors = [torch.randn(4, 8) for _ in names]
    for key, alias in (("a", True), ("a1", False)):
        title = "100 tensor args, TENSOR_MATCH" + (" + aliasing + ambient" if alias else "")
        cases.append(
            Case(
                key,
                title,
                names,
                tuple(tensors),
                [tensors_framecache(names, tensors, alias)],
                [tensors_torch(names, tensors, alias)],
                [tuple(tensors)],
            )
        )
    x = torch.randn(4, 8)
    ks = [9, *range(9)]  # index 0 (n=9) is the entry that passes
    cases.append(
        Case(
            "b",
            "10 cache entries, only the last passes",
            ["n", "x"],
            (9, x),
            [entry_framecache(k, x) for k in ks],
            [entry_torch(k, x) for k in ks],
            [(k, x) for k in ks],
        )
    )
    model = Model()
    cases.append(
        Case(
            "c",
            "model tree 36 layers x 14 attributes",
            ["self"],
            (model,),
            [model_framecache(model)],
            [model_torch(model)],
            [(model,)],
        )
    )
    stack = module_stack()
    cases.append(
        Case(
            "m",
            "nn.Module 36 layers: TYPE, 2 TENSOR, 12 EQUALS each",
            ["self"],
            (stack,),
            [module_framecache(stack)],
            [module_torch(stack)],
            [(stack,)],
        )
    )
    for key, state, title in (
        ("d", False, "TYPE_MATCH on one int argument"),
        ("d1", True, "TYPE_MATCH on one int + global state"),
    ):
        cases.append(
            Case(key, title, ["n"], (3,), [int_framecache(state)], [int_torch(state)], [(3,)])
        )
    cases.append(
        Case(
            "e",
            "no guards (fixed cost)",
            ["n"],
            (3,),
            [RootGuardManager()],
            [torch_guards.RootGuardManager()],
            [(3,)],
        )
    )
    for case in cases:
        # A frame's f_locals has the code's interned names as keys.
        case.f_locals = {sys.intern(k): v for k, v in zip(case.params, case.args, strict=True)}
        for root in case.framecache_roots:
            assert root.check(case.f_locals) is (root is case.framecache_roots[0])
        for root in case.torch_roots:
            assert root.check(case.f_locals) is (root is case.torch_roots[0])
    return cases


@dataclass
class Result:
    case: str
    title: str
    view: str
    framecache_ns: float
    torch_ns: float
    ratio: float  # torch / framecache


def run_case_without_torch(case: Case, repeats: int) -> list[Result]:
    """run_case for framecache alone (--no-torch): torch figures are NaN."""
    fc_fn, plain_fn = make_function(case.params), make_function(case.params)
    plant_framecache(fc_fn, case.framecache_roots, case.plant_calls)
    fc_order = [e.guard_manager for e in framecache.cache_entries(fc_fn.__code__)]
    assert fc_order[-1] is case.framecache_roots[0], "framecache: the passing entry is not last"
    medians = sample_medians(
        {
            "plain": _loop_call(plain_fn, case.args),
            "fc_hook": _with_framecache_hook(_loop_call(fc_fn, case.args)),
            "fc_check": _loop_check(fc_order, case.f_locals),
        },
        repeats,
    )
    hits_fc = [e.hit_count for e in framecache.cache_entries(fc_fn.__code__)]
    assert hits_fc[-1] > 0 and sum(hits_fc[:-1]) == 0, "framecache hit the wrong entry"
    nan = float("nan")
    return [
        Result(case.key, case.title, "hook", medians["fc_hook"] - medians["plain"], nan, nan),
        Result(case.key, case.title, "check", medians["fc_check"], nan, nan),
    ]


def run_case(case: Case, repeats: int) -> list[Result]:
    # The hook view: separate function objects per side, plus one never hooked.
    fc_fn, torch_fn, plain_fn = (make_function(case.params) for _ in range(3))
    # framecache puts a new entry first; torch with LRU off puts it last. Plant the
    # passing root (index 0) first in framecache and last in torch, so that both
    # look it up after every failing one.
    plant_framecache(fc_fn, case.framecache_roots, case.plant_calls)
    order = [*range(1, len(case.torch_roots)), 0]
    plant_torch(
        torch_fn, [case.torch_roots[i] for i in order], [case.plant_calls[i] for i in order]
    )
    fc_order = [e.guard_manager for e in framecache.cache_entries(fc_fn.__code__)]
    torch_order = [
        e.guard_manager.root
        for e in torch_eval_frame._debug_get_cache_entry_list(torch_fn.__code__)
    ]
    assert fc_order[-1] is case.framecache_roots[0], "framecache: the passing entry is not last"
    assert torch_order[-1] is case.torch_roots[0], "torch: the passing entry is not last"
    # The check() view tries the roots in the same order.
    medians = sample_medians(
        {
            "plain": _loop_call(plain_fn, case.args),
            "fc_hook": _with_framecache_hook(_loop_call(fc_fn, case.args)),
            "torch_hook": _with_torch_hook(_loop_call(torch_fn, case.args)),
            "fc_check": _loop_check(fc_order, case.f_locals),
            "torch_check": _loop_check(torch_order, case.f_locals),
        },
        repeats,
    )
    hits_fc = [e.hit_count for e in framecache.cache_entries(fc_fn.__code__)]
    assert hits_fc[-1] > 0 and sum(hits_fc[:-1]) == 0, "framecache hit the wrong entry"
    torch_after = torch_eval_frame._debug_get_cache_entry_list(torch_fn.__code__)
    assert [e.guard_manager.root for e in torch_after] == torch_order, "torch reordered its entries"
    fc_hook = medians["fc_hook"] - medians["plain"]
    torch_hook = medians["torch_hook"] - medians["plain"]
    return [
        Result(case.key, case.title, "hook", fc_hook, torch_hook, torch_hook / fc_hook),
        Result(
            case.key,
            case.title,
            "check",
            medians["fc_check"],
            medians["torch_check"],
            medians["torch_check"] / medians["fc_check"],
        ),
    ]


def machine() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "torch": torch.__version__ if torch is not None else None,
        "framecache_torch_reader": fc_guards.torch_fast_path_status(),
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "load_average_1min": os.getloadavg()[0],
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=51, help="samples per figure (median)")
    parser.add_argument("--quick", action="store_true", help="7 samples per figure")
    parser.add_argument("--json", metavar="PATH", help="also write the results as JSON")
    parser.add_argument(
        "--python-reader",
        action="store_true",
        help="framecache reads tensors through Python, not framecache._torch_C",
    )
    parser.add_argument(
        "--no-torch",
        action="store_true",
        help="time framecache alone on the torch-free cases bn,cn,d,e (torch not needed)",
    )
    parser.add_argument(
        "--cases",
        default=None,
        help="comma-separated case keys (default a,a1,b,c,m,d,d1,e; bn,cn,d,e with --no-torch)",
    )
    parser.add_argument(
        "--clock",
        choices=("cpu", "wall"),
        default="cpu",
        help="time samples by the thread's CPU time (default) or by wall time",
    )
    args = parser.parse_args(argv)
    global _clock
    _clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    repeats = 7 if args.quick else args.repeats
    default_cases = "bn,cn,d,e" if args.no_torch else "a,a1,b,c,m,d,d1,e"
    wanted = set((args.cases or default_cases).split(","))
    if torch is None and not args.no_torch:
        print("guard_lookup: torch is not importable; pass --no-torch", file=sys.stderr)
        return 2

    framecache.set_lru(False)
    framecache.set_recompile_limit(64, accumulated=4096)
    if args.no_torch:
        cases = [c for c in build_cases_without_torch() if c.key in wanted]
    else:
        torch_eval_frame._set_lru_cache(False)
        fc_guards.set_torch_fast_path(not args.python_reader)
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            cases = [c for c in build_cases() if c.key in wanted]
    if not args.no_torch and not args.python_reader and not fc_guards.torch_fast_path_enabled():
        print(
            "guard_lookup: framecache's torch part is not in use "
            f"({fc_guards.torch_fast_path_status()}); see python -m framecache doctor and "
            "docs/torch_fast_path.md, or pass --python-reader to time the Python reader on "
            "purpose",
            file=sys.stderr,
        )
        return 2
    info = machine()
    print(
        f"{info['date']}  {info['cpu']} ({info['cpus']} cpus), Python {info['python']}, "
        f"torch {info['torch']}, load average {info['load_average_1min']:.1f}"
    )
    print(
        f"framecache torch reader: {info['framecache_torch_reader']}; "
        f"{repeats} samples per figure, median ns per call ({args.clock} time)\n"
    )
    header = f"{'case':<5}{'':<52}{'view':<7}{'framecache':>12}{'torch':>12}{'torch/fc':>10}"
    print(header)
    print("-" * len(header))
    results: list[Result] = []
    for case in cases:
        for r in (run_case_without_torch if args.no_torch else run_case)(case, repeats):
            results.append(r)
            torch_text = (
                f"{r.torch_ns:>12.0f}{r.ratio:>9.1f}x"
                if r.torch_ns == r.torch_ns
                else f"{'-':>12}{'-':>10}"
            )
            print(
                f"{r.case:<5}{r.title:<52}{r.view:<7}{r.framecache_ns:>12.0f}{torch_text}",
                flush=True,
            )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "machine": info,
                    "repeats": repeats,
                    "no_torch": args.no_torch,
                    "results": [asdict(r) for r in results],
                },
                f,
                indent=2,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
