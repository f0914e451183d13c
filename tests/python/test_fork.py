"""os.fork() in a process with the hook on: the child keeps working (hits, misses,
compiles, resets), also when another thread was inside a compiled call at the fork."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import run_python

TESTS_DIR = str(Path(__file__).parent)

FORK_PROGRAM = f"""
import json, os, sys, threading, time, warnings
warnings.simplefilter("ignore", DeprecationWarning)  # fork with threads (3.12+)
sys.path.insert(0, {TESTS_DIR!r})
import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager
framecache.set_recompile_limit(100, accumulated=10**9)

compiles = []

def callback(frame, entry, state):
    if not frame.f_code.co_name.startswith("fn"):
        return None
    compiles.append(frame.f_code.co_name)
    root = RootGuardManager()
    root.local("x").type_match(type(frame.f_locals["x"]))
    ns = {{}}
    exec(f"def {{frame.f_code.co_name}}(x):\\n    return x * 2 + 1000", ns)
    return CallbackResult(GuardedCode(ns[frame.f_code.co_name].__code__, root))

def fn_a(x):
    return x * 2

stop = threading.Event()

def busy():
    framecache.set_eval_frame(callback)
    while not stop.is_set():
        fn_a(1)
    framecache.set_eval_frame(None)

framecache.set_eval_frame(callback)
assert fn_a(1) == 1002 and fn_a(2) == 1004
THREADS = THREAD_COUNT
workers = [threading.Thread(target=busy) for _ in range(THREADS)]
for t in workers:
    t.start()
time.sleep(0.02)
before = len(compiles)
pid = os.fork()
if pid == 0:
    out = {{}}
    try:
        out["hit"] = fn_a(5)                          # cached entry
        out["hit_no_compile"] = len(compiles) == before
        out["miss"] = fn_a(2.5)                       # new type: compiles
        def fn_b(x):
            return x * 2
        out["new"] = [fn_b(1), fn_b(1)]               # new function: compile, hit
        framecache.reset()
        out["after_reset"] = fn_a(3)
        framecache.set_eval_frame(False)
        out["run_only"] = fn_a(3)
        framecache.set_eval_frame(None)
        out["off"] = fn_a(3)
        out["installed"] = framecache.hook_installed()
        out["compiles"] = len(compiles) - before
        print(json.dumps(out), flush=True)
        code = 0
    except BaseException as e:
        print("child failed", type(e).__name__, e, flush=True)
        code = 3
    os._exit(code)
_, status = os.waitpid(pid, 0)
stop.set()
for t in workers:
    t.join()
framecache.set_eval_frame(None)
print("parent", os.waitstatus_to_exitcode(status), fn_a(4), framecache.hook_installed())
"""


@pytest.mark.parametrize("threads", [0, 3])
def test_the_child_of_a_fork_keeps_working(threads: int) -> None:
    proc = run_python(FORK_PROGRAM.replace("THREAD_COUNT", str(threads)), timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    assert proc.stderr == ""
    child, parent = proc.stdout.splitlines()
    assert json.loads(child) == {
        "hit": 1010,
        "hit_no_compile": True,
        "miss": 1005.0,
        "new": [1002, 1002],
        "after_reset": 1006,
        "run_only": 1006,  # the entry compiled after the reset
        "off": 6,
        "installed": False,  # the other threads' states died with the fork
        "compiles": 3,
    }
    assert parent == "parent 0 8 False"
