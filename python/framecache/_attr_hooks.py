"""Which Python attribute hooks the C++ guards may perform themselves.

A guard on ``config.use_cache`` of a Hugging Face config runs the config's Python
``__getattribute__`` (and, for ``config._attn_implementation``, a property getter) on
every check: 1.4-3 µs a read, a dozen reads per transformers model call. The C++ side
(``guards/attr_hook_model.h``) performs three shapes of such code in C, with the same
C-API operations the bytecode performs; this module decides, once per code object, whether
a code object is one of them. It compares bytecode instruction by instruction against
templates compiled by the running interpreter, so a code object qualifies only if it does
exactly what the template does:

``redirect``
    ``if key != M and key in super().__getattribute__(M): key = super().__getattribute__(M)[key]``,
    then ``return super().__getattribute__(key)`` (transformers' ``PreTrainedConfig``,
    ``M`` = ``"attribute_map"``).
``pass_through``
    ``spec = super().__getattribute__("__dict__").get(K)``; when ``spec`` is None,
    ``return super().__getattribute__(key)``. What the code does when it is not None is
    not compared: the C++ side steps aside then (transformers'
    ``HeterogeneousConfigMixin``, ``K`` = ``"_heterogeneity_spec"``).
``alias``
    a property getter ``return self.A``.

The verdict is ``(shape, parameter)`` or None. Local variable names, line numbers and
docstrings do not matter; instructions, their operands (constants, global and attribute
names, which local each one reads), jump targets and exception handlers do.

This file is also loaded on its own by the C++ tests: it imports nothing from framecache.
"""

from __future__ import annotations

import dis
import types
from typing import Any

__all__ = ["recognise"]

_TEMPLATES = """
class _Redirect:
    def __getattribute__(self, key):
        if key != "_MAP_" and key in super().__getattribute__("_MAP_"):
            key = super().__getattribute__("_MAP_")[key]
        return super().__getattribute__(key)

class _PassThrough:
    def __getattribute__(self, key):
        spec = super().__getattribute__("__dict__").get("_KEY_")
        if spec is not None:
            _other_branch()
        return super().__getattribute__(key)

def _alias(self):
    return self._ATTR_
"""

_PLACEHOLDERS = frozenset({"_MAP_", "_KEY_", "_ATTR_"})
_JUMPS = frozenset(dis.hasjrel) | frozenset(dis.hasjabs)
# Instructions whose operand is a local variable: compared by its index, not its name.
_LOCAL_OPS = frozenset(
    name
    for name in (
        "LOAD_FAST",
        "STORE_FAST",
        "DELETE_FAST",
        "LOAD_FAST_CHECK",
        "LOAD_FAST_AND_CLEAR",
        "LOAD_FAST_LOAD_FAST",
        "STORE_FAST_LOAD_FAST",
        "STORE_FAST_STORE_FAST",
        "LOAD_CLOSURE",
        "LOAD_DEREF",
        "STORE_DEREF",
        "MAKE_CELL",
    )
    if name in dis.opmap
)
# The CO_* flags that change what a code object does (future-import bits and
# CO_NESTED only say how it was compiled).
_SEMANTIC_FLAGS = (
    0x1  # CO_OPTIMIZED
    | 0x2  # CO_NEWLOCALS
    | 0x4  # CO_VARARGS
    | 0x8  # CO_VARKEYWORDS
    | 0x20  # CO_GENERATOR
    | 0x80  # CO_COROUTINE
    | 0x100  # CO_ITERABLE_COROUTINE
    | 0x200  # CO_ASYNC_GENERATOR
)


def _template_codes() -> dict[str, types.CodeType]:
    namespace: dict[str, Any] = {}
    exec(compile(_TEMPLATES, "<framecache attribute hook templates>", "exec"), namespace)
    return {
        "redirect": namespace["_Redirect"].__dict__["__getattribute__"].__code__,
        "pass_through": namespace["_PassThrough"].__dict__["__getattribute__"].__code__,
        "alias": namespace["_alias"].__code__,
    }


_CODES = _template_codes()


class _Mismatch(Exception):
    pass


def _operand(ins: dis.Instruction, index: dict[int, int]) -> Any:
    """What an instruction's operand means, independent of where the code was compiled."""
    if ins.opcode in _JUMPS:
        return ("to", index.get(ins.argval))  # the target instruction's position
    if ins.opname in _LOCAL_OPS:
        return ("local", ins.arg)
    if ins.opname == "LOAD_CONST":
        return ("const", type(ins.argval), ins.argval)
    if ins.opcode in dis.hasname:
        # A global, attribute or method name, with the flag bits some of these carry in
        # their argument (a NULL pushed before a global, a method load): argrepr says
        # both, where the argument itself is an index into the code's own names.
        return ("name", ins.argrepr)
    return ("arg", ins.arg)  # a count, a comparison, a flag


def _instructions(code: types.CodeType) -> list[tuple[str, Any]]:
    found = list(dis.get_instructions(code))
    index = {ins.offset: i for i, ins in enumerate(found)}
    return [(ins.opname, _operand(ins, index)) for ins in found]


def _bind(tmpl: tuple[str, Any], ins: tuple[str, Any], params: dict[str, str]) -> None:
    """Compare one instruction with the template's, binding placeholders to operands."""
    if tmpl[0] != ins[0]:
        raise _Mismatch
    t, o = tmpl[1], ins[1]
    placeholder = None
    if t[0] == "const" and t[2] in _PLACEHOLDERS:
        placeholder = t[2]
        if o[0] != "const" or o[1] is not str:
            raise _Mismatch
        value = o[2]
    elif t[0] == "name" and any(p in t[1] for p in _PLACEHOLDERS):
        placeholder = next(p for p in _PLACEHOLDERS if p in t[1])
        head, _, tail = t[1].partition(placeholder)
        if o[0] != "name" or not o[1].startswith(head) or not o[1].endswith(tail):
            raise _Mismatch
        value = o[1][len(head) : len(o[1]) - len(tail)]
        if not value.isidentifier():
            raise _Mismatch
    elif t != o:
        raise _Mismatch
    if placeholder is not None:
        if params.setdefault(placeholder, value) != value:
            raise _Mismatch


def _same_frame(code: types.CodeType, tmpl: types.CodeType) -> bool:
    return (
        code.co_argcount == tmpl.co_argcount
        and code.co_posonlyargcount == tmpl.co_posonlyargcount
        and code.co_kwonlyargcount == tmpl.co_kwonlyargcount
        and (code.co_flags ^ tmpl.co_flags) & _SEMANTIC_FLAGS == 0
        and code.co_freevars == tmpl.co_freevars
        and code.co_cellvars == tmpl.co_cellvars
    )


def _handlers(code: types.CodeType) -> list[tuple[int, int]]:
    return [(e.start, e.end) for e in dis.Bytecode(code).exception_entries]


def _match_whole(code: types.CodeType, tmpl: types.CodeType) -> dict[str, str]:
    if not _same_frame(code, tmpl) or code.co_nlocals != tmpl.co_nlocals or _handlers(code):
        raise _Mismatch
    mine, theirs = _instructions(tmpl), _instructions(code)
    if len(mine) != len(theirs):
        raise _Mismatch
    params: dict[str, str] = {}
    for t, o in zip(mine, theirs, strict=True):
        _bind(t, o, params)
    return params


def _match_pass_through(code: types.CodeType, tmpl: types.CodeType) -> dict[str, str]:
    """The template's instructions up to its conditional jump, and from the jump's target
    to the end; the other branch (between them) may be anything but an exception handler
    around the compared parts."""
    if not _same_frame(code, tmpl) or _handlers(tmpl):
        raise _Mismatch
    mine, theirs = _instructions(tmpl), _instructions(code)
    jump = next(i for i, (name, operand) in enumerate(mine) if operand[0] == "to")
    target = mine[jump][1][1]
    head, tail = mine[: jump + 1], mine[target:]
    if len(theirs) < len(head) + len(tail):
        raise _Mismatch
    params: dict[str, str] = {}
    for t, o in zip(head[:-1], theirs[:jump], strict=True):
        _bind(t, o, params)
    if theirs[jump][0] != head[-1][0] or theirs[jump][1][0] != "to":
        raise _Mismatch
    their_target = theirs[jump][1][1]
    if their_target is None or their_target != len(theirs) - len(tail):
        raise _Mismatch
    for t, o in zip(tail, theirs[their_target:], strict=True):
        _bind(t, o, params)
    # No handler may cover the compared instructions (an exception there would go
    # somewhere the template does not go).
    offsets = [ins.offset for ins in dis.get_instructions(code)]
    compared = offsets[: jump + 1] + offsets[their_target:]
    for start, end in _handlers(code):
        if any(start <= off < end for off in compared):
            raise _Mismatch
    # The compared path reads only the template's locals: self, key and spec.
    return params


def recognise(code: object) -> tuple[str, str] | None:
    """``(shape, parameter)`` if ``code`` is one of the shapes above, else None."""
    if not isinstance(code, types.CodeType):
        return None
    try:
        if code.co_name == "__getattribute__":
            try:
                return ("redirect", _match_whole(code, _CODES["redirect"])["_MAP_"])
            except _Mismatch:
                return ("pass_through", _match_pass_through(code, _CODES["pass_through"])["_KEY_"])
        return ("alias", _match_whole(code, _CODES["alias"])["_ATTR_"])
    except (_Mismatch, KeyError, StopIteration):
        return None
