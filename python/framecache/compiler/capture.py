"""Capturing a frame into a torch.fx graph with make_fx on fake tensors."""

from __future__ import annotations

import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.utils._pytree as pytree
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.fx.experimental.proxy_tensor import make_fx
from torch.fx.experimental.symbolic_shapes import (
    DimDynamic,
    ShapeEnv,
    StatelessSymbolicContext,
)

from ..plan import sources
from ..plan.sources import Source
from .errors import Unsupported
from .guard_plan import PlanBuilder
from .inputs import FrameArguments, make_function
from .side_effects import SideEffectAbort, SideEffectMonitor


@dataclass
class Capture:
    """A captured graph and everything needed to guard and call it."""

    gm: torch.fx.GraphModule
    args: FrameArguments
    fake_inputs: list[torch.Tensor]
    dynamic_dims: dict[Source, set[int]]
    shape_env: ShapeEnv | None
    out_spec: pytree.TreeSpec
    monitor: SideEffectMonitor
    builder: PlanBuilder
    global_state: dict[str, Any] = field(default_factory=dict)

    @property
    def is_dynamic(self) -> bool:
        return any(self.dynamic_dims.values())


def _fake_inputs(
    mode: FakeTensorMode, args: FrameArguments, dynamic_dims: dict[Source, set[int]]
) -> list[torch.Tensor]:
    fakes = []
    for tensor, source in zip(args.tensors, args.tensor_sources, strict=False):
        dims = dynamic_dims.get(source, set())
        if dims:
            context = StatelessSymbolicContext(
                dynamic_sizes=[
                    DimDynamic.DYNAMIC if d in dims else DimDynamic.STATIC
                    for d in range(tensor.dim())
                ]
            )
            fakes.append(mode.from_tensor(tensor, symbolic_context=context))
        else:
            fakes.append(mode.from_tensor(tensor, static_shapes=True))
    return fakes


def capture_frame(
    code: types.CodeType,
    f_globals: dict[str, Any],
    closure: tuple[Any, ...] | None,
    args: FrameArguments,
    dynamic_dims: dict[Source, set[int]],
) -> Capture:
    """Trace ``code`` with the frame's arguments into a GraphModule.

    Raises Unsupported when the frame cannot be captured faithfully: data-dependent
    control flow, unsupported operations, or side effects the graph could not replay.
    """
    fn = make_function(code, f_globals, closure)
    dynamic = any(dynamic_dims.values())
    shape_env = ShapeEnv(duck_shape=False) if dynamic else None
    mode = FakeTensorMode(allow_non_fake_inputs=True, shape_env=shape_env)
    spec_box: list[pytree.TreeSpec] = []

    def traced(*tensors: Any) -> tuple[Any, ...]:
        call_args, call_kwargs = args.rebuild(tensors)
        out = fn(*call_args, **call_kwargs)
        leaves, spec = pytree.tree_flatten(out)
        for leaf in leaves:
            # Checked before make_fx sees them: torch.fx records a dataclass it is handed
            # as a call of its class, and takes a dataclass *class* (transformers' configs)
            # for one, so the compiled code would call ``type(**defaults)``.
            if not isinstance(leaf, _OUTPUT_LEAVES):
                raise Unsupported(
                    f"the function returns {_describe_leaf(leaf)}, which a graph cannot produce"
                )
        spec_box.append(spec)
        return tuple(leaves)

    tensor_args = {src[0][1] for src in args.tensor_sources if len(src) == 1 and src[0][0] == "L"}
    # The guard plan is made from what the capture reads, as it reads it (reads.py).
    builder = PlanBuilder(args, dynamic_dims, f_globals, closure)
    monitor = SideEffectMonitor(
        code,
        tensor_args,
        on_line=builder.on_line,
        on_opcode=builder.on_opcode,
        on_c_call=builder.on_c_call,
    )
    builder.writes = monitor.writes
    try:
        fakes = _fake_inputs(mode, args, dynamic_dims)
        with monitor.watching(), mode:
            gm = make_fx(traced, tracing_mode="real")(*fakes)
    except SideEffectAbort as exc:
        raise Unsupported("side effect: " + exc.reason) from None
    except (KeyboardInterrupt, SystemExit, RecursionError):
        # RecursionError: capturing ran out of depth above a deep user stack; the
        # runtime then runs the frame uncompiled and remembers nothing.
        raise
    except Unsupported:
        raise
    except Exception as exc:
        raise Unsupported(_describe_trace_error(exc)) from exc
    if monitor.violations:
        # The abort was caught and swallowed on the way out (a bare except in user code).
        raise Unsupported("side effect: " + "; ".join(dict.fromkeys(monitor.violations)))
    _check_outputs(gm)
    return Capture(
        gm=gm,
        args=args,
        fake_inputs=fakes,
        dynamic_dims={k: set(v) for k, v in dynamic_dims.items() if v},
        shape_env=shape_env,
        out_spec=spec_box[-1],
        monitor=monitor,
        builder=builder,
    )


def _describe_trace_error(exc: BaseException) -> str:
    name = type(exc).__name__
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    if "DataDependent" in name or "data-dependent" in text or "data dependent" in text:
        return f"data-dependent control flow or output ({name}: {text})"
    if "DynamicOutputShape" in name:
        return f"an operation whose output shape depends on data ({name}: {text})"
    return f"{name}: {text}"


# What a captured frame may return, flattened: tensors and symbolic sizes the graph
# computes, and constants the compiled code returns as they are.
_OUTPUT_CONSTANTS = (int, float, bool, str, type(None), torch.dtype, torch.device)
_OUTPUT_LEAVES = (torch.Tensor, torch.SymInt, torch.SymFloat, torch.SymBool, *_OUTPUT_CONSTANTS)


def _describe_leaf(leaf: Any) -> str:
    if isinstance(leaf, type):
        return f"the class {leaf.__qualname__}"
    return f"a {type(leaf).__name__}"


def _check_outputs(gm: torch.fx.GraphModule) -> None:
    output = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    for leaf in pytree.tree_leaves(output.args[0]):
        if isinstance(leaf, torch.fx.Node):
            continue
        if not isinstance(leaf, _OUTPUT_CONSTANTS):
            raise Unsupported(
                f"the function returns {_describe_leaf(leaf)}, which a graph cannot produce"
            )


def source_of_tensor(capture: Capture, index: int) -> str:
    """Readable source of graph input ``index``."""
    return sources.render(capture.args.tensor_sources[index])


GraphCallable = Callable[..., Any]
