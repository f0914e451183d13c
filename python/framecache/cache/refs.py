"""Naming objects across processes: modules, functions and classes by module and qualified name.

An object guarded by identity in one process (``ID_MATCH``) has no identity in the next.
A *reference* names it instead (``("obj", "mymodule", "helper", fingerprint)``) and the
loading process resolves the name to its own object. The fingerprint is a content hash
that makes a reference fail when the object's code changed between the processes: a
function's code, defaults and keyword defaults; a class's methods over its user-defined
bases. Library objects (torch, the standard library, builtins) carry no fingerprint: the
key holds torch's and Python's versions.

Resolution never imports: a module the loading process has not imported yet is a miss.
"""

from __future__ import annotations

import functools
import sys
import types
from typing import Any

from . import key as key_mod

Ref = tuple[Any, ...]


class NotPortable(Exception):
    """An object (or guard) that cannot be named in another process."""


def _is_library(obj: Any) -> bool:
    module = getattr(obj, "__module__", None) or ""
    top = module.split(".")[0]
    if top in ("torch", "builtins", "typing", "functools", "operator", "math", "_operator"):
        return True
    mod = sys.modules.get(top)
    file = getattr(mod, "__file__", None) or ""
    return mod is not None and ("/lib/python" in file and "site-packages" not in file)


def _function_fingerprint(fn: types.FunctionType, depth: int = 0) -> str:
    try:
        defaults = tuple(_default(v, depth) for v in fn.__defaults__ or ())
        kwdefaults = {k: _default(v, depth) for k, v in (fn.__kwdefaults__ or {}).items()}
        return key_mod.value_hash((key_mod.code_hash(fn.__code__), defaults, kwdefaults))
    except TypeError as exc:
        raise NotPortable(
            f"{fn.__qualname__} has defaults without a stable content: {exc}"
        ) from None


def _default(value: Any, depth: int) -> Any:
    """A default argument's content: itself when it hashes by content; a function, class
    or builtin by its name (a Python function with its own fingerprint too), as in
    ``gradient_checkpointing_func=checkpoint``; a functools.partial by its parts
    (``norm_layer=partial(nn.LayerNorm, eps=1e-6)``); TypeError for any other object."""
    try:
        key_mod.value_hash(value)
        return value
    except TypeError:
        pass
    name = (getattr(value, "__module__", None), getattr(value, "__qualname__", None))
    if isinstance(value, types.FunctionType) and None not in name and depth < 8:
        fingerprint = "" if _is_library(value) else _function_fingerprint(value, depth + 1)
        return ("function", *name, fingerprint)
    if isinstance(value, (type, types.BuiltinFunctionType)) and None not in name:
        return ("named", *name)
    if type(value) is functools.partial and depth < 8:  # norm_layer=partial(LayerNorm, eps=...)
        keywords = {k: _default(v, depth + 1) for k, v in value.keywords.items()}
        args = tuple(_default(v, depth + 1) for v in value.args)
        return ("partial", _default(value.func, depth + 1), args, keywords)
    raise TypeError(f"no content hash for a {type(value).__qualname__}")


def _class_fingerprint(cls: type) -> str:
    parts: list[Any] = []
    for base in cls.__mro__:
        if _is_library(base):
            parts.append(f"{base.__module__}.{base.__qualname__}")
            continue
        members = []
        for name, value in sorted(vars(base).items()):
            fn = value
            if isinstance(value, (staticmethod, classmethod)):
                fn = value.__func__
            elif isinstance(value, property):
                fn = value.fget
            if isinstance(fn, types.FunctionType):
                members.append((name, _function_fingerprint(fn)))
            elif name in ("__dict__", "__weakref__", "__doc__", "__module__", "__qualname__"):
                continue
            else:
                try:
                    members.append((name, key_mod.value_hash(value)))
                except TypeError:
                    members.append((name, type(value).__qualname__))
        parts.append((base.__module__, base.__qualname__, tuple(members)))
    return key_mod.value_hash(tuple(parts))


def fingerprint(obj: Any) -> str:
    """Content hash of what an object does; empty for library objects."""
    if isinstance(obj, types.FunctionType):
        return "" if _is_library(obj) else _function_fingerprint(obj)
    if isinstance(obj, type):
        return "" if _is_library(obj) else _class_fingerprint(obj)
    return ""


def ref_of(obj: Any) -> Ref:
    """A reference to ``obj`` that another process can resolve, or NotPortable."""
    if isinstance(obj, types.ModuleType):
        name = obj.__name__
        if sys.modules.get(name) is not obj:
            raise NotPortable(f"module {name!r} is not the one imported under that name")
        return ("module", name)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not isinstance(module, str) or not isinstance(qualname, str) or "<" in qualname:
        raise NotPortable(f"{_what(obj)} has no importable module and qualified name")
    # C functions bound on a class (torch.relu is _VariableFunctionsClass.relu) are
    # reachable by their plain name in their module.
    for name in dict.fromkeys((qualname, getattr(obj, "__name__", qualname))):
        try:
            found = _lookup(module, name)
        except LookupError:
            continue
        if found is obj:
            return ("obj", module, name, fingerprint(obj))
    if module == "builtins" and isinstance(obj, type):
        # The interpreter's own types without a builtins name (function, code, cell) are
        # named by the types module (types.FunctionType).
        for name, value in vars(types).items():
            if value is obj:
                return ("obj", "types", name, fingerprint(obj))
    raise NotPortable(f"{_what(obj)} is not reachable as {module}.{qualname}")


def _lookup(module: str, qualname: str) -> Any:
    mod = sys.modules.get(module)
    if mod is None:
        raise LookupError(f"module {module!r} is not imported")
    value: Any = mod
    for part in qualname.split("."):
        try:
            value = getattr(value, part)
        except AttributeError:
            raise LookupError(f"{module}.{qualname} does not exist") from None
    return value


def resolve(ref: Ref) -> Any:
    """The object ``ref`` names in this process; LookupError when it is not the same one."""
    if ref[0] == "module":
        mod = sys.modules.get(ref[1])
        if mod is None:
            raise LookupError(f"module {ref[1]!r} is not imported")
        return mod
    if ref[0] == "obj":
        _, module, qualname, fp = ref
        obj = _lookup(module, qualname)
        try:
            now = fingerprint(obj)
        except NotPortable as exc:
            raise LookupError(str(exc)) from None
        if now != fp:
            raise LookupError(f"{module}.{qualname} changed since the entry was written")
        return obj
    raise LookupError(f"unknown reference {ref!r}")


def _what(obj: Any) -> str:
    name = getattr(obj, "__qualname__", None) or getattr(obj, "__name__", None)
    return f"{type(obj).__name__} {name}" if name else f"a {type(obj).__name__}"


__all__ = ["NotPortable", "Ref", "fingerprint", "ref_of", "resolve"]
