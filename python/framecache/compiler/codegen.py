"""The code object that runs in place of a compiled frame.

It has the original's signature and free variables and a straight-line body computing
the result from the graph's tensor inputs (``x``, ``xs[0]``):

* for a backend callable that carries its operators (the eager backend's lean graph,
  ``lean_graph.INLINE_ATTR``), the operators themselves: ``_0 = torch.add(x, y)``;
* otherwise one call of the compiled callable: ``_r = compiled(x, y)``;

then the output rebuilt from the flat outputs: ``return _0`` for a single tensor,
``return (_r[0], {'a': _r[1]})`` for builtin containers, or a pytree unflatten for other
structures. Objects the body uses (the callable, operators, parameters) sit in the code's
constants, so a hit runs one small Python frame plus the backend's work: no wrapper stack.
"""

from __future__ import annotations

import dataclasses
import inspect
import keyword
import re
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch.utils._pytree as pytree

from .errors import Unsupported
from .lean_graph import INLINE_ATTR, LeanGraph

_PLACEHOLDER = "__framecache_const_{}__"


def _parameter_list(code: types.CodeType) -> str:
    names = code.co_varnames
    n_pos, n_posonly, n_kw = code.co_argcount, code.co_posonlyargcount, code.co_kwonlyargcount
    parts: list[str] = list(names[:n_posonly])
    if n_posonly:
        parts.append("/")
    parts.extend(names[n_posonly:n_pos])
    i = n_pos + n_kw
    if code.co_flags & inspect.CO_VARARGS:
        parts.append("*" + names[i])
        i += 1
    elif n_kw:
        parts.append("*")
    parts.extend(names[n_pos : n_pos + n_kw])
    if code.co_flags & inspect.CO_VARKEYWORDS:
        parts.append("**" + names[i])
    return ", ".join(parts)


def _fresh_prefix(code: types.CodeType) -> str:
    """A prefix for the body's own variables that no name of ``code`` starts with."""
    names = set(code.co_varnames) | set(code.co_cellvars) | set(code.co_freevars)
    prefix = "_fc"
    while any(n.startswith(prefix) for n in names):
        prefix = "_" + prefix
    return prefix


class _Constants:
    """Objects the body uses, spelled as string placeholders replaced in co_consts.

    A str constant in the source compiles to one LOAD_CONST; replacing it in the code's
    constants afterwards makes that instruction load the object itself (no global, no
    attribute lookup). The placeholders cannot collide with the graph's own string
    literals, which never take this form.
    """

    def __init__(self) -> None:
        self.by_placeholder: dict[str, Any] = {}
        self._by_id: dict[int, str] = {}

    def __call__(self, obj: Any) -> str:
        name = self._by_id.get(id(obj))
        if name is None:
            name = _PLACEHOLDER.format(len(self.by_placeholder))
            self.by_placeholder[name] = obj
            self._by_id[id(obj)] = name
        return repr(name)


def _rebuild(spec: pytree.TreeSpec, leaves: list[str], constant: _Constants) -> str:
    """An expression rebuilding the output of structure ``spec`` from leaf expressions."""
    pos = 0

    def build(s: pytree.TreeSpec) -> str | None:
        nonlocal pos
        if s.is_leaf():
            pos += 1
            return leaves[pos - 1]
        kind = s.type
        if kind is type(None):
            return "None"
        if kind not in (tuple, list, dict) or (kind is dict and s.context is None):
            return None
        children = [build(c) for c in s.children()]
        if any(c is None for c in children):
            return None
        if kind is tuple:
            return f"({', '.join(children)}{',' if len(children) == 1 else ''})"  # type: ignore[arg-type]
        if kind is list:
            return f"[{', '.join(children)}]"  # type: ignore[arg-type]
        keys = list(s.context)
        if len(keys) != len(children):
            return None
        spelled = [repr(k) if type(k) in (str, int) else constant(k) for k in keys]
        return "{" + ", ".join(f"{k}: {c}" for k, c in zip(spelled, children, strict=True)) + "}"

    direct = build(spec)
    if direct is not None and pos == len(leaves):
        return direct
    # Named tuples, custom pytree nodes: torch's own unflatten.
    unflatten = constant(_unflattener(spec))
    return f"{unflatten}(({', '.join(leaves)}{',' if len(leaves) == 1 else ''}))"


def _unflattener(spec: pytree.TreeSpec) -> Callable[[Sequence[Any]], Any]:
    def unflatten(leaves: Sequence[Any]) -> Any:
        return pytree.tree_unflatten(list(leaves), spec)

    return unflatten


_Step = tuple[str, Any]


def _chain(expr: str) -> tuple[str, tuple[_Step, ...]] | None:
    """``expr`` as a name and its attribute / constant-subscript steps, or None.

    A small scanner of the one shape wanted (``name``, then ``.attr`` or ``[k]`` with ``k``
    an int or a plain string literal), not ``ast.parse``: on 3.11 the AST builder keeps its
    recursion depth per interpreter, so parses in two threads can fail each other with
    "AST constructor recursion depth mismatch" (CPython gh-106905), and this runs on every
    compile, in whatever thread compiles. Anything else gives None: the expression is then
    used as written.
    """
    match = _NAME.match(expr)
    if match is None or keyword.iskeyword(match.group()):
        return None
    base, pos = match.group(), match.end()
    steps: list[_Step] = []
    while pos < len(expr):
        if expr[pos] == ".":
            match = _NAME.match(expr, pos + 1)
            if match is None or keyword.iskeyword(match.group()):
                return None
            steps.append(("attr", match.group()))
            pos = match.end()
        elif expr[pos] == "[":
            match = _INT_ITEM.match(expr, pos) or _STR_ITEM.match(expr, pos)
            if match is None:
                return None
            text = match.group(1)
            steps.append(("item", int(text) if match.re is _INT_ITEM else text[1:-1]))
            pos = match.end()
        else:
            return None
    return base, tuple(steps)


# Identifiers as Python spells them (non-ASCII included), ints, and string literals with
# no escapes or prefixes: the spellings source names use. Others fall back to "as written".
_NAME = re.compile(r"[^\W\d]\w*")
_INT_ITEM = re.compile(r"\[(-?(?:0|[1-9]\d*))\]")
_STR_ITEM = re.compile(r"""\[('[^'\\\n]*'|"[^"\\\n]*")\]""")


def _spell(base: str, steps: Sequence[_Step]) -> str:
    return base + "".join(f".{v}" if k == "attr" else f"[{v!r}]" for k, v in steps)


def share_prefixes(call_args: Sequence[str], prefix: str) -> tuple[list[str], list[str]]:
    """Statements and argument expressions that read each shared prefix of the arguments once.

    ``self.__dict__['_modules']['0'].__dict__['_parameters']['weight']`` and ``...['bias']``
    share everything up to ``['_parameters']``: that prefix is read into a local once, and
    each argument reads only its last steps from it. A module tree's parameters (graph
    inputs on every call) thus cost about one subscript each instead of a walk from
    ``self``. The reads are of attributes and dict items the guards have just checked, so
    reading a prefix once gives the objects that reading it for each argument would.
    """
    chains = [_chain(expr) for expr in call_args]
    uses: dict[tuple[str, tuple[_Step, ...]], int] = {}
    for chain in chains:
        if chain is None:
            continue
        base, steps = chain
        for k in range(1, len(steps)):
            key = (base, steps[:k])
            uses[key] = uses.get(key, 0) + 1
    lines: list[str] = []
    locals_: dict[tuple[str, tuple[_Step, ...]], str] = {}

    def spelled(base: str, steps: tuple[_Step, ...], more_than: int = 1) -> str:
        """``base`` + ``steps`` from the longest prefix used by more than ``more_than``
        arguments, held in a local (made here on first use). A prefix's own local starts
        from a prefix that more arguments share (a branch point), not from every step."""
        for k in range(len(steps) - 1, 0, -1):
            key = (base, steps[:k])
            count = uses.get(key, 0)
            if count <= more_than:
                continue
            name = locals_.get(key)
            if name is None:
                value = spelled(base, steps[:k], count)
                name = f"{prefix}p{len(locals_)}"
                lines.append(f"{name} = {value}")
                locals_[key] = name
            return _spell(name, steps[k:])
        return _spell(base, steps)

    exprs = []
    for expr, chain in zip(call_args, chains, strict=True):
        exprs.append(expr if chain is None else spelled(*chain))
    return lines, exprs


@dataclasses.dataclass(frozen=True)
class WrapperCode:
    """The code that runs in place of a compiled frame, and the locals its exports fill.

    ``export_locals`` is empty, or a flag local followed by one local per exported graph
    input (``GuardedCode(export_locals=...)``).
    """

    code: types.CodeType
    export_locals: tuple[str, ...] = ()


def wrapper_code(
    original: types.CodeType,
    call_args: Sequence[str],
    compiled: Callable[..., Any],
    out_spec: pytree.TreeSpec,
    exported: Sequence[int] = (),
) -> WrapperCode:
    """A code object with ``original``'s layout that returns the compiled graph's result.

    ``call_args`` are Python expressions over the parameters (``x``, ``xs[0]``) giving the
    graph's inputs; ``out_spec`` is the structure of the original's result, whose leaves
    are the graph's flat outputs in order.

    ``exported``: indices into ``call_args`` of the inputs the guard tree exports, in
    export-slot order (``GuardManager.export``): a module's parameters, which the guards
    fetch anyway to check them. On a hit the runtime puts those values in the code's
    export locals and sets the flag to True; when it could not (the flag is None: another
    check of the tree overlapped), the code reads them from their paths as it otherwise
    would.
    """
    prefix = _fresh_prefix(original)
    constant = _Constants()
    call_args = list(call_args)
    lines: list[str] = []
    export_locals: tuple[str, ...] = ()
    if exported:
        flag = f"{prefix}x"
        names = [f"{prefix}e{k}" for k in range(len(exported))]
        fallback, exprs = share_prefixes([call_args[i] for i in exported], f"{prefix}f")
        # Mentioning the flag makes it a local (the hook sets it before the frame starts).
        lines += ["if False:", f"    {flag} = None", f"if {flag} is None:"]
        lines += [f"    {line}" for line in fallback]
        lines += [f"    {name} = {expr}" for name, expr in zip(names, exprs, strict=True)]
        for name, i in zip(names, exported, strict=True):
            call_args[i] = name
        export_locals = (flag, *names)
    shared, call_args = share_prefixes(call_args, prefix)
    lines += shared
    lean = getattr(compiled, INLINE_ATTR, None)
    if isinstance(lean, LeanGraph) and lean.num_inputs == len(call_args):
        # Each input is read once: nested ones (xs[0]) go through a local first.
        inputs = []
        for i, expr in enumerate(call_args):
            if expr.isidentifier():
                inputs.append(expr)
            else:
                lines.append(f"{prefix}i{i} = {expr}")
                inputs.append(f"{prefix}i{i}")
        body, leaves = lean.render(inputs, constant, f"{prefix}v")
        lines += body
    else:
        result = f"{prefix}r"
        lines.append(f"{result} = {constant(compiled)}({', '.join(call_args)})")
        leaves = [f"{result}[{i}]" for i in range(spec_leaves(out_spec))]
    lines.append(f"return {_rebuild(out_spec, leaves, constant)}")

    freevars = original.co_freevars
    source_lines = ["def __framecache_outer__():"]
    if freevars:
        source_lines.append(f"    {' = '.join(freevars)} = None")
    source_lines.append(f"    def __framecache_fn__({_parameter_list(original)}):")
    if freevars:
        # Mentioning the names makes them free variables in the original's order.
        source_lines.append(f"        if False:\n            ({', '.join(freevars)},)")
    source_lines += [f"        {line}" for line in lines]
    source_lines.append("    return __framecache_fn__")
    source = "\n".join(source_lines) + "\n"
    with warnings.catch_warnings():
        # Calling a str constant is what we mean: it is replaced by the callable below.
        warnings.simplefilter("ignore", SyntaxWarning)
        module = compile(source, original.co_filename, "exec")
    outer = _const_code(module, "__framecache_outer__")
    inner = _const_code(outer, "__framecache_fn__")
    if inner.co_freevars != freevars:
        raise Unsupported(
            f"cannot reproduce the free variables of {original.co_qualname} "
            f"({freevars} vs {inner.co_freevars})"
        )
    code = inner.replace(
        co_consts=tuple(_replace(c, constant.by_placeholder) for c in inner.co_consts),
        co_name=original.co_name,
        co_qualname=original.co_qualname,
        co_firstlineno=original.co_firstlineno,
    )
    return WrapperCode(code, export_locals)


def _replace(const: Any, replacements: dict[str, Any]) -> Any:
    """``const`` with the placeholders in it replaced by their objects.

    The compiler folds tuples and lists of constants (``(1, dtype)`` in an argument) into
    one tuple constant, so placeholders are looked for inside tuples too.
    """
    if type(const) is str:
        return replacements.get(const, const)
    if type(const) is tuple:
        return tuple(_replace(c, replacements) for c in const)
    return const


def spec_leaves(spec: pytree.TreeSpec) -> int:
    """How many leaves a pytree structure holds."""
    return int(spec.num_leaves)


def _const_code(code: types.CodeType, name: str) -> types.CodeType:
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == name:
            return const
    raise RuntimeError(f"template code {name} not found")
