"""framecache.compile vs torch.compile, side by side in one process.

1. Per-call overhead of a cache hit over eager, for a 1-op function of 2 tensors
   (``x + y`` on two 4-float tensors), both with the eager backend.
2. First-call latency (capture + compile + run) of a small MLP with the eager and
   inductor backends, each measured in a fresh process (so neither side profits from the
   other's warm state), framecache and torch.compile alternating.

Run: ``python benchmarks/compile_overhead.py [--json PATH] [--skip-first-call]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time

import torch

import framecache


def add(x, y):
    return x + y


def _per_call_ns(fn, args, n: int) -> float:
    start = time.perf_counter_ns()
    for _ in range(n):
        fn(*args)
    return (time.perf_counter_ns() - start) / n


def hit_overhead(repeats: int, n: int) -> dict[str, float]:
    x, y = torch.randn(4), torch.randn(4)
    fc = framecache.compile(add, backend="eager")
    tc = torch.compile(add, backend="eager")
    for f in (fc, tc):
        for _ in range(3):
            f(x, y)
    samples: dict[str, list[float]] = {"eager": [], "framecache": [], "torch.compile": []}
    for _ in range(repeats):
        samples["eager"].append(_per_call_ns(add, (x, y), n))
        samples["framecache"].append(_per_call_ns(fc, (x, y), n))
        samples["torch.compile"].append(_per_call_ns(tc, (x, y), n))
    med = {k: statistics.median(v) for k, v in samples.items()}
    out = {f"{k} ns/call": v for k, v in med.items()}
    out["framecache overhead ns"] = med["framecache"] - med["eager"]
    out["torch.compile overhead ns"] = med["torch.compile"] - med["eager"]
    out["overhead ratio torch/framecache"] = out["torch.compile overhead ns"] / max(
        out["framecache overhead ns"], 1.0
    )
    assert framecache.stats(add).compiles == 1
    return out


_FIRST_CALL = textwrap.dedent(
    """
    import json, sys, time
    t0 = time.perf_counter()
    import torch, framecache
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 10))
    x = torch.randn(32, 64)
    which, backend = sys.argv[1], sys.argv[2]
    if which == "framecache":
        c = framecache.compile(model, backend=backend)
    else:
        c = torch.compile(model, backend=backend)
    start = time.perf_counter()
    out = c(x)
    first = time.perf_counter() - start
    torch.testing.assert_close(out, model(x))
    print(json.dumps({"first_call_s": first}))
    """
)


def first_call(repeats: int) -> dict[str, float]:
    results: dict[str, list[float]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, TORCHINDUCTOR_CACHE_DIR=tmp, FRAMECACHE_CACHE_DIR=tmp)
        for backend in ("eager", "inductor"):
            for _ in range(repeats):
                for which in ("framecache", "torch.compile"):
                    # Fresh inductor and framecache caches for each run: a cold first call
                    # (warm starts are benchmarks/warm_start.py's).
                    run_env = dict(
                        env,
                        TORCHINDUCTOR_CACHE_DIR=tempfile.mkdtemp(dir=tmp),
                        FRAMECACHE_CACHE_DIR=tempfile.mkdtemp(dir=tmp),
                    )
                    proc = subprocess.run(
                        [sys.executable, "-c", _FIRST_CALL, which, backend],
                        env=run_env,
                        capture_output=True,
                        text=True,
                        check=True,
                    )
                    value = json.loads(proc.stdout.strip().splitlines()[-1])["first_call_s"]
                    results.setdefault(f"{which} {backend} first call s", []).append(value)
    return {k: statistics.median(v) for k, v in results.items()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=20000)
    parser.add_argument("--first-call-repeats", type=int, default=3)
    parser.add_argument("--skip-first-call", action="store_true")
    args = parser.parse_args()
    results = {"hit": hit_overhead(args.repeats, args.calls)}
    if not args.skip_first_call:
        results["first_call"] = first_call(args.first_call_repeats)
    for section, values in results.items():
        print(f"[{section}]")
        for key, value in values.items():
            print(f"  {key:<40} {value:12.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
