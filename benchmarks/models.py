"""The model zoo: framecache.compile against torch.compile on real models, in one process.

For every model of ``zoo_models.MODELS`` (torchvision, timm and Hugging Face transformers
models built from configs with random weights; nothing is downloaded) and every backend
asked for, inference runs under ``torch.no_grad()`` on small seeded inputs; the training
step (``zoo_models.training_step``: forward, cross-entropy loss, backward) runs with
gradients. Per (model, backend) it reports, for framecache.compile and torch.compile side
by side:

* ``graphs``: graphs handed to the backend; ``not_captured``: frames framecache ran
  without compiling, with the compiler's reasons (the records explain() reads), and
  torch.compile's graph breaks with dynamo's reasons;
* ``max_abs_diff``: the largest absolute difference from eager over the outputs (for the
  training step: the loss and every parameter's gradient), and whether
  ``torch.testing.assert_close`` accepts them (``correct``);
* ``cold_s``: wall seconds of the first call (capture, guards, backend compile, run), the
  median of ``--cold-repeats`` samples (``cold_samples``; the later ones on fresh copies of
  the model with both compilers reset, alternating which compiler goes first, and their
  background builds stopped rather than waited for);
  for framecache's inductor, ``background_build_s`` is the time its AOTInductor package
  took to build after the first call had returned (the run waits for it before going on);
  torch's and framecache's compile caches point at fresh directories,
  ``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1``, and each compiler's first call gets an inductor
  cache directory and in-process code caches of its own (else the second compiler reuses
  the first one's kernels), so every compile is cold;
* ``us``: steady-state µs per call, the median over ``--repeats`` interleaved samples
  (eager, framecache, torch.compile, in alternating order), each sample a loop of as many
  calls as fill ``--sample-ms`` (CUDA: synchronized before and after each sample), after
  12 settling calls of each (calls after the cold one may still compile);
* ``graph_us``: µs per call of the backend's compiled graph(s) alone, called directly
  with the inputs the backend was given, and ``overhead_us = us - graph_us``, the hit
  overhead over the compiled graph;
* ``speedup``: torch.compile's ``us`` over framecache's (>= 1: framecache is at least as
  fast), and ``cold_ratio``: torch.compile's cold seconds over framecache's.

Backends: any torch.compile backend name (``eager``, ``inductor``, ...), and
``cudagraphs``: framecache ``backend="inductor", cudagraphs=True`` against torch.compile
``mode="reduce-overhead"`` (inductor with ``triton.cudagraphs``). On CPU tensors neither
records a graph (framecache's ``not_captured`` column does not list that: its reason is in
``stats().cudagraph_reasons``, reported here as ``cudagraph_reasons``); the training step
runs without framecache's graphs (replay is inference only) while torch records its
training graphs. ``graph_us`` is not measured for ``cudagraphs``: the recorded graph is
not a callable of its own.

``torch._dynamo.reset()`` and ``framecache.reset()`` run between models. A model whose
compile raises is reported with the error and the run goes on.

Run (JSON on stdout, or to ``--json PATH``; a table on stderr)::

    PYTHONPATH=build/dev/pkg python benchmarks/models.py [--device cpu|cuda]
        [--models resnet18,hf_bert,...] [--backends eager,inductor,cudagraphs] [--repeats 11]
        [--cold-repeats 1] [--cold-only] [--threads N] [--no-training] [--beyond] [--json PATH]

``--list`` names the models; ``--beyond`` runs the models beyond the zoo instead
(``zoo_models.BEYOND``: more torchvision, timm and transformers models, the decoders with
their default ``use_cache=True``). See benchmarks/README.md ("models.py") for torchvision on a
CPU build of torch.
"""

from __future__ import annotations

import argparse
import contextlib
import copy
import datetime
import json
import os
import platform
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

# Every compile is cold: set before torch's inductor reads its config.
os.environ.setdefault("TORCHINDUCTOR_FORCE_DISABLE_CACHES", "1")
_SCRATCH = tempfile.mkdtemp(prefix="framecache-models-")
os.environ.setdefault("TORCHINDUCTOR_CACHE_DIR", os.path.join(_SCRATCH, "inductor"))
os.environ.setdefault("FRAMECACHE_CACHE_DIR", os.path.join(_SCRATCH, "framecache"))
# inductor's compile workers stay up between compiles (see _warm_imports).
os.environ.setdefault("TORCHINDUCTOR_QUIESCE_ASYNC_COMPILE_POOL", "0")

import torch  # noqa: E402
import torch._dynamo  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import framecache  # noqa: E402
import zoo_models  # noqa: E402
from framecache.cache import cancel_builds, wait_for_builds  # noqa: E402

TRAINING_NAME = f"{zoo_models.TRAINING}_train"


class Recorder:
    """Wraps a backend: keeps each compiled graph's callable and the inputs it was given."""

    def __init__(self, backend: Callable[..., Any]) -> None:
        self.backend = backend
        self.graphs: list[tuple[Callable[..., Any], list[Any]]] = []

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
        compiled = self.backend(gm, example_inputs)
        self.graphs.append((compiled, list(example_inputs)))
        return compiled


CUDAGRAPHS = "cudagraphs"


def _torch_backend(name: str) -> Callable[..., Any]:
    """torch.compile's backend of that name, as the callable torch.compile would use
    (``cudagraphs``: inductor as ``mode="reduce-overhead"`` configures it)."""
    if name in ("inductor", CUDAGRAPHS):
        from torch._inductor.compile_fx import compile_fx

        if name == "inductor":
            return compile_fx

        def reduce_overhead(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
            return compile_fx(gm, example_inputs, config_patches={"triton.cudagraphs": True})

        return reduce_overhead
    return torch._dynamo.lookup_backend(name)


class _StepMarked:
    """torch.compile's reduce-overhead model, each call a new step of its CUDA graph trees.

    Without ``cudagraph_mark_step_begin()`` torch cannot tell a training step's next
    forward from the backward's continuation, and reading the loss raises "accessing
    tensor output of CUDAGraphs that has been overwritten" (torch's own advice).
    """

    def __init__(self, compiled: Any) -> None:
        self.compiled = compiled
        self._orig_mod = compiled._orig_mod

    def __call__(self, *args: Any) -> Any:
        torch.compiler.cudagraph_mark_step_begin()
        return self.compiled(*args)


def _framecache_options(name: str) -> dict[str, Any]:
    """framecache.compile's keyword arguments for a zoo backend name."""
    if name == CUDAGRAPHS:
        return {"backend": "inductor", "cudagraphs": True}
    return {"backend": name}


def _fresh_inductor_state() -> Any:
    """An empty inductor cache directory and empty in-process compile caches.

    TORCHINDUCTOR_FORCE_DISABLE_CACHES turns off the FX graph and AOTAutograd caches, not
    the C++ and Python code caches keyed by a kernel's source: the second compiler of a
    row found the first one's kernels already built (in memory and in the directory) and
    looked 2-3x faster (GPT-2 inductor: 18.6 s first, 7.2 s second, whichever went first).
    Each cold call gets its own directory (kept: the loaded code may read it later).
    """
    from torch._inductor import utils

    fresh = getattr(utils, "fresh_cache", None) or utils.fresh_inductor_cache
    return fresh(delete=False)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


@contextlib.contextmanager
def _grad(training: bool) -> Iterator[None]:
    with torch.enable_grad() if training else torch.no_grad():
        yield


def _run(fn: Callable[..., Any], args: tuple[Any, ...], training: bool) -> list[torch.Tensor]:
    """Outputs of one call (training: the loss, then every parameter's gradient)."""
    with _grad(training):
        out = fn(*args)
        if not training:
            return [t.detach() for t in zoo_models.output_tensors(out)]
        module = getattr(fn, "_orig_mod", fn)
        module.zero_grad(set_to_none=True)
        out.backward()
        grads = [p.grad for p in module.parameters() if p.requires_grad]
        missing = [n for n, p in module.named_parameters() if p.requires_grad and p.grad is None]
        if missing:
            raise AssertionError(f"no gradient for {missing[:3]}")
        return [out.detach()] + [g.detach().clone() for g in grads]


def _compare(expected: list[torch.Tensor], got: list[torch.Tensor]) -> tuple[float, str | None]:
    """(largest absolute difference, assert_close's complaint or None)."""
    if len(expected) != len(got):
        return float("inf"), f"{len(got)} tensors, expected {len(expected)}"
    diff = max(
        (float((a.float() - b.float()).abs().max()) for a, b in zip(expected, got, strict=True)),
        default=0.0,
    )
    try:
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a)
    except AssertionError as exc:
        return diff, str(exc).splitlines()[0]
    return diff, None


def _timed_loop(
    fn: Callable[..., Any], args: tuple[Any, ...], calls: int, training: bool, device: torch.device
) -> float:
    """µs per call of ``calls`` calls (training: forward + backward)."""
    with _grad(training):
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            out = fn(*args)
            if training:
                out.backward()
        _sync(device)
    return (time.perf_counter() - start) / calls * 1e6


def _graph_loop(
    graphs: list[tuple[Callable[..., Any], list[Any]]],
    calls: int,
    training: bool,
    device: torch.device,
) -> float:
    """µs per call of the compiled graphs alone, each called once per call."""
    with _grad(training):
        _sync(device)
        start = time.perf_counter()
        for _ in range(calls):
            for compiled, inputs in graphs:
                compiled(*inputs)
        _sync(device)
    return (time.perf_counter() - start) / calls * 1e6


def _calls_for(fn: Callable[[int], float], sample_ms: float) -> int:
    """Calls per sample so that one sample lasts about ``sample_ms``."""
    single = fn(1)
    return max(1, min(10_000, int(sample_ms * 1e3 / max(single, 1.0))))


def _real_inputs(graphs: list[tuple[Callable[..., Any], list[Any]]]) -> bool:
    return all(
        not isinstance(t, torch._subclasses.FakeTensor) for _, inputs in graphs for t in inputs
    )


def _torch_breaks() -> list[str]:
    from torch._dynamo.utils import counters

    return [f"{reason} (x{n})" for reason, n in counters["graph_break"].items()]


def bench_one(
    name: str,
    backend: str,
    device: torch.device,
    repeats: int,
    sample_ms: float,
    cold_repeats: int = 1,
    cold_only: bool = False,
) -> dict[str, Any]:
    """Every figure of one (model, backend) pair; see the module docstring. ``cold_only``:
    no steady-state figures, and framecache's background builds are stopped."""
    training = name == TRAINING_NAME
    if training:
        model, args = zoo_models.training_step(device)
    else:
        model, args = {**zoo_models.MODELS, **zoo_models.BEYOND}[name].build(device)
    eager = model
    fc_model, tc_model = copy.deepcopy(model), copy.deepcopy(model)
    expected = _run(eager, args, training)

    framecache.reset()
    torch._dynamo.reset()
    from torch._dynamo.utils import counters

    counters.clear()
    options = _framecache_options(backend)
    fc, records = zoo_models.compile_recorded(fc_model, **options)
    context = fc._framecache_context
    fc_recorder = Recorder(context.backend)
    context.backend = fc_recorder
    tc_recorder = Recorder(_torch_backend(backend))
    tc = torch.compile(tc_model, backend=tc_recorder)
    if backend == CUDAGRAPHS:
        tc = _StepMarked(tc)

    row: dict[str, Any] = {"model": name, "backend": backend, "training": training}
    for label, fn in (("framecache", fc), ("torch.compile", tc)):
        with _fresh_inductor_state():
            _sync(device)
            start = time.perf_counter()
            got = _run(fn, args, training)
            _sync(device)
            cold = time.perf_counter() - start
            # framecache's AOTInductor package is built after the first call returns, in
            # a process of its own (cache/builds.py): let it finish before torch.compile's
            # cold call, so that the two do not share the cores, and report its seconds.
            waited = time.perf_counter()
            built = True
            if label == "framecache" and cold_only:
                cancel_builds()
            elif label == "framecache":
                built = wait_for_builds()
            background = time.perf_counter() - waited
        diff, complaint = _compare(expected, got)
        row[label] = {"cold_s": cold, "max_abs_diff": diff, "correct": complaint is None}
        if label == "framecache" and not cold_only:
            row[label]["background_build_s"] = background
            row[label]["background_build_ok"] = built
        if complaint is not None:
            row[label]["mismatch"] = complaint
    # A second call checks the hit path too.
    for label, fn in (("framecache", fc), ("torch.compile", tc)):
        diff, complaint = _compare(expected, _run(fn, args, training))
        row[label]["max_abs_diff"] = max(row[label]["max_abs_diff"], diff)
        if complaint is not None:
            row[label]["correct"] = False
            row[label].setdefault("mismatch", complaint)
    row["framecache"]["graphs"] = len(fc_recorder.graphs)
    row["framecache"]["not_captured"] = zoo_models.not_captured(records)
    if options.get("cudagraphs"):
        # Every frame the compiler was asked about (a model whose top frame falls back has
        # its graphs in the callees' entries).
        codes = {id(r.code): r.code for r in records}.values()
        every = [framecache.stats(code) for code in codes]
        row["framecache"]["cudagraph_recordings"] = sum(s.cudagraph_recordings for s in every)
        row["framecache"]["cudagraph_reasons"] = sorted(
            {reason for s in every for reason in s.cudagraph_reasons}
        )
    row["torch.compile"]["graphs"] = len(tc_recorder.graphs)
    row["torch.compile"]["not_captured"] = _torch_breaks()

    if not cold_only:
        _steady(
            row,
            eager,
            fc,
            tc,
            fc_recorder,
            tc_recorder,
            args,
            training,
            device,
            backend,
            repeats,
            sample_ms,
        )
    _more_cold_samples(row, model, args, backend, device, training, cold_repeats)
    return row


_SETTLING_CALLS = 12


def _steady(
    row: dict[str, Any],
    eager: Any,
    fc: Any,
    tc: Any,
    fc_recorder: Recorder,
    tc_recorder: Recorder,
    args: Any,
    training: bool,
    device: torch.device,
    backend: str,
    repeats: int,
    sample_ms: float,
) -> None:
    """The steady-state figures of a row: µs per call of each, and of the graphs alone."""
    runners: dict[str, Callable[[int], float]] = {
        "eager": lambda n: _timed_loop(eager, args, n, training, device),
        "framecache": lambda n: _timed_loop(fc, args, n, training, device),
        "torch.compile": lambda n: _timed_loop(tc, args, n, training, device),
    }
    graph_runners: dict[str, Callable[[int], float]] = {}
    # A training graph's backward runs separately: no single graph call; a CUDA-graph
    # replay is not the recorded callable.
    if not training and backend != CUDAGRAPHS:
        for label, rec in (("framecache", fc_recorder), ("torch.compile", tc_recorder)):
            if rec.graphs and _real_inputs(rec.graphs):
                graph_runners[label] = lambda n, g=rec.graphs: _graph_loop(g, n, training, device)
    every = {**runners, **{f"{k} graph": v for k, v in graph_runners.items()}}
    # Settling calls before any timing: the calls after the cold one may still compile
    # (either compiler; e.g. a frame handed a new cache object on every call compiles until
    # its recompile limit), and a sample that holds a compile is no steady state.
    for fn in runners.values():
        for _ in range(_SETTLING_CALLS):
            fn(1)
    calls = {k: _calls_for(fn, sample_ms) for k, fn in every.items()}
    samples: dict[str, list[float]] = {k: [] for k in every}
    for i in range(repeats):
        order = list(every.items())
        if i % 2:
            order.reverse()
        for key, fn in order:
            samples[key].append(fn(calls[key]))
    med = {k: statistics.median(v) for k, v in samples.items()}
    row["eager_us"] = med["eager"]
    for label in ("framecache", "torch.compile"):
        row[label]["us"] = med[label]
        if f"{label} graph" in med:
            row[label]["graph_us"] = med[f"{label} graph"]
            row[label]["overhead_us"] = med[label] - med[f"{label} graph"]
    row["speedup"] = med["torch.compile"] / med["framecache"]


def _more_cold_samples(
    row: dict[str, Any],
    model: torch.nn.Module,
    args: Any,
    backend: str,
    device: torch.device,
    training: bool,
    cold_repeats: int,
) -> None:
    """``cold_samples``, ``cold_s`` (their median) and ``cold_ratio`` of a row."""
    # More cold samples, each on fresh copies of the model with both compilers reset and
    # every cache empty, alternating which compiler goes first (the first sample above had
    # framecache first): one cold sample is one compile, noisy by 5-10 % here.
    for label in ("framecache", "torch.compile"):
        row[label]["cold_samples"] = [row[label]["cold_s"]]
    for i in range(1, cold_repeats):
        labels = ["torch.compile", "framecache"] if i % 2 else ["framecache", "torch.compile"]
        for label in labels:
            row[label]["cold_samples"].append(
                _cold_sample(label, model, args, backend, device, training)
            )
    for label in ("framecache", "torch.compile"):
        row[label]["cold_s"] = statistics.median(row[label]["cold_samples"])
    row["cold_ratio"] = row["torch.compile"]["cold_s"] / max(row["framecache"]["cold_s"], 1e-9)


def _cold_sample(
    label: str,
    model: torch.nn.Module,
    args: Any,
    backend: str,
    device: torch.device,
    training: bool,
) -> float:
    """Seconds of one cold first call of a fresh copy of ``model`` by one compiler."""
    framecache.reset()
    torch._dynamo.reset()
    fresh = copy.deepcopy(model)
    with tempfile.TemporaryDirectory(prefix="zoo-cold-") as cache_dir:
        if label == "framecache":
            fn: Any = framecache.compile(fresh, cache_dir=cache_dir, **_framecache_options(backend))
        else:
            fn = torch.compile(fresh, backend=_torch_backend(backend))
            if backend == CUDAGRAPHS:
                fn = _StepMarked(fn)
        with _fresh_inductor_state():
            _sync(device)
            start = time.perf_counter()
            _run(fn, args, training)
            _sync(device)
            cold = time.perf_counter() - start
            if label == "framecache":
                # This copy is thrown away: its AOTInductor package is not wanted, only
                # the cores it would take from the next sample.
                cancel_builds()
    return cold


class _Warmup(torch.nn.Module):
    """The layer kinds of the zoo in one tiny module: a conv, a batch norm, a layer norm,
    a linear layer, attention's softmax."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(8)
        self.norm = torch.nn.LayerNorm(8)
        self.linear = torch.nn.Linear(8, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.relu(self.bn(self.conv(x))).flatten(2).transpose(1, 2)
        y = self.linear(self.norm(y))
        return torch.softmax(y @ y.transpose(1, 2), dim=-1) @ y


def _warm_imports(device: torch.device, backends: list[str]) -> None:
    """Compile a tiny module once per runtime and backend: imports, the first use of cuDNN
    and cuBLAS, and the start of inductor's compile workers are not compile time.

    inductor compiles Triton kernels in this process until its worker pool is up (seconds
    after a first compile asks for it), so the pool is waited for here; the worker pool
    is also kept up between compiles (``TORCHINDUCTOR_QUIESCE_ASYNC_COMPILE_POOL=0``, set
    above), else a compile after a minute without one pays the pool's restart, and which
    compiler pays it depends on the order of the rows.
    """
    model = _Warmup().to(device).eval()
    x = torch.randn(2, 3, 8, 8, device=device)
    with torch.no_grad():
        for backend in backends:
            framecache.compile(copy.deepcopy(model), cache=False, **_framecache_options(backend))(x)
            torch.compile(copy.deepcopy(model), backend=_torch_backend(backend))(x)
    if any(b in ("inductor", CUDAGRAPHS) for b in backends):
        from torch._inductor.async_compile import AsyncCompile

        wait_ready = getattr(AsyncCompile, "wait_pool_ready", None)
        if wait_ready is not None:
            wait_ready()
    framecache.reset()
    torch._dynamo.reset()


def _table(rows: list[dict[str, Any]]) -> str:
    """A fixed-width table of the rows (µs, seconds, diffs, graphs/not captured)."""
    head = (
        f"{'model':<22} {'backend':<8} {'eager':>9} {'fc us':>9} {'tc us':>9} {'tc/fc':>6} "
        f"{'fc ovh':>8} {'tc ovh':>8} {'fc cold':>8} {'tc cold':>8} {'tc/fc':>6} {'fc bg':>6} "
        f"{'fc diff':>9} {'tc diff':>9} {'fc g/nc':>7} {'tc g/nc':>7}"
    )
    lines = [head]
    nan = float("nan")
    for r in rows:
        if "error" in r:
            lines.append(f"{r['model']:<22} {r['backend']:<8} ERROR {r['error']}")
            continue
        fc, tc = r["framecache"], r["torch.compile"]
        cells = [
            f"{r['model']:<22} {r['backend']:<8} {r.get('eager_us', nan):>9.1f}",
            f"{fc.get('us', nan):>9.1f} {tc.get('us', nan):>9.1f} {r.get('speedup', nan):>6.2f}",
            f"{fc.get('overhead_us', nan):>8.1f} {tc.get('overhead_us', nan):>8.1f}",
            f"{fc['cold_s']:>8.2f} {tc['cold_s']:>8.2f} {r['cold_ratio']:>6.2f}"
            f" {fc.get('background_build_s', nan):>6.1f}",
            f"{fc['max_abs_diff']:>9.2e} {tc['max_abs_diff']:>9.2e}",
            f"{fc['graphs']:>3}/{len(fc['not_captured']):<3}",
            f"{tc['graphs']:>3}/{len(tc['not_captured']):<3}",
        ]
        lines.append(" ".join(cells).replace(" nan", "  - "))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    names = [*zoo_models.MODELS, TRAINING_NAME]
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    parser.add_argument("--models", help="comma-separated names (default: all); see --list")
    parser.add_argument("--backends", default="eager,inductor")
    parser.add_argument("--repeats", type=int, default=11, help="interleaved samples (median)")
    parser.add_argument(
        "--cold-repeats",
        type=int,
        default=1,
        help="cold first calls per compiler (median; fresh model copies, caches and state)",
    )
    parser.add_argument("--sample-ms", type=float, default=50.0, help="length of one sample")
    parser.add_argument(
        "--threads", type=int, help="torch.set_num_threads (on a shared CPU, 1 avoids spinning)"
    )
    parser.add_argument("--no-training", action="store_true", help=f"leave out {TRAINING_NAME}")
    parser.add_argument("--json", help="write the results here instead of stdout")
    parser.add_argument(
        "--cold-only",
        action="store_true",
        help="cold figures only: no steady state, framecache's background builds stopped",
    )
    parser.add_argument("--list", action="store_true", help="list the models and exit")
    parser.add_argument(
        "--beyond",
        action="store_true",
        help="run the models beyond the zoo (zoo_models.BEYOND) instead of the zoo's",
    )
    args = parser.parse_args(argv)
    beyond = list(zoo_models.BEYOND)
    if args.list:
        print("\n".join(names))
        print("beyond the zoo: " + ", ".join(beyond))
        return 0
    default = beyond if args.beyond else names
    selected = args.models.split(",") if args.models else default
    names = [*names, *beyond]
    if args.no_training and TRAINING_NAME in selected:
        selected.remove(TRAINING_NAME)
    unknown = sorted(set(selected) - set(names))
    if unknown:
        parser.error(f"unknown models {unknown}; see --list")
    backends = args.backends.split(",")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch.cuda is not available")
    if device.type == "cuda":
        # Full fp32 on CUDA: with TF32 convolutions and matmuls, eager and a compiled graph
        # (which may pick other kernels) differ by ~1e-3, beyond assert_close's fp32
        # tolerances, for every compiler alike; "correct" would then say nothing.
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    # Models the dynamo recompile limit would cut short are not what is measured here.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

    _warm_imports(device, backends)
    rows = []
    for name in selected:
        for backend in backends:
            print(f"== {name} / {backend}", file=sys.stderr, flush=True)
            try:
                row = bench_one(
                    name,
                    backend,
                    device,
                    args.repeats,
                    args.sample_ms,
                    args.cold_repeats,
                    cold_only=args.cold_only,
                )
            except Exception as exc:  # one model failing does not end the run
                traceback.print_exc(file=sys.stderr)
                row = {"model": name, "backend": backend, "error": f"{type(exc).__name__}: {exc}"}
            rows.append(row)
            print(_table([row]).splitlines()[-1], file=sys.stderr, flush=True)
    report = {
        "benchmark": "models",
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
            "load_1min": os.getloadavg()[0],
            "python": sys.version.split()[0],
            "torch": torch.__version__,
            "device": str(device)
            + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""),
        },
        "repeats": args.repeats,
        "rows": rows,
    }
    print(_table(rows), file=sys.stderr)
    text = json.dumps(report, indent=2)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text + "\n")
    else:
        print(text)
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
