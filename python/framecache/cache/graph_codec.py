"""A captured graph as plain data, and back, without pickling Python code.

Pickling a GraphModule stores its generated source and an import block that a fresh
process may fail to run (it names torch submodules that are not imported yet), and it
runs that code when loaded. This codec writes the graph's nodes instead: each node's
op, name and target (an aten overload by namespace, name and overload; any other
callable by module and qualified name), its arguments with nodes by name, and the tensor
constants the graph reads (``get_attr``). Decoding builds the torch.fx Graph directly.
"""

from __future__ import annotations

from typing import Any

import torch

from . import refs
from .refs import NotPortable

CODEC_VERSION = 1


def _encode_target(target: Any) -> tuple[Any, ...]:
    if isinstance(target, torch._ops.OpOverload):
        ns, _, name = target._schema.name.partition("::")
        return ("aten_op", ns, name, target._overloadname)
    if isinstance(target, str):
        return ("str", target)
    return ("ref", refs.ref_of(target))


def _decode_target(spec: tuple[Any, ...]) -> Any:
    if spec[0] == "aten_op":
        _, ns, name, overload = spec
        return getattr(getattr(getattr(torch.ops, ns), name), overload)
    if spec[0] == "str":
        return spec[1]
    if spec[0] == "ref":
        return refs.resolve(spec[1])
    raise LookupError(f"unknown node target {spec!r}")


def _encode_arg(arg: Any) -> Any:
    if isinstance(arg, torch.fx.Node):
        return ("node", arg.name)
    if arg is None or type(arg) in (bool, int, float, complex, str):
        return ("const", arg)
    if type(arg) is tuple:
        return ("tuple", [_encode_arg(a) for a in arg])
    if isinstance(arg, list):  # torch.fx's immutable_list too
        return ("list", [_encode_arg(a) for a in arg])
    if isinstance(arg, dict):  # and immutable_dict
        return ("dict", [(k, _encode_arg(v)) for k, v in arg.items()])
    if type(arg) is slice:
        return ("slice", [_encode_arg(arg.start), _encode_arg(arg.stop), _encode_arg(arg.step)])
    if isinstance(arg, torch.dtype):
        return ("dtype", str(arg).removeprefix("torch."))
    if isinstance(arg, torch.device):
        return ("device", str(arg))
    if isinstance(arg, (torch.layout, torch.memory_format)):
        return ("torch_attr", str(arg).removeprefix("torch."))
    if arg is Ellipsis:
        return ("ellipsis",)
    raise NotPortable(f"a graph argument of type {type(arg).__name__}")


def _decode_arg(spec: Any, nodes: dict[str, torch.fx.Node]) -> Any:
    kind = spec[0]
    if kind == "node":
        return nodes[spec[1]]
    if kind == "const":
        return spec[1]
    if kind == "tuple":
        return tuple(_decode_arg(a, nodes) for a in spec[1])
    if kind == "list":
        return [_decode_arg(a, nodes) for a in spec[1]]
    if kind == "dict":
        return {k: _decode_arg(v, nodes) for k, v in spec[1]}
    if kind == "slice":
        return slice(*(_decode_arg(a, nodes) for a in spec[1]))
    if kind in ("dtype", "torch_attr"):
        return getattr(torch, spec[1])
    if kind == "device":
        return torch.device(spec[1])
    if kind == "ellipsis":
        return Ellipsis
    raise LookupError(f"unknown graph argument {spec!r}")


def encode(gm: torch.fx.GraphModule) -> dict[str, Any]:
    """The graph as plain data plus its tensor constants; NotPortable when it cannot be."""
    nodes = []
    constants: dict[str, torch.Tensor] = {}
    for node in gm.graph.nodes:
        if node.op == "get_attr":
            value: Any = gm
            for part in str(node.target).split("."):
                value = getattr(value, part)
            if not isinstance(value, torch.Tensor):
                raise NotPortable(f"a graph constant of type {type(value).__name__}")
            constants[str(node.target)] = value.detach().clone()
        elif node.op not in ("placeholder", "call_function", "output"):
            raise NotPortable(f"a graph node of kind {node.op}")
        nodes.append(
            (
                node.op,
                node.name,
                _encode_target(node.target),
                _encode_arg(tuple(node.args)),
                _encode_arg(dict(node.kwargs)),
            )
        )
    return {"version": CODEC_VERSION, "nodes": nodes, "constants": constants}


class GraphHolder(torch.nn.Module):
    """A decoded graph and its constants, without a GraphModule's generated code.

    Enough for lean_graph.lean_forward (it reads ``.graph`` and the constants), and
    cheaper to build on a warm start: a GraphModule generates and execs its source.
    """

    def __init__(self, graph: torch.fx.Graph) -> None:
        super().__init__()
        self.graph = graph


def decode(data: dict[str, Any], module: bool = True) -> Any:
    """The GraphModule of encoded data (a GraphHolder when ``module`` is False).

    LookupError when a target does not resolve in this process.
    """
    if data.get("version") != CODEC_VERSION:
        raise LookupError(f"graph codec version {data.get('version')}")
    graph = torch.fx.Graph()
    nodes: dict[str, torch.fx.Node] = {}
    root = torch.nn.Module() if module else GraphHolder(graph)
    for name, tensor in data["constants"].items():
        if "." in name:
            raise LookupError(f"nested constant name {name!r}")
        setattr(root, name, tensor)
    for op, name, target_spec, args_spec, kwargs_spec in data["nodes"]:
        target = _decode_target(target_spec)
        args = _decode_arg(args_spec, nodes)
        kwargs = _decode_arg(kwargs_spec, nodes)
        node = graph.create_node(op, target, args, kwargs, name=name)
        nodes[name] = node
    return torch.fx.GraphModule(root, graph) if module else root


__all__ = ["CODEC_VERSION", "GraphHolder", "decode", "encode"]
