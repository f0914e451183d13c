"""Guard plans written down for another process, and rebuilt from what was written.

A guard plan (framecache/plan) holds live objects: example tensors, types, the
functions and modules a graph depends on. Each guard kind writes itself down and reads
itself back (plan/guards.py) through the Codec here — sources (paths from the frame),
tensor metadata, constants by value, objects by reference (refs.py) and torch's ambient
state — so ``describe`` is the plan as plain data and ``rebuild`` a plan of this
process's objects, which plan.materialize makes into a guard tree.

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

from ..plan.guards import Encoded
from ..plan.plan import GuardPlan
from . import refs
from .refs import NotPortable

Portable = list[Encoded]
# torch's interned constants: identity is equality, and they are named by their str().
CONSTANT_TYPES = (torch.dtype, torch.device, torch.layout, torch.memory_format)


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


class TorchCodec:
    """The plan's Codec in this process: references (refs.py), tensor metadata, ambient state."""

    NotPortable = NotPortable

    def ref(self, obj: Any) -> refs.Ref:
        return refs.ref_of(obj)

    def resolve(self, ref: refs.Ref) -> Any:
        return refs.resolve(ref)

    def identity(self, value: Any, lifted: set[int]) -> list[tuple[str, Any]]:
        """How an ID_MATCH on ``value`` is written down (guards.IdMatch.encode)."""
        if isinstance(value, torch.Tensor):
            if id(value) in lifted:
                return []  # the graph takes it as an input: its metadata guard remains
            raise NotPortable("a tensor the graph holds by identity")
        if isinstance(value, CONSTANT_TYPES):
            return [("torch", str(value))]
        if isinstance(value, torch.nn.Module) or _is_plain_object(value):
            # The plan guards the state the capture read from it; here, its class.
            return [("type", refs.ref_of(type(value)))]
        if isinstance(value, types.MethodType):
            return [("type", refs.ref_of(types.MethodType)), ("func", refs.ref_of(value.__func__))]
        return [("ref", refs.ref_of(value))]

    def tensor_meta(self, tensor: Any, dynamic_dims: frozenset[int]) -> tuple[Any, ...]:
        return tensor_meta(tensor, dynamic_dims)

    def example_tensor(self, meta: tuple[Any, ...]) -> Any:
        return example_tensor(meta)

    def ambient_state(self) -> tuple[Any, ...]:
        state = ambient_state()
        if state[8] or state[9]:
            raise NotPortable("a torch function or dispatch mode is active")
        return state

    def torch_constant(self, name: str) -> Any:
        value = getattr(torch, name.removeprefix("torch."), None)
        if not isinstance(value, CONSTANT_TYPES):
            raise LookupError(f"unknown torch constant {name}")
        return value


CODEC = TorchCodec()


def describe(plan: GuardPlan, lifted: set[int]) -> Portable:
    """The plan as plain data; ``lifted`` are ids of tensors passed to the graph as inputs."""
    return plan.encode(CODEC, lifted)


def _is_plain_object(value: Any) -> bool:
    if isinstance(value, (types.ModuleType, type, types.FunctionType, types.BuiltinFunctionType)):
        return False
    return type(getattr(value, "__dict__", None)) is dict and not callable(value)


def rebuild(portable: Portable) -> GuardPlan:
    """This process's guard plan for a stored description; LookupError when it cannot hold.

    A failure here is a miss: a referenced object is missing or changed, or torch's
    ambient state differs from the stored one.
    """
    try:
        return GuardPlan.decode(CODEC, portable)
    except NotPortable as exc:  # an active mode now: the stored state cannot match
        raise LookupError(str(exc)) from None


__all__ = [
    "CODEC",
    "Portable",
    "TorchCodec",
    "ambient_state",
    "describe",
    "example_tensor",
    "rebuild",
    "tensor_meta",
]
