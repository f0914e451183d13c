"""A frame's arguments as flat tensor inputs plus specialised constants."""

from __future__ import annotations

import inspect
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from ..plan import sources
from ..plan.sources import Source
from .errors import Unsupported

# Values specialised into the graph as constants (guarded by EQUALS_MATCH and friends).
CONSTANT_TYPES: tuple[type, ...] = (
    bool,
    int,
    float,
    complex,
    str,
    bytes,
    type(None),
    type(Ellipsis),
    torch.dtype,
    torch.device,
    torch.layout,
    torch.memory_format,
)
# Objects passed through as they are, guarded by identity.
OPAQUE_TYPES: tuple[type, ...] = (
    types.FunctionType,
    types.BuiltinFunctionType,
    types.MethodType,
    types.ModuleType,
    type,
    torch.nn.Module,
)
_MAX_DEPTH = 16


@dataclass
class _Slot:
    """Where tensor number ``index`` goes when the arguments are rebuilt."""

    index: int


@dataclass
class FrameArguments:
    """The arguments of one frame, split into tensors and a template around them."""

    code: types.CodeType
    names: list[str]
    values: dict[str, Any]
    templates: dict[str, Any] = field(default_factory=dict)
    tensors: list[torch.Tensor] = field(default_factory=list)
    tensor_sources: list[Source] = field(default_factory=list)

    def rebuild(self, tensors: Sequence[Any]) -> tuple[list[Any], dict[str, Any]]:
        """Positional and keyword arguments with ``tensors`` in place of the originals."""
        code = self.code
        filled = {name: _fill(self.templates[name], tensors) for name in self.names}
        n_pos = code.co_argcount
        n_kw = code.co_kwonlyargcount
        varnames = code.co_varnames
        args = [filled[name] for name in varnames[:n_pos]]
        kwargs = {name: filled[name] for name in varnames[n_pos : n_pos + n_kw]}
        i = n_pos + n_kw
        if code.co_flags & inspect.CO_VARARGS:
            args.extend(filled[varnames[i]])
            i += 1
        if code.co_flags & inspect.CO_VARKEYWORDS:
            kwargs.update(filled[varnames[i]])
        return args, kwargs


def argument_names(code: types.CodeType) -> list[str]:
    """Names of all parameters of ``code`` in frame order."""
    n = code.co_argcount + code.co_kwonlyargcount
    n += bool(code.co_flags & inspect.CO_VARARGS) + bool(code.co_flags & inspect.CO_VARKEYWORDS)
    return list(code.co_varnames[:n])


def split_arguments(code: types.CodeType, f_locals: dict[str, Any]) -> FrameArguments:
    """Walk the frame's arguments: tensors become inputs, the rest is specialised."""
    names = argument_names(code)
    result = FrameArguments(code=code, names=names, values={n: f_locals[n] for n in names})
    for name in names:
        result.templates[name] = _walk(result.values[name], sources.local(name), result, 0)
    return result


def _walk(value: Any, source: Source, out: FrameArguments, depth: int) -> Any:
    if depth > _MAX_DEPTH:
        raise Unsupported(f"input {sources.render(source)} is nested too deeply")
    if isinstance(value, torch.Tensor):
        if type(value) not in (torch.Tensor, torch.nn.Parameter):
            raise Unsupported(
                f"input {sources.render(source)} is a tensor subclass ({type(value).__name__})"
            )
        out.tensors.append(value)
        out.tensor_sources.append(source)
        return _Slot(len(out.tensors) - 1)
    if isinstance(value, CONSTANT_TYPES) or isinstance(value, OPAQUE_TYPES):
        return value
    if type(value) in (tuple, list):
        items = [_walk(v, sources.item(source, i), out, depth + 1) for i, v in enumerate(value)]
        return tuple(items) if type(value) is tuple else _ListTemplate(items)
    if type(value) is dict and all(isinstance(k, str) for k in value):
        return _DictTemplate(
            {k: _walk(v, sources.item(source, k), out, depth + 1) for k, v in value.items()}
        )
    if isinstance(value, (set, frozenset, bytearray, dict)) or not hasattr(value, "__dict__"):
        raise Unsupported(
            f"input {sources.render(source)} has type {type(value).__qualname__}, which framecache "
            "cannot specialise (supported: tensors, Python scalars and strings, None, tuples, "
            "lists and str-keyed dicts of those, functions, classes, modules, nn.Modules and "
            "objects whose state is in their __dict__)"
        )
    # A plain object (a method's self, a config): passed through, guarded by identity and
    # by the contents of its __dict__.
    return value


class _ListTemplate(list):
    """A list argument: rebuilt as a fresh list so the graph never aliases the caller's."""


class _DictTemplate(dict):
    """A dict argument: rebuilt as a fresh dict."""


def _fill(template: Any, tensors: Sequence[Any]) -> Any:
    if isinstance(template, _Slot):
        return tensors[template.index]
    if type(template) is tuple:
        return tuple(_fill(t, tensors) for t in template)
    if isinstance(template, _ListTemplate):
        return [_fill(t, tensors) for t in template]
    if isinstance(template, _DictTemplate):
        return {k: _fill(v, tensors) for k, v in template.items()}
    return template


def make_function(
    code: types.CodeType, f_globals: dict[str, Any], closure: tuple[Any, ...] | None
) -> Callable[..., Any]:
    """A function object running ``code`` with the frame's globals and closure."""
    return types.FunctionType(code, f_globals, code.co_name, None, closure)
