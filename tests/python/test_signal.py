"""A KeyboardInterrupt arriving during a guard check (a LAMBDA guard) or a compile (inside
the callback), raised by signal.raise_signal or by a timer: it propagates to the caller, and
the runtime keeps working afterwards (each in a subprocess, with a timeout)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_python

TESTS_DIR = str(Path(__file__).parent)

PROGRAM = f"""
import json, signal, sys, time
sys.path.insert(0, {TESTS_DIR!r})
import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager
framecache.set_recompile_limit(100, accumulated=10**9)

WHERE, HOW = sys.argv[1], sys.argv[2]
# A shell's background job starts with SIGINT ignored, and Python then keeps it ignored:
# make sure SIGINT raises KeyboardInterrupt here.
signal.signal(signal.SIGINT, signal.default_int_handler)
armed = {{"on": False}}

def interrupt_here():
    if not armed["on"]:
        return
    armed["on"] = False
    if HOW == "raise_signal":
        signal.raise_signal(signal.SIGINT)
        time.sleep(1)          # the handler raises before this returns
        print("signal not delivered", flush=True)
    else:                      # a timer fires while this code spins in Python
        signal.setitimer(signal.ITIMER_REAL, 0.005)
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            pass
        print("timer not delivered", flush=True)

def on_alarm(signum, frame):
    raise KeyboardInterrupt("timer")

signal.signal(signal.SIGALRM, on_alarm)

def guard(v):
    if WHERE == "guard":
        interrupt_here()
    return True

compiles = []

def callback(frame, entry, state):
    if frame.f_code.co_name != "f":
        return None
    compiles.append(1)
    if WHERE == "callback":
        interrupt_here()
    root = RootGuardManager()
    root.local("x").type_match(type(frame.f_locals["x"])).lambda_guard(guard, "may be interrupted")
    ns = {{}}
    exec("def f(x):\\n    return x + 1000", ns)
    return CallbackResult(GuardedCode(ns["f"].__code__, root))

def f(x):
    return x

out = {{}}
framecache.set_eval_frame(callback)
out["first"] = f(1)                     # compiles: 1001
for attempt in range(3):
    armed["on"] = True
    try:
        # guard: the hit's LAMBDA guard is interrupted. callback: a new type compiles.
        f(2 if WHERE == "guard" else 2.5 + attempt)
        out.setdefault("results", []).append("no interrupt")
    except KeyboardInterrupt as e:
        out.setdefault("results", []).append("KeyboardInterrupt")
out["entries_after"] = len(framecache.cache_entries(f.__code__))
out["hit"] = f(3)                       # the runtime works: a hit
out["miss"] = f(4.5)                    # and a compile
out["hit_again"] = f(4.5)
out["compiles"] = len(compiles)
framecache.set_eval_frame(None)
out["off"] = f(3)
out["installed"] = framecache.hook_installed()
print(json.dumps(out), flush=True)
"""


@pytest.mark.parametrize("how", ["raise_signal", "timer"])
@pytest.mark.parametrize("where", ["guard", "callback"])
def test_a_keyboard_interrupt_during_a_guard_check_or_a_compile(where: str, how: str) -> None:
    proc = run_python(f"import sys\nsys.argv[1:] = [{where!r}, {how!r}]\n" + PROGRAM, timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stderr == ""
    out = json.loads(proc.stdout)
    assert out["results"] == ["KeyboardInterrupt"] * 3
    assert out["first"] == 1001
    assert out["hit"] == 1003
    assert out["miss"] == 1004.5 and out["hit_again"] == 1004.5
    # guard: the int entry stays (an interrupted check is not a failure that drops it);
    # callback: the interrupted compiles left no entry behind.
    assert out["entries_after"] == 1
    assert out["compiles"] == (2 if where == "guard" else 5)
    assert out["off"] == 3
    assert out["installed"] is False
