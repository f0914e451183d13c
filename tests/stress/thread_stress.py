"""Thread stress: threads compiling, hitting, invalidating and resetting functions at once.

    python tests/stress/thread_stress.py [--threads 8] [--iterations N] [--backend callback|eager]

``callback`` (torch-free; also run under the sanitizer build): every thread compiles with
a callback whose compiled code is ``x + Y + 1000`` with ``Y`` baked in as a constant and
guarded by ``y == Y`` (and ``type(x)``, and a LAMBDA guard that runs Python, so that
threads switch inside guard checks). A stale or foreign entry would return another ``Y``
or miss the 1000, so each result is checked exactly: ``x + y + 1000`` in compile mode,
``x + y`` or ``x + y + 1000`` in run-only mode, ``x + y`` with the thread off.
``eager``: the threads call ``framecache.compile(fn, backend="eager")`` functions on small
tensors and check each result against the function run eagerly.

Each iteration of each thread does one of: call one of the shared functions or its own
(random ``x``, ``y``; sometimes a float ``x``, a recompile), ``reset_code`` of a shared or
its own function, ``framecache.reset()``, switch its mode (compile / run-only / off), or
replace its own function with a fresh one (the old code dies). The switch interval is tiny
so threads interleave often. Prints one JSON object and exits 1 on any wrong result or
error.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import threading
import time
import types
from typing import Any

import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager

SOURCE = """
def {name}(x, y):
    return x + y
"""
COMPILED = """
def {name}(x, y):
    return x + {y} + 1000
"""
YS = (0, 10, 20, 30)


def make_function(name: str) -> types.FunctionType:
    ns: dict[str, Any] = {}
    exec(compile(SOURCE.format(name=name), f"<stress {name}>", "exec"), ns)
    return ns[name]


def compiled_code(name: str, y: int) -> types.CodeType:
    ns: dict[str, Any] = {}
    exec(compile(COMPILED.format(name=name, y=y), f"<compiled {name}>", "exec"), ns)
    return ns[name].__code__


def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
    code = frame.f_code
    if not code.co_filename.startswith("<stress") or not code.co_flags & 0x1:  # CO_OPTIMIZED
        return None  # not one of the stressed functions (their module bodies run normally)
    x, y = frame.f_locals["x"], frame.f_locals["y"]
    root = RootGuardManager()
    node = root.local("x")
    node.type_match(type(x))
    node.lambda_guard(lambda v: v == v, "x == x (runs Python)")
    root.local("y").type_match(int).equals_match(y)
    frame_state["compiles"] = frame_state.get("compiles", 0) + 1
    return CallbackResult(GuardedCode(compiled_code(code.co_name, y), root))


def run_callback(threads: int, iterations: int, seed: int) -> dict[str, Any]:
    shared = [make_function(f"shared{i}") for i in range(3)]
    errors: list[str] = []
    counts = {"calls": 0, "compiled_results": 0, "reset_code": 0, "reset": 0, "mode": 0, "new": 0}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        own = make_function(f"own{k}")
        mode: Any = callback
        local = dict.fromkeys(counts, 0)
        framecache.set_eval_frame(mode)
        start.wait()
        try:
            for it in range(iterations):
                op = rng.random()
                if op < 0.70:
                    fn = own if rng.random() < 0.3 else rng.choice(shared)
                    x: Any = rng.randrange(10)
                    if rng.random() < 0.05:
                        x = x + 0.5
                    y = rng.choice(YS)
                    got = fn(x, y)
                    plain, compiled = x + y, x + y + 1000
                    allowed = {
                        "compile": (compiled,),
                        "run_only": (plain, compiled),
                        "off": (plain,),
                    }["compile" if mode is callback else "run_only" if mode is False else "off"]
                    if got not in allowed or type(got) is not type(plain):
                        errors.append(
                            f"thread {k} it {it}: {fn.__name__}({x!r}, {y!r}) = {got!r}, "
                            f"allowed {allowed}"
                        )
                    local["calls"] += 1
                    local["compiled_results"] += got == compiled
                elif op < 0.80:
                    fn = own if rng.random() < 0.5 else rng.choice(shared)
                    framecache.reset_code(fn.__code__)
                    local["reset_code"] += 1
                elif op < 0.82:
                    framecache.reset()
                    local["reset"] += 1
                elif op < 0.92:
                    mode = rng.choice([callback, callback, False, None])
                    framecache.set_eval_frame(mode)
                    local["mode"] += 1
                elif op < 0.94:
                    own = make_function(f"own{k}")
                    local["new"] += 1
                else:
                    for entry in framecache.cache_entries(rng.choice(shared).__code__):
                        entry.guard_manager.check({"x": 1, "y": 0})
        except BaseException as exc:  # a failure of the runtime, not of the program
            with lock:
                errors.append(f"thread {k}: {type(exc).__name__}: {exc}")
        finally:
            framecache.set_eval_frame(None)
            with lock:
                for key, v in local.items():
                    counts[key] += v

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"errors": errors[:20], "wrong": len(errors), "counts": counts}


def run_eager(threads: int, iterations: int, seed: int) -> dict[str, Any]:
    import torch

    def make_pair(k: int) -> tuple[Any, Any]:
        ns: dict[str, Any] = {"torch": torch}
        exec(
            compile(
                f"def f(x, y):\n    return torch.sin(x) * y + {k}\n", f"<stress eager {k}>", "exec"
            ),
            ns,
        )
        return ns["f"], framecache.compile(ns["f"], backend="eager")

    shared = [make_pair(k) for k in range(3)]
    xs = [torch.ones(3), torch.arange(4.0), torch.ones(2, 2, dtype=torch.float64)]
    # One compile on this thread first: torch imports modules lazily on the first capture,
    # and concurrent first imports of those modules race inside torch (circular-import
    # errors from torch._dynamo and torch.fx), which is not what this stress is about.
    _, warm_compiled = make_pair(-1)
    for x in xs:
        warm_compiled(x, 2)
    framecache.reset()
    errors: list[str] = []
    counts = {"calls": 0, "reset_code": 0, "reset": 0, "new": 0}
    lock = threading.Lock()
    start = threading.Barrier(threads)

    def worker(k: int) -> None:
        rng = random.Random(seed * 1000 + k)
        own = make_pair(100 + k)
        local = dict.fromkeys(counts, 0)
        start.wait()
        try:
            for it in range(iterations):
                op = rng.random()
                if op < 0.85:
                    plain, compiled = own if rng.random() < 0.3 else rng.choice(shared)
                    x = rng.choice(xs)
                    y = rng.choice([2, 3])
                    got, want = compiled(x, y), plain(x, y)
                    if (
                        got.dtype != want.dtype
                        or got.shape != want.shape
                        or not torch.equal(got, want)
                    ):
                        errors.append(f"thread {k} it {it}: wrong result for {x.shape} {y}")
                    local["calls"] += 1
                elif op < 0.93:
                    plain, _ = own if rng.random() < 0.5 else rng.choice(shared)
                    framecache.reset_code(plain.__code__)
                    local["reset_code"] += 1
                elif op < 0.95:
                    framecache.reset()
                    local["reset"] += 1
                else:
                    own = make_pair(100 + k)
                    local["new"] += 1
        except BaseException as exc:
            with lock:
                errors.append(f"thread {k}: {type(exc).__name__}: {exc}")
        finally:
            with lock:
                for key, v in local.items():
                    counts[key] += v

    pool = [threading.Thread(target=worker, args=(k,)) for k in range(threads)]
    for t in pool:
        t.start()
    for t in pool:
        t.join()
    return {"errors": errors[:20], "wrong": len(errors), "counts": counts}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=8)
    parser.add_argument("--iterations", type=int, default=5000)
    parser.add_argument("--backend", choices=["callback", "eager"], default="callback")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    sys.setswitchinterval(1e-5)
    framecache.set_recompile_limit(10**6, accumulated=10**9)
    started = time.monotonic()
    run = run_callback if args.backend == "callback" else run_eager
    report = run(args.threads, args.iterations, args.seed)
    report.update(
        backend=args.backend,
        threads=args.threads,
        iterations=args.iterations,
        seconds=round(time.monotonic() - started, 1),
        hook_installed_after=framecache.hook_installed(),
    )
    print(json.dumps(report))
    return 0 if report["wrong"] == 0 and not report["hook_installed_after"] else 1


if __name__ == "__main__":
    sys.exit(main())
