"""First-call latency in a fresh process: cold, warm from framecache's disk cache, and
torch.compile's warm start with its own caches, for the eager and inductor backends.

Each sample is one fresh interpreter that imports torch and framecache, builds a small
MLP (a user-defined module: ``Linear(64, 128) -> ReLU -> Linear(128, 10)``, on a
32x64 batch), wraps it, and times its first call (wall clock and the thread's CPU
time), and separately the wrap plus the first call ("wrap+call": torch.compile imports
torch._dynamo when it wraps, framecache only when it captures). Per backend:

* ``framecache cold``: empty framecache and inductor cache directories;
* ``framecache warm``: framecache's directory filled by an earlier process, a fresh
  (empty) inductor cache directory, so nothing comes from torch's caches;
* ``torch.compile cold``: an empty inductor cache directory (TORCHINDUCTOR_CACHE_DIR);
* ``torch.compile warm``: the inductor cache directory an earlier torch.compile process
  filled (FX graph cache, AOTAutograd cache), private to this benchmark.

The four kinds of sample alternate, so load changes hit them alike; figures are medians.
Run: ``python benchmarks/warm_start.py [--json PATH] [--repeats N] [--backends eager,inductor]``.
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

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch, framecache
    class MLP(torch.nn.Module):  # user code: framecache never compiles torch's own forward()s
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 128)
            self.fc2 = torch.nn.Linear(128, 10)

        def forward(self, x):
            return self.fc2(torch.relu(self.fc1(x)))

    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(32, 64)
    which, backend = sys.argv[1], sys.argv[2]
    if backend == "inductor":
        # Imports are not first-call time, on either side.
        import torch._dynamo, torch._inductor.compile_fx, torch._inductor.standalone_compile
    wrap = time.perf_counter()
    if which == "framecache":
        c = framecache.compile(model, backend=backend)
    else:
        c = torch.compile(model, backend=backend)  # imports torch._dynamo (~1.4 s)
    wrap = time.perf_counter() - wrap
    wall, cpu = time.perf_counter(), time.thread_time()
    out = c(x)
    wall, cpu = time.perf_counter() - wall, time.thread_time() - cpu
    torch.testing.assert_close(out, model(x))
    info = {"wall_s": wall, "cpu_s": cpu, "wrap_s": wrap}
    if which == "framecache":
        s = framecache.stats(c)
        info.update(compiles=s.compiles, disk_hits=s.disk_hits)
    print(json.dumps(info))
    """
)


def _sample(which: str, backend: str, fc_dir: str, inductor_dir: str) -> dict[str, float]:
    env = dict(os.environ, FRAMECACHE_CACHE_DIR=fc_dir, TORCHINDUCTOR_CACHE_DIR=inductor_dir)
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, which, backend],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{which} {backend} sample failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(backend: str, repeats: int, tmp: str) -> dict[str, float]:
    """Medians of the four kinds of first call for one backend."""
    fresh = lambda: tempfile.mkdtemp(dir=tmp)  # noqa: E731
    fc_warm_dir = fresh()
    torch_warm_dir = fresh()
    # Fill the caches the warm samples start from.
    filled = _sample("framecache", backend, fc_warm_dir, fresh())
    assert filled["compiles"] == 1, filled
    _sample("torch.compile", backend, fresh(), torch_warm_dir)
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        runs = {
            "framecache cold": ("framecache", fresh(), fresh()),
            "framecache warm": ("framecache", fc_warm_dir, fresh()),
            "torch.compile cold": ("torch.compile", fresh(), fresh()),
            "torch.compile warm": ("torch.compile", fresh(), torch_warm_dir),
        }
        for name, (which, fc_dir, ind_dir) in runs.items():
            result = _sample(which, backend, fc_dir, ind_dir)
            if name == "framecache warm":
                assert result["compiles"] == 0 and result["disk_hits"] == 1, result
            samples.setdefault(name, []).append(result)
    out: dict[str, float] = {}
    for name, values in samples.items():
        out[f"{name} wall ms"] = statistics.median(v["wall_s"] for v in values) * 1e3
        out[f"{name} cpu ms"] = statistics.median(v["cpu_s"] for v in values) * 1e3
        out[f"{name} wrap+call wall ms"] = (
            statistics.median(v["wrap_s"] + v["wall_s"] for v in values) * 1e3
        )
    out["warm/cold (framecache)"] = out["framecache warm wall ms"] / out["framecache cold wall ms"]
    out["torch warm / framecache warm"] = (
        out["torch.compile warm wall ms"] / out["framecache warm wall ms"]
    )
    out["torch warm / framecache warm, wrap+call"] = (
        out["torch.compile warm wrap+call wall ms"] / out["framecache warm wrap+call wall ms"]
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="eager,inductor")
    args = parser.parse_args()
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="framecache-warm-") as tmp:
        os.chmod(tmp, 0o700)
        for backend in args.backends.split(","):
            results[backend] = measure(backend, args.repeats, tmp)
    try:
        results["machine"] = {"load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    except OSError:
        pass
    for section, values in results.items():
        print(f"[{section}]")
        for k, v in values.items():
            print(f"  {k:<42} {v:12.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
