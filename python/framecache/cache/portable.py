"""Guard plans written down for another process, and rebuilt from what was written.

A guard plan (compiler/guard_plan.py) holds live objects: example tensors, types, the
functions and modules a graph depends on. ``describe`` turns it into plain data —
sources (paths from the frame), tensor metadata, constants by value, objects by
reference (refs.py) and torch's ambient state — and ``rebuild`` turns that back into a
plan of this process's objects, which guard_plan.materialize makes into a guard tree.

Identity guards become what another process can check: a function, class or module by
reference; an nn.Module or plain object by its class (its state is guarded item by item
by the rest of the plan); a parameter held by the graph is lifted into an input instead
(lifting.py), so its identity no longer matters. Anything else is NotPortable and the
entry is not written: soundness first.
"""

from __future__ import annotations

import types
from typing import Any

import torch

from ..compiler.guard_plan import Guard, GuardPlan
from ..compiler.inputs import CONSTANT_TYPES
from . import refs
from .refs import NotPortable

Portable = list[tuple[Any, str, tuple[Any, ...]]]
_PRIMITIVES = (bool, int, float, complex, str, bytes, type(None))


def ambient_state() -> tuple[Any, ...]:
    """torch's ambient state, as the GLOBAL_STATE guard sees it, in plain values."""
    c = torch._C
    return (
        torch.is_grad_enabled(),
        torch.is_autocast_enabled("cpu"),
        str(torch.get_autocast_dtype("cpu")),
        torch.is_autocast_cache_enabled(),
        str(torch.get_default_dtype()),
        torch.are_deterministic_algorithms_enabled(),
        torch.is_deterministic_algorithms_warn_only_enabled(),
        c._is_torch_function_enabled(),
        c._len_torch_function_stack(),
        c._len_torch_dispatch_stack(),
        str(torch.get_default_device()),
    )


def tensor_meta(t: torch.Tensor, dyn: frozenset[int]) -> tuple[Any, ...]:
    """What TENSOR_MATCH compares, as plain values."""
    return (
        refs.ref_of(type(t)),
        str(t.dtype),
        str(t.device),
        bool(t.requires_grad),
        tuple(int(s) for s in t.shape),
        tuple(int(s) for s in t.stride()),
        tuple(sorted(dyn)),
        str(torch._C._dispatch_keys(t)),
    )


def example_tensor(meta: tuple[Any, ...]) -> torch.Tensor:
    """A tensor with the stored metadata, for building TENSOR_MATCH in this process."""
    type_ref, dtype, device, requires_grad, sizes, strides, _dyn, keys = meta
    cls = refs.resolve(type_ref)
    dt = getattr(torch, dtype.removeprefix("torch."))
    if not isinstance(dt, torch.dtype):
        raise LookupError(f"unknown dtype {dtype}")
    t = torch.empty_strided(sizes, strides, dtype=dt, device=device)
    if cls is torch.nn.Parameter:
        t = torch.nn.Parameter(t, requires_grad=requires_grad)
    elif cls is torch.Tensor:
        t.requires_grad_(requires_grad)
    else:
        raise LookupError(f"tensor type {cls!r} cannot be rebuilt")
    if str(torch._C._dispatch_keys(t)) != keys:
        raise LookupError("tensor dispatch keys differ from the stored ones")
    return t


def describe(plan: GuardPlan, lifted: set[int]) -> Portable:
    """The plan as plain data; ``lifted`` are ids of tensors passed to the graph as inputs."""
    out: Portable = []
    for guard in plan.guards:
        out.extend(_describe_guard(guard, lifted))
    return out


def _describe_guard(guard: Guard, lifted: set[int]) -> Portable:
    source, kind, args = guard.source, guard.kind, guard.args
    if kind == "TENSOR_MATCH":
        tensor, dyn = args
        return [(source, kind, tensor_meta(tensor, dyn))]
    if kind == "TYPE_MATCH":
        return [(source, "TYPE_REF", (refs.ref_of(args[0]),))]
    if kind == "EQUALS_MATCH":
        if type(args[0]) not in _PRIMITIVES:
            raise NotPortable(f"constant of type {type(args[0]).__name__}")
        return [(source, kind, args)]
    if kind == "GLOBAL_STATE":
        state = ambient_state()
        if state[8] or state[9]:
            raise NotPortable("a torch function or dispatch mode is active")
        return [(source, kind, (state,))]
    if kind == "ID_MATCH":
        return _describe_identity(source, args[0], lifted)
    if kind in ("DICT_KEYS",):
        keys = args[0]
        if not all(type(k) in _PRIMITIVES for k in keys):
            raise NotPortable("dict keys that are not constants")
        return [(source, kind, (tuple(keys),))]
    if kind in (
        "NONE_MATCH",
        "FLOAT_IS_NAN",
        "LENGTH_CHECK",
        "DICT_LEN",
        "EQUALS_DEVICE",
        "NO_TENSOR_ALIASING",
        "OBJECT_ALIASING",
    ):
        return [(source, kind, args)]
    raise NotPortable(f"guard kind {kind}")


def _describe_identity(source: Any, value: Any, lifted: set[int]) -> Portable:
    if isinstance(value, torch.Tensor):
        if id(value) in lifted:
            return []  # the graph takes it as an input: its metadata guard remains
        raise NotPortable("a tensor the graph holds by identity")
    if isinstance(value, CONSTANT_TYPES):
        return [(source, "TORCH_CONST", (str(value),))]
    if isinstance(value, torch.nn.Module) or _is_plain_object(value):
        # The rest of the plan guards its state item by item; here, its class.
        return [(source, "TYPE_REF", (refs.ref_of(type(value)),))]
    if isinstance(value, types.MethodType):
        return [
            (source, "TYPE_REF", (refs.ref_of(types.MethodType),)),
            ((*source, ("attr", "__func__")), "REF", (refs.ref_of(value.__func__),)),
        ]
    return [(source, "REF", (refs.ref_of(value),))]


def _is_plain_object(value: Any) -> bool:
    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
        return False
    return type(getattr(value, "__dict__", None)) is dict and not callable(value)


def rebuild(portable: Portable) -> GuardPlan:
    """This process's guard plan for a stored description; LookupError when it cannot hold.

    A failure here is a miss: a referenced object is missing or changed, or torch's
    ambient state differs from the stored one.
    """
    plan = GuardPlan()
    for source, kind, args in portable:
        if kind == "TENSOR_MATCH":
            plan.add(source, kind, example_tensor(args), frozenset(args[6]))
        elif kind == "TYPE_REF":
            plan.add(source, "TYPE_MATCH", refs.resolve(args[0]))
        elif kind == "REF":
            plan.add(source, "ID_MATCH", refs.resolve(args[0]))
        elif kind == "TORCH_CONST":
            value = getattr(torch, args[0].removeprefix("torch."), None)
            if not isinstance(value, CONSTANT_TYPES):
                raise LookupError(f"unknown torch constant {args[0]}")
            plan.add(source, "ID_MATCH", value)
        elif kind == "GLOBAL_STATE":
            if tuple(args[0]) != ambient_state():
                raise LookupError("torch's ambient state differs from the stored one")
            plan.add(source, kind)
        else:
            plan.add(source, kind, *args)
    return plan


__all__ = ["Portable", "ambient_state", "describe", "example_tensor", "rebuild", "tensor_meta"]
