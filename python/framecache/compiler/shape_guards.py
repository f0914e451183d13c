"""Symbolic shape guards from the ShapeEnv of a dynamic capture."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch

from ..plan import sources
from ..plan.sources import Source

if TYPE_CHECKING:
    from .capture import Capture


def _torch_source(source: Source) -> Any:
    from torch._dynamo.source import GetItemSource, LocalSource

    root = source[0]
    if root[0] != "L":
        raise ValueError(f"shape guards need frame-local sources, got {sources.render(source)}")
    out: Any = LocalSource(root[1])
    for step in source[1:]:
        if step[0] != "item":
            raise ValueError(f"unsupported step in a tensor input source: {step!r}")
        out = GetItemSource(out, step[1])
    return out


def shape_guard_code(capture: Capture) -> list[str]:
    """Python expressions over ``L`` (the frame's locals) that the symbolic graph needs."""
    if capture.shape_env is None:
        return []
    torch_sources = [_torch_source(s) for s in capture.args.tensor_sources]
    return list(capture.shape_env.produce_guards(capture.fake_inputs, torch_sources))


def compile_shape_check(parts: list[str]) -> Callable[[dict[str, Any]], bool]:
    """One function checking every part (short-circuit, in order)."""
    from torch.fx.experimental.symbolic_shapes import SYMPY_INTERP

    body = " and ".join(f"({p})" for p in parts) or "True"
    scope: dict[str, Any] = {"torch": torch, **SYMPY_INTERP}
    return eval(compile(f"lambda L: {body}", "<framecache shape guards>", "eval"), scope)


class ShapeGuardedRoot:
    """A C++ guard tree plus the symbolic shape guards of a dynamic graph.

    The runtime checks it through ``check(f_locals)``; ``check_verbose`` names the failing
    guards, shape guards included.
    """

    def __init__(self, root: Any, parts: list[str], f_globals: dict[str, Any]) -> None:
        self.root = root
        # The runtime calls check(f_locals) for Python guard objects, so the globals the
        # tree's global guards read are kept here (a known cost: they stay alive with the
        # entry, which matters only for functions made with exec() in a throwaway dict).
        self.f_globals = f_globals
        self.parts = parts
        self._check = compile_shape_check(parts)
        from torch.fx.experimental.symbolic_shapes import SYMPY_INTERP

        self._scope = {"torch": torch, **SYMPY_INTERP}

    def check(self, f_locals: dict[str, Any]) -> bool:
        return bool(self.root.check(f_locals, self.f_globals)) and bool(self._check(f_locals))

    def check_verbose(
        self, f_locals: dict[str, Any], f_globals: dict[str, Any] | None = None
    ) -> Any:
        info = self.root.check_verbose(f_locals, self.f_globals if f_globals is None else f_globals)
        failures = list(info.failures)
        executed = info.num_guards_executed
        if info.result:
            for part in self.parts:
                executed += 1
                try:
                    ok = bool(eval(part, self._scope, {"L": f_locals}))
                except Exception as exc:
                    ok = False
                    part = f"{part} raised {type(exc).__name__}: {exc}"
                if not ok:
                    failures.append(f"shape guard failed: {part}")
        return _DebugInfo(not failures, failures, executed)

    def __str__(self) -> str:
        return str(self.root) + "".join(f"  | SHAPE {p}\n" for p in self.parts)


class _DebugInfo:
    """Same fields as guards.GuardDebugInfo."""

    def __init__(self, result: bool, failures: list[str], executed: int) -> None:
        self.result = result
        self.failures = failures
        self.num_guards_executed = executed

    def __bool__(self) -> bool:
        return self.result

    def __repr__(self) -> str:
        return (
            f"GuardDebugInfo(result={self.result}, failures={self.failures!r}, "
            f"num_guards_executed={self.num_guards_executed})"
        )
