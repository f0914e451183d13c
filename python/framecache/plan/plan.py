"""A guard plan: the guards a captured graph needs, as data.

The compiler makes a plan from what the capture read (compiler/guard_plan.py); the plan
is shown to a person (``describe``), lowered to a C++ guard tree (``materialize``) and, for
the disk cache, written down and rebuilt in another process (``encode``/``decode``), each
step delegated to the guard kinds (guards.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from . import sources
from .guards import Codec, Encoded, Guard, decode
from .sources import Source


@dataclass
class GuardPlan:
    """Every guard a captured graph needs, plus the globals read to decide them."""

    guards: list[Guard] = field(default_factory=list)
    globals_read: list[str] = field(default_factory=list)
    _seen: set[tuple[Any, ...]] = field(default_factory=set)

    def add(self, guard: Guard) -> None:
        """Add ``guard`` unless the plan already holds the same one."""
        key = guard.key()
        if key in self._seen:
            return
        self._seen.add(key)
        self.guards.append(guard)

    def extend(self, guards: Iterable[Guard]) -> None:
        for guard in guards:
            self.add(guard)

    def describe(self) -> list[str]:
        return [g.describe() for g in self.guards]

    def encode(self, codec: Codec, lifted: set[int]) -> list[Encoded]:
        """The plan as plain data (codec.NotPortable when a guard cannot be written down).

        ``lifted``: ids of tensors the stored graph takes as inputs.
        """
        out: list[Encoded] = []
        for guard in self.guards:
            out.extend(guard.encode(codec, lifted))
        return out

    @classmethod
    def decode(cls, codec: Codec, encoded: Iterable[Encoded]) -> GuardPlan:
        """This process's plan for a written-down one; LookupError when it cannot hold."""
        plan = cls()
        for item in encoded:
            plan.add(decode(codec, item))
        return plan


def materialize(plan: GuardPlan, exports: Sequence[Source] = ()) -> Any:
    """Build the C++ guard tree of a plan (a ``RootGuardManager``).

    ``exports``: sources whose values every passing check hands on, in slot order
    (``GuardManager.export``): the graph inputs the wrapper would otherwise read again.
    Each must be guarded by the plan (a TENSOR_MATCH on a lifted parameter).

    Values read from a dict by key (a module's ``__dict__`` and its ``_parameters``,
    ``_buffers`` and ``_modules`` tables, an object's instance-dict attributes, a dict
    global) are reached through DICT_VERSION nodes (include/framecache/guards/
    dict_version.h): when such a dict is unchanged, the guards on its immutable items (a
    layer's integer attributes) are not rerun; mutable items (tensors, submodules) are.

    The root does not bind the globals: the runtime checks it against each frame's own, and
    a bound dict would keep the function (and its code, which owns this tree) alive.
    TypeError or ValueError when a guard cannot be built.
    """
    from ..guards import RootGuardManager

    root = RootGuardManager()
    nodes: dict[Source, Any] = {}

    def node(source: Source) -> Any:
        found = nodes.get(source)
        if found is not None:
            return found
        step = source[-1]
        if len(source) == 1:
            kind = step[0]
            if kind == "L":
                n = root.local(step[1])
            elif kind == "G":
                n = root.global_(step[1])
            elif kind == "B":
                n = root.builtin(step[1])
            elif kind == "M":
                module = sys.modules[step[1]]
                n = root.object_source(module.__dict__, sources.render(source))
            else:
                raise ValueError(f"unknown source root {step!r}")
        elif step[0] == "dattr":
            # An instance-dict entry: ``__dict__[name]`` under the object's DICT_VERSION node.
            n = dict_node(sources.obj_dict(source[:-1])).dict_item(step[1])
        else:
            parent = node(source[:-1])
            if step[0] == "attr":
                n = parent.attr(step[1])
            elif step[0] == "dict":
                n = parent.obj_dict().dict_version()
            elif step[0] == "type":
                n = parent.type_()
            elif step[0] == "cell":
                n = parent.closure_cell(step[1])
            elif step[0] == "fpart":
                n = _FUNCTION_PARTS[step[1]](parent)
            elif step[0] == "item":
                if isinstance(step[1], str):
                    n = dict_node(source[:-1]).dict_item(step[1])
                else:
                    n = parent.item(step[1])
            else:
                raise ValueError(f"unknown source step {step!r}")
        nodes[source] = n
        return n

    def dict_node(source: Source) -> Any:
        """The node of a dict read by key: DICT_VERSION, so that an unchanged dict skips
        the subtrees of its immutable items (a node whose value turns out not to be a
        dict is walked in full)."""
        n = node(source)
        if not n.dict_versioned:
            n.dict_version()
        return n

    for guard in plan.guards:
        guard.lower(root, node)
    for slot, source in enumerate(exports):
        if source not in nodes:
            raise ValueError(f"cannot export {sources.render(source)}: the plan does not guard it")
        nodes[source].export(slot)
    return root


# A function's parts, read from its fields (sources.function_part).
_FUNCTION_PARTS = {
    "__code__": lambda n: n.func_code(),
    "__globals__": lambda n: n.func_globals(),
    "__defaults__": lambda n: n.func_defaults(),
    "__kwdefaults__": lambda n: n.func_kwdefaults(),
}

__all__ = ["GuardPlan", "materialize"]
