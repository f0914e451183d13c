"""Sources: where a guarded value comes from, as a path from the frame.

A source is a tuple of steps starting at a root step:

* ``("L", name)`` — a frame local (argument, cell or free variable);
* ``("G", name)`` — a global of the compiled function;
* ``("M", module_name)`` — the globals dict of another module (a callee's module);

followed by access steps ``("attr", name)``, ``("dattr", name)`` (an attribute that is an
entry of the object's instance ``__dict__``: guarded as ``__dict__[name]``, shown as
``.name``), ``("item", key)``, ``("dict",)`` (an object's ``__dict__``), ``("type",)``
(its class), ``("cell", i)`` (a function's closure cell) and ``("fpart", name)`` (a
function's ``__code__``, ``__globals__``, ``__defaults__`` or ``__kwdefaults__``, read from
the function object's fields; shown as ``.name``).
Sources are plain tuples so that they can be written to disk and rebuilt in a new
process (the persistent cache relies on that).
"""

from __future__ import annotations

from typing import Any

Source = tuple[tuple[Any, ...], ...]


def local(name: str) -> Source:
    """The frame local ``name``."""
    return (("L", name),)


def global_(name: str) -> Source:
    """The global ``name`` of the function being compiled."""
    return (("G", name),)


def module_globals(module_name: str) -> Source:
    """The globals dict of module ``module_name``."""
    return (("M", module_name),)


def builtin(name: str) -> Source:
    """The builtin ``name``."""
    return (("B", name),)


def cell(source: Source, index: int) -> Source:
    """The contents of cell ``index`` of the function at ``source``."""
    return (*source, ("cell", index))


def attr(source: Source, name: str) -> Source:
    """``source.name``."""
    return (*source, ("attr", name))


FUNCTION_PARTS = frozenset({"__code__", "__globals__", "__defaults__", "__kwdefaults__"})


def function_part(source: Source, name: str) -> Source:
    """``source.name`` for a function's ``__code__``, ``__globals__``, ``__defaults__`` or
    ``__kwdefaults__``, read from its fields (the value at ``source`` must be a function:
    the guard on it fails otherwise)."""
    if name not in FUNCTION_PARTS:
        raise ValueError(f"{name!r} is not a function part ({sorted(FUNCTION_PARTS)})")
    return (*source, ("fpart", name))


def dict_attr(source: Source, name: str) -> Source:
    """``source.name`` where ``name`` is an entry of ``source.__dict__`` (no descriptor)."""
    return (*source, ("dattr", name))


def item(source: Source, key: Any) -> Source:
    """``source[key]``."""
    return (*source, ("item", key))


def type_of(source: Source) -> Source:
    """``type(source)``."""
    return (*source, ("type",))


def obj_dict(source: Source) -> Source:
    """``source.__dict__``."""
    return (*source, ("dict",))


def is_module_state_source(source: Source) -> bool:
    """Whether ``source`` is a parameter or buffer in a module's tables."""
    return (
        len(source) >= 3
        and source[-3] == ("dict",)
        and source[-2] in (("item", "_parameters"), ("item", "_buffers"))
    )


def render(source: Source) -> str:
    """Human-readable form: ``L['self'].layers[3].weight``."""
    out = ""
    for step in source:
        kind = step[0]
        if kind == "L":
            out = f"L[{step[1]!r}]"
        elif kind == "G":
            out = f"G[{step[1]!r}]"
        elif kind == "B":
            out = f"B[{step[1]!r}]"
        elif kind == "M":
            out = f"sys.modules[{step[1]!r}].__dict__"
        else:
            out = _spell_step(out, step)
    return out


def _spell_step(out: str, step: tuple[Any, ...]) -> str:
    """``out`` (an expression) one step further, in Python syntax; ValueError for a root or
    an unknown step."""
    kind = step[0]
    if kind in ("attr", "dattr", "fpart"):
        return f"{out}.{step[1]}"
    if kind == "item":
        return f"{out}[{step[1]!r}]"
    if kind == "dict":
        return f"{out}.__dict__"
    if kind == "cell":
        return f"{out}.__closure__[{step[1]}].cell_contents"
    if kind == "type":
        return f"type({out})"
    raise ValueError(f"unknown source step {step!r}")


def python_expr(source: Source) -> str:
    """A Python expression that reads ``source`` inside the compiled function's body.

    Only sources rooted at a frame local can be read there.
    """
    root = source[0]
    if root[0] != "L":
        raise ValueError(f"{render(source)} is not rooted at a frame local")
    return steps_expr(str(root[1]), source)


def steps_expr(base: str, source: Source) -> str:
    """``base`` (an expression for ``source``'s root) followed by ``source``'s steps.

    ValueError for a step no Python expression spells.
    """
    out = base
    for step in source[1:]:
        out = _spell_step(out, step)
    return out
