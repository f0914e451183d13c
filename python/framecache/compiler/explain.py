"""framecache.explain: what compiling a call would capture, guard and skip."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import _C
from .api import allow_compiling, library_forward
from .callback import CompileContext, CompileRecord


@dataclass
class ExplainOutput:
    """Graphs, guards, globals read and fallback reasons of one explained call."""

    graphs: list[Any]
    guards: list[list[str]]
    globals_read: list[list[str]]
    fallback_reasons: list[str]
    records: list[CompileRecord]

    @property
    def cudagraphs(self) -> list[str | None]:
        """Per captured graph, with cudagraphs=True: whether it would be recorded, or why not."""
        return [r.cudagraphs for r in self.records if r.graph is not None]

    @property
    def graph_count(self) -> int:
        return len(self.graphs)

    def __str__(self) -> str:
        lines = [f"{self.graph_count} graph(s), {len(self.fallback_reasons)} frame(s) not captured"]
        for record in self.records:
            code = record.code
            where = f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
            if record.graph is None:
                lines.append(f"\n{where}: not captured: {record.reason}")
                continue
            lines.append(f"\n{where}: captured ({record.dynamic})")
            if record.cudagraphs is not None:
                lines.append(f"  {record.cudagraphs}")
            lines.append("  graph:")
            lines.extend("    " + line for line in record.graph.code.strip().splitlines())
            lines.append("  guards:")
            lines.extend("    " + g for g in record.guards)
            if record.globals_read:
                lines.append("  globals read: " + ", ".join(record.globals_read))
        return "\n".join(lines)


def explain(fn: Any, *args: Any, **kwargs: Any) -> ExplainOutput:
    """Run ``fn(*args, **kwargs)`` under a recording compile and report what happened.

    Nothing it compiles stays cached: the code objects it touched are reset afterwards,
    and the disk cache is neither read nor written (a stored entry would be a hit, with no
    capture to report).
    """
    original = getattr(fn, "_framecache_original", fn)
    if isinstance(original, torch.nn.Module):
        # A torch module's own forward (nn.TransformerEncoder) is compiled when asked for,
        # as framecache.compile does; else explain reported "0 graph(s)" for it.
        code = library_forward(original)
        if code is not None:
            allow_compiling(code)
    graphs = getattr(getattr(fn, "_framecache_context", None), "cudagraphs", False)
    context = CompileContext(backend="eager", record=True, cudagraphs=graphs)
    previous = _C.set_eval_frame(context)
    try:
        original(*args, **kwargs)
    finally:
        _C.set_eval_frame(previous)
    records = context.records or []
    for record in records:
        _C.reset_code(record.code)
    captured = [r for r in records if r.graph is not None]
    return ExplainOutput(
        graphs=[r.graph for r in captured],
        guards=[r.guards for r in captured],
        globals_read=[r.globals_read for r in captured],
        fallback_reasons=[r.reason for r in records if r.graph is None and r.reason],
        records=records,
    )
