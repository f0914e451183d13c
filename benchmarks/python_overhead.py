"""What the hook costs Python code that it never compiles.

A model whose top frame falls back, and every library function a compiled model calls,
runs as plain Python under the hook. This benchmark times one Python-heavy workload
(recursion, method calls, attribute reads; no tensors) in one process, samples
interleaved, in four modes:

* ``no hook``: no thread has a callback, so CPython's own evaluator runs it (the hook
  is not even installed);
* ``any evaluator``: a PEP 523 evaluator that only hands each frame to CPython's
  (``_C._passthrough_evaluator``): what installing any evaluator costs, framecache's or
  torch.compile's, before the evaluator does any work. CPython then stops inlining
  Python-to-Python calls (each one goes through the C stack and a new evaluation loop) and
  its specialised call instructions deoptimise. It is the floor under the other modes;
* ``SKIP``: compile mode with a callback that marks every code it is asked about SKIP
  (``FrameExecStrategy(SKIP, DEFAULT)``, what a fallback gets): after the first
  sample, each frame takes the hook's SKIP exit;
* ``run-only``: the thread in run-only mode (``set_eval_frame(False)``) with no entry
  for any code: each frame takes the run-only, no-entries exit;
* ``compile fallback``: ``framecache.compile(workload)``: its top frame cannot be
  captured (it reads a tensor's value into Python control flow), falls back, and the
  functions it calls are handed to the compiler like any other frame.

Each figure is the median, over ``--repeats`` interleaved samples, of one run of the
workload (wall or thread CPU time, see ``--clock``), the garbage collector off; ``ratio``
is the mode's median over ``no hook``'s, ``over floor`` its median over ``any
evaluator``'s (the hook's own work). Every mode's result is checked against the hook-off
result.

Run: ``PYTHONPATH=build/dev/pkg python benchmarks/python_overhead.py [--json PATH]
[--repeats N] [--size N] [--clock wall|cpu] [--no-torch]``.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from typing import Any

import framecache
from framecache import _C, CallbackResult, FrameAction, FrameExecStrategy, FrameView

# --- the workload (defined here, outside the framecache package) ---


class Node:
    """A binary tree node with a few attributes read on every visit."""

    def __init__(self, value: int, left: Node | None, right: Node | None) -> None:
        self.value = value
        self.left = left
        self.right = right
        self.weight = value % 7

    def total(self) -> int:
        """Recursive sum over the subtree, through method calls."""
        out = self.value * self.weight
        if self.left is not None:
            out += self.left.total()
        if self.right is not None:
            out += self.right.total()
        return out


def build(depth: int, start: int = 0) -> Node | None:
    """A full tree of ``depth`` levels."""
    if depth == 0:
        return None
    return Node(start, build(depth - 1, 2 * start + 1), build(depth - 1, 2 * start + 2))


def fib(n: int) -> int:
    """Plain recursion."""
    return n if n < 2 else fib(n - 1) + fib(n - 2)


class Counter:
    """Small method calls and attribute updates."""

    def __init__(self) -> None:
        self.count = 0
        self.step = 3

    def bump(self, k: int) -> None:
        self.count += self.step * k

    def read(self) -> int:
        return self.count


def workload(size: int) -> int:
    """Recursion, method calls and attribute reads: about ``size`` Python calls."""
    tree = build(max(2, size.bit_length() - 3))
    acc = fib(max(2, size.bit_length() + 2))
    counter = Counter()
    for k in range(size // 8):
        counter.bump(k)
    assert tree is not None
    return acc + tree.total() + counter.read()


# --- modes ---

SKIP_HERE = FrameExecStrategy(FrameAction.SKIP, FrameAction.DEFAULT)
# The mode value of ``any evaluator``.
FLOOR = "pass-through evaluator"


def skip_everything(frame: FrameView, entry: object, frame_state: dict[str, Any]) -> Any:
    """A callback that marks every code SKIP (its callees are still looked up)."""
    del frame, entry, frame_state
    return CallbackResult(strategy=SKIP_HERE, apply_to_code=True)


def _clock_fn(name: str) -> Callable[[], int]:
    return time.thread_time_ns if name == "cpu" else time.perf_counter_ns


@contextlib.contextmanager
def _mode(mode: object) -> Iterator[None]:
    """The thread's callback set to ``mode`` (``FLOOR``: the pass-through evaluator
    installed instead) for the block."""
    if mode == FLOOR:
        _C._passthrough_evaluator(True)
        try:
            yield
        finally:
            _C._passthrough_evaluator(False)
        return
    previous = framecache.set_eval_frame(mode)
    try:
        yield
    finally:
        framecache.set_eval_frame(previous)


def run_mode(
    mode: object, fn: Callable[[int], int], size: int, clock: Callable[[], int]
) -> tuple[float, int]:
    """(ns, result) of one ``fn(size)`` under ``mode`` (see ``_mode``)."""
    with _mode(mode):
        start = clock()
        result = fn(size)
        return float(clock() - start), result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="also write the results to this file")
    parser.add_argument("--repeats", type=int, default=21)
    parser.add_argument("--size", type=int, default=20000)
    parser.add_argument("--clock", choices=("wall", "cpu"), default="cpu")
    parser.add_argument("--no-torch", action="store_true", help="leave out 'compile fallback'")
    args = parser.parse_args(argv)
    clock = _clock_fn(args.clock)

    modes: dict[str, tuple[object, Callable[[int], int]]] = {
        "no hook": (None, workload),
        "any evaluator": (FLOOR, workload),
        "SKIP": (skip_everything, workload),
        "run-only": (False, workload),
    }
    if not args.no_torch:
        import torch

        def top(size: int) -> int:
            # .item() into Python control flow: make_fx cannot capture it (a fallback).
            gate = torch.ones(1)
            if gate.item() > 0:
                return workload(size)
            return 0

        compiled = framecache.compile(top, backend="eager", cache=False)
        modes["compile fallback"] = (None, compiled)

    expected = workload(args.size)
    for name, (mode, fn) in modes.items():  # warm up: codes get their strategies
        for _ in range(2):
            _, got = run_mode(mode, fn, args.size, clock)
            if got != expected:
                raise RuntimeError(f"{name}: {got} != {expected}")
    samples: dict[str, list[float]] = {name: [] for name in modes}
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(args.repeats):
            order = list(modes.items())
            if i % 2:
                order.reverse()
            for name, (mode, fn) in order:
                ns, got = run_mode(mode, fn, args.size, clock)
                if got != expected:
                    raise RuntimeError(f"{name}: {got} != {expected}")
                samples[name].append(ns)
    finally:
        if gc_was_enabled:
            gc.enable()
    base = statistics.median(samples["no hook"])
    floor = statistics.median(samples["any evaluator"])
    results = {
        name: {
            "us": statistics.median(s) / 1e3,
            "ratio": statistics.median(s) / base,
            "over_floor": statistics.median(s) / floor,
        }
        for name, s in samples.items()
    }
    if "compile fallback" in modes:
        st = framecache.stats(top)
        results["compile fallback"]["fallback_reasons"] = list(st.fallback_reasons)
    print(f"{'mode':<18} {'us/run':>10} {'ratio':>7} {'over floor':>11}")
    for name, r in results.items():
        print(f"{name:<18} {r['us']:>10.1f} {r['ratio']:>6.2f}x {r['over_floor']:>10.3f}x")
    out = {
        "benchmark": "python_overhead",
        "python": sys.version.split()[0],
        "clock": args.clock,
        "repeats": args.repeats,
        "size": args.size,
        "results": results,
    }
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=2)
    else:
        print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
