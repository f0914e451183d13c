"""Deep recursion through the hook: RecursionError, never a crash, and at the user's frame.

Each Python call that goes through a PEP 523 evaluator costs C stack that plain CPython
(3.11+ inlines Python-to-Python calls) does not spend, so a recursion that the raised
recursion limit allows can run the C stack out: the hook refuses a frame with
RecursionError while a safety margin of C stack is left (include/framecache/stack_guard.h).
The deep scenarios run in a subprocess, since a failure is a SIGSEGV.
"""

from __future__ import annotations

import json
import sys
import traceback
from pathlib import Path
from typing import Any

import pytest

import framecache
from conftest import run_python

TESTS_DIR = str(Path(__file__).parent)
DEPTHS = (400, 5_000, 20_000, 50_000, 99_000)

DEEP_PROGRAM = """
import json, sys, threading
sys.path.insert(0, {tests_dir!r})
import framecache
from conftest import copy_callback, none_callback

def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)

def attempt(n):
    try:
        return rec(n)
    except RecursionError as exc:
        return "RecursionError: " + str(exc)[:40]

def run(mode):
    sys.setrecursionlimit(100_000)
    if mode == "callback":
        scope = framecache.optimize(none_callback)
    elif mode == "copy":
        scope = framecache.optimize(copy_callback)
    elif mode == "run_only":
        with framecache.optimize(copy_callback):
            rec(3)
        scope = framecache.run_only()
    elif mode == "skip":
        framecache.set_code_strategy(
            rec.__code__, framecache.FrameExecStrategy(framecache.FrameAction.SKIP)
        )
        scope = framecache.optimize(none_callback)
    elif mode == "other_thread_on":
        # This thread is off; another thread's callback keeps the hook installed.
        started, done = threading.Event(), threading.Event()

        def keep_on():
            with framecache.optimize(none_callback):
                started.set()
                done.wait()

        thread = threading.Thread(target=keep_on)
        thread.start()
        started.wait()
        try:
            assert framecache.hook_installed()
            return [attempt(n) for n in {depths!r}]
        finally:
            done.set()
            thread.join()
    with scope:
        return [attempt(n) for n in {depths!r}]

print(json.dumps(run({mode!r})))
"""


@pytest.mark.parametrize("mode", ["callback", "copy", "run_only", "skip", "other_thread_on"])
def test_deep_recursion_raises_recursion_error_instead_of_crashing(mode: str) -> None:
    proc = run_python(DEEP_PROGRAM.format(tests_dir=TESTS_DIR, mode=mode, depths=DEPTHS))
    assert proc.returncode == 0, proc.stderr[-3000:]
    results = json.loads(proc.stdout)
    assert len(results) == len(DEPTHS)
    for depth, result in zip(DEPTHS, results, strict=True):
        # Either the recursion completed, or it stopped with a clean RecursionError.
        assert result == depth or (
            isinstance(result, str) and result.startswith("RecursionError: maximum recursion")
        ), (depth, result)
    # A modest depth always works through the hook (3.12+ count C recursion per call
    # through it: their own RecursionError comes far below the Python limit).
    assert results[0] == DEPTHS[0]


THREAD_PROGRAM = """
import json, sys, threading
sys.path.insert(0, {tests_dir!r})
import framecache
from conftest import none_callback

def rec(n):
    return 0 if n == 0 else 1 + rec(n - 1)

out = []

def body():
    with framecache.optimize(none_callback):
        for n in (200, 100_000):
            try:
                out.append(rec(n))
            except RecursionError:
                out.append("RecursionError")

sys.setrecursionlimit(200_000)
threading.stack_size(1 << 20)   # a small stack: 1 MiB
thread = threading.Thread(target=body)
thread.start()
thread.join()
print(json.dumps(out))
"""


def test_a_thread_with_a_small_stack_gets_recursion_error() -> None:
    proc = run_python(THREAD_PROGRAM.format(tests_dir=TESTS_DIR))
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout) == [200, "RecursionError"]


# --- the traceback of a RecursionError in a region where the callback sees every frame ------


def runaway(n: int) -> int:
    return runaway(n + 1) + 1


def busy_callback(frame: framecache.FrameView, entry: object, frame_state: dict) -> Any:
    """A callback that itself calls a few Python functions, as real compilers do."""

    def depth(k: int) -> int:
        return 0 if k == 0 else 1 + depth(k - 1)

    depth(5)
    return None


def last_frame_of(exc: BaseException) -> str:
    return traceback.extract_tb(exc.__traceback__)[-1].name


def tight_recursion_limit(room: int) -> int:
    """Sets the recursion limit to ``room`` frames above the caller; returns the old one."""
    previous = sys.getrecursionlimit()
    sys.setrecursionlimit(len(traceback.extract_stack()) + room)
    return previous


def test_recursion_error_surfaces_at_the_users_frame() -> None:
    previous = tight_recursion_limit(200)
    try:
        with pytest.raises(RecursionError) as plain:
            runaway(0)
        with framecache.optimize(busy_callback), pytest.raises(RecursionError) as hooked:
            runaway(0)
    finally:
        sys.setrecursionlimit(previous)
    assert last_frame_of(plain.value) == "runaway"
    # Not the callback's frames (busy_callback, depth): the user's, as without the hook.
    assert last_frame_of(hooked.value) == "runaway"
    names = {frame.name for frame in traceback.extract_tb(hooked.value.__traceback__)}
    assert "busy_callback" not in names and "depth" not in names


def fits(n: int) -> int:
    return 0 if n == 0 else 1 + fits(n - 1)


def test_a_recursion_error_in_the_callback_does_not_fail_a_call_that_fits() -> None:
    # The user's recursion fits the limit; the callback's extra frames do not. Without
    # the hook the call succeeds, so with it too (the deepest frames run uncompiled).
    previous = tight_recursion_limit(200)
    try:
        assert fits(190) == 190
        with framecache.optimize(busy_callback):
            assert fits(190) == 190
    finally:
        sys.setrecursionlimit(previous)
