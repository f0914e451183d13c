"""The code object that runs in place of a compiled frame.

It has the original's signature and free variables and one line of body:
``return compiled(<tensor inputs>)[0]`` (or an unflatten of the result). The compiled
callable sits in the code's constants, so a hit runs one small Python frame and the
backend's callable: no wrapper stack.
"""

from __future__ import annotations

import inspect
import types
import warnings
from collections.abc import Callable, Sequence
from typing import Any

from .errors import Unsupported

_COMPILED = "__framecache_compiled__"
_UNFLATTEN = "__framecache_unflatten__"


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


def wrapper_code(
    original: types.CodeType,
    call_args: Sequence[str],
    compiled: Callable[..., Any],
    unflatten: Callable[[Sequence[Any]], Any] | None,
) -> types.CodeType:
    """A code object with ``original``'s layout that returns the compiled graph's result.

    ``call_args`` are Python expressions over the parameters (``x``, ``xs[0]``) giving the
    graph's inputs; ``unflatten`` rebuilds the output from the graph's flat outputs, or is
    None when the output is the graph's single output.
    """
    call = f"{_COMPILED!r}({', '.join(call_args)})"
    body = f"{_UNFLATTEN!r}({call})" if unflatten is not None else f"{call}[0]"
    freevars = original.co_freevars
    lines = ["def __framecache_outer__():"]
    if freevars:
        lines.append(f"    {' = '.join(freevars)} = None")
    lines.append(f"    def __framecache_fn__({_parameter_list(original)}):")
    if freevars:
        # Mentioning the names makes them free variables in the original's order.
        lines.append(f"        if False:\n            ({', '.join(freevars)},)")
    lines.append(f"        return {body}")
    lines.append("    return __framecache_fn__")
    source = "\n".join(lines) + "\n"
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
    replacements = {_COMPILED: compiled, _UNFLATTEN: unflatten}
    consts = tuple(
        replacements[c] if type(c) is str and c in replacements else c for c in inner.co_consts
    )
    return inner.replace(
        co_consts=consts,
        co_name=original.co_name,
        co_qualname=original.co_qualname,
        co_firstlineno=original.co_firstlineno,
    )


def _const_code(code: types.CodeType, name: str) -> types.CodeType:
    for const in code.co_consts:
        if isinstance(const, types.CodeType) and const.co_name == name:
            return const
    raise RuntimeError(f"template code {name} not found")
