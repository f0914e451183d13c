"""The eager backend's graph, brought back closer to what the model called.

make_fx records ``F.linear`` as the operators its C++ implementation calls: ``t`` and
``addmm`` for a 2-D input, and for a contiguous input of more dimensions ``view``, ``t``,
``addmm`` (``mm`` without a bias) and a ``view`` (``_unsafe_view``) back. In the eager
backend's lean graph each of them is a Python-level call of about a microsecond, so a
model of linear layers pays four calls where torch.compile's eager backend, which runs
dynamo's torch-level graph, pays one: 42 extra calls for a 2-layer Llama.

``linear_calls`` puts ``aten.linear`` back where a group of nodes is exactly what
``aten.linear`` would record for the operands' shapes (read from the nodes' fake values)
and nothing else reads the group's intermediate results. ``aten.linear`` runs the same
kernels in the same order on those operands, so the result is the same, bit for bit, and
its autograd is that of the same operators. The graph stays an aten graph: the disk cache
stores it as it stores any other, and inductor never sees it (only the eager backend
rewrites its graph).

``unused_results`` drops the calls whose results nothing reads and that have no effect
besides their result: an eval-mode batch norm records an ``empty`` reserve tensor and
three tuple items nobody reads (mobilenet_v3_small: 102 of its 294 calls).
"""

from __future__ import annotations

import math
import operator
from typing import Any

import torch
from torch.fx import GraphModule, Node

__all__ = ["linear_calls", "unused_results"]

aten = torch.ops.aten


def _static_shape(node: Any) -> tuple[int, ...] | None:
    """The node's tensor shape when every size is a plain int, else None."""
    if not isinstance(node, Node):
        return None
    val = node.meta.get("val")
    if not isinstance(val, torch.Tensor):
        return None
    shape = tuple(val.shape)
    return shape if all(type(s) is int for s in shape) else None


def _is_contiguous(node: Node) -> bool:
    val = node.meta.get("val")
    try:
        return bool(val.is_contiguous())
    except Exception:  # symbolic strides: leave the group alone
        return False


def _only_user(node: Node, user: Node) -> bool:
    return list(node.users) == [user]


def _weight_of(t_node: Any, mm: Node) -> Node | None:
    """``w`` when ``t_node`` is ``aten.t(w)`` of a 2-D static ``w``, read only by ``mm``."""
    if not (
        isinstance(t_node, Node)
        and t_node.op == "call_function"
        and t_node.target is aten.t.default
        and not t_node.kwargs
        and _only_user(t_node, mm)
    ):
        return None
    (weight,) = t_node.args
    shape = _static_shape(weight)
    return weight if shape is not None and len(shape) == 2 else None


def _match_nd(node: Node) -> tuple[list[Node], Node, Node, Any] | None:
    """An N-D linear ending at ``node``: (its nodes, input, weight, bias), or None.

    ``view(addmm(b, view(x, [P, K]), t(w)), [*lead, N])``, or without a bias
    ``_unsafe_view(mm(view(x, [P, K]), t(w)), [*lead, N])``, for a contiguous ``x`` of
    static shape ``[*lead, K]`` with ``P = prod(lead)``.
    """
    if node.op != "call_function" or node.kwargs or len(node.args) != 2:
        return None
    if node.target not in (aten.view.default, aten._unsafe_view.default):
        return None
    mm, out_shape = node.args
    if not _is_linear_core(mm) or not _only_user(mm, node):
        return None
    bias = mm.args[0] if mm.target is aten.addmm.default else None
    expected_end = aten.view.default if bias is not None else aten._unsafe_view.default
    if node.target is not expected_end:
        return None
    flat, t_node = mm.args[-2], mm.args[-1]
    weight = _weight_of(t_node, mm)
    if weight is None or not isinstance(flat, Node) or not _only_user(flat, mm):
        return None
    if flat.op != "call_function" or flat.target is not aten.view.default or flat.kwargs:
        return None
    x, flat_shape = flat.args
    shape, w_shape = _static_shape(x), _static_shape(weight)
    if shape is None or w_shape is None or len(shape) < 3 or not _is_contiguous(x):
        return None
    lead, k = shape[:-1], shape[-1]
    if list(flat_shape) != [math.prod(lead), k] or w_shape[1] != k:
        return None
    if list(out_shape) != [*lead, w_shape[0]]:
        return None
    return [flat, t_node, mm, node], x, weight, bias


def _match_2d(node: Node) -> tuple[list[Node], Node, Node, Any] | None:
    """A 2-D linear ending at ``node``: ``addmm(b, x, t(w))`` or ``mm(x, t(w))``."""
    if not _is_linear_core(node):
        return None
    bias = node.args[0] if node.target is aten.addmm.default else None
    x, t_node = node.args[-2], node.args[-1]
    weight = _weight_of(t_node, node)
    shape = _static_shape(x)
    if weight is None or shape is None or len(shape) != 2:
        return None
    if shape[1] != _static_shape(weight)[1]:  # type: ignore[index]
        return None
    return [t_node, node], x, weight, bias


def _is_linear_core(node: Any) -> bool:
    """``addmm(b, m1, m2)`` or ``mm(m1, m2)`` with no beta, alpha or out."""
    if not isinstance(node, Node) or node.op != "call_function" or node.kwargs:
        return False
    return (node.target is aten.addmm.default and len(node.args) == 3) or (
        node.target is aten.mm.default and len(node.args) == 2
    )


def linear_calls(gm: GraphModule) -> int:
    """Rewrite ``gm`` in place: each linear group becomes one ``aten.linear`` node.

    Returns how many groups were rewritten (the graph is recompiled when any was).
    """
    groups = []
    taken: set[Node] = set()
    for node in gm.graph.nodes:  # N-D groups first: their core is also a 2-D group
        found = _match_nd(node)
        if found is not None:
            groups.append((node, found))
            taken.update(found[0])
    for node in gm.graph.nodes:
        found = _match_2d(node) if node not in taken else None
        if found is not None:
            groups.append((node, found))
    # A group's input can be an earlier group's result (a projection feeding the query,
    # key and value layers): that node is erased when its group is rewritten, so inputs
    # are read through what replaced them.
    replaced: dict[Node, Node] = {}
    for end, (members, x, weight, bias) in groups:
        operands = (x, weight) if bias is None else (x, weight, bias)
        args = tuple(replaced.get(a, a) if isinstance(a, Node) else a for a in operands)
        with gm.graph.inserting_before(end):
            linear = gm.graph.call_function(aten.linear.default, args)
        linear.meta = dict(end.meta)
        end.replace_all_uses_with(linear)
        replaced[end] = linear
        for member in reversed(members):
            gm.graph.erase_node(member)
    if groups:
        gm.recompile()
    return len(groups)


def _without_effects(node: Node) -> bool:
    """True for a call whose only effect is its result: an item of a tuple, or an aten
    operator that mutates nothing, draws no random numbers and is not an assertion."""
    target = node.target
    if target is operator.getitem:
        return True
    if not isinstance(target, torch._ops.OpOverload) or target.namespace != "aten":
        return False
    if target._schema.is_mutable or torch.Tag.nondeterministic_seeded in target.tags:
        return False
    side_effects = getattr(torch.fx.node, "_side_effectful_functions", set())
    return target not in side_effects and not target.__name__.startswith(
        ("_assert", "sym_constrain", "_print", "_record")
    )


def unused_results(gm: GraphModule) -> int:
    """Rewrite ``gm`` in place without the calls nobody reads that have no other effect.

    Returns how many nodes went (the graph is recompiled when any did).
    """
    removed = 0
    for node in reversed(list(gm.graph.nodes)):
        if node.op == "call_function" and not node.users and _without_effects(node):
            gm.graph.erase_node(node)
            removed += 1
    if removed:
        gm.recompile()
    return removed
