"""Lifting the tensors a graph holds by reference into graph inputs.

A captured graph reads a module's parameters (and globals' tensors) as constants
(``get_attr``), which pins the objects of one process into it. For the disk cache the
graph takes them as inputs instead: the wrapper passes them from their sources in the
frame (``self.__dict__['_modules']['0'].__dict__['_parameters']['weight']``), so the same
compiled graph serves the parameters of whichever process loads it, and its guards need
their metadata, not their identity.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..plan import sources
from ..plan.guards import TensorMatch
from ..plan.plan import GuardPlan
from ..plan.sources import Source
from .refs import NotPortable

if TYPE_CHECKING:
    from ..compiler.capture import Capture


@dataclasses.dataclass
class Lifted:
    """The graph to compile and store, and what the wrapper passes it after the frame's tensors.

    ``lifted_ids``: the tensors whose identity no longer matters (the lifted ones, and
    module state the graph does not hold). ``extra_sources``: where each extra input comes
    from (the source its TENSOR_MATCH guards), parallel to ``extra_exprs``.
    """

    capture: Capture
    extra_exprs: list[str]
    lifted_ids: set[int]
    extra_sources: list[Source] = dataclasses.field(default_factory=list)


def wrapper_expr(source: Source, params: set[str]) -> str:
    """A Python expression reading ``source`` in the wrapper (locals, or the function's globals)."""
    root = source[0]
    if root[0] != "L" and (root[0] != "G" or root[1] in params):
        raise NotPortable(f"{sources.render(source)} cannot be read from the compiled function")
    try:
        if root[0] == "L":
            return sources.python_expr(source)
        return sources.steps_expr(str(root[1]), source)
    except ValueError:
        raise NotPortable(
            f"{sources.render(source)} cannot be read from the compiled function"
        ) from None


def lift(
    capture: Capture,
    plan: GuardPlan,
    select: Callable[[Source], bool] | None = None,
) -> Lifted:
    """A copy of the capture whose graph takes its guarded tensor constants as inputs.

    ``select``: lift only tensors whose source it accepts, and leave those the wrapper
    cannot read as constants (the in-process compile lifts module parameters and buffers
    so that one entry serves every instance of a module class). Without it every guarded
    tensor constant is lifted, or NotPortable (the disk cache's rule).
    """
    by_id: dict[int, Source] = {}
    for guard in plan.guards:
        if isinstance(guard, TensorMatch) and guard.source:
            by_id.setdefault(id(guard.example), guard.source)
    inputs = {id(t) for t in capture.args.tensors}
    params = set(capture.args.names)
    gm = capture.gm
    graph = gm.graph
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    last = placeholders[-1] if placeholders else None
    lifted_values: list[torch.Tensor] = []
    lifted_fakes: list[Any] = []
    exprs: list[str] = []
    expr_sources: list[Source] = []
    targets: list[str] = []
    held: set[int] = set()  # tensors the graph holds as constants
    for node in list(graph.nodes):
        if node.op != "get_attr":
            continue
        value: Any = gm
        for part in str(node.target).split("."):
            value = getattr(value, part)
        held.add(id(value))
        if not isinstance(value, torch.Tensor) or id(value) not in by_id or id(value) in inputs:
            continue
        if select is not None:
            if not select(by_id[id(value)]):
                continue
            try:
                expr = wrapper_expr(by_id[id(value)], params)
            except NotPortable:
                continue
        else:
            expr = wrapper_expr(by_id[id(value)], params)
        if last is None:
            first = next(iter(graph.nodes))
            ctx = graph.inserting_before(first)
        else:
            ctx = graph.inserting_after(last)
        with ctx:
            ph = graph.placeholder(f"lifted_{len(exprs)}")
        ph.meta.update(node.meta)
        node.replace_all_uses_with(ph)
        graph.erase_node(node)
        last = ph
        targets.append(str(node.target))
        exprs.append(expr)
        expr_sources.append(by_id[id(value)])
        lifted_values.append(value)
        lifted_fakes.append(node.meta.get("val", value))
    # A module's parameters and buffers that the graph does not hold (BatchNorm's
    # num_batches_tracked in eval mode) are guarded by the module walk, not because the
    # graph needs them: their identity does not matter either, only their metadata. (A
    # capture cannot have read their values: on a fake tensor that is data-dependent.)
    unheld = {
        i
        for i, source in by_id.items()
        if i not in held and i not in inputs and sources.is_module_state_source(source)
    }
    if not exprs:
        return Lifted(capture, [], unheld)
    for target in targets:
        if hasattr(gm, target) and "." not in target:
            delattr(gm, target)
    graph.lint()
    gm.recompile()
    args = dataclasses.replace(capture.args, tensors=[*capture.args.tensors, *lifted_values])
    new = dataclasses.replace(
        capture, gm=gm, args=args, fake_inputs=[*capture.fake_inputs, *lifted_fakes]
    )
    return Lifted(new, exprs, {id(v) for v in lifted_values} | unheld, expr_sources)


__all__ = ["Lifted", "lift", "wrapper_expr"]
