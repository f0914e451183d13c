"""Leak soak: many compiled-function calls with hits, misses, recompiles and resets.

    python tests/stress/soak.py [--calls N] [--backend callback|eager] [--functions N]

``callback`` (torch-free, also run under the sanitizer build) compiles with a plain
callback: each entry is a copy of the code that adds 1000 to the result (so the result
tells which code ran) guarded on ``type(x)`` and ``y == <value>``. ``eager`` uses
``framecache.compile(..., backend="eager")`` on small tensors (shape, dtype and value
changes recompile). Both:

* call a function ``--calls`` times in all, a fresh function (new code object) every
  ``calls / functions`` calls, the old one dropped;
* mix hits (most calls), misses (a new type of ``x`` or a new ``y``), ``reset_code`` of the
  live function every 5,000 calls and ``framecache.reset()`` every 100,000;
* check every result against the function run eagerly;
* measure resident memory (``/proc/self/statm``) at the start, after a warm-up (10% of the
  calls) and at the end, after a full collection each time;
* check that the reference counts of the inputs are unchanged and that every dead
  function's code, guard managers and compiled codes were freed (weakrefs, no reset).

Prints one JSON object (figures and the checks' results) and exits 1 if a check failed.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import sys
import time
import types
import weakref
from typing import Any

import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager

PAGE = os.sysconf("SC_PAGE_SIZE")

SOURCE = """
def soaked(x, y):
    return x * y + {k}
"""


def rss_mb() -> float:
    """Resident memory now, after a full collection, in MiB."""
    gc.collect()
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE / 2**20


def make_function(k: int) -> types.FunctionType:
    """A fresh function (its own code object) computing ``x * y + k``."""
    ns: dict[str, Any] = {}
    exec(compile(SOURCE.format(k=k), f"<soaked {k}>", "exec"), ns)
    return ns["soaked"]


class Tracker:
    """Weak references to what the compiles of each function made."""

    def __init__(self) -> None:
        self.refs: dict[int, list[weakref.ref[Any]]] = {}

    def add(self, gen: int, *objs: Any) -> None:
        self.refs.setdefault(gen, []).extend(weakref.ref(o) for o in objs)

    def alive(self, gens: list[int]) -> int:
        return sum(1 for g in gens for r in self.refs.get(g, []) if r() is not None)


def plus_1000(code: types.CodeType) -> types.CodeType:
    """A copy of ``code`` whose result is 1000 more: a stale entry would be visible."""
    ns: dict[str, Any] = {}
    k = int(code.co_filename.strip("<>").split()[1])  # "<soaked K>", see make_function
    exec(compile(SOURCE.format(k=f"{k} + 1000"), code.co_filename, "exec"), ns)
    return ns["soaked"].__code__


def run(calls: int, backend: str, functions: int) -> dict[str, Any]:
    tracker = Tracker()
    current_gen = [0]
    compiles = [0]

    def callback(frame: Any, entry: Any, frame_state: Any) -> Any:
        if frame.f_code.co_name != "soaked":
            return None
        root = RootGuardManager()
        root.local("x").type_match(type(frame.f_locals["x"]))
        root.local("y").type_match(int).equals_match(frame.f_locals["y"])
        compiled = plus_1000(frame.f_code)
        tracker.add(current_gen[0], root, compiled)
        compiles[0] += 1
        return CallbackResult(GuardedCode(compiled, root))

    if backend == "eager":
        import torch

        xs = [torch.ones(3), torch.ones(4), torch.ones(3, dtype=torch.float64), torch.zeros(2, 2)]
        ys = [10**6 + 2, 10**6 + 3]  # not small ints: their reference counts are everybody's

        def expected(fn: Any, x: Any, y: int) -> Any:
            return fn(x, y)  # the plain function: framecache.compile's hook is not on here

        def same(a: Any, b: Any) -> bool:
            return bool(a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b))
    else:
        # Not small ints: their reference counts are everybody's.
        xs = [10**6 + 3, 2.5, 10**12 + 7, 1 + 2j]
        ys = [10**9 + 2, 10**9 + 3]

        def expected(fn: Any, x: Any, y: int) -> Any:
            # The compiled code's x * y + k + 1000, computed without calling fn (the
            # hook is on: fn itself runs the compiled code).
            return x * y + int(fn.__code__.co_filename.strip("<>").split()[1]) + 1000

        def same(a: Any, b: Any) -> bool:
            return a == b

    inputs = [*xs, *ys]
    refcounts_before = [sys.getrefcount(o) for o in inputs]
    framecache.set_recompile_limit(64, accumulated=10**9)
    per_function = max(1, calls // functions)
    warmup_at = calls // 10
    figures: dict[str, Any] = {"backend": backend, "calls": calls, "functions": functions}
    errors: list[str] = []
    codes: list[weakref.ref[Any]] = []

    def new_function(gen: int) -> tuple[Any, Any]:
        plain = make_function(gen % 97)
        codes.append(weakref.ref(plain.__code__))
        if backend == "eager":
            compiled = framecache.compile(plain, backend="eager", dynamic=False)
            tracker.add(gen, plain, compiled)
            return plain, compiled
        tracker.add(gen, plain)
        return plain, plain

    figures["rss_start_mb"] = round(rss_mb(), 1)
    started = time.monotonic()
    cpu_started = time.process_time()
    plain, fn = new_function(0)
    previous = framecache.set_eval_frame(callback) if backend == "callback" else None
    try:
        i = 0
        while i < calls:
            gen = i // per_function
            if gen != current_gen[0]:
                current_gen[0] = gen
                del plain, fn
                plain, fn = new_function(gen)
            if i == warmup_at:
                figures["rss_warm_mb"] = round(rss_mb(), 1)
            if i % 5000 == 4999:
                framecache.reset_code(plain.__code__)
            if i % 100_000 == 99_999:
                framecache.reset()
            # Mostly hits: the same (x, y) for runs of calls, a new one now and then.
            x = xs[(i // 1000) % len(xs)]
            y = ys[(i // 7919) % len(ys)]
            got = fn(x, y)
            want = expected(plain, x, y)
            ok = same(got, want)
            if not ok and len(errors) < 10:
                errors.append(f"call {i}: {x!r}, {y!r}: got {got!r}, want {want!r}")
            del x, y, got, want
            i += 1
    finally:
        if backend == "callback":
            framecache.set_eval_frame(previous)
    figures["seconds"] = round(time.monotonic() - started, 1)
    figures["cpu_seconds"] = round(time.process_time() - cpu_started, 1)
    figures["compiles"] = compiles[0] if backend == "callback" else None
    figures["rss_end_mb"] = round(rss_mb(), 1)
    figures.setdefault("rss_warm_mb", figures["rss_start_mb"])
    figures["max_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    figures["rss_growth_after_warmup_mb"] = round(figures["rss_end_mb"] - figures["rss_warm_mb"], 1)
    # Every function but the live one is dead: its code, entries, guard managers and
    # compiled codes must be gone without a reset.
    dead = [g for g in tracker.refs if g != current_gen[0]]
    gc.collect()
    figures["dead_functions"] = len(dead)
    figures["dead_objects_alive"] = tracker.alive(dead)
    figures["dead_codes_alive"] = sum(1 for r in codes[:-1] if r() is not None)
    figures["live_entries"] = len(framecache.cache_entries(plain.__code__))
    del plain, fn
    framecache.reset()
    gc.collect()
    refcounts_after = [sys.getrefcount(o) for o in inputs]  # measured as before was
    figures["refcount_changes"] = [
        after - before for after, before in zip(refcounts_after, refcounts_before, strict=True)
    ]
    figures["errors"] = errors
    figures["ok"] = (
        not errors
        and figures["dead_objects_alive"] == 0
        and figures["dead_codes_alive"] == 0
        and all(c == 0 for c in figures["refcount_changes"])
    )
    return figures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=1_000_000)
    parser.add_argument("--backend", choices=["callback", "eager"], default="callback")
    parser.add_argument("--functions", type=int, default=100)
    args = parser.parse_args()
    figures = run(args.calls, args.backend, args.functions)
    print(json.dumps(figures))
    return 0 if figures["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
