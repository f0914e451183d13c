"""Interpreter shutdown with live caches, and with daemon threads inside compiled calls,
callbacks and guard checks: no crash, no hang, a clean exit status (each in a subprocess).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import pytest

from conftest import run_python

TESTS_DIR = str(Path(__file__).parent)
SANITIZER = os.environ.get("FRAMECACHE_SANITIZER_BUILD") == "1"
# Under the sanitizer build, ASan's runtime prints this CHECK of its own stack bookkeeping
# from a daemon thread that pthread_exit unwinds at exit (GCC 12's libasan; the process
# still exits 0 with the expected output). Not yet explained: see docs/hardening.md.
ASAN_EXIT_CHECK = re.compile(
    r"=+\nAddressSanitizer: CHECK failed: asan_thread\.cpp:\d+ "
    r"\"\(\(ptr\[0\] == kCurrentStackFrameMagic\)\) != \(0\)\" \(0x0, 0x0\) \(tid=\d+\)\n"
)


def daemon_exit_stderr(stderr: str) -> str:
    """stderr of a program whose daemon threads are ended at exit (see ASAN_EXIT_CHECK)."""
    return ASAN_EXIT_CHECK.sub("", stderr) if SANITIZER else stderr


PRELUDE = f"""
import sys, threading, time
sys.path.insert(0, {TESTS_DIR!r})
import framecache
from framecache import CallbackResult, GuardedCode
from framecache.guards import RootGuardManager
from conftest import copy_all_callback, copy_callback
framecache.set_recompile_limit(8, accumulated=10**9)
"""


def test_exit_with_many_live_caches_and_the_hook_on() -> None:
    proc = run_python(
        PRELUDE
        + """
fns = []
for k in range(200):
    ns = {}
    exec(f"def soaked_{k}(x):\\n    return x + {k}", ns)
    fns.append(ns[f"soaked_{k}"])
def typed(frame, entry, state):
    if not frame.f_code.co_name.startswith("soaked_"):
        return None
    root = RootGuardManager()
    root.local("x").type_match(type(frame.f_locals["x"]))
    return CallbackResult(GuardedCode(frame.f_code.replace(), root))

framecache.set_eval_frame(typed)
total = sum(f(1) + f(2.0) for f in fns)
print("entries", sum(len(framecache.cache_entries(f.__code__)) for f in fns), total)
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.split() == ["entries", "400", str(float(sum(3 + 2 * k for k in range(200))))]


DAEMONS = """
def work(x):
    return [i * x for i in range(3)]

def slow_guard(v):
    time.sleep(0)           # releases the GIL inside a guard check
    return True

def callback(frame, entry, state):
    if frame.f_code.co_name != "work":
        return None
    time.sleep(0)           # releases the GIL inside the callback
    root = RootGuardManager()
    root.local("x").type_match(type(frame.f_locals["x"])).lambda_guard(slow_guard, "sleeps")
    if WHERE == "callback":
        framecache.reset_code(frame.f_code)   # every call compiles again
    return CallbackResult(GuardedCode(frame.f_code.replace(), root))

started = threading.Semaphore(0)

def spin(k):
    framecache.set_eval_frame(callback)
    started.release()
    i = 0
    while True:
        work(i % 3 if WHERE != "mixed" else (i % 3) + 0.5 * (k % 2))
        i += 1

for k in range(4):
    threading.Thread(target=spin, args=(k,), daemon=True).start()
for k in range(4):
    started.acquire()
time.sleep(0.05)
framecache.set_eval_frame(callback)
print("main", work(1))
"""


@pytest.mark.parametrize("where", ["guard", "callback", "mixed"])
@pytest.mark.parametrize("run", range(3))
def test_exit_with_daemon_threads_inside_compiled_calls(where: str, run: int) -> None:
    # Four daemon threads are inside compiled calls, guard checks (a LAMBDA guard that
    # sleeps) or the callback when the main thread finishes. On 3.11 they are ended
    # where they wait for the GIL; the exit status is the main thread's.
    proc = run_python(PRELUDE + f"WHERE = {where!r}\n" + DAEMONS, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert daemon_exit_stderr(proc.stderr) == ""
    assert proc.stdout.splitlines() == ["main [0, 1, 2]"]


def test_sys_exit_from_inside_a_compiled_call_and_a_callback() -> None:
    proc = run_python(
        PRELUDE
        + """
def inner(x):
    if x == 2:
        sys.exit(7)
    return x

def callback(frame, entry, state):
    if frame.f_code.co_name == "inner" and frame.f_locals["x"] == 3:
        raise SystemExit(5)
    return copy_callback(frame, entry, state)

framecache.set_eval_frame(callback)
try:
    inner(3)
except SystemExit as e:
    print("callback exit", e.code)
inner(1)                # compiles an entry without guards: inner(2) below hits it
print("entries", len(framecache.cache_entries(inner.__code__)))
inner(2)
print("not reached")
"""
    )
    assert proc.returncode == 7, proc.stderr
    assert proc.stderr == ""
    assert proc.stdout.splitlines() == ["callback exit 5", "entries 1"]


def test_exit_while_the_main_thread_is_inside_a_guard_and_a_callback() -> None:
    # atexit handlers and __del__ at shutdown call compiled functions whose guard and
    # callback call compiled functions again.
    proc = run_python(
        PRELUDE
        + """
import atexit

def leaf(x):
    return x * 2

def guard(v):
    return leaf(v) == leaf(v)

def callback(frame, entry, state):
    if frame.f_code.co_name not in ("leaf", "top"):
        return None
    leaf(1)
    root = RootGuardManager()
    root.local("x").lambda_guard(guard, "calls leaf")
    return CallbackResult(GuardedCode(frame.f_code.replace(), root))

def top(x):
    return leaf(x) + 1

class Late:
    def __del__(self):
        print("del", top(4), flush=True)

framecache.set_eval_frame(callback)
late = Late()
cycle = [late]
cycle.append(cycle)
del late, cycle
atexit.register(lambda: print("atexit", top(3), flush=True))
print("main", top(2))
"""
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr == ""
    lines = proc.stdout.splitlines()
    assert lines[0] == "main 5"
    assert "atexit 7" in lines
    # The cycle is collected at exit or before; either way its __del__ ran cleanly.
    assert sorted(lines) == sorted(["main 5", "atexit 7", "del 9"])


UNWIND = """
import os
inside = threading.Event()

class Guards:
    # A Python guard manager: the last reference to it is the daemon thread's entry.
    def check(self, f_locals):
        return True
    def __del__(self):
        # Would run on the daemon thread without the GIL if its unwinding released it.
        os.write(1, f"guards freed on {threading.current_thread().name}\\n".encode())

def blocked(x):
    inside.set()
    while True:
        time.sleep(0.001)   # waits for the GIL again and again: ended there at exit

def callback(frame, entry, state):
    if frame.f_code.co_name != "blocked" or WHERE != "entry":
        if frame.f_code.co_name == "blocked" and WHERE == "callback":
            view = frame           # the callback's own references: frame view, entry, state
            inside.set()
            while True:
                time.sleep(0.001)
        return None
    return CallbackResult(GuardedCode(frame.f_code.replace(), Guards()))

def daemon():
    framecache.set_eval_frame(callback)
    blocked(1)

threading.Thread(target=daemon, daemon=True, name="daemon").start()
inside.wait()
# The daemon's running entry is now owned only by the hook's frames on its stack.
framecache.reset_code(blocked.__code__)
print("main done", flush=True)
"""


@pytest.mark.parametrize("where", ["entry", "callback"])
@pytest.mark.parametrize("run", range(3))
def test_a_daemon_thread_ended_at_exit_releases_no_reference(where: str, run: int) -> None:
    # CPython gh-87135: at exit (3.11) a daemon thread waiting for the GIL is ended by
    # pthread_exit, which unwinds the hook's C++ frames on its stack. Their owners must
    # not release Python references then (no GIL): the entry the daemon is running, and
    # its Python guard manager, stay alive instead of being freed on the daemon thread.
    proc = run_python(PRELUDE + f"WHERE = {where!r}\n" + UNWIND, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert daemon_exit_stderr(proc.stderr) == ""
    assert proc.stdout.splitlines() == ["main done"]


# --- while the interpreter finalizes, the hook steps aside --------------------------------

AT_EXIT = """
import gc, os, sys
import framecache
from framecache.guards import RootGuardManager

def hit(x):
    return ("original", x)

def compiled_hit(x):
    return ("compiled", x)

def miss(x):
    return ("miss", x)

def callback(frame, entry, state, write=os.write):
    if frame.f_code is hit.__code__:
        return framecache.CallbackResult(
            framecache.GuardedCode(compiled_hit.__code__, RootGuardManager())
        )
    if frame.f_code is miss.__code__ or frame.f_code.co_name == "__del__":
        write(1, b"callback ")
        import json   # at exit: ImportError, sys.meta_path is None
    return None

class AtExit:
    def __init__(self):
        self.cycle = self
    def __del__(self, write=os.write, repr=repr):
        write(1, (repr(hit(1)) + " " + repr(miss(2)) + "\\n").encode())

framecache.set_eval_frame(callback)   # left on at exit
assert hit(0) == ("compiled", 0)       # cached before exit
gc.disable()
AtExit()   # a cycle: its __del__ runs in the interpreter's last collection, at exit
"""


def test_at_exit_cached_entries_run_and_nothing_compiles() -> None:
    proc = run_python(AT_EXIT)
    assert proc.stderr == ""
    assert proc.returncode == 0
    # The cached entry ran; the miss ran the original code without calling the callback.
    assert proc.stdout == "('compiled', 1) ('miss', 2)\n"


AT_EXIT_COMPILE = """
import gc, os
import torch
import framecache

def scale(x):
    return x * 2

def other(x):
    return x + 1

compiled_scale = framecache.compile(scale)
compiled_other = framecache.compile(other)
compiled_scale(torch.ones(2))   # cached (and stored on disk) before exit

class AtExit:
    def __init__(self):
        self.cycle = self
    def __del__(self, write=os.write, ones=torch.ones):
        a = compiled_scale(ones(2)).tolist()    # a hit
        b = compiled_other(ones(2)).tolist()    # a miss: before, the disk key's import failed
        write(1, (str(a) + " " + str(b) + "\\n").encode())

gc.disable()
AtExit()   # a cycle: its __del__ runs in the interpreter's last collection, at exit
"""


@pytest.mark.torch
def test_a_compiled_function_called_from_a_destructor_at_exit(tmp_path: Path) -> None:
    env = {"FRAMECACHE_CACHE_DIR": str(tmp_path / "cache")}
    proc = run_python_env(AT_EXIT_COMPILE, env)
    assert proc.stderr == ""
    assert proc.returncode == 0
    assert proc.stdout == "[2.0, 2.0] [2.0, 2.0]\n"


def run_python_env(source: str, extra: dict[str, str]) -> Any:
    """run_python with extra environment variables."""
    saved = {k: os.environ.get(k) for k in extra}
    os.environ.update(extra)
    try:
        return run_python(source)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
