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

Reads with a key the frame holds (``getattr(cfg, name)``, ``d[k]``, ``d.get(k)``) are
anchored at the instruction that reads (``CodeChains.by_offset``) and resolved on an
opcode event just before it runs, when ``name`` / ``k`` are what it reads.
"""

from __future__ import annotations

import dis
import sys
import types
from typing import Any

# Instructions that load a chain's root: a frame variable (fast local, cell, free
# variable) or a global / builtin. LOAD_FAST_CHECK (3.12+) is LOAD_FAST for a local
# that may be unbound; 3.13's LOAD_FAST_LOAD_FAST loads two (handled apart).
_LOCAL_ROOTS = frozenset(
    {"LOAD_FAST", "LOAD_FAST_CHECK", "LOAD_DEREF", "LOAD_CLASSDEREF", "LOAD_CLOSURE"}
)
_GLOBAL_ROOTS = frozenset({"LOAD_GLOBAL", "LOAD_NAME"})
KEY_TYPES = (int, str, bytes, bool)

Chain = tuple[str, str, tuple[tuple[Any, ...], ...]]
"""``(root kind "L", "G" or "M", root name, steps)``; "M" is a module by its name in
``sys.modules`` (``from m import a`` in the frame).

Steps: ``("attr", name)``, ``("item", key)`` (a constant key) and the dynamic ones, whose
key is a ``KeyRef`` resolved when the read runs: ``("item_of", keyref)`` (``c[k]``),
``("getattr", keyref, has_default)``, ``("hasattr", keyref)`` (ends a chain),
``("get", keyref)`` (``dict.get``: the value when the key is present), ``("contains",
keyref)`` (``k in c``, ends a chain) and ``("vars",)``.
"""

KeyRef = tuple[str, Any]
"""``("const", value)``, ``("local", name)`` (the frame variable's value at the read) or
``("unknown", None)`` (computed: the whole container read is guarded)."""

_STATIC_STEPS = frozenset({"attr", "item"})
# Builtins whose call on a chain is a read framecache follows (checked to be the builtin
# when the read is resolved: a global of the same name is user code, traced anyway).
READ_BUILTINS = frozenset({"getattr", "hasattr", "vars"})
# Instructions that bind or unbind frame variables: a value loaded before one of them
# for the same name no longer is what the variable holds.
_STORES = frozenset(
    {
        "STORE_FAST",
        "DELETE_FAST",
        "STORE_DEREF",
        "DELETE_DEREF",
        "LOAD_FAST_AND_CLEAR",  # 3.12: an inlined comprehension saves and clears its variable
        "STORE_GLOBAL",
        "DELETE_GLOBAL",
        "STORE_NAME",
        "DELETE_NAME",
    }
)
# (pops, pushes) of instructions whose result is no chain; anything not listed ends
# what the parser knows about the stack.
_EFFECTS: dict[str, tuple[int, int]] = {
    "POP_TOP": (1, 0),
    "BINARY_OP": (2, 1),
    "COMPARE_OP": (2, 1),
    "IS_OP": (2, 1),
    "UNARY_NEGATIVE": (1, 1),
    "UNARY_NOT": (1, 1),
    "UNARY_INVERT": (1, 1),
    "TO_BOOL": (1, 1),
    "GET_ITER": (1, 1),
    "STORE_ATTR": (2, 0),
    "DELETE_ATTR": (1, 0),
    "STORE_SUBSCR": (3, 0),
    "DELETE_SUBSCR": (2, 0),
    "STORE_SLICE": (4, 0),
    # 3.13's f-string fields (3.11/3.12 have FORMAT_VALUE, handled apart).
    "CONVERT_VALUE": (1, 1),
    "FORMAT_SIMPLE": (1, 1),
    "FORMAT_WITH_SPEC": (2, 1),
}
_NO_EFFECT = frozenset(
    {"NOP", "RESUME", "PRECALL", "MAKE_CELL", "COPY_FREE_VARS", "CACHE", "EXTENDED_ARG"}
)


class _Item:
    """What the parser knows about one value on the stack: a chain, a constant, or a
    method loaded for a call (``method``: the receiver chain and the method's name)."""

    __slots__ = ("anchor", "const", "kind", "line", "method", "name", "steps")

    def __init__(
        self,
        kind: str,
        name: Any = None,
        steps: tuple[tuple[Any, ...], ...] = (),
        line: int | None = None,
        anchor: int | None = None,
    ) -> None:
        self.kind = kind  # "L", "G", "const", "method"
        self.name = name
        self.steps = steps
        self.line = line
        self.anchor = anchor  # offset of the first dynamic read
        self.const: Any = None
        self.method: tuple[_Item, str] | None = None

    def extended(self, step: tuple[Any, ...], offset: int) -> _Item:
        dynamic = step[0] not in _STATIC_STEPS
        anchor = self.anchor if self.anchor is not None or not dynamic else offset
        return _Item(self.kind, self.name, (*self.steps, step), self.line, anchor)

    def uses(self, name: str) -> bool:
        if self.kind == "method":
            return self.method is not None and self.method[0].uses(name)
        if self.kind not in ("L", "G"):
            return False
        if self.name == name:
            return True
        return any(
            s[0] in ("item_of", "getattr", "hasattr", "get", "contains") and s[1] == ("local", name)
            for s in self.steps
        )


def _is_bare_local(item: _Item | None) -> bool:
    return item is not None and item.kind == "L" and not item.steps


class CodeChains:
    """The access chains of one code object.

    ``by_line``: chains of constant steps, resolved when their line starts (the line's
    root values are the locals then). ``by_offset``: chains with a dynamic step, resolved
    just before the instruction at that offset runs (an opcode event): the frame
    variables they name are then exactly what the instruction reads, even in a loop or
    a comprehension that rebinds them within the line.
    """

    def __init__(self) -> None:
        self.by_line: dict[int, list[Chain]] = {}
        self.by_offset: dict[int, list[Chain]] = {}
        # CALL offsets of getattr/hasattr/vars/get calls the parser followed (the object a
        # chain) or saw with an object of the capture's own (a call's result).
        self.read_calls: set[int] = set()
        self.opaque_calls: set[int] = set()
        self._seen: set[tuple[Any, ...]] = set()

    def _emit(self, item: _Item | None) -> None:
        if item is None:
            return
        if item.kind == "method":
            if item.method is not None:
                receiver, name = item.method
                self._emit(receiver.extended(("attr", name), -1))
            return
        if item.kind not in ("L", "G", "M") or not isinstance(item.name, str):
            return
        chain: Chain = (item.kind, item.name, item.steps)
        if item.anchor is not None:
            key: tuple[Any, ...] = ("o", item.anchor, chain)
            if key not in self._seen:
                self._seen.add(key)
                self.by_offset.setdefault(item.anchor, []).append(chain)
        elif item.line is not None and (item.kind == "G" or item.steps):
            key = ("l", item.line, chain)
            if key not in self._seen:
                self._seen.add(key)
                self.by_line.setdefault(item.line, []).append(chain)


def _keyref(item: _Item | None) -> KeyRef:
    if item is not None and item.kind == "const" and type(item.const) in KEY_TYPES:
        return ("const", item.const)
    if _is_bare_local(item):
        assert item is not None
        return ("local", item.name)
    return ("unknown", None)


def code_chains(code: types.CodeType) -> CodeChains:
    """The access chains of ``code`` (3.11 to 3.13 bytecode), by line or by offset.

    A small abstract interpretation of the value stack within straight-line code: a jump
    target or an instruction the parser does not model forgets the stack (the values
    under it become unknown, never wrong).
    """
    out = CodeChains()
    stack: list[_Item | None] = []
    kw_call = False

    def pop() -> _Item | None:
        return stack.pop() if stack else None

    def forget() -> None:
        for item in stack:
            out._emit(item)
        stack.clear()

    for ins in dis.get_instructions(code):
        op = ins.opname
        if op in ("CACHE", "EXTENDED_ARG"):
            continue
        if ins.is_jump_target:
            forget()
        line = ins.positions.lineno if ins.positions is not None else None
        offset = ins.offset
        if op in _LOCAL_ROOTS:
            stack.append(_Item("L", ins.argval, (), line))
        elif op == "LOAD_FAST_LOAD_FAST":  # 3.13: two locals at once
            first, second = ins.argval
            stack.append(_Item("L", first, (), line))
            stack.append(_Item("L", second, (), line))
        elif op in _GLOBAL_ROOTS:
            if op == "LOAD_GLOBAL" and ins.arg is not None and ins.arg & 1:
                stack.append(None)  # the NULL of a call (before it on 3.11/3.12, after on 3.13)
            stack.append(_Item("G", ins.argval, (), line))
        elif op == "LOAD_CONST" or op == "LOAD_SMALL_INT":
            item = _Item("const", line=line)
            item.const = ins.argval
            stack.append(item)
        elif op == "PUSH_NULL":
            stack.append(None)
        elif op == "IMPORT_NAME":
            # ``from m import a``: root "M", the module named, read from sys.modules once
            # the import ran (absolute imports with names; anything else is no chain).
            fromlist = pop()
            level = pop()
            if (
                level is not None
                and level.kind == "const"
                and level.const == 0
                and fromlist is not None
                and fromlist.kind == "const"
                and isinstance(fromlist.const, tuple)
                and fromlist.const
                and "*" not in fromlist.const
            ):
                stack.append(_Item("M", ins.argval, (), line))
            else:
                stack.append(None)
        elif op == "IMPORT_FROM":
            # Pushes the module's attribute above the module; resolved just before it runs
            # (an opcode event: the import has loaded the module by then).
            module = stack[-1] if stack else None
            if module is not None and module.kind == "M":
                stack.append(_Item("M", module.name, (("attr", ins.argval),), line, offset))
            else:
                stack.append(None)
        elif op in ("LOAD_ATTR", "LOAD_METHOD"):
            obj = pop()
            # 3.12+: LOAD_ATTR's low bit loads a method (two values, like LOAD_METHOD).
            method = op == "LOAD_METHOD" or (
                sys.version_info >= (3, 12) and ins.arg is not None and bool(ins.arg & 1)
            )
            if method:
                marker = _Item("method", line=line)
                if obj is not None and obj.kind in ("L", "G"):
                    marker.method = (obj, ins.argval)
                else:
                    out._emit(obj)
                stack.append(marker)
                stack.append(None)
            elif obj is not None and obj.kind in ("L", "G"):
                stack.append(obj.extended(("attr", ins.argval), offset))
            else:
                stack.append(None)
        elif op == "BINARY_SUBSCR":
            key = pop()
            container = pop()
            if container is not None and container.kind in ("L", "G"):
                ref = _keyref(key)
                if ref[0] == "const":
                    stack.append(container.extended(("item", ref[1]), offset))
                else:
                    out._emit(key)
                    stack.append(container.extended(("item_of", ref), offset))
            else:
                out._emit(key)
                out._emit(container)
                stack.append(None)
        elif op == "BINARY_SLICE":  # 3.12+: ``c[a:b]`` without a slice object
            for _ in range(2):
                out._emit(pop())
            container = pop()
            if container is not None and container.kind in ("L", "G"):
                stack.append(container.extended(("item_of", ("unknown", None)), offset))
            else:
                out._emit(container)
                stack.append(None)
        elif op == "CONTAINS_OP":  # ``k in c`` / ``k not in c``: the container is TOS
            container = pop()
            key = pop()
            if container is not None and container.kind in ("L", "G"):
                out._emit(key if _keyref(key)[0] == "unknown" else None)
                out._emit(container.extended(("contains", _keyref(key)), offset))
            else:
                out._emit(key)
                out._emit(container)
            stack.append(None)
        elif op == "KW_NAMES":
            kw_call = True
        elif op in ("CALL", "CALL_KW"):
            n = ins.arg or 0
            extra = 1 if op == "CALL_KW" else 0
            popped = [pop() for _ in range(n + extra)]
            args = list(reversed(popped[extra:])) if extra else list(reversed(popped))
            under = [pop(), pop()]
            is_kw = kw_call or op == "CALL_KW"
            kw_call = False
            result = None if is_kw else _read_call(under, args, offset)
            if result is not None:
                out.read_calls.add(offset)
            elif _reader_callee(under):
                out.opaque_calls.add(offset)
            for item in (*under, *args):
                if result is not None and (
                    item is result[1] or (item is not None and item.kind == "method")
                ):
                    continue  # the receiver is part of the result; a recognised method is no read
                out._emit(item)
            if result is not None:
                produced, _receiver, terminal = result
                if terminal:
                    out._emit(produced)
                    stack.append(None)
                else:
                    stack.append(produced)
            else:
                stack.append(None)
        elif op in _STORES or op in ("STORE_FAST_LOAD_FAST", "STORE_FAST_STORE_FAST"):
            names = ins.argval if isinstance(ins.argval, tuple) else (ins.argval,)
            if op == "STORE_FAST_STORE_FAST":
                out._emit(pop())
                out._emit(pop())
            elif op in ("LOAD_FAST_AND_CLEAR",):
                pass
            elif op not in ("DELETE_FAST", "DELETE_DEREF", "DELETE_GLOBAL", "DELETE_NAME"):
                out._emit(pop())
            if op == "STORE_FAST_LOAD_FAST":
                names = (ins.argval[0],)
            for name in names:
                for i, item in enumerate(stack):
                    if item is not None and item.uses(name):
                        # Loaded before the variable changed: its dynamic keys can no
                        # longer be read from the frame; what it read so far still can.
                        out._emit(_static_prefix(item))
                        stack[i] = None
            if op == "LOAD_FAST_AND_CLEAR":
                stack.append(None)
            elif op == "STORE_FAST_LOAD_FAST":
                stack.append(_Item("L", ins.argval[1], (), line))
        elif op == "COPY":
            n = ins.arg or 1
            stack.append(stack[-n] if len(stack) >= n else None)
        elif op == "SWAP":
            n = ins.arg or 2
            if len(stack) >= n:
                stack[-1], stack[-n] = stack[-n], stack[-1]
            else:
                forget()
        elif op in _EFFECTS:
            pops, pushes = _EFFECTS[op]
            for _ in range(pops):
                out._emit(pop())
            stack.extend([None] * pushes)
        elif op == "FORMAT_VALUE":  # 3.11/3.12 f-string field; flag 0x04: a format spec above it
            for _ in range(2 if (ins.arg or 0) & 0x04 else 1):
                out._emit(pop())
            stack.append(None)
        elif op in ("BUILD_TUPLE", "BUILD_LIST", "BUILD_SET", "BUILD_STRING", "BUILD_SLICE"):
            for _ in range(ins.arg or 0):
                out._emit(pop())
            stack.append(None)
        elif op == "BUILD_MAP":
            for _ in range(2 * (ins.arg or 0)):
                out._emit(pop())
            stack.append(None)
        elif op == "BUILD_CONST_KEY_MAP":
            for _ in range((ins.arg or 0) + 1):
                out._emit(pop())
            stack.append(None)
        elif op in _NO_EFFECT:
            pass
        else:
            forget()
        if ins.opcode in dis.hasjrel or ins.opcode in dis.hasjabs:
            forget()
    forget()
    return out


def _static_prefix(item: _Item) -> _Item | None:
    """``item`` cut before its first dynamic step (None for a method marker)."""
    if item.kind not in ("L", "G"):
        return None
    steps: list[tuple[Any, ...]] = []
    for step in item.steps:
        if step[0] not in _STATIC_STEPS:
            break
        steps.append(step)
    return _Item(item.kind, item.name, tuple(steps), item.line)


def _reader_callee(under: list[_Item | None]) -> bool:
    """Whether the callee under a call's arguments is one of the reads followed."""
    for item in under:
        if item is None:
            continue
        if item.kind == "G" and not item.steps and item.name in READ_BUILTINS:
            return True
        if item.kind == "method" and item.method is not None and item.method[1] == "get":
            return True
    return False


def _read_call(
    under: list[_Item | None], args: list[_Item | None], offset: int
) -> tuple[_Item, _Item, bool] | None:
    """A call that reads through a chain: ``(result chain, receiver, terminal)``."""
    callee = next((u for u in under if u is not None), None)
    if callee is None or any(u is not None and u is not callee for u in under):
        return None
    if callee.kind == "G" and not callee.steps and callee.name in READ_BUILTINS:
        if not args or args[0] is None or args[0].kind not in ("L", "G"):
            return None
        obj = args[0]
        if callee.name == "vars" and len(args) == 1:
            return obj.extended(("vars",), offset), obj, False
        if callee.name == "getattr" and len(args) in (2, 3):
            step = ("getattr", _keyref(args[1]), len(args) == 3)
            return obj.extended(step, offset), obj, False
        if callee.name == "hasattr" and len(args) == 2:
            return obj.extended(("hasattr", _keyref(args[1])), offset), obj, True
        return None
    if callee.kind == "method" and callee.method is not None:
        receiver, name = callee.method
        if name == "get" and len(args) in (1, 2):
            return receiver.extended(("get", _keyref(args[0])), offset), receiver, False
    return None


def line_chains(code: types.CodeType) -> dict[int, list[Chain]]:
    """The chains of constant steps of ``code``, by the line of their root instruction."""
    return code_chains(code).by_line


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


def class_value(tp: type, name: str) -> Any:
    """``tp.name`` when the class holds it as a value (a constant, a container, an object, a
    class), which ``tp.name`` and ``instance.name`` both give as it is; else _MISSING.

    Descriptors (functions, properties, class and static methods, slots) are no values:
    reading them runs their ``__get__``.
    """
    found = _class_lookup(tp, name)
    if found is _MISSING or hasattr(type(found), "__get__"):
        return _MISSING
    return found


def missing() -> Any:
    """The sentinel :func:`class_value` and the resolvers return for "nothing to guard"."""
    return _MISSING


__all__ = [
    "KEY_TYPES",
    "READ_BUILTINS",
    "Chain",
    "CodeChains",
    "KeyRef",
    "class_function",
    "class_value",
    "code_chains",
    "is_data_descriptor",
    "line_chains",
    "missing",
    "python_attribute_hooks",
]
