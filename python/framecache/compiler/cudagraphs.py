"""CUDA graphs for compiled entries: record once, replay on every hit.

``framecache.compile(..., cudagraphs=True)`` (or ``mode="reduce-overhead"``) wraps the
backend's compiled callable of each cache entry in a *graphed* function:

* The first call records the callable into a ``torch.cuda.CUDAGraph``: the frame's own
  tensor inputs are copied into static input buffers owned by the recording; module state
  passed as inputs (parameters and buffers lifted by the disk cache) and tensors the graph
  holds as constants are read where they live. The callable runs twice on a side stream
  first (lazy initialisation, autotuning and cuBLAS workspaces happen outside the capture,
  as torch does), then is captured into a memory pool shared by all recordings of the
  device (``torch.cuda.graph_pool_handle()``).
* A hit then runs ``copy_`` of each input whose address is not the static buffer's, one
  ``replay()``, and a ``clone()`` of each output, so that results kept by the caller are
  never overwritten by a later replay (``cudagraph_clone_outputs=False`` hands back the
  static outputs themselves: cheaper, but the next replay overwrites them).
* Guards choose the cache entry, hence the recording: the replay path re-checks nothing
  that they checked. What they do not check is where module state lives: each lifted
  input and each graph constant is compared with the address recorded, and a tensor that
  moved (``param.data = ...``, ``module.to()``) makes the entry record again (after
  ``_MAX_RERECORDS`` moves it runs without graphs): a graph never reads memory that is
  no longer the tensor's.
* A dynamic-shape entry records once per distinct input size, up to
  ``MAX_SIZES_PER_ENTRY``; sizes past the bound run the compiled callable without graphs.

An entry runs without graphs, with the reason in ``stats(fn).cudagraph_reasons``, in
``explain`` and in the compile log, when an input or constant is not a CUDA tensor, the
tensors span several devices, autograd would record (grad mode on and a tensor requiring
grad: replay is inference only, as its backward could not be recorded), the graph mutates
one of its inputs, or an output aliases an input or another output.

Memory: recordings of one device share one pool; ``framecache.reset()`` drops every
recording (graphs, static buffers and the pools), after which the memory is the caching
allocator's again. Sharing a pool assumes recordings do not replay concurrently on
different streams (torch's assumption for ``make_graphed_callables`` too).
"""

from __future__ import annotations

import logging
import types
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import torch

from . import stats as stats_mod

__all__ = [
    "MAX_SIZES_PER_ENTRY",
    "graphed",
    "refusal",
    "release_all",
]

log = logging.getLogger("framecache.cudagraphs")

MAX_SIZES_PER_ENTRY = 8
_MAX_RERECORDS = 4
_WARMUP_RUNS = 2
_POOLS: dict[int, Any] = {}
_LIVE: weakref.WeakSet[_Runner] = weakref.WeakSet()


def _pool(device: torch.device) -> Any:
    index = device.index if device.index is not None else torch.cuda.current_device()
    pool = _POOLS.get(index)
    if pool is None:
        pool = _POOLS[index] = torch.cuda.graph_pool_handle()
    return pool


def release_all() -> None:
    """Drop every recording and the shared pools (called by ``framecache.reset()``)."""
    for runner in list(_LIVE):
        runner.release()
    _POOLS.clear()


# -- deciding ------------------------------------------------------------------------------


def _mutated_inputs(gm: torch.fx.GraphModule) -> list[int]:
    """Indices of graph inputs that an operator of ``gm`` writes to (directly or via a view)."""
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    root: dict[torch.fx.Node, torch.fx.Node] = {p: p for p in placeholders}
    mutated: set[torch.fx.Node] = set()
    for node in gm.graph.nodes:
        if node.op != "call_function":
            continue
        schema = getattr(node.target, "_schema", None)
        if schema is None:
            continue
        args = list(node.args) + [
            node.kwargs.get(a.name) for a in schema.arguments[len(node.args) :]
        ]
        for value, argument in zip(args, schema.arguments, strict=False):
            info = argument.alias_info
            if info is None or not isinstance(value, torch.fx.Node) or value not in root:
                continue
            if info.is_write:
                mutated.add(root[value])
            elif any(
                r.alias_info is not None and not r.alias_info.is_write for r in schema.returns
            ):
                # A view of an input: writes through it write the input.
                root[node] = root[value]
    return [i for i, p in enumerate(placeholders) if p in mutated]


def _graph_constants(gm: torch.fx.GraphModule | None) -> list[torch.Tensor]:
    if gm is None:
        return []
    found = []
    for node in gm.graph.nodes:
        if node.op != "get_attr":
            continue
        value: Any = gm
        for part in str(node.target).split("."):
            value = getattr(value, part, None)
        if isinstance(value, torch.Tensor):
            found.append(value)
    return found


def refusal(
    inputs: Sequence[Any],
    labels: Sequence[str],
    gm: torch.fx.GraphModule | None,
) -> str | None:
    """Why an entry with these example inputs and graph cannot be recorded (None: it can)."""
    devices: set[torch.device] = set()
    constants = _graph_constants(gm)
    grad = torch.is_grad_enabled()
    for value, label in list(zip(inputs, labels, strict=True)) + [
        (c, "a graph constant") for c in constants
    ]:
        if not isinstance(value, torch.Tensor):
            continue
        if value.device.type != "cuda":
            return f"{label} is a {value.device.type.upper()} tensor"
        devices.add(value.device)
        if grad and value.requires_grad:
            return (
                f"autograd would record ({label} requires grad and grad mode is on): CUDA graph "
                "replay is inference only here; run under torch.no_grad() or "
                "torch.inference_mode()"
            )
    if not devices:
        return "no CUDA tensor among the inputs"
    if len(devices) > 1:
        return "tensors on several devices: " + ", ".join(sorted(str(d) for d in devices))
    if gm is not None:
        mutated = _mutated_inputs(gm)
        if mutated:
            return "the graph mutates " + ", ".join(labels[i] for i in mutated if i < len(labels))
    return None


def capture_target(compiled: Callable[..., Any]) -> Callable[..., Any] | None:
    """The callable to record for ``compiled``, or None when none can be recorded.

    A backend's callable may carry ``capture_target``: cache/artifact.py's DeferredAoti
    names inductor's own callable (its package may replace what it runs, and a package's
    runner cannot be captured), a loaded package names None.
    """
    return getattr(compiled, "capture_target", compiled)


def graphed(
    compiled: Callable[..., Any],
    *,
    inputs: Sequence[Any],
    labels: Sequence[str],
    num_frame_inputs: int,
    gm: torch.fx.GraphModule | None,
    dynamic: bool,
    clone_outputs: bool,
    counters: stats_mod.CodeStats,
) -> tuple[Callable[..., Any], str]:
    """The callable to run in place of ``compiled``, and a note for logs and explain.

    ``inputs`` are the example values of the callable's arguments: the first
    ``num_frame_inputs`` come from the frame (copied into static buffers), the rest are
    module state lifted into inputs (read in place). ``gm`` is the compiled graph when
    known (to find mutated inputs and constants).
    """
    reason = refusal(inputs, labels, gm)
    if reason is None and capture_target(compiled) is None:
        reason = "the compiled code is an AOTInductor package, whose runner a capture cannot take"
    if reason is not None:
        _refused(counters, reason)
        return compiled, f"no cudagraphs: {reason}"
    runner = _Runner(
        compiled,
        num_frame_inputs=num_frame_inputs,
        num_inputs=len(inputs),
        labels=list(labels),
        constants=_graph_constants(gm),
        dynamic=dynamic,
        clone_outputs=clone_outputs,
        counters=counters,
        check_mutation=gm is None,
    )
    note = "cudagraphs" + (f" per size (up to {MAX_SIZES_PER_ENTRY})" if dynamic else "")
    return runner.function, note


def _refused(counters: stats_mod.CodeStats, reason: str) -> None:
    if len(counters.cudagraph_reasons) < 64:
        counters.cudagraph_reasons.append(reason)
    log.info("%s runs without CUDA graphs: %s", counters.name, reason)


# -- recording and replaying ---------------------------------------------------------------


class _NotGraphable(Exception):
    """Raised while recording when the entry turns out not to be graphable."""


def _storages(tensors: Sequence[Any]) -> list[tuple[int, int]]:
    return [
        (t.untyped_storage().data_ptr(), t.untyped_storage().nbytes())
        for t in tensors
        if isinstance(t, torch.Tensor)
    ]


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[0] + b[1] and b[0] < a[0] + a[1] and a[1] > 0 and b[1] > 0


class _Recording:
    """One CUDA graph with its static inputs and outputs, and its generated replay code."""

    def __init__(self, runner: _Runner, args: Sequence[Any]) -> None:
        # Guards key on grad mode, not on inference mode: a recording made under
        # torch.inference_mode() replays under torch.no_grad() too, so its buffers must be
        # normal tensors (an inference tensor refuses copy_ outside inference mode).
        grad = torch.is_grad_enabled()
        with torch.inference_mode(False), torch.set_grad_enabled(grad):
            self._record(runner, args)

    def _record(self, runner: _Runner, args: Sequence[Any]) -> None:
        n = runner.num_frame_inputs
        frame = args[:n]
        self.static_inputs = [
            torch.empty_strided(a.size(), a.stride(), dtype=a.dtype, device=a.device) for a in frame
        ]
        for buffer, value in zip(self.static_inputs, frame, strict=True):
            buffer.copy_(value)
        inputs = list(self.static_inputs) + list(args[n:])
        device = self.static_inputs[0].device if self.static_inputs else args[n].device
        snapshot = [t.clone() for t in inputs] if runner.check_mutation else None
        current = torch.cuda.current_stream(device)
        side = torch.cuda.Stream(device)
        side.wait_stream(current)
        with torch.cuda.stream(side):
            for _ in range(_WARMUP_RUNS):
                runner.target(*inputs)
        current.wait_stream(side)
        if snapshot is not None:
            for i, (before, after) in enumerate(zip(snapshot, inputs, strict=True)):
                if not _same_bits(before, after):
                    raise _NotGraphable(f"the compiled code mutates {runner.labels[i]}")
            for buffer, value in zip(self.static_inputs, frame, strict=True):
                buffer.copy_(value)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: CUDA calls of other threads (a package handed back and loaded by
        # cache/builds.py, the user's own) neither break this capture nor fail.
        with torch.cuda.graph(self.graph, pool=_pool(device), capture_error_mode="thread_local"):
            outputs = runner.target(*inputs)
        self.static_outputs = list(outputs)
        outs = [t for t in self.static_outputs if isinstance(t, torch.Tensor)]
        held = _storages(inputs) + _storages(runner.constants)
        out_storages = _storages(outs)
        for i, s in enumerate(out_storages):
            if any(_overlaps(s, h) for h in held):
                raise _NotGraphable("an output aliases an input or a constant")
            if any(_overlaps(s, o) for o in out_storages[:i]):
                raise _NotGraphable("two outputs share memory")
        self.input_ptrs = [t.data_ptr() for t in self.static_inputs]
        self.state_ptrs = [a.data_ptr() for a in args[n:]]
        self.constant_ptrs = [c.data_ptr() for c in runner.constants]
        self.body, self.names = self._generate(runner)
        scope = dict(self.names)
        source = f"def replay({runner.params}):\n" + "".join(f"    {x}\n" for x in self.body)
        exec(compile(source, "<framecache cudagraph replay>", "exec"), scope)
        self.replay: Callable[..., Any] = scope["replay"]

    def _generate(self, runner: _Runner) -> tuple[list[str], dict[str, Any]]:
        """The replay code: copies, address checks of module state, replay, clones."""
        n = runner.num_frame_inputs
        names: dict[str, Any] = {"_replay": self.graph.replay, "_moved": runner.moved}
        lines = []
        for i in range(n):
            names[f"S{i}"] = self.static_inputs[i]
            lines.append(f"if a{i}.data_ptr() != {self.input_ptrs[i]}: S{i}.copy_(a{i})")
        moved = [f"a{n + i}.data_ptr() != {p}" for i, p in enumerate(self.state_ptrs)]
        for i, (constant, p) in enumerate(zip(runner.constants, self.constant_ptrs, strict=True)):
            names[f"C{i}"] = constant
            moved.append(f"C{i}.data_ptr() != {p}")
        if moved:
            lines.append(f"if {' or '.join(moved)}: return _moved({runner.params})")
        lines.append("_replay()")
        outs = []
        for i, value in enumerate(self.static_outputs):
            names[f"O{i}"] = value
            if isinstance(value, torch.Tensor):
                outs.append(f"O{i}.clone()" if runner.clone_outputs else f"O{i}")
            else:
                outs.append(f"O{i}")
        lines.append(f"return ({', '.join(outs)}{',' if len(outs) == 1 else ''})")
        return lines, names


def _same_bits(a: torch.Tensor, b: torch.Tensor) -> bool:
    if a.numel() == 0:
        return True
    bits_a = a.detach().reshape(-1).contiguous().view(torch.uint8)
    bits_b = b.detach().reshape(-1).contiguous().view(torch.uint8)
    return bool(torch.equal(bits_a, bits_b))


class _Runner:
    """The graphed function of one cache entry, and its recordings.

    ``function`` is the object the entry's code calls. Its ``__code__`` is swapped as the
    state changes: first *record*, then the recording's own replay code (static shapes),
    or a lookup by input sizes (dynamic shapes), or the plain compiled callable once
    graphs are given up for this entry.
    """

    def __init__(
        self,
        compiled: Callable[..., Any],
        *,
        num_frame_inputs: int,
        num_inputs: int,
        labels: list[str],
        constants: list[torch.Tensor],
        dynamic: bool,
        clone_outputs: bool,
        counters: stats_mod.CodeStats,
        check_mutation: bool,
    ) -> None:
        self.compiled = compiled
        # What warm-up and capture run: a backend's callable may name another one that a
        # capture can take (capture_target; see capture_target() below).
        self.target = capture_target(compiled) or compiled
        self.num_frame_inputs = num_frame_inputs
        self.num_inputs = num_inputs
        self.labels = labels
        self.constants = constants
        self.dynamic = dynamic
        self.clone_outputs = clone_outputs
        self.counters = counters
        self.check_mutation = check_mutation
        self.recordings: dict[tuple[Any, ...], _Recording] = {}
        self.rerecords = 0
        self.given_up = False
        self.params = ", ".join(f"a{i}" for i in range(num_inputs))
        self._sizes: dict[tuple[Any, ...], Callable[..., Any]] = {}
        self._scope: dict[str, Any] = {}
        exec(
            compile(f"def graphed({self.params}):\n    pass\n", "<framecache cudagraph>", "exec"),
            self._scope,
        )
        self.function: Callable[..., Any] = self._scope["graphed"]
        self._install_record()
        _LIVE.add(self)

    def _set_code(self, body: Sequence[str], **names: Any) -> None:
        """Give ``function`` a new body; the names it reads go into its own globals."""
        source = f"def graphed({self.params}):\n" + "".join(f"    {x}\n" for x in body)
        self._scope.clear()
        self._scope.update(names)
        module = compile(source, "<framecache cudagraph>", "exec")
        code = next(c for c in module.co_consts if isinstance(c, types.CodeType))
        self.function.__code__ = code

    def _install_record(self) -> None:
        self._set_code([f"return _record({self.params})"], _record=self.record)

    def _install_plain(self) -> None:
        self._set_code([f"return _compiled({self.params})"], _compiled=self.compiled)

    def _key(self, args: Sequence[Any]) -> tuple[Any, ...]:
        frame = args[: self.num_frame_inputs]
        return tuple((tuple(a.shape), a.stride()) for a in frame)

    def record(self, *args: Any) -> Any:
        """Record for these inputs (first call, a new size, or moved module state)."""
        if self.given_up:
            return self.compiled(*args)
        if self.dynamic and len(self.recordings) >= MAX_SIZES_PER_ENTRY:
            reason = (
                f"more than {MAX_SIZES_PER_ENTRY} input sizes for a dynamic-shape entry: "
                "sizes past the bound run without graphs"
            )
            if reason not in self.counters.cudagraph_reasons:
                _refused(self.counters, reason)
            return self.compiled(*args)
        try:
            recording = _Recording(self, args)
        except _NotGraphable as exc:
            self._give_up(str(exc))
            return self.compiled(*args)
        except (KeyboardInterrupt, SystemExit):
            raise
        except Exception as exc:  # e.g. an operation that a capture does not allow
            torch.cuda.synchronize()
            text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
            self._give_up(f"recording failed: {type(exc).__name__}: {text}")
            return self.compiled(*args)
        self.counters.cudagraph_recordings += 1
        if self.dynamic:
            key = self._key(args)
            self.recordings[key] = recording
            self._sizes[key] = recording.replay
            parts = [f"(tuple(a{i}.shape), a{i}.stride())" for i in range(self.num_frame_inputs)]
            size_key = ", ".join(parts) + ("," if len(parts) == 1 else "")
            self._set_code(
                [f"return _sizes.get(({size_key}), _record)({self.params})"],
                _sizes=self._sizes,
                _record=self.record,
            )
        else:
            # The replay code becomes the function's own body: one frame per hit.
            self.recordings = {(): recording}
            self._set_code(recording.body, **recording.names)
        return recording.replay(*args)

    def moved(self, *args: Any) -> Any:
        """Module state or a graph constant moved since recording: record again."""
        self.rerecords += 1
        if self.rerecords > _MAX_RERECORDS:
            self._give_up(
                f"module state moved in memory more than {_MAX_RERECORDS} times since recording"
            )
            return self.compiled(*args)
        log.info("%s: module state moved; recording its CUDA graph again", self.counters.name)
        if self.dynamic:
            self.recordings.pop(self._key(args), None)
            self._sizes.pop(self._key(args), None)
        else:
            self.recordings.clear()
        return self.record(*args)

    def _give_up(self, reason: str) -> None:
        self.given_up = True
        self.recordings.clear()
        _refused(self.counters, reason)
        self._install_plain()

    def release(self) -> None:
        """Drop the recordings (framecache.reset()); a later call records again."""
        self.recordings.clear()
        self._sizes.clear()
        if not self.given_up:
            self._install_record()
