"""Where a cold first call spends its time: framecache.compile and torch.compile, sampled.

A profile function would change what it measures (under ``sys.setprofile`` framecache runs
frames as they are, and a profile of inductor's compile costs more than the compile), so
this samples instead: a thread reads the calling thread's Python stack every
``--interval-ms`` while one cold first call runs. Per compiler, for ``--order`` (by
default framecache, torch.compile, torch.compile, framecache: the first compile of a
process is not like the others), it prints the call's wall seconds and, per function, the
share of samples whose stack holds it (``inc``, with the seconds that share stands for)
and the innermost three frames seen most often (``self``). Samples are taken with the GIL:
time this thread spends in C without releasing it shows as the function that called into C.

Each call runs on a fresh copy of the model, with both compilers reset, fresh inductor
state and a fresh framecache directory, after the same warm-up as ``models.py``;
framecache's background package builds are stopped, not waited for.

Run::

    PYTHONPATH=build/dev/pkg python benchmarks/cold_profile.py resnet18 [--device cuda]
        [--backend inductor] [--order fc,tc,tc,fc] [--interval-ms 2] [--top 40]
"""

# models.py sets the cache environment (cold caches, compile workers kept up) when it is
# imported: it comes before torch, out of isort's order.
# ruff: noqa: I001
from __future__ import annotations

import argparse
import collections
import copy
import os
import sys
import tempfile
import threading
import time
import traceback
from typing import Any

import models
import torch
import zoo_models

import framecache
from framecache.cache import cancel_builds

_LABELS = {"fc": "framecache", "tc": "torch.compile"}


def sample_call(fn: Any, args: tuple[Any, ...], device: torch.device, interval: float) -> Any:
    """(wall seconds, stacks) of one call of ``fn``; each stack is outermost first."""
    caller = threading.get_ident()
    stacks: list[list[str]] = []
    done = threading.Event()

    def sampler() -> None:
        while not done.is_set():
            frame = sys._current_frames().get(caller)
            if frame is not None:
                stacks.append(
                    [
                        f"{s.name}@{os.path.basename(s.filename)}"
                        for s in traceback.extract_stack(frame)
                    ]
                )
            time.sleep(interval)

    thread = threading.Thread(target=sampler, daemon=True)
    thread.start()
    start = time.perf_counter()
    with torch.no_grad():
        fn(*args)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    wall = time.perf_counter() - start
    done.set()
    thread.join()
    return wall, stacks


def report(label: str, wall: float, stacks: list[list[str]], top: int) -> str:
    """The inclusive and innermost shares of one sampled call, as text."""
    n = max(len(stacks), 1)
    inclusive: collections.Counter[str] = collections.Counter()
    for stack in stacks:
        inclusive.update(set(stack))
    innermost = collections.Counter(" <- ".join(reversed(s[-3:])) for s in stacks)
    lines = [f"=== {label}: {wall:.2f} s, {len(stacks)} samples"]
    for name, count in inclusive.most_common(top):
        lines.append(f"  inc  {100 * count / n:5.1f}%  {wall * count / n:6.2f}s  {name}")
    for name, count in innermost.most_common(max(top // 3, 1)):
        lines.append(f"  self {100 * count / n:5.1f}%  {name}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("model", choices=sorted(zoo_models.MODELS))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--backend", default="inductor")
    parser.add_argument("--order", default="fc,tc,tc,fc", help="fc and tc, comma-separated")
    parser.add_argument("--interval-ms", type=float, default=2.0)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    order = args.order.split(",")
    if any(o not in _LABELS for o in order):
        parser.error(f"--order takes fc and tc, got {args.order!r}")
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    sys.setswitchinterval(0.0005)  # the sampler gets the GIL soon after it asks
    models._warm_imports(device, [args.backend])
    model, inputs = zoo_models.MODELS[args.model].build(device)
    for i, key in enumerate(order):
        framecache.reset()
        torch._dynamo.reset()
        fresh = copy.deepcopy(model)
        with tempfile.TemporaryDirectory(prefix="cold-profile-") as cache_dir:
            if key == "fc":
                fn: Any = framecache.compile(
                    fresh, cache_dir=cache_dir, **models._framecache_options(args.backend)
                )
            else:
                fn = torch.compile(fresh, backend=models._torch_backend(args.backend))
            with models._fresh_inductor_state():
                wall, stacks = sample_call(fn, inputs, device, args.interval_ms / 1000)
                cancel_builds()
            print(report(f"{_LABELS[key]} #{i}", wall, stacks, args.top), flush=True)
            if key == "fc":
                st = framecache.stats(fn)
                print(
                    f"  compiles {st.compiles}, fallbacks {st.fallbacks}, "
                    f"compile_seconds {st.compile_seconds:.2f}",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
