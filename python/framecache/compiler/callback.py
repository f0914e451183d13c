"""The cache-miss callback of framecache.compile: capture, compile, guard, cache."""

from __future__ import annotations

import inspect
import itertools
import os
import threading
import time
import types
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from .. import _C, _events
from ..plan import sources
from ..stances import RecompileError, current_stance
from . import backends, codegen, dynamic, guard_plan, logs, shape_guards
from . import stats as stats_mod
from .errors import BackendCompileError, FullGraphError, Unsupported
from .inputs import split_arguments

if TYPE_CHECKING:
    from .capture import Capture


def capture_frame(*args: Any, **kwargs: Any) -> Capture:
    """capture.capture_frame, imported on the first miss that captures.

    Capturing needs fake tensors and symbolic shapes (which import sympy, ~0.4 s);
    a process whose calls all hit the disk cache never imports them.
    """
    from .capture import capture_frame as capture

    return capture(*args, **kwargs)


_NOT_FUNCTION = inspect.CO_GENERATOR | inspect.CO_COROUTINE | inspect.CO_ASYNC_GENERATOR
_compile_ids = itertools.count(1)
# A frame that could not be captured runs normally; what it calls may still compile.
FALLBACK = _C.FrameExecStrategy(_C.FrameAction.SKIP, _C.FrameAction.DEFAULT)
# A compiled frame: look it up; what its compiled code calls runs normally.
COMPILED = _C.FrameExecStrategy(_C.FrameAction.DEFAULT, _C.FrameAction.SKIP)
_SLOW_COMPILE_SECONDS = 10.0


@dataclass
class CompileRecord:
    """What one compile produced, kept for explain()."""

    code: types.CodeType
    graph: torch.fx.GraphModule | None
    guards: list[str]
    globals_read: list[str]
    dynamic: str
    reason: str | None = None
    recompile_reasons: list[str] = field(default_factory=list)


class CompileContext:
    """The callback installed while a framecache.compile'd function runs."""

    def __init__(
        self,
        backend: str | backends.Backend = "eager",
        dynamic: bool | None = None,
        fullgraph: bool = False,
        record: bool = False,
        cache: bool = True,
        cache_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        if dynamic not in (None, True, False):
            raise TypeError(f"dynamic must be None, True or False, got {dynamic!r}")
        if not isinstance(fullgraph, bool):
            raise TypeError(f"fullgraph must be a bool, got {type(fullgraph).__name__}")
        self.backend_name, self.backend = backends.resolve(backend)
        self.dynamic = dynamic
        self.fullgraph = fullgraph
        self.records: list[CompileRecord] | None = [] if record else None
        # The disk cache (framecache/cache): None when off for this function.
        self.disk: Any = None
        if cache and not record:
            from ..cache import session

            self.disk = session.DiskCache(cache_dir, self.backend_name, None)
            if self.backend_name == "inductor":
                from ..cache.artifact import inductor_standalone

                self.backend = inductor_standalone  # keeps a serialisable artifact

    def __call__(
        self, frame: _C.FrameView, first_entry: _C.CacheEntry | None, frame_state: dict[str, Any]
    ) -> _C.CallbackResult | None:
        code = frame.f_code
        if not code.co_flags & inspect.CO_OPTIMIZED or code.co_flags & _NOT_FUNCTION:
            # Module code, class bodies, generators and coroutines run as they are.
            return _C.CallbackResult(strategy=FALLBACK, apply_to_code=True)
        counters = stats_mod.for_code(code)
        counters.misses += 1
        current = current_stance()
        if current == "run_only":  # entered inside a compiled call: never compile
            return None
        f_locals = frame.f_locals
        reasons = _recompile_reasons(first_entry, f_locals, frame.f_globals)
        if current == "fail_on_recompile" and first_entry is not None:
            raise RecompileError(
                f"stance('fail_on_recompile'): {_where(code)} would recompile: "
                + "; ".join(reasons)
            )
        if reasons:
            counters.recompile_reasons.append("; ".join(reasons))
            logs.recompiles.info("recompiling %s: %s", _where(code), "; ".join(reasons))
        try:
            result = self._compile(frame, code, f_locals, frame_state, counters, reasons)
        except Unsupported as exc:
            counters.fallbacks += 1
            counters.fallback_reasons.append(exc.reason)
            logs.fallbacks.info("not compiling %s: %s", _where(code), exc.reason)
            if self.records is not None:
                self.records.append(
                    CompileRecord(
                        code, None, [], [], "", reason=exc.reason, recompile_reasons=reasons
                    )
                )
            if self.fullgraph:
                raise FullGraphError(
                    f"fullgraph=True: {_where(code)} cannot be captured as one graph: {exc.reason}"
                ) from None
            return _C.CallbackResult(strategy=FALLBACK, apply_to_code=True)
        if _events.has_observers():
            _events.emit(_events.CompileEvent(code, first_entry is not None, tuple(reasons)))
        return result

    def _compile(
        self,
        frame: _C.FrameView,
        code: types.CodeType,
        f_locals: dict[str, Any],
        frame_state: dict[str, Any],
        counters: stats_mod.CodeStats,
        reasons: list[str],
    ) -> _C.CallbackResult:
        started = time.perf_counter()
        args = split_arguments(code, f_locals)
        dims = dynamic.decide(args, frame_state, self.dynamic)
        pending = None
        if self.disk is not None:
            warm, pending = self.disk.lookup(
                code, f_locals, frame.f_globals, args, dims, self.backend, counters
            )
            if warm is not None:
                new_code = codegen.wrapper_code(code, warm.call_args, warm.compiled, warm.out_spec)
                guarded = _C.GuardedCode(
                    new_code,
                    warm.guard_manager,
                    compile_id=next(_compile_ids),
                    trace_annotation=warm.annotation,
                )
                return _C.CallbackResult(guarded, strategy=COMPILED, apply_to_code=True)
        logs.compile_log.info(
            "capturing %s (dynamic: %s)", _where(code), dynamic.changed_dims_reason(dims) or "none"
        )
        capture = capture_frame(code, frame.f_globals, frame.closure, args, dims)
        plan = guard_plan.build_plan(capture, frame.closure)
        lifted = None
        if pending is not None:
            compiled_capture, extra_args, lifted = self.disk.lift(capture, plan, counters)
        if lifted is None:
            # Module parameters and buffers are graph inputs: one entry serves every
            # instance of a module class whose state has the same structure.
            compiled_capture, extra_args, held = _lift_module_state(capture, plan)
        else:
            held = lifted
        plan = guard_plan.relaxed(plan, held)
        compiled = self._run_backend(code, compiled_capture)
        call_args = [sources.python_expr(s) for s in args.tensor_sources] + extra_args
        new_code = codegen.wrapper_code(code, call_args, compiled, capture.out_spec)
        try:
            root = guard_plan.materialize(plan)
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"cannot build guards: {exc}") from exc
        parts = shape_guards.shape_guard_code(capture)
        guard_manager: Any = (
            shape_guards.ShapeGuardedRoot(root, parts, frame.f_globals) if parts else root
        )
        if pending is not None and lifted is not None:
            self.disk.store_entry(
                pending,
                compiled_capture,
                plan,
                parts,
                call_args,
                compiled,
                lifted,
                dynamic.changed_dims_reason(capture.dynamic_dims) or "static",
                counters,
            )
        compile_id = next(_compile_ids)
        elapsed = time.perf_counter() - started
        counters.compiles += 1
        counters.compile_seconds += elapsed
        annotation = f"{self.backend_name}; " + (
            dynamic.changed_dims_reason(capture.dynamic_dims) or "static"
        )
        if logs.graph.isEnabledFor(10):
            logs.graph.debug(
                "graph of %s (compile %d):\n%s", _where(code), compile_id, capture.gm.code
            )
        if logs.guards.isEnabledFor(10):
            logs.guards.debug(
                "guards of %s (compile %d):\n%s",
                _where(code),
                compile_id,
                "\n".join(plan.describe() + parts),
            )
        logs.compile_log.info(
            "compiled %s in %.3fs (compile %d, %s)", _where(code), elapsed, compile_id, annotation
        )
        if self.records is not None:
            self.records.append(
                CompileRecord(
                    code,
                    capture.gm,
                    plan.describe() + [f"SHAPE {p}" for p in parts],
                    list(plan.globals_read),
                    annotation,
                    recompile_reasons=reasons,
                )
            )
        guarded = _C.GuardedCode(
            new_code, guard_manager, compile_id=compile_id, trace_annotation=annotation
        )
        return _C.CallbackResult(guarded, strategy=COMPILED, apply_to_code=True)

    def _run_backend(self, code: types.CodeType, capture: Capture) -> Callable[..., Any]:
        example_inputs: Sequence[Any] = (
            capture.fake_inputs if capture.is_dynamic else capture.args.tensors
        )
        logs.compile_log.info("compiling %s with backend %s", _where(code), self.backend_name)
        timer = threading.Timer(
            _SLOW_COMPILE_SECONDS,
            lambda: logs.compile_log.warning(
                "still compiling %s with %s after %gs",
                _where(code),
                self.backend_name,
                _SLOW_COMPILE_SECONDS,
            ),
        )
        timer.daemon = True
        timer.start()
        try:
            compiled = self.backend(capture.gm, example_inputs)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:
            raise BackendCompileError(
                f"backend {self.backend_name!r} failed to compile {_where(code)}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        finally:
            timer.cancel()
        if not callable(compiled):
            raise BackendCompileError(
                f"backend {self.backend_name!r} returned {type(compiled).__name__}, not a callable"
            )
        return compiled


def _lift_module_state(capture: Capture, plan: Any) -> tuple[Capture, list[str], set[int]]:
    from ..cache import lifting

    lifted = lifting.lift(capture, plan, select=guard_plan.is_module_state_source)
    return lifted.capture, lifted.extra_exprs, lifted.lifted_ids


def _recompile_reasons(
    first_entry: _C.CacheEntry | None, f_locals: dict[str, Any], f_globals: dict[str, Any]
) -> list[str]:
    if first_entry is None:
        return []
    try:
        info = first_entry.guard_manager.check_verbose(f_locals, f_globals)
    except Exception as exc:
        return [f"guard check raised {type(exc).__name__}: {exc}"]
    return list(info.failures) or ["guards failed"]


def _where(code: types.CodeType) -> str:
    return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
