"""What a captured graph depends on, as a list of guards on sources.

The plan is data (source path, guard kind, arguments) so that it can be shown to a
person (``explain``), turned into a C++ guard tree (``materialize``) and, for the disk
cache, written down and rebuilt in another process.
"""

from __future__ import annotations

import sys
import types
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..guards import RootGuardManager
from . import sources
from .errors import Unsupported
from .inputs import CONSTANT_TYPES
from .side_effects import code_reads
from .sources import Source

if TYPE_CHECKING:  # capture imports symbolic shapes (sympy): only a miss needs it
    from .capture import Capture

_MAX_DEPTH = 8
# Hook dicts whose contents change what calling a module does.
_MODULE_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_pre_hooks",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_load_state_dict_pre_hooks",
)


@dataclass(frozen=True)
class Guard:
    """One guard: ``kind`` applied to the value at ``source``."""

    source: Source
    kind: str
    args: tuple[Any, ...] = ()

    def describe(self) -> str:
        where = sources.render(self.source) if self.source else "<frame>"
        if self.kind in ("TYPE_MATCH",):
            return f"{where}: TYPE_MATCH {self.args[0].__qualname__}"
        if self.kind == "TENSOR_MATCH":
            t, dyn = self.args
            dims = ", ".join("*" if i in dyn else str(s) for i, s in enumerate(t.shape))
            return (
                f"{where}: TENSOR_MATCH {t.dtype} [{dims}] on {t.device}, "
                f"requires_grad={t.requires_grad}"
            )
        if self.kind == "EQUALS_MATCH":
            return f"{where}: EQUALS_MATCH {self.args[0]!r}"
        if self.kind == "ID_MATCH":
            return f"{where}: ID_MATCH {_short(self.args[0])}"
        if self.kind == "LENGTH_CHECK":
            return f"{where}: LENGTH_CHECK {self.args[0]}"
        if self.kind == "DICT_KEYS":
            return f"{where}: MAPPING_KEYS_MATCH {list(self.args[0])}"
        if self.kind == "NO_TENSOR_ALIASING":
            return "NO_TENSOR_ALIASING " + ", ".join(sources.render(s) for s in self.args[0])
        if self.kind == "OBJECT_ALIASING":
            return "OBJECT_ALIASING " + " is ".join(sources.render(s) for s in self.args)
        if self.kind == "GLOBAL_STATE":
            return "GLOBAL_STATE (grad mode, autocast, default dtype, deterministic, modes, device)"
        if self.kind == "NONE_MATCH":
            return f"{where}: NONE_MATCH"
        return f"{where}: {self.kind} {self.args!r}"


def _short(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"<{type(obj).__name__} {name}>" if name else f"<{type(obj).__name__}>"


@dataclass
class GuardPlan:
    """Every guard a captured graph needs, plus what was read to decide them."""

    guards: list[Guard] = field(default_factory=list)
    globals_read: list[str] = field(default_factory=list)
    _seen: set[tuple[Source, str]] = field(default_factory=set)

    def add(self, source: Source, kind: str, *args: Any) -> None:
        key = (source, kind)
        if key in self._seen and kind not in ("NO_TENSOR_ALIASING", "OBJECT_ALIASING"):
            return
        self._seen.add(key)
        self.guards.append(Guard(source, kind, args))

    def describe(self) -> list[str]:
        return [g.describe() for g in self.guards]


def build_plan(capture: Capture, closure: tuple[Any, ...] | None) -> GuardPlan:
    """The guards that make reusing ``capture`` sound.

    Raises Unsupported when the capture ran a closure whose cells no guard can reach.
    """
    builder = _PlanBuilder(capture)
    args = capture.args
    for name in args.names:
        builder.value(sources.local(name), args.values[name], 0)
    builder.aliasing()
    builder.own_closure(closure)
    builder.globals_()
    builder.plan.add((), "GLOBAL_STATE")
    builder.check_closures_covered()
    return builder.plan


class _PlanBuilder:
    def __init__(self, capture: Capture) -> None:
        self.capture = capture
        self.plan = GuardPlan()
        self.executed = capture.monitor.executed
        self.input_sources = set(capture.args.tensor_sources)
        # Codes whose free variables are guarded (or that are created during the capture).
        self.covered: set[types.CodeType] = {capture.args.code}
        for executed in self.executed.values():
            for const in executed.code.co_consts:
                if isinstance(const, types.CodeType):
                    self.covered.add(const)

    def value(self, source: Source, value: Any, depth: int) -> None:
        plan = self.plan
        if depth > _MAX_DEPTH:
            plan.add(source, "ID_MATCH", value)
            return
        if isinstance(value, torch.Tensor):
            if source not in self.input_sources:
                # Not a graph input: the graph holds this very tensor as a constant, so
                # another tensor with the same metadata must not reuse it.
                plan.add(source, "ID_MATCH", value)
            plan.add(
                source,
                "TENSOR_MATCH",
                value,
                frozenset(self.capture.dynamic_dims.get(source, set())),
            )
            return
        if value is None:
            plan.add(source, "NONE_MATCH")
            return
        if type(value) is float and value != value:
            plan.add(source, "FLOAT_IS_NAN")
            return
        if type(value) is complex and value != value:
            # A complex with a NaN part equals nothing, itself included.
            raise Unsupported(f"{sources.render(source)} is a complex NaN, which cannot be guarded")
        if type(value) in (bool, int, float, complex, str, bytes):
            plan.add(source, "EQUALS_MATCH", value)
            return
        if isinstance(value, torch.device):
            plan.add(source, "EQUALS_DEVICE", str(value))
            return
        if isinstance(value, CONSTANT_TYPES):
            # dtype, layout, memory_format: interned by torch, identity is equality.
            plan.add(source, "ID_MATCH", value)
            return
        if type(value) in (tuple, list):
            plan.add(source, "TYPE_MATCH", type(value))
            plan.add(source, "LENGTH_CHECK", len(value))
            for i, item in enumerate(value):
                self.value(sources.item(source, i), item, depth + 1)
            return
        if type(value) is dict:
            plan.add(source, "TYPE_MATCH", dict)
            plan.add(source, "DICT_KEYS", tuple(value.keys()))
            for key, item in value.items():
                self.value(sources.item(source, key), item, depth + 1)
            return
        if isinstance(value, torch.nn.Module):
            self.module(source, value, depth)
            return
        # Functions, classes, modules and other objects: the same object.
        plan.add(source, "ID_MATCH", value)
        if isinstance(value, types.FunctionType):
            self.function_closure(source, value, depth)
        elif isinstance(value, types.MethodType):
            self.value(sources.attr(source, "__self__"), value.__self__, depth + 1)
        elif _is_plain_object(value):
            # What the graph read from it may be anywhere in its state.
            d = sources.obj_dict(source)
            state = vars(value)
            plan.add(d, "DICT_KEYS", tuple(state.keys()))
            for key, item in state.items():
                if isinstance(key, str):
                    self.value(sources.item(d, key), item, depth + 1)

    def function_closure(self, source: Source, fn: types.FunctionType, depth: int) -> None:
        """Cells of a function the capture ran are part of what it computed."""
        code = fn.__code__
        if code not in self.executed or not fn.__closure__:
            return
        self.covered.add(code)
        read = set(code_reads(code).freevars_read)
        for i, (name, cell) in enumerate(zip(code.co_freevars, fn.__closure__, strict=False)):
            if name not in read:
                continue
            try:
                contents = cell.cell_contents
            except ValueError:
                # Reading an empty cell raised during the capture, which then failed.
                continue
            self.value(sources.cell(source, i), contents, depth + 1)

    def module(self, source: Source, module: torch.nn.Module, depth: int) -> None:
        """An nn.Module: itself, training flag, parameters, buffers, hooks, attributes."""
        plan = self.plan
        plan.add(source, "ID_MATCH", module)
        d = sources.obj_dict(source)
        plan.add(sources.item(d, "training"), "EQUALS_MATCH", bool(module.training))
        for hooks in _MODULE_HOOK_DICTS:
            if hooks in module.__dict__:
                plan.add(sources.item(d, hooks), "DICT_LEN", len(module.__dict__[hooks]))
        for kind in ("_parameters", "_buffers"):
            table = module.__dict__.get(kind, {})
            plan.add(sources.item(d, kind), "DICT_KEYS", tuple(table.keys()))
            for name, tensor in table.items():
                item_source = sources.item(sources.item(d, kind), name)
                if tensor is None:
                    plan.add(item_source, "NONE_MATCH")
                    continue
                # Captured graphs hold parameters by reference: same object, same metadata.
                plan.add(item_source, "ID_MATCH", tensor)
                plan.add(item_source, "TENSOR_MATCH", tensor, frozenset())
        submodules = module.__dict__.get("_modules", {})
        plan.add(sources.item(d, "_modules"), "DICT_KEYS", tuple(submodules.keys()))
        for name, sub in submodules.items():
            sub_source = sources.item(sources.item(d, "_modules"), name)
            if sub is None:
                plan.add(sub_source, "NONE_MATCH")
            else:
                self.module(sub_source, sub, depth + 1)
        # Plain attributes forward() may read: scales, flags, sizes, helper functions.
        for key, value in module.__dict__.items():
            if key.startswith("_") or key == "training":
                continue
            self.value(sources.item(d, key), value, depth + 1)

    def aliasing(self) -> None:
        """Tensors that were distinct stay distinct; tensors that were one object stay one."""
        args = self.capture.args
        first_by_id: dict[int, Source] = {}
        distinct: list[Source] = []
        for tensor, source in zip(args.tensors, args.tensor_sources, strict=False):
            seen = first_by_id.get(id(tensor))
            if seen is None:
                first_by_id[id(tensor)] = source
                distinct.append(source)
            else:
                self.plan.add(source, "OBJECT_ALIASING", seen, source)
        if len(distinct) > 1:
            self.plan.add((), "NO_TENSOR_ALIASING", tuple(distinct))

    def own_closure(self, closure: tuple[Any, ...] | None) -> None:
        code = self.capture.args.code
        if not closure:
            return
        read = set(code_reads(code).freevars_read)
        for name, cell in zip(code.co_freevars, closure, strict=False):
            if name not in read:
                continue
            try:
                value = cell.cell_contents
            except ValueError:
                continue
            self.value(sources.local(name), value, 0)

    def globals_(self) -> None:
        """Globals (and attribute chains) read by every user code the capture ran."""
        top = self.capture.args.code
        top_globals = self.executed[top].f_globals if top in self.executed else None
        for executed in list(self.executed.values()):
            f_globals = executed.f_globals
            if f_globals is top_globals:
                root: Source | None = None
            else:
                module_name = f_globals.get("__name__")
                module = sys.modules.get(module_name) if isinstance(module_name, str) else None
                if module is None or module.__dict__ is not f_globals:
                    raise Unsupported(
                        f"{executed.code.co_qualname} runs with globals that belong to no module"
                    )
                root = sources.module_globals(module_name)
            for chain in code_reads(executed.code).global_chains:
                self.global_chain(root, f_globals, chain)

    def global_chain(
        self, root: Source | None, f_globals: dict[str, Any], chain: tuple[str, ...]
    ) -> None:
        name = chain[0]
        if name in f_globals:
            value = f_globals[name]
            source = sources.global_(name) if root is None else sources.item(root, name)
        else:
            builtins = f_globals.get("__builtins__")
            bdict = builtins.__dict__ if isinstance(builtins, types.ModuleType) else builtins
            if not isinstance(bdict, dict) or name not in bdict:
                return
            value = bdict[name]
            source = sources.builtin(name)
        rendered = sources.render(source)
        if rendered not in self.plan.globals_read:
            self.plan.globals_read.append(rendered)
        self.value(source, value, 0)
        for attr in chain[1:]:
            if not isinstance(value, (types.ModuleType, type)) and not _is_config_object(value):
                return
            try:
                value = getattr(value, attr)
            except AttributeError:
                return
            source = sources.attr(source, attr)
            self.value(source, value, 0)

    def check_closures_covered(self) -> None:
        for code in self.executed:
            if code.co_freevars and code not in self.covered and code_reads(code).freevars_read:
                raise Unsupported(
                    f"the capture ran the closure {code.co_qualname}, whose captured variables "
                    "framecache cannot reach to guard"
                )


def _is_config_object(value: Any) -> bool:
    return hasattr(value, "__dict__") and not callable(value)


def _is_plain_object(value: Any) -> bool:
    """An instance whose state lives in a plain __dict__ (not a module, class or function)."""
    if isinstance(value, (types.ModuleType, type, types.BuiltinFunctionType, torch.nn.Module)):
        return False
    state = getattr(value, "__dict__", None)
    return type(state) is dict


def materialize(plan: GuardPlan) -> RootGuardManager:
    """Build the C++ guard tree of a plan.

    The root does not bind the globals: the runtime checks it against each frame's own, and
    a bound dict would keep the function (and its code, which owns this tree) alive.
    """
    root = RootGuardManager()
    nodes: dict[Source, Any] = {}

    def node(source: Source) -> Any:
        if source in nodes:
            return nodes[source]
        step = source[-1]
        if len(source) == 1:
            kind = step[0]
            if kind == "L":
                n = root.local(step[1])
            elif kind == "G":
                n = root.global_(step[1])
            elif kind == "B":
                n = root.builtin(step[1])
            elif kind == "M":
                module = sys.modules[step[1]]
                n = root.object_source(module.__dict__, sources.render(source))
            else:
                raise ValueError(f"unknown source root {step!r}")
        else:
            parent = node(source[:-1])
            if step[0] == "attr":
                n = parent.attr(step[1])
            elif step[0] == "dict":
                n = parent.obj_dict()
            elif step[0] == "cell":
                n = parent.closure_cell(step[1])
            elif step[0] == "item":
                n = parent.dict_item(step[1]) if isinstance(step[1], str) else parent.item(step[1])
            else:
                raise ValueError(f"unknown source step {step!r}")
        nodes[source] = n
        return n

    for guard in plan.guards:
        kind, args = guard.kind, guard.args
        if kind == "GLOBAL_STATE":
            root.global_state()
        elif kind == "NO_TENSOR_ALIASING":
            root.no_tensor_aliasing([node(s) for s in args[0]])
        elif kind == "OBJECT_ALIASING":
            root.object_aliasing(node(args[0]), node(args[1]))
        else:
            _add_leaf(node(guard.source), kind, args)
    return root


def _add_leaf(n: Any, kind: str, args: tuple[Any, ...]) -> None:
    if kind == "TENSOR_MATCH":
        tensor, dyn = args
        n.tensor_match(tensor, dynamic_dims=sorted(dyn))
    elif kind == "TYPE_MATCH":
        n.type_match(args[0])
    elif kind == "ID_MATCH":
        n.id_match(args[0])
    elif kind == "EQUALS_MATCH":
        n.equals_match(args[0])
    elif kind == "EQUALS_DEVICE":
        n.lambda_guard(lambda v, want=args[0]: str(v) == want, f"device == {args[0]}")
    elif kind == "NONE_MATCH":
        n.none_match()
    elif kind == "FLOAT_IS_NAN":
        n.float_is_nan()
    elif kind == "LENGTH_CHECK":
        n.length_check(args[0])
    elif kind == "DICT_LEN":
        n.dict_length(args[0])
    elif kind == "DICT_KEYS":
        n.mapping_keys_match(list(args[0]))
    else:
        raise ValueError(f"unknown guard kind {kind}")


__all__ = ["Guard", "GuardPlan", "build_plan", "materialize"]
