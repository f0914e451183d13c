"""framecache.compile vs torch.compile, side by side in one process.

1. **Hit overhead**: the per-call cost of a cache hit over eager, for a 1-op function of
   2 tensors (``x + y`` on two 4-float tensors), both with the eager backend. Three
   callables are timed in one process, samples interleaved (eager, framecache,
   torch.compile, eager, ...): each sample is a loop of ``--calls`` calls timed with the
   thread's CPU time (time spent preempted by other processes is not counted), the
   garbage collector off; figures are medians over ``--repeats`` samples. The overhead is
   the median minus eager's median; the ratio is torch.compile's overhead over
   framecache's. Every framecache call is checked to be a hit (one compile in all).
2. **Hit overhead on a module tree** (``--case stack36``): a ``Stack`` of 36 ``Layer``s,
   each a 4x4 weight, a 4-bias and 12 integer attributes that its forward reads, on a
   2x4 input, eager backends. Five callables, samples interleaved as above: the eager
   module call, framecache.compile's hit, torch.compile's hit, and each tool's captured
   graph called alone on tensors shaped like its inputs (framecache's lean eager graph;
   torch.compile's ``GraphModule.forward``, which is what its ``eager`` backend runs).
   The overhead of a hit is the hit minus **its own graph alone** (guards, the wrapper,
   collecting the parameters as graph inputs); the hit minus the eager module call is
   reported too. Every framecache call is checked to be a hit of one compiled graph.
3. **First-call latency**: capture + compile + run of the first call of a small MLP
   (``Linear(64, 128) -> ReLU -> Linear(128, 10)`` on a ``32 x 64`` batch) with the eager
   and inductor backends, framecache against torch.compile. Each measurement runs in a
   fresh interpreter, alternating framecache and torch.compile, so that neither profits
   from warm state of the other; torch, framecache, torch._dynamo and torch._inductor
   are imported before the clock starts (import time is not compile time). Every cache
   that could make a cold compile warm is off or empty: a fresh
   ``TORCHINDUCTOR_CACHE_DIR`` and ``FRAMECACHE_CACHE_DIR`` per run and
   ``TORCHINDUCTOR_FORCE_DISABLE_CACHES=1``. Wall time (what a user waits) and the
   process's CPU time are both reported; medians over ``--first-call-repeats`` runs.

Run: ``python benchmarks/compile_overhead.py [--json PATH] [--repeats N] [--calls N]
[--first-call-repeats N] [--skip-first-call] [--case all|add|stack36]`` with
``PYTHONPATH=build/dev/pkg``.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Callable
from typing import Any

import torch

import framecache


def add(x, y):
    return x + y


def _loop(fn: Callable[..., Any], x: Any, y: Any, n: int) -> int:
    """Thread CPU ns of ``n`` calls of ``fn(x, y)``."""
    start = time.thread_time_ns()
    for _ in range(n):
        fn(x, y)
    return time.thread_time_ns() - start


def hit_overhead(repeats: int, n: int) -> dict[str, float]:
    """ns per call of eager, framecache.compile and torch.compile hits, and overheads."""
    x, y = torch.randn(4), torch.randn(4)
    fc = framecache.compile(add, backend="eager")
    tc = torch.compile(add, backend="eager")
    for f in (fc, tc):
        for _ in range(3):
            torch.testing.assert_close(f(x, y), x + y)
    hits_before = framecache.stats(add).hits
    samples: dict[str, list[float]] = {"eager": [], "framecache": [], "torch.compile": []}
    calls = {"eager": add, "framecache": fc, "torch.compile": tc}
    gc.disable()
    try:
        for _ in range(repeats):
            for name, fn in calls.items():
                samples[name].append(_loop(fn, x, y, n) / n)
    finally:
        gc.enable()
    stats = framecache.stats(add)
    assert stats.compiles == 1, stats
    assert stats.hits - hits_before == repeats * n, stats
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {f"{k} ns/call": v for k, v in med.items()}
    out["framecache overhead ns"] = med["framecache"] - med["eager"]
    out["torch.compile overhead ns"] = med["torch.compile"] - med["eager"]
    out["overhead ratio torch/framecache"] = out["torch.compile overhead ns"] / max(
        out["framecache overhead ns"], 1.0
    )
    return out


MODULE_INTS = tuple(f"a{k}" for k in range(12))


class Layer(torch.nn.Module):
    """A weight, a bias and 12 integer attributes, all read by forward."""

    def __init__(self, i: int) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.randn(4, 4) * 0.3)
        self.bias = torch.nn.Parameter(torch.randn(4) * 0.1)
        for k, name in enumerate(MODULE_INTS):
            setattr(self, name, i + k)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = (
            self.a0 + self.a1 + self.a2 + self.a3 + self.a4 + self.a5
            + self.a6 + self.a7 + self.a8 + self.a9 + self.a10 + self.a11
        )  # fmt: skip
        return torch.tanh(x @ self.weight + self.bias) + s * 1e-4


class Stack(torch.nn.Module):
    """36 Layers in a ModuleList."""

    def __init__(self, n: int = 36) -> None:
        super().__init__()
        self.layers = torch.nn.ModuleList(Layer(i) for i in range(n))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = layer(x)
        return x


def _loop1(fn: Callable[..., Any], args: tuple[Any, ...], n: int) -> int:
    """Thread CPU ns of ``n`` calls of ``fn(*args)``."""
    start = time.thread_time_ns()
    for _ in range(n):
        fn(*args)
    return time.thread_time_ns() - start


def _like(inputs: Any) -> tuple[Any, ...]:
    """Real tensors shaped like a backend's (possibly fake) example inputs."""
    out = []
    for t in inputs:
        if isinstance(t, torch.Tensor):
            out.append(torch.randn(tuple(int(s) for s in t.shape), dtype=t.dtype))
        else:
            out.append(t)
    return tuple(out)


def stack36_overhead(repeats: int, n: int) -> dict[str, float]:
    """Hit overhead on the 36-layer module: framecache vs torch.compile, eager backends."""
    from framecache.compiler.backends import eager as fc_eager

    torch.manual_seed(0)
    stack = Stack()
    x = torch.randn(2, 4)
    graphs: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {}

    def fc_backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Callable[..., Any]:
        fn = fc_eager(gm, example_inputs)
        graphs["framecache"] = (fn, _like(example_inputs))
        return fn

    def tc_backend(gm: torch.fx.GraphModule, example_inputs: Any) -> Callable[..., Any]:
        graphs["torch.compile"] = (gm.forward, _like(example_inputs))
        return gm.forward

    fc = framecache.compile(stack, backend=fc_backend, cache=False)
    tc = torch.compile(stack, backend=tc_backend)
    with torch.no_grad():
        expected = stack(x)
        for f in (fc, tc):
            for _ in range(3):
                torch.testing.assert_close(f(x), expected)
        stats = framecache.stats(type(stack).forward)
        assert stats.compiles == 1, stats
        hits_before = stats.hits
        calls: dict[str, tuple[Callable[..., Any], tuple[Any, ...]]] = {
            "eager": (stack, (x,)),
            "framecache": (fc, (x,)),
            "torch.compile": (tc, (x,)),
            "framecache graph": graphs["framecache"],
            "torch.compile graph": graphs["torch.compile"],
        }
        samples: dict[str, list[float]] = {k: [] for k in calls}
        gc.disable()
        try:
            for _ in range(repeats):
                for name, (fn, args) in calls.items():
                    samples[name].append(_loop1(fn, args, n) / n)
        finally:
            gc.enable()
        stats = framecache.stats(type(stack).forward)
    assert stats.compiles == 1, stats
    assert stats.hits - hits_before == repeats * n, stats
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {f"{k} ns/call": v for k, v in med.items()}
    fc_over = med["framecache"] - med["framecache graph"]
    tc_over = med["torch.compile"] - med["torch.compile graph"]
    out["framecache overhead over its graph ns"] = fc_over
    out["torch.compile overhead over its graph ns"] = tc_over
    out["overhead ratio torch/framecache"] = tc_over / max(fc_over, 1.0)
    out["framecache minus eager ns"] = med["framecache"] - med["eager"]
    out["torch.compile minus eager ns"] = med["torch.compile"] - med["eager"]
    out["graph inputs framecache"] = float(len(graphs["framecache"][1]))
    out["graph inputs torch.compile"] = float(len(graphs["torch.compile"][1]))
    return out


_FIRST_CALL = textwrap.dedent(
    """
    import json, sys, time
    import torch, framecache
    import torch._dynamo, torch._inductor.compile_fx  # imports are not compile time
    import framecache.compiler
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10)
    )
    x = torch.randn(32, 64)
    expected = model(x)
    which, backend = sys.argv[1], sys.argv[2]
    if which == "framecache":
        framecache.reset()
        c = framecache.compile(model, backend=backend)
    else:
        torch._dynamo.reset()
        c = torch.compile(model, backend=backend)
    wall, cpu = time.perf_counter(), time.process_time()
    out = c(x)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    torch.testing.assert_close(out, expected)
    if which == "framecache":
        assert framecache.stats(c).compiles == 1, framecache.stats(c)
    print(json.dumps({"wall_s": wall, "cpu_s": cpu}))
    """
)


def first_call(repeats: int) -> dict[str, float]:
    """Median first-call wall and CPU seconds per (runtime, backend), fresh processes."""
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="framecache-first-call-") as tmp:
        for backend in ("eager", "inductor"):
            for _ in range(repeats):
                for which in ("framecache", "torch.compile"):
                    run_env = dict(
                        os.environ,
                        TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(dir=tmp),
                        FRAMECACHE_CACHE_DIR=tempfile.mkdtemp(dir=tmp),
                        TORCHINDUCTOR_FORCE_DISABLE_CACHES="1",
                    )
                    proc = subprocess.run(
                        [sys.executable, "-c", _FIRST_CALL, which, backend],
                        env=run_env,
                        capture_output=True,
                        text=True,
                        check=False,
                    )
                    if proc.returncode != 0:
                        raise RuntimeError(f"{which} {backend} first call failed:\n{proc.stderr}")
                    value = json.loads(proc.stdout.strip().splitlines()[-1])
                    results.setdefault(f"{which} {backend} first call wall s", []).append(
                        value["wall_s"]
                    )
                    results.setdefault(f"{which} {backend} first call cpu s", []).append(
                        value["cpu_s"]
                    )
    out = {k: statistics.median(v) for k, v in results.items()}
    for backend in ("eager", "inductor"):
        out[f"{backend} wall ratio torch/framecache"] = (
            out[f"torch.compile {backend} first call wall s"]
            / out[f"framecache {backend} first call wall s"]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=31)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--first-call-repeats", type=int, default=3)
    parser.add_argument("--skip-first-call", action="store_true")
    parser.add_argument("--case", choices=("all", "add", "stack36"), default="all")
    args = parser.parse_args()
    load_before = os.getloadavg()[0]
    results: dict[str, Any] = {}
    if args.case in ("all", "add"):
        results["hit"] = hit_overhead(args.repeats, args.calls)
    if args.case in ("all", "stack36"):
        results["stack36"] = stack36_overhead(args.repeats, max(args.calls // 25, 20))
    if not args.skip_first_call:
        results["first_call"] = first_call(args.first_call_repeats)
    results["machine"] = {
        "load_average_1min_before": load_before,
        "load_average_1min_after": os.getloadavg()[0],
        "torch": torch.__version__,
    }
    for section, values in results.items():
        print(f"[{section}]")
        for key, value in values.items():
            shown = f"{value:12.3f}" if isinstance(value, float) else f"{value!s:>12}"
            print(f"  {key:<44} {shown}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
