"""A lean Python function for a captured graph, for the eager backend.

GraphModule.forward calls each aten operator through ``OpOverload.__call__`` (a Python
frame per operator) and runs as a Module method. This builds one straight-line function
whose operators are the C++ callables behind each overload and whose constants
(parameters, dtypes, devices) are bound in its globals: the same computation, with no
Python between the operators.

The same straight-line statements can also be written into the code that runs in place
of the compiled frame (``codegen.wrapper_code``): the function carries them as
``__framecache_inline__`` (a :class:`LeanGraph`), so a cache hit of the eager backend runs
the operators in the cached code's own frame, with no call of a graph function at all.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import GraphModule, Node

INLINE_ATTR = "__framecache_inline__"


# Where torch's generated Python bindings of aten operators live. ``torch.split`` and
# ``F.gelu``'s public names are Python wrappers or absent, but the raw bindings are here
# (``torch._C._VariableFunctions.split``, ``torch._C._nn.gelu``), private operators too
# (``_scaled_dot_product_flash_attention_for_cpu``).
_BINDING_OWNERS: tuple[Any, ...] = (
    torch,
    torch.Tensor,
    torch._C._VariableFunctions,
    torch._C._nn,
)


def fast_callable(overload: torch._ops.OpOverload) -> Callable[..., Any]:
    """The quickest Python entry to an aten overload.

    torch's generated bindings (``torch.add``, ``Tensor.view``) parse arguments in C++ and
    pick the overload from the argument types, which is the overload the graph recorded
    for those types; they are several times cheaper than the OpOverload object, and about
    a microsecond cheaper than its C++ callable, which matches the arguments against the
    schema through the JIT on every call (``split`` 3.5 -> 2.6 µs, the CPU flash attention
    11.3 -> 9.5 µs). Anything without a generated binding (out= variants, ``aten.slice``)
    goes through the overload's C++ callable.
    """
    packet = overload.overloadpacket.__name__
    if overload.namespace != "aten" or "out" in overload._overloadname:
        return overload._op
    for owner in _BINDING_OWNERS if not packet.startswith("_") else _BINDING_OWNERS[2:]:
        candidate = getattr(owner, packet, None)
        if candidate is not None and type(candidate).__name__ in (
            "builtin_function_or_method",
            "method_descriptor",
        ):
            return candidate
    return overload._op


def with_binding_defaults(
    overload: torch._ops.OpOverload, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, ...]:
    """``args`` with the schema's defaults spelled out, for a call through a binding.

    A generated binding parses its own defaults, and an integer default written as a name
    in ``native_functions.yaml`` is misread there: ``torch._C._nn.cross_entropy_loss(x, t)``
    reduces with ``none``, while the schema (and the overload) default to ``Mean``. A graph
    that left such an argument at its default (make_fx with ``pre_dispatch`` records
    ``cross_entropy_loss(x, t)``) would compute something else. So every positional default
    up to the last integer one is passed explicitly, from the schema.
    """
    schema = overload._schema.arguments
    positional = [a for a in schema if not a.kwarg_only]
    missing = [
        i
        for i, a in enumerate(positional)
        if i >= len(args) and a.name not in kwargs and a.has_default_value()
    ]
    ints = [i for i in missing if isinstance(positional[i].type, torch.IntType)]
    if not ints:
        return args
    filled = list(args)
    for a in positional[len(args) : ints[-1] + 1]:
        if a.name in kwargs or not a.has_default_value():
            return args  # an argument passed by name, or a required one: leave the call alone
        filled.append(a.default_value)
    return tuple(filled)


def _resolve_attr(gm: GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def _is_literal(arg: Any) -> bool:
    """Values whose repr() is a Python literal evaluating to an equal value of the same type."""
    return (
        arg is None
        or isinstance(arg, (bool, int, str))
        or (isinstance(arg, float) and arg == arg and arg not in (float("inf"), float("-inf")))
    )


@dataclass(frozen=True)
class _Ref:
    """A graph input (``is_input``) or the result of step ``index``, inside step arguments."""

    is_input: bool
    index: int


@dataclass(frozen=True)
class _Step:
    """One node of the graph: ``var = target(args, kwargs)`` or ``var = constant``."""

    var: int
    target: Any  # the callable, or the constant of a get_attr
    args: tuple[Any, ...] | None  # None for a get_attr
    kwargs: dict[str, Any]


class LeanGraph:
    """The operators of a make_fx graph as straight-line steps over numbered variables.

    ``render`` writes them as Python statements; how inputs, constants and variables are
    spelled is up to the caller, so that the same steps can become a function of their own
    (``lean_forward``) or the body of the code run in place of a frame (codegen).
    """

    def __init__(self, gm: GraphModule) -> None:
        self.num_inputs = 0
        self.steps: list[_Step] = []
        self.outputs: tuple[Any, ...] = ()
        index: dict[Node, Any] = {}
        for node in gm.graph.nodes:
            if node.op == "placeholder":
                index[node] = _Ref(True, self.num_inputs)
                self.num_inputs += 1
            elif node.op == "get_attr":
                var = len(self.steps)
                self.steps.append(_Step(var, _resolve_attr(gm, node.target), None, {}))
                index[node] = _Ref(False, var)
            elif node.op == "call_function":
                target = node.target
                node_args = node.args
                if isinstance(target, torch._ops.OpOverload):
                    target = fast_callable(node.target)
                    if target is not node.target._op:
                        node_args = with_binding_defaults(node.target, node.args, node.kwargs)
                var = len(self.steps)
                args = torch.fx.node.map_arg(node_args, lambda n: index[n])
                kwargs = torch.fx.node.map_arg(node.kwargs, lambda n: index[n])
                self.steps.append(_Step(var, target, tuple(args), dict(kwargs)))
                index[node] = _Ref(False, var)
            elif node.op == "output":
                out = node.args[0]
                items = out if isinstance(out, (tuple, list)) else (out,)
                self.outputs = tuple(
                    torch.fx.node.map_arg(item, lambda n: index[n]) for item in items
                )
            else:
                # call_method / call_module do not occur in make_fx graphs.
                raise ValueError(f"graph node {node.op} cannot be made lean")

    def render(
        self,
        inputs: Sequence[str],
        constant: Callable[[Any], str],
        var_prefix: str,
    ) -> tuple[list[str], list[str]]:
        """Statements computing the graph, and one expression per flat output.

        ``inputs`` spells each graph input; ``constant(obj)`` spells a bound object.
        """

        def spell(arg: Any) -> str:
            if isinstance(arg, _Ref):
                return inputs[arg.index] if arg.is_input else f"{var_prefix}{arg.index}"
            if isinstance(arg, tuple):
                inner = ", ".join(spell(a) for a in arg)
                return f"({inner},)" if len(arg) == 1 else f"({inner})"
            if isinstance(arg, list):
                return "[" + ", ".join(spell(a) for a in arg) + "]"
            if isinstance(arg, dict):
                return "{" + ", ".join(f"{k!r}: {spell(v)}" for k, v in arg.items()) + "}"
            if _is_literal(arg):
                return repr(arg)
            return constant(arg)

        # Each variable is deleted after the step that reads it last (outputs excepted), as
        # torch.fx's generated code does: an intermediate's memory goes back to the
        # allocator as soon as it is dead, and later operators reuse it while it is still in
        # the CPU's caches, instead of the graph holding every intermediate until it returns.
        last_read: dict[int, int] = {}
        for step in self.steps:
            if step.args is not None:
                for var in _vars_in((step.args, step.kwargs)):
                    last_read[var] = step.var
        kept = set(_vars_in(self.outputs))
        dead_after: dict[int, list[int]] = {}
        for var in range(len(self.steps)):
            if var not in kept:
                # A value nobody reads (a tuple's unread item) dies at once.
                dead_after.setdefault(last_read.get(var, var), []).append(var)

        lines = []
        for step in self.steps:
            if step.args is None:
                lines.append(f"{var_prefix}{step.var} = {constant(step.target)}")
            else:
                parts = [spell(a) for a in step.args]
                parts += [f"{k}={spell(v)}" for k, v in step.kwargs.items()]
                call = f"{constant(step.target)}({', '.join(parts)})"
                lines.append(f"{var_prefix}{step.var} = {call}")
            dead = dead_after.get(step.var)
            if dead:
                lines.append("del " + ", ".join(f"{var_prefix}{v}" for v in dead))
        return lines, [spell(o) for o in self.outputs]


def _vars_in(value: Any) -> list[int]:
    """The step variables a step's arguments (or the outputs) read."""
    found: list[int] = []

    def visit(v: Any) -> None:
        if isinstance(v, _Ref):
            if not v.is_input:
                found.append(v.index)
        elif isinstance(v, (tuple, list)):
            for item in v:
                visit(item)
        elif isinstance(v, dict):
            for item in v.values():
                visit(item)

    visit(value)
    return found


def lean_forward(gm: GraphModule) -> Callable[..., Any]:
    """A function equivalent to ``gm.forward`` with the operator dispatch layers removed.

    It carries its steps as ``__framecache_inline__`` for codegen; graphs that cannot be
    made lean get ``gm.forward`` itself.
    """
    try:
        lean = LeanGraph(gm)
    except ValueError:
        return gm.forward
    scope: dict[str, Any] = {}

    def bind(value: Any) -> str:
        name = f"_c{len(scope)}"
        scope[name] = value
        return name

    params = [f"a{i}" for i in range(lean.num_inputs)]
    lines, outputs = lean.render(params, bind, "v")
    ret = ", ".join(outputs) + ("," if len(outputs) == 1 else "")
    body = "".join(f"    {line}\n" for line in lines) + f"    return ({ret})\n"
    source = f"def forward({', '.join(params)}):\n{body}"
    exec(compile(source, "<framecache lean graph>", "exec"), scope)
    forward = scope["forward"]
    setattr(forward, INLINE_ATTR, lean)
    return forward
