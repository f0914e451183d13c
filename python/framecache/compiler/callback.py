"""The cache-miss callback of framecache.compile: capture, compile, guard, cache."""

from __future__ import annotations

import inspect
import itertools
import os
import threading
import time
import types
import weakref
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

# Options tags (see options_tag): one small integer per distinct set of options that
# changes what is compiled. Tags are never reused; 0 is the untagged callbacks' tag.
_tags: dict[tuple[Any, ...], int] = {}
_tag_counter = itertools.count(1)
_tags_lock = threading.Lock()
_unweakrefable_backends: list[Any] = []


def options_tag(backend: Any, dynamic: bool | None, fullgraph: bool, *extra: Any) -> int:
    """The options tag of a framecache.compile options set.

    Entries compiled under one tag are looked up only under the same tag (a compare in
    C++, before any guard runs), so two wrappers of one function with different options
    never run each other's code, while wrappers with equal options share their entries.
    A backend given by name is keyed by its name, a callable by its identity: its key
    goes away with it (the tag is never given again). ``extra`` holds the other options
    that change what an entry runs (CUDA graphs, cloned outputs).
    """
    ident: tuple[Any, ...] = ("name", backend) if isinstance(backend, str) else ("id", id(backend))
    key = (ident, dynamic, fullgraph, *extra)
    with _tags_lock:
        tag = _tags.get(key)
        if tag is not None:
            return tag
        tag = _tags[key] = next(_tag_counter)
    if not isinstance(backend, str):
        try:
            weakref.finalize(backend, _tags.pop, key, None)
        except TypeError:  # not weakly referenceable: keep it, so its id stays its own
            _unweakrefable_backends.append(backend)
    return tag


def fresh_tag() -> int:
    """A tag no other options set has (explain's recording compiles share nothing)."""
    with _tags_lock:
        return next(_tag_counter)


def identity_locals(plan: guard_plan.GuardPlan) -> list[str]:
    """The frame locals whose identity ``plan`` pins (an ID_MATCH on ``L['self']``).

    The runtime counts a frame's recompiles among the entries made for the same objects.
    """
    names = []
    for guard in plan.guards:
        source = guard.source
        if guard.kind == "ID_MATCH" and len(source) == 1 and source[0][0] == "L":
            names.append(source[0][1])
    return list(dict.fromkeys(names))


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
    # With cudagraphs=True: "cudagraphs ..." or "no cudagraphs: <reason>".
    cudagraphs: str | None = None


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
        cudagraphs: bool = False,
        cudagraph_clone_outputs: bool = True,
    ) -> None:
        if dynamic not in (None, True, False):
            raise TypeError(f"dynamic must be None, True or False, got {dynamic!r}")
        if not isinstance(fullgraph, bool):
            raise TypeError(f"fullgraph must be a bool, got {type(fullgraph).__name__}")
        self.backend_name, self.backend = backends.resolve(backend)
        self.dynamic = dynamic
        self.fullgraph = fullgraph
        # The backend argument is kept so that its id, which keys a callable's options
        # tag (below), stays its own while this context lives.
        self._backend_arg = backend
        self.records: list[CompileRecord] | None = [] if record else None
        # explain()'s context: says what would happen and records no CUDA graph. Distinct
        # from ``records``, which a caller may also set to keep the compile records of a
        # context that runs for real (benchmarks/models.py does).
        self.explaining = record
        if not isinstance(cudagraphs, bool):
            raise TypeError(f"cudagraphs must be a bool, got {type(cudagraphs).__name__}")
        if not isinstance(cudagraph_clone_outputs, bool):
            raise TypeError(
                "cudagraph_clone_outputs must be a bool, "
                f"got {type(cudagraph_clone_outputs).__name__}"
            )
        self.cudagraphs = cudagraphs
        self.cudagraph_clone_outputs = cudagraph_clone_outputs
        # The options tag (read by _C.set_eval_frame and CompiledFunction): wrappers with
        # other options get other entries.
        self._framecache_tag = (
            fresh_tag()
            if record
            else options_tag(backend, dynamic, fullgraph, cudagraphs, cudagraph_clone_outputs)
        )
        # The disk cache (framecache/cache): None when off for this function.
        self.disk: Any = None
        if cache and not record:
            from ..cache import session

            self.disk = session.DiskCache(cache_dir, self.backend_name, None)
            if cudagraphs:
                self.disk.wrap_compiled = self._graphed
            if self.backend_name == "inductor" and cudagraphs:
                # inductor's own artifact (kernels a warm start loads): what it runs can be
                # recorded, an AOTInductor package's runner cannot (cache/artifact.py).
                from ..cache.artifact import inductor_standalone

                self.backend = inductor_standalone
            elif self.backend_name == "inductor":
                from ..cache.artifact import inductor_aoti

                self.backend = inductor_aoti  # an AOTInductor package a warm start loads

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
        if not self.fullgraph and _initialises_a_new_object(code, f_locals):
            raise Unsupported(_CONSTRUCTOR)
        args = split_arguments(code, f_locals)
        dims = dynamic.decide(args, frame_state, self.dynamic)
        pending = None
        if self.disk is not None:
            warm, pending = self.disk.lookup(
                code, f_locals, frame.f_globals, args, dims, self.backend, counters
            )
            if warm is not None:
                wrapper = codegen.wrapper_code(
                    code, warm.call_args, warm.compiled, warm.out_spec, exported=warm.exported
                )
                guarded = _C.GuardedCode(
                    wrapper.code,
                    warm.guard_manager,
                    compile_id=next(_compile_ids),
                    trace_annotation=warm.annotation,
                    export_locals=wrapper.export_locals,
                )
                return _C.CallbackResult(guarded, strategy=COMPILED, apply_to_code=True)
        if self.backend_name == "inductor":
            backends.wake_compile_workers()
        logs.compile_log.info(
            "capturing %s (dynamic: %s)", _where(code), dynamic.changed_dims_reason(dims) or "none"
        )
        capture = capture_frame(code, frame.f_globals, frame.closure, args, dims)
        if not self.fullgraph and not args.tensor_sources and not _has_operations(capture.gm):
            # A frame given no tensors that computes nothing on them (a config's
            # __getattribute__, a flag check, copy's helpers) gains nothing from cached
            # code: its entries would only be guard checks in place of a few lines of
            # Python, one per argument value, walked on every call. It runs as it is from
            # now on; the frames it calls are still compiled. (A frame given tensors may
            # pass them through on one call and compute on the next: it is cached.)
            raise Unsupported(_NO_OPERATIONS)
        plan = guard_plan.build_plan(capture, frame.closure)
        stored = self.disk.lift(capture, plan, counters) if pending is not None else None
        # Module parameters and buffers are graph inputs: one entry serves every
        # instance of a module class whose state has the same structure.
        from_frame = stored if stored is not None else _lift_module_state(capture, plan)
        compiled_capture, extra_args = from_frame.capture, from_frame.extra_exprs
        lifted = stored.lifted_ids if stored is not None else None
        held = from_frame.lifted_ids
        plan = guard_plan.relaxed(plan, held)
        # A DeferredAoti (inductor with the disk cache) runs inductor's compile until its
        # package, built after this call, comes back (cache/builds.py).
        compiled = self._run_backend(code, compiled_capture)
        if self.disk is not None and pending is not None and lifted is None:
            self.disk.package_only(compiled_capture.gm, compiled, counters)
        call_args = [sources.python_expr(s) for s in args.tensor_sources] + extra_args
        graph_note = None
        raw_compiled = compiled  # what the disk stores: not its CUDA-graph wrapper
        if self.cudagraphs:
            compiled, graph_note = self._graphed(
                compiled,
                call_args,
                args,
                frame.f_globals,
                f_locals,
                counters,
                compiled_capture.gm,
                capture.is_dynamic,
            )
        parts = shape_guards.shape_guard_code(capture)
        # The lifted inputs are the values the guards fetch to check them: the tree
        # exports them to the wrapper (not under shape guards, whose Python check has no
        # tree of its own for the runtime to take them from).
        # (A tensor read through two paths, tied weights, is exported once.)
        first_extra = len(call_args) - len(extra_args)
        exports: dict[Any, int] = {}
        if not parts:
            for k, source in enumerate(from_frame.extra_sources):
                exports.setdefault(source, first_extra + k)
        try:
            root = guard_plan.materialize(plan, list(exports))
        except (TypeError, ValueError) as exc:
            raise Unsupported(f"cannot build guards: {exc}") from exc
        wrapper = codegen.wrapper_code(
            code, call_args, compiled, capture.out_spec, exported=list(exports.values())
        )
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
                raw_compiled,
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
        if graph_note is not None:
            annotation += f"; {graph_note}"
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
                    cudagraphs=graph_note,
                )
            )
        guarded = _C.GuardedCode(
            wrapper.code,
            guard_manager,
            compile_id=compile_id,
            trace_annotation=annotation,
            identity_locals=identity_locals(plan),
            export_locals=wrapper.export_locals,
        )
        return _C.CallbackResult(guarded, strategy=COMPILED, apply_to_code=True)

    def _graphed(
        self,
        compiled: Callable[..., Any],
        call_args: Sequence[str],
        args: Any,
        f_globals: dict[str, Any],
        f_locals: dict[str, Any],
        counters: stats_mod.CodeStats,
        gm: torch.fx.GraphModule | None = None,
        is_dynamic: bool = False,
    ) -> tuple[Callable[..., Any], str]:
        """``compiled`` recorded into CUDA graphs on its first call (or why not)."""
        from . import cudagraphs

        n = len(args.tensors)
        inputs = list(args.tensors)
        if len(call_args) > n:
            # Module state lifted into inputs by the disk cache: expressions we wrote.
            scope = dict(f_globals)
            scope.update(f_locals)
            inputs += [eval(expr, scope) for expr in call_args[n:]]
        if self.explaining:  # explain(): say what would happen, record nothing
            reason = cudagraphs.refusal(inputs, list(call_args), gm)
            return compiled, "cudagraphs" if reason is None else f"no cudagraphs: {reason}"
        return cudagraphs.graphed(
            compiled,
            inputs=inputs,
            labels=list(call_args),
            num_frame_inputs=n,
            gm=gm,
            dynamic=is_dynamic,
            clone_outputs=self.cudagraph_clone_outputs,
            counters=counters,
        )

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
        except (KeyboardInterrupt, SystemExit, RecursionError):
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


def _lift_module_state(capture: Capture, plan: Any) -> Any:
    """The capture with its module parameters and buffers lifted (``lifting.Lifted``)."""
    from ..cache import lifting

    return lifting.lift(capture, plan, select=guard_plan.is_module_state_source)


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


_NO_OPERATIONS = "no tensor inputs and no tensor operations: the frame runs as it is"


_CONSTRUCTOR = (
    "a constructor: the object it initialises is new on every call, and an entry guarded "
    "on it would never run again"
)


def _initialises_a_new_object(code: types.CodeType, f_locals: dict[str, Any]) -> bool:
    """An ``__init__`` of an object other than a module (a transformers cache made in each
    forward): its guards would pin that object, which the next call replaces. Modules keep
    theirs: their entries are guarded on structure, not identity, and they are made once.
    """
    if code.co_name != "__init__" or not code.co_argcount:
        return False
    obj = f_locals.get(code.co_varnames[0])
    return obj is not None and not isinstance(obj, torch.nn.Module)


def _has_operations(gm: Any) -> bool:
    """Whether a captured graph calls any operator (else it only passes values through)."""
    return any(node.op == "call_function" for node in gm.graph.nodes)


def _where(code: types.CodeType) -> str:
    return f"{code.co_qualname} ({code.co_filename}:{code.co_firstlineno})"
