"""Guard kinds: one class each, owning its description, its C++ lowering and its encoding.

A guard applies to the value at a source (compiler/sources.py: a path from the frame).
Each kind's ``KIND`` is the name of the C++ leaf guard it lowers to (``kind()`` in
include/framecache/guards/), so ``explain``, the guard tree's own ``str`` and a failure
message name a guard the same way.

Encoding (for the disk cache) goes through a ``Codec`` that the disk cache supplies: it
knows how to name objects across processes (``ref``/``resolve``), to write a tensor's
metadata and make an example tensor from it, and what torch's ambient state is. A kind
that cannot be written down raises the codec's ``NotPortable``; the cache then bypasses
the entry. This module imports neither torch nor the compiler.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Protocol

from .sources import Source, render

Encoded = tuple[str, Source, tuple[Any, ...]]
"""One written-down guard: ``(KIND, source, plain data)``."""


class Codec(Protocol):
    """What the disk cache lends the plan to write guards down and read them back."""

    NotPortable: type[Exception]

    def ref(self, obj: Any) -> Any: ...
    def resolve(self, ref: Any) -> Any: ...
    def identity(self, obj: Any, lifted: set[int]) -> list[tuple[str, Any]]: ...
    def tensor_meta(self, tensor: Any, dynamic_dims: frozenset[int]) -> tuple[Any, ...]: ...
    def example_tensor(self, meta: tuple[Any, ...]) -> Any: ...
    def ambient_state(self) -> tuple[Any, ...]: ...
    def torch_constant(self, name: str) -> Any: ...


NodeOf = Callable[[Source], Any]
"""The C++ guard node of a source (made on first use)."""

_PRIMITIVES = (bool, int, float, complex, str, bytes, type(None))


def _short(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"<{type(obj).__name__} {name}>" if name else f"<{type(obj).__name__}>"


@dataclass(frozen=True)
class Guard:
    """A guard on the value at ``source``; subclasses are the kinds."""

    KIND: ClassVar[str] = ""
    source: Source

    @property
    def kind(self) -> str:
        return self.KIND

    def key(self) -> tuple[Any, ...]:
        """What makes two guards the same one (a plan holds it once)."""
        return (self.source, self.KIND)

    def detail(self) -> str:
        return ""

    def describe(self) -> str:
        where = render(self.source) if self.source else "<frame>"
        text = f"{where}: {self.KIND}"
        detail = self.detail()
        return f"{text} {detail}" if detail else text

    def lower(self, root: Any, node_of: NodeOf) -> None:
        """Add this guard to the C++ tree ``root``."""
        raise NotImplementedError

    def data(self) -> tuple[Any, ...]:
        return ()

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        """Plain data another process can rebuild this guard from; [] when not needed."""
        return [(self.KIND, self.source, self.data())]

    @classmethod
    def decode(cls, codec: Codec, source: Source, data: tuple[Any, ...]) -> Guard:
        return cls(source, *data)  # type: ignore[call-arg]


@dataclass(frozen=True)
class TypeMatch(Guard):
    KIND: ClassVar[str] = "TYPE_MATCH"
    type: type

    def detail(self) -> str:
        return self.type.__qualname__

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).type_match(self.type)

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        return [(self.KIND, self.source, (codec.ref(self.type),))]

    @classmethod
    def decode(cls, codec: Codec, source: Source, data: tuple[Any, ...]) -> Guard:
        return cls(source, codec.resolve(data[0]))


@dataclass(frozen=True)
class IdMatch(Guard):
    """The very object: functions, classes, modules, tensors the graph holds."""

    KIND: ClassVar[str] = "ID_MATCH"
    value: Any

    def detail(self) -> str:
        return _short(self.value)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).id_match(self.value)

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        # Another process has other objects: the codec names this one (a reference, a
        # torch constant, a class for an object whose read state is guarded) or refuses.
        out: list[Encoded] = []
        for how, data in codec.identity(self.value, lifted):
            if how == "ref":
                out.append((self.KIND, self.source, ("ref", data)))
            elif how == "torch":
                out.append((self.KIND, self.source, ("torch", data)))
            elif how == "type":
                out.append((TypeMatch.KIND, self.source, (data,)))
            elif how == "func":
                out.append((self.KIND, (*self.source, ("attr", "__func__")), ("ref", data)))
        return out

    @classmethod
    def decode(cls, codec: Codec, source: Source, data: tuple[Any, ...]) -> Guard:
        how, value = data
        if how == "ref":
            return cls(source, codec.resolve(value))
        if how == "torch":
            return cls(source, codec.torch_constant(value))
        raise LookupError(f"unknown identity encoding {how!r}")


@dataclass(frozen=True)
class EqualsMatch(Guard):
    KIND: ClassVar[str] = "EQUALS_MATCH"
    value: Any

    def detail(self) -> str:
        return repr(self.value)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).equals_match(self.value)

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        if type(self.value) not in _PRIMITIVES:
            raise codec.NotPortable(f"constant of type {type(self.value).__name__}")
        return [(self.KIND, self.source, (self.value,))]


@dataclass(frozen=True)
class DeviceMatch(Guard):
    """A torch.device, compared by its string (devices are not interned)."""

    KIND: ClassVar[str] = "LAMBDA_GUARD"
    device: str

    def key(self) -> tuple[Any, ...]:
        return (self.source, "DEVICE")

    def detail(self) -> str:
        return f"device == {self.device}"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        want = self.device
        node_of(self.source).lambda_guard(lambda v: str(v) == want, f"device == {want}")

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        return [("DEVICE_MATCH", self.source, (self.device,))]


@dataclass(frozen=True)
class NoneMatch(Guard):
    KIND: ClassVar[str] = "NONE_MATCH"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).none_match()


@dataclass(frozen=True)
class FloatIsNan(Guard):
    KIND: ClassVar[str] = "FLOAT_IS_NAN"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).float_is_nan()


@dataclass(frozen=True)
class LengthCheck(Guard):
    KIND: ClassVar[str] = "LENGTH_CHECK"
    length: int

    def detail(self) -> str:
        return str(self.length)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).length_check(self.length)

    def data(self) -> tuple[Any, ...]:
        return (self.length,)


@dataclass(frozen=True)
class DictLength(Guard):
    KIND: ClassVar[str] = "DICT_LENGTH"
    length: int

    def detail(self) -> str:
        return str(self.length)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).dict_length(self.length)

    def data(self) -> tuple[Any, ...]:
        return (self.length,)


@dataclass(frozen=True)
class MappingKeysMatch(Guard):
    KIND: ClassVar[str] = "MAPPING_KEYS_MATCH"
    keys: tuple[Any, ...]

    def detail(self) -> str:
        return repr(list(self.keys))

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).mapping_keys_match(list(self.keys))

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        if not all(type(k) in _PRIMITIVES for k in self.keys):
            raise codec.NotPortable("dict keys that are not constants")
        return [(self.KIND, self.source, (tuple(self.keys),))]


@dataclass(frozen=True)
class DictContains(Guard):
    """``key in value`` is ``contains``: a key read that was absent (``d.get(k)``)."""

    KIND: ClassVar[str] = "DICT_CONTAINS"
    key_: Any = None
    contains: bool = True

    def key(self) -> tuple[Any, ...]:
        return (self.source, self.KIND, type(self.key_), self.key_)

    def detail(self) -> str:
        return repr(self.key_) if self.contains else f"{self.key_!r}, contains=False"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).dict_contains(self.key_, self.contains)

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        if type(self.key_) not in _PRIMITIVES:
            raise codec.NotPortable(f"dict key of type {type(self.key_).__name__}")
        return [(self.KIND, self.source, (self.key_, self.contains))]


@dataclass(frozen=True)
class NoHasattr(Guard):
    """The value has no attribute ``name``: ``hasattr`` was False, ``getattr`` defaulted."""

    KIND: ClassVar[str] = "NO_HASATTR"
    name: str = ""

    def key(self) -> tuple[Any, ...]:
        return (self.source, self.KIND, self.name)

    def detail(self) -> str:
        return repr(self.name)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).no_hasattr(self.name)

    def data(self) -> tuple[Any, ...]:
        return (self.name,)


@dataclass(frozen=True)
class TensorMatch(Guard):
    """dtype, device, sizes and strides (``dynamic_dims`` free), requires_grad, keys."""

    KIND: ClassVar[str] = "TENSOR_MATCH"
    example: Any
    dynamic_dims: frozenset[int] = frozenset()

    def detail(self) -> str:
        t = self.example
        dims = ", ".join("*" if i in self.dynamic_dims else str(s) for i, s in enumerate(t.shape))
        return f"{t.dtype} [{dims}] on {t.device}, requires_grad={t.requires_grad}"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        node_of(self.source).tensor_match(self.example, dynamic_dims=sorted(self.dynamic_dims))

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        return [(self.KIND, self.source, codec.tensor_meta(self.example, self.dynamic_dims))]

    @classmethod
    def decode(cls, codec: Codec, source: Source, data: tuple[Any, ...]) -> Guard:
        return cls(source, codec.example_tensor(data), frozenset(data[6]))


@dataclass(frozen=True)
class ObjectAliasing(Guard):
    """``first is second``: one object under two sources stays one."""

    KIND: ClassVar[str] = "OBJECT_ALIASING"
    first: Source = ()
    second: Source = ()

    def key(self) -> tuple[Any, ...]:
        return (self.KIND, self.first, self.second)

    def describe(self) -> str:
        return f"{self.KIND} {render(self.first)} is {render(self.second)}"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        root.object_aliasing(node_of(self.first), node_of(self.second))

    def data(self) -> tuple[Any, ...]:
        return (self.first, self.second)


@dataclass(frozen=True)
class NoTensorAliasing(Guard):
    """The tensors at these sources are distinct objects."""

    KIND: ClassVar[str] = "NO_TENSOR_ALIASING"
    sources: tuple[Source, ...] = ()

    def key(self) -> tuple[Any, ...]:
        return (self.KIND, self.sources)

    def describe(self) -> str:
        return f"{self.KIND} " + ", ".join(render(s) for s in self.sources)

    def lower(self, root: Any, node_of: NodeOf) -> None:
        root.no_tensor_aliasing([node_of(s) for s in self.sources])

    def data(self) -> tuple[Any, ...]:
        return (tuple(self.sources),)


@dataclass(frozen=True)
class GlobalState(Guard):
    """torch's ambient state: grad mode, autocast, default dtype, determinism, modes."""

    KIND: ClassVar[str] = "GLOBAL_STATE"

    def describe(self) -> str:
        return f"{self.KIND} (grad mode, autocast, default dtype, deterministic, modes, device)"

    def lower(self, root: Any, node_of: NodeOf) -> None:
        root.global_state()

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        state = codec.ambient_state()
        return [(self.KIND, self.source, (state,))]

    @classmethod
    def decode(cls, codec: Codec, source: Source, data: tuple[Any, ...]) -> Guard:
        if tuple(data[0]) != codec.ambient_state():
            raise LookupError("torch's ambient state differs from the stored one")
        return cls(source)


KINDS: dict[str, type[Guard]] = {
    cls.KIND: cls
    for cls in (
        TypeMatch,
        IdMatch,
        EqualsMatch,
        NoneMatch,
        FloatIsNan,
        LengthCheck,
        DictLength,
        MappingKeysMatch,
        DictContains,
        NoHasattr,
        TensorMatch,
        ObjectAliasing,
        NoTensorAliasing,
        GlobalState,
    )
}
# Written-down kinds whose name is not a C++ leaf's (a device compare is a lambda guard).
KINDS["DEVICE_MATCH"] = DeviceMatch


def decode(codec: Codec, encoded: Encoded) -> Guard:
    """The guard an encoding describes, in this process; LookupError when it cannot hold."""
    kind, source, data = encoded
    cls = KINDS.get(kind)
    if cls is None:
        raise LookupError(f"unknown guard kind {kind!r}")
    return cls.decode(codec, tuple(source), tuple(data))


__all__ = [
    "KINDS",
    "Codec",
    "DeviceMatch",
    "DictContains",
    "DictLength",
    "Encoded",
    "EqualsMatch",
    "FloatIsNan",
    "GlobalState",
    "Guard",
    "IdMatch",
    "LengthCheck",
    "MappingKeysMatch",
    "NoHasattr",
    "NoTensorAliasing",
    "NoneMatch",
    "ObjectAliasing",
    "TensorMatch",
    "TypeMatch",
    "decode",
]
