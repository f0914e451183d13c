"""First-call latency as a user feels it: fresh processes, no pre-imports, cold and warm,
framecache against torch.compile, for the eager and inductor backends.

Each sample is one fresh interpreter that imports torch and framecache (nothing of
torch._dynamo or torch._inductor beforehand), builds the MLP of issue 15 (a user-defined
module: ``Linear(64, 128) -> GELU -> Linear(128, 64)`` plus a residual, LayerNorm and
softmax; batch 8; under ``torch.no_grad()``), wraps it and calls it once. It reports

* ``wrap+call``: from just before the wrap to the first result (on CUDA, synchronised);
  torch.compile imports torch._dynamo when it wraps, framecache only when it captures;
* ``process``: from the moment the parent spawns the interpreter to the first result
  (interpreter start, ``import torch``, building the module, wrap and call);
* which compiler modules the process imported (``inductor``/``dynamo`` in sys.modules).

Per backend, four kinds of sample:

* ``framecache cold``: empty framecache and inductor cache directories;
* ``framecache warm``: framecache's directory filled by an earlier process, a fresh
  (empty) inductor cache directory, so nothing comes from torch's caches;
* ``torch.compile cold``: an empty inductor cache directory (TORCHINDUCTOR_CACHE_DIR);
* ``torch.compile warm``: the inductor cache directory an earlier torch.compile process
  filled (FX graph cache, AOTAutograd cache), private to this benchmark.

The four kinds alternate, so load changes hit them alike; figures are medians.
Run: ``python benchmarks/warm_start.py [--device cpu|cuda] [--repeats N]
[--backends eager,inductor] [--kinds "framecache warm,torch.compile warm"] [--json PATH]``.
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

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch, framecache
    which, backend, device = sys.argv[1], sys.argv[2], sys.argv[3]

    class MLP(torch.nn.Module):  # user code: framecache never compiles torch's own forward()s
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 128)
            self.fc2 = torch.nn.Linear(128, 64)
            self.norm = torch.nn.LayerNorm(64)

        def forward(self, x):
            h = self.fc2(torch.nn.functional.gelu(self.fc1(x)))
            return torch.softmax(self.norm(x + h), dim=-1)

    torch.manual_seed(0)
    model = MLP().to(device)
    x = torch.randn(8, 64, device=device)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    with torch.no_grad():
        sync()
        wrap = time.perf_counter()
        if which == "framecache":
            c = framecache.compile(model, backend=backend)
        else:
            c = torch.compile(model, backend=backend)
        wrapped = time.perf_counter()
        out = c(x)
        sync()
        done = time.perf_counter()
        done_epoch = time.time()
        torch.testing.assert_close(out, model(x), rtol=1e-4, atol=1e-5)
    info = {
        "wrap_s": wrapped - wrap,
        "call_s": done - wrapped,
        "first_result_epoch": done_epoch,
        "inductor": "torch._inductor" in sys.modules,
        "dynamo": "torch._dynamo" in sys.modules,
    }
    if which == "framecache":
        s = framecache.stats(c)
        info.update(compiles=s.compiles, disk_hits=s.disk_hits)
    print(json.dumps(info), flush=True)
    if which == "framecache":
        # A cold inductor call's package is built by a process of its own after the call
        # (framecache/cache/builds.py): wait for it here, after the clock, so that the
        # next sample neither shares the cores with it nor misses its entry.
        from framecache.cache import wait_for_builds

        assert wait_for_builds(), "the background package build failed"
    """
)


def _sample(
    which: str, backend: str, device: str, fc_dir: str, inductor_dir: str
) -> dict[str, float]:
    env = dict(os.environ, FRAMECACHE_CACHE_DIR=fc_dir, TORCHINDUCTOR_CACHE_DIR=inductor_dir)
    spawned = time.time()
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, which, backend, device],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{which} {backend} sample failed:\n{proc.stderr}")
    info = json.loads(proc.stdout.strip().splitlines()[-1])
    info["process_s"] = info["first_result_epoch"] - spawned
    info["wrap_call_s"] = info["wrap_s"] + info["call_s"]
    return info


KINDS = ("framecache cold", "framecache warm", "torch.compile cold", "torch.compile warm")


def measure(
    backend: str, device: str, repeats: int, tmp: str, kinds: tuple[str, ...] = KINDS
) -> dict[str, object]:
    """Medians of the kinds of first call asked for (all four by default), one backend."""
    fresh = lambda: tempfile.mkdtemp(dir=tmp)  # noqa: E731
    fc_warm_dir = fresh()
    torch_warm_dir = fresh()
    # Fill the caches the warm samples start from.
    if "framecache warm" in kinds:
        filled = _sample("framecache", backend, device, fc_warm_dir, fresh())
        assert filled["compiles"] == 1, filled
    if "torch.compile warm" in kinds:
        _sample("torch.compile", backend, device, fresh(), torch_warm_dir)
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        runs = {
            "framecache cold": ("framecache", fresh(), fresh()),
            "framecache warm": ("framecache", fc_warm_dir, fresh()),
            "torch.compile cold": ("torch.compile", fresh(), fresh()),
            "torch.compile warm": ("torch.compile", fresh(), torch_warm_dir),
        }
        for name, (which, fc_dir, ind_dir) in runs.items():
            if name not in kinds:
                continue
            result = _sample(which, backend, device, fc_dir, ind_dir)
            print(
                f"  {backend} ({device}) {name}: wrap+call {result['wrap_call_s'] * 1e3:.0f} ms, "
                f"process {result['process_s'] * 1e3:.0f} ms",
                file=sys.stderr,
                flush=True,
            )
            if name == "framecache warm":
                assert result["compiles"] == 0 and result["disk_hits"] == 1, result
            samples.setdefault(name, []).append(result)
    out: dict[str, object] = {}
    for name in kinds:
        values = samples[name]
        out[f"{name} wrap+call ms"] = statistics.median(v["wrap_call_s"] for v in values) * 1e3
        out[f"{name} process ms"] = statistics.median(v["process_s"] for v in values) * 1e3
        imported = [m for m in ("inductor", "dynamo") if any(v[m] for v in values)]
        out[f"{name} imports"] = "+".join(imported) or "neither"
    if kinds != KINDS:
        return out  # the ratios need all four
    for what in ("wrap+call", "process"):
        fc_warm = out[f"framecache warm {what} ms"]
        out[f"framecache warm/cold, {what}"] = fc_warm / out[f"framecache cold {what} ms"]
        torch_warm = out[f"torch.compile warm {what} ms"]
        out[f"framecache warm / torch warm, {what}"] = fc_warm / torch_warm
        out[f"framecache cold / torch cold, {what}"] = (
            out[f"framecache cold {what} ms"] / out[f"torch.compile cold {what} ms"]
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="eager,inductor")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (the tensors' device)")
    parser.add_argument(
        "--kinds",
        default=",".join(KINDS),
        help="which of the four kinds of sample to run (default: all, with the ratios)",
    )
    args = parser.parse_args()
    kinds = tuple(k for k in KINDS if k in args.kinds.split(","))
    unknown = set(args.kinds.split(",")) - set(KINDS)
    if unknown or not kinds:
        parser.error(f"--kinds: choose among {', '.join(KINDS)}")
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="framecache-warm-") as tmp:
        os.chmod(tmp, 0o700)
        for backend in args.backends.split(","):
            results[f"{backend} ({args.device})"] = measure(
                backend, args.device, args.repeats, tmp, kinds
            )
    import torch

    results["machine"] = {"torch": torch.__version__, "python": sys.version.split()[0]}
    try:
        results["machine"]["load_average_1min"] = os.getloadavg()[0]
        results["machine"]["cpus"] = os.cpu_count()
    except OSError:
        pass
    for section, values in results.items():
        print(f"[{section}]")
        for k, v in values.items():
            shown = f"{v:12.3f}" if isinstance(v, float) else f"{v!s:>12}"
            print(f"  {k:<46} {shown}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
