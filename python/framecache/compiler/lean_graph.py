"""A lean Python function for a captured graph, for the eager backend.

GraphModule.forward calls each aten operator through ``OpOverload.__call__`` (a Python
frame per operator) and runs as a Module method. This builds one straight-line function
whose operators are the C++ callables behind each overload and whose constants
(parameters, dtypes, devices) are bound in its globals: the same computation, with no
Python between the operators.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.fx import GraphModule, Node


def fast_callable(overload: torch._ops.OpOverload) -> Callable[..., Any]:
    """The quickest Python entry to an aten overload.

    torch's generated bindings (``torch.add``, ``Tensor.view``) parse arguments in C++ and
    pick the overload from the argument types, which is the overload the graph recorded
    for those types; they are several times cheaper than the OpOverload object. Anything
    else (out= variants, private ops) goes through the overload's C++ callable.
    """
    packet = overload.overloadpacket.__name__
    if overload.namespace != "aten" or packet.startswith("_") or "out" in overload._overloadname:
        return overload._op
    for owner in (torch, torch.Tensor):
        candidate = getattr(owner, packet, None)
        if candidate is not None and type(candidate).__name__ in (
            "builtin_function_or_method",
            "method_descriptor",
        ):
            return candidate
    return overload._op


def _resolve_attr(gm: GraphModule, target: str) -> Any:
    value: Any = gm
    for part in target.split("."):
        value = getattr(value, part)
    return value


def lean_forward(gm: GraphModule) -> Callable[..., Any]:
    """A function equivalent to ``gm.forward`` with the operator dispatch layers removed."""
    names: dict[Node, str] = {}
    scope: dict[str, Any] = {}
    params: list[str] = []
    body: list[str] = []

    def bind(value: Any) -> str:
        name = f"_c{len(scope)}"
        scope[name] = value
        return name

    def render(arg: Any) -> str:
        if isinstance(arg, Node):
            return names[arg]
        if isinstance(arg, tuple):
            inner = ", ".join(render(a) for a in arg)
            return f"({inner},)" if len(arg) == 1 else f"({inner})"
        if isinstance(arg, list):
            return "[" + ", ".join(render(a) for a in arg) + "]"
        if isinstance(arg, dict):
            return "{" + ", ".join(f"{k!r}: {render(v)}" for k, v in arg.items()) + "}"
        if (
            arg is None
            or isinstance(arg, (bool, int, str))
            or (isinstance(arg, float) and arg == arg and arg not in (float("inf"), float("-inf")))
        ):
            return repr(arg)
        return bind(arg)

    for i, node in enumerate(gm.graph.nodes):
        var = f"v{i}"
        names[node] = var
        if node.op == "placeholder":
            params.append(var)
        elif node.op == "get_attr":
            body.append(f"    {var} = {bind(_resolve_attr(gm, node.target))}")
        elif node.op == "call_function":
            target = node.target
            if isinstance(target, torch._ops.OpOverload):
                target = fast_callable(target)
            args = [render(a) for a in node.args]
            args += [f"{k}={render(v)}" for k, v in node.kwargs.items()]
            body.append(f"    {var} = {bind(target)}({', '.join(args)})")
        elif node.op == "output":
            body.append(f"    return {render(node.args[0])}")
        else:
            # call_method / call_module do not occur in make_fx graphs; keep the original.
            return gm.forward
    source = f"def forward({', '.join(params)}):\n" + "\n".join(body) + "\n"
    code = compile(source, "<framecache lean graph>", "exec")
    exec(code, scope)
    return scope["forward"]
