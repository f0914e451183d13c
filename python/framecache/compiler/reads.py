"""What the captured code reads: access chains per line, and resolving one step of them.

A capture runs the frame's Python for real (make_fx on fake tensors), so what the graph
depends on is what that run read. framecache records it while the capture runs: a line
trace function (installed only for user code, only during the capture) is called before
each line executes, looks up the access chains that the line's bytecode contains —
``self.config.hidden_size``, ``torch.nn.functional.gelu``, ``ACT2FN["gelu"]``, a closure
cell's ``k.scale`` — and resolves them on the frame's current values. A chain is a root
(a local, cell or free variable of the frame; or a global or builtin) followed by
attribute loads and constant subscripts.

Why lines and not proxies or a recording globals dict: ``LOAD_GLOBAL`` requires the
frame's globals to be an exact dict, proxies change ``is``, ``type()`` and what C code
sees, and CPython 3.11 has no per-instruction events that show the value stack. A line
event sees the frame's locals as they are when the line starts, which is when its reads
take their roots; the steps after the root are resolved statically (an instance's
``__dict__``, a module's parameter tables, a class's MRO), never by running a property or
``__getattr__`` written in Python unless the type routes every read through its own
``__getattribute__``/``__getattr__`` (a transformers config maps ``hidden_size`` to
``n_embd``), which the capture then ran anyway.

The value found for each step is guarded at its source (a path from the compiled frame),
and the object gets that source, so a callee reading ``self.weight`` of an object the
caller reached through ``L['self'].encoder`` guards ``L['self'].encoder.weight``. Objects
the plan has no source for are values the capture made or got from calls; what they were
computed from is guarded where it was read.
"""

from __future__ import annotations

import dis
import types
from typing import Any

# Instructions that load a chain's root: a frame variable (fast local, cell, free
# variable) or a global / builtin.
_LOCAL_ROOTS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_CLOSURE"}
)
_GLOBAL_ROOTS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
# Attribute loads (3.11 has LOAD_METHOD; 3.12 folds it into LOAD_ATTR).
_ATTR_STEPS = frozenset({"LOAD_ATTR", "LOAD_METHOD", "LOAD_SUPER_ATTR"})
KEY_TYPES = (int, str, bytes, bool)

Chain = tuple[str, str, tuple[tuple[str, Any], ...]]
"""``(root kind "L" or "G", root name, steps)``, steps ``("attr", name)`` / ``("item", key)``."""


def line_chains(code: types.CodeType) -> dict[int, list[Chain]]:
    """The access chains of ``code``, by the line of their root instruction."""
    instrs = [i for i in dis.get_instructions(code) if i.opname not in ("CACHE", "EXTENDED_ARG")]
    out: dict[int, list[Chain]] = {}
    n = len(instrs)
    k = 0
    while k < n:
        ins = instrs[k]
        op = ins.opname
        if op in _LOCAL_ROOTS or op in _GLOBAL_ROOTS:
            kind = "L" if op in _LOCAL_ROOTS else "G"
            name = ins.argval
            steps: list[tuple[str, Any]] = []
            j = k + 1
            while j < n:
                nxt = instrs[j]
                if nxt.is_jump_target:
                    break
                if nxt.opname in _ATTR_STEPS and nxt.opname != "LOAD_SUPER_ATTR":
                    steps.append(("attr", nxt.argval))
                    j += 1
                elif (
                    nxt.opname == "LOAD_CONST"
                    and j + 1 < n
                    and instrs[j + 1].opname in ("BINARY_SUBSCR",)
                    and type(nxt.argval) in KEY_TYPES
                    and not instrs[j + 1].is_jump_target
                ):
                    steps.append(("item", nxt.argval))
                    j += 2
                else:
                    break
            line = ins.positions.lineno if ins.positions is not None else None
            if isinstance(name, str) and line is not None and (kind == "G" or steps):
                out.setdefault(line, []).append((kind, name, tuple(steps)))
            k = j if j > k + 1 else k + 1
        else:
            k += 1
    return out


_MISSING = object()


def _class_lookup(tp: type, name: str) -> Any:
    for klass in tp.__mro__:
        found = klass.__dict__.get(name, _MISSING)
        if found is not _MISSING:
            return found
    return _MISSING


def python_attribute_hooks(tp: type) -> bool:
    """Whether every attribute read on instances of ``tp`` runs Python of the type's own."""
    return isinstance(_class_lookup(tp, "__getattribute__"), types.FunctionType)


def is_data_descriptor(tp: type, name: str) -> bool:
    """Whether ``tp.name`` is a data descriptor (a property, a slot), which wins over
    the instance's ``__dict__``."""
    found = _class_lookup(tp, name)
    if found is _MISSING:
        return False
    kind = type(found)
    return hasattr(kind, "__set__") or hasattr(kind, "__delete__")


def class_function(tp: type, name: str) -> Any:
    """The plain function ``getattr(tp, name)`` gives (method, staticmethod); else _MISSING."""
    found = _class_lookup(tp, name)
    if isinstance(found, staticmethod):
        found = found.__func__
    return found if isinstance(found, types.FunctionType) else _MISSING


_PLAIN_CLASS_VALUES = (bool, int, float, complex, str, bytes, type(None), tuple, frozenset)


def class_value(tp: type, name: str) -> Any:
    """``tp.name`` when it is a plain value (not a method or descriptor); else _MISSING."""
    found = _class_lookup(tp, name)
    if found is _MISSING:
        return _MISSING
    if isinstance(found, _PLAIN_CLASS_VALUES) or isinstance(found, (type, types.ModuleType)):
        return found
    return _MISSING


def missing() -> Any:
    """The sentinel :func:`class_value` and the resolvers return for "nothing to guard"."""
    return _MISSING


__all__ = [
    "KEY_TYPES",
    "Chain",
    "class_function",
    "class_value",
    "is_data_descriptor",
    "line_chains",
    "missing",
    "python_attribute_hooks",
]
