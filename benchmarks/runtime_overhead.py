"""The cost of a framecache cache hit, against the same function with the hook off.

Every case runs in this one process, the hook-off and hook-on measurements
interleaved sample by sample, and reports the median over many samples:

* ``3 TYPE_MATCH hit``: ``f(a, b, c)`` whose one cache entry (an identical copy of
  its code) is guarded by a C++ ``RootGuardManager`` with three TYPE_MATCH(int)
  guards, called in compile mode (a hit never calls the callback);
* ``run_only hit``: the same entry with the thread in run-only mode;
* ``closure hit``: a closure with the same three guards; a hit makes a new function
  object for every call (the closure is the frame's, not the entry's);
* ``*args/**kwargs hit``: ``h(a, *args, **kwargs)`` called as ``h(1, 2, 3, x=4)``,
  guarded on the types of ``a``, ``args`` and ``kwargs``, so a hit rebuilds the
  call's positional and keyword arguments.

Each figure is nanoseconds per call of a ``for`` loop calling the function with
constant arguments; the loop's own cost is in both columns and cancels in the
overhead. The garbage collector is off while a sample runs.

Run: ``python benchmarks/runtime_overhead.py [--json PATH] [--repeats N] [--calls N]``
with framecache installed (``pip install .``) or staged
(``PYTHONPATH=build/dev/pkg`` after ``make dev``).
"""

from __future__ import annotations

import argparse
import datetime
import gc
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from types import CodeType
from typing import Any

import framecache
from framecache import (
    CallbackResult,
    FrameAction,
    FrameExecStrategy,
    FrameView,
    GuardedCode,
)
from framecache.guards import RootGuardManager

# --- the functions measured (defined here, outside the framecache package) ---


def add3(a: int, b: int, c: int) -> int:
    """The 3-argument function of the hit and run_only cases."""
    return a + b + c


def make_closure(k: int) -> Callable[[int, int, int], int]:
    """A 3-argument closure over ``k``."""

    def add3_closure(a: int, b: int, c: int) -> int:
        return a + b + c + k

    return add3_closure


add3_closure = make_closure(10)


def varargs(a: int, *args: int, **kwargs: int) -> int:
    """The *args/**kwargs case."""
    return a + len(args) + len(kwargs)


# --- the loops that call them (one frame per sample, skipped by the hook) ---


def loop3(fn: Callable[..., Any], n: int) -> None:
    """Calls ``fn(1, 2, 3)`` n times."""
    for _ in range(n):
        fn(1, 2, 3)


def loop_varargs(fn: Callable[..., Any], n: int) -> None:
    """Calls ``fn(1, 2, 3, x=4)`` n times."""
    for _ in range(n):
        fn(1, 2, 3, x=4)


# --- the callback: identical code, guarded on argument types ---

# code object -> the (local name, type) pairs its entry guards with TYPE_MATCH.
GUARDS: dict[CodeType, list[tuple[str, type]]] = {
    add3.__code__: [("a", int), ("b", int), ("c", int)],
    add3_closure.__code__: [("a", int), ("b", int), ("c", int)],
    varargs.__code__: [("a", int), ("args", tuple), ("kwargs", dict)],
}
SKIP_HERE = FrameExecStrategy(FrameAction.SKIP, FrameAction.DEFAULT)


def callback(frame: FrameView, entry: object, frame_state: dict[str, Any]) -> CallbackResult:
    """Compiles the measured functions into a copy of their code; skips every other frame."""
    guards = GUARDS.get(frame.f_code)
    if guards is None:
        # The loops and anything else: never looked up again, callees still are.
        return CallbackResult(strategy=SKIP_HERE, apply_to_code=True)
    root = RootGuardManager()
    for name, typ in guards:
        root.local(name).type_match(typ)
    return CallbackResult(GuardedCode(frame.f_code.replace(), root))


# --- measurement ---


@dataclass
class Case:
    """One function measured with the hook off and with a hit in ``mode``."""

    name: str
    fn: Callable[..., Any]
    loop: Callable[[Callable[..., Any], int], None]
    mode: object  # the thread's callback while hitting: the callback, or False (run-only)


CASES = [
    Case("3 TYPE_MATCH hit", add3, loop3, callback),
    Case("run_only hit", add3, loop3, False),
    Case("closure hit", add3_closure, loop3, callback),
    Case("*args/**kwargs hit", varargs, loop_varargs, callback),
]


# The clock of every sample: wall time by default; --clock cpu uses the thread's CPU
# time, which time spent preempted by other processes on a shared machine does not inflate.
_clock: Callable[[], int] = time.perf_counter_ns


def sample_ns(case: Case, n: int, mode: object) -> float:
    """ns per call of ``n`` calls with the thread's callback set to ``mode``."""
    previous = framecache.set_eval_frame(mode)
    try:
        start = _clock()
        case.loop(case.fn, n)
        return (_clock() - start) / n
    finally:
        framecache.set_eval_frame(previous)


def warm_up(case: Case) -> None:
    """Compiles the entry (and marks the loop SKIP) and checks the hit path works."""
    with framecache.optimize(callback):
        case.loop(case.fn, 3)
    entries = framecache.cache_entries(case.fn.__code__)
    if len(entries) != 1:
        raise RuntimeError(f"{case.name}: expected one cache entry, got {len(entries)}")


def check_hits(case: Case, hits_before: int, expected: int) -> int:
    """Asserts every measured call was a hit on the one entry; returns the hit count."""
    entries = framecache.cache_entries(case.fn.__code__)
    if len(entries) != 1:
        raise RuntimeError(f"{case.name}: the function recompiled ({len(entries)} entries)")
    hits = entries[0].hit_count
    if hits - hits_before != expected:
        raise RuntimeError(f"{case.name}: {hits - hits_before} hits for {expected} calls")
    return hits


def measure(case: Case, repeats: int, calls: int) -> dict[str, float]:
    """Median ns/call with the hook off and on, over ``repeats`` interleaved samples."""
    warm_up(case)
    off: list[float] = []
    on: list[float] = []
    hits = framecache.cache_entries(case.fn.__code__)[0].hit_count
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeats):
            # Alternate which side goes first, so drift hits both alike.
            if i % 2 == 0:
                off.append(sample_ns(case, calls, None))
                on.append(sample_ns(case, calls, case.mode))
            else:
                on.append(sample_ns(case, calls, case.mode))
                off.append(sample_ns(case, calls, None))
            hits = check_hits(case, hits, calls)
    finally:
        if gc_was_enabled:
            gc.enable()
    off_ns, on_ns = statistics.median(off), statistics.median(on)
    return {
        "hook_off_ns": off_ns,
        "hit_ns": on_ns,
        "overhead_ns": on_ns - off_ns,
        "ratio": on_ns / off_ns,
        "hit_ns_stdev": statistics.stdev(on) if len(on) > 1 else 0.0,
        "hook_off_ns_stdev": statistics.stdev(off) if len(off) > 1 else 0.0,
    }


def machine() -> dict[str, Any]:
    """What ran the benchmark."""
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "framecache": framecache.__version__,
        "load_average_1min": os.getloadavg()[0],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", help="also write the results to PATH")
    parser.add_argument("--repeats", type=int, default=31, help="samples per side (default 31)")
    parser.add_argument("--calls", type=int, default=50_000, help="calls per sample")
    parser.add_argument(
        "--clock",
        choices=("wall", "cpu"),
        default="wall",
        help="time samples by wall time (default) or by the thread's CPU time",
    )
    args = parser.parse_args()
    global _clock
    _clock = time.thread_time_ns if args.clock == "cpu" else time.perf_counter_ns
    if args.repeats < 1 or args.calls < 1:
        parser.error("--repeats and --calls must be positive")

    framecache.reset()
    results: dict[str, dict[str, float]] = {}
    try:
        for case in CASES:
            results[case.name] = measure(case, args.repeats, args.calls)
    finally:
        framecache.reset()

    print(f"framecache runtime overhead: median of {args.repeats} samples x {args.calls} calls")
    header = f"{'case':<22} {'hook off ns':>12} {'hit ns':>10} {'overhead ns':>12} {'ratio':>7}"
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<22} {r['hook_off_ns']:>12.1f} {r['hit_ns']:>10.1f} "
            f"{r['overhead_ns']:>12.1f} {r['ratio']:>6.2f}x"
        )
    if args.json:
        report = {
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "machine": machine(),
            "repeats": args.repeats,
            "calls": args.calls,
            "clock": args.clock,
            "cases": results,
        }
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(report, fh, indent=2)
            fh.write("\n")
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
