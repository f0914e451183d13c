"""Shared fixtures and helper callbacks for framecache's Python tests.

framecache never intercepts code whose file lies inside the framecache package;
the functions defined in these test files are intercepted normally.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

import framecache
from framecache.guards import RootGuardManager

DEFAULT_RECOMPILE_LIMIT = 8
DEFAULT_ACCUMULATED_LIMIT = 256

# Modules whose tests all need torch say so with ``pytestmark = pytest.mark.torch`` (or a
# pytestmark list holding it) and import it at the top. On CPython 3.12/3.13
# torch==2.13.0 is not installed (README, "Supported Pythons") and those runs deselect the
# torch tests with -m "not torch"; such modules are then not collected at all, since
# importing them would fail. They are found by that line, not by a list kept by hand (two
# new modules once broke the 3.12 run by missing from it). Any other run without torch
# still fails loudly on them.
TORCH_ONLY_MARK = re.compile(
    r"^pytestmark\s*=\s*(?:pytest\.mark\.torch\b|\[[^\]]*?pytest\.mark\.torch\b)", re.M
)


def deselects_torch(markexpr: str) -> bool:
    """True when the -m expression is ``not torch`` or a conjunction with ``not torch`` in it
    (``not torch and not serial``: the torch-free runs of .ci/pytest-passes)."""
    return "not torch" in (part.strip() for part in markexpr.split(" and "))


def selects_serial_only(markexpr: str) -> bool:
    """True when the -m expression is ``serial`` or a conjunction with ``serial`` in it
    (``not torch and serial``: the second pass of .ci/pytest-passes)."""
    return "serial" in (part.strip() for part in markexpr.split(" and "))


def pytest_ignore_collect(collection_path: pathlib.Path, config: pytest.Config) -> bool | None:
    markexpr = config.getoption("markexpr")
    # The serial pass runs a few tests; importing every other module only to deselect all
    # of its tests took 6 s of that pass, 14 s under ASan (torch imported for nothing). A
    # test is marked serial in its own module (pytestmark, a decorator, pytest.param), and
    # every such spelling names mark.serial.
    if (
        selects_serial_only(markexpr)
        and collection_path.suffix == ".py"
        and collection_path.name.startswith("test_")
        and "mark.serial" not in collection_path.read_text(encoding="utf-8")
    ):
        return True
    if not deselects_torch(markexpr) or importlib.util.find_spec("torch") is not None:
        return None
    if collection_path.suffix != ".py" or not collection_path.name.startswith("test_"):
        return None
    return bool(TORCH_ONLY_MARK.search(collection_path.read_text(encoding="utf-8"))) or None


# Inductor entries' AOTInductor packages are built inside the first call in the suite, so
# that an entry exists when a test's cold process returns and no builder process outlives
# its test. test_warm_start_lean.py runs the default (a background build) on purpose.
os.environ.setdefault("FRAMECACHE_AOTI_BUILD", "inline")


@pytest.fixture(autouse=True)
def private_disk_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every test gets its own empty disk cache directory (FRAMECACHE_CACHE_DIR).

    framecache.compile keeps graphs on disk by default; without this, one test's stored
    graphs would be loaded by another and ~/.cache would fill up with test graphs.
    """
    previous = os.environ.get("FRAMECACHE_CACHE_DIR")
    os.environ["FRAMECACHE_CACHE_DIR"] = str(tmp_path_factory.mktemp("fc-disk-cache"))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("FRAMECACHE_CACHE_DIR", None)
        else:
            os.environ["FRAMECACHE_CACHE_DIR"] = previous


@pytest.fixture(autouse=True)
def fresh_framecache() -> Iterator[None]:
    """Start every test with this thread off, and leave framecache as it was found.

    Restores the previous callback, drops every cache entry, turns LRU back on
    and restores the default recompile limits, even when the test fails.
    """
    previous = framecache.set_eval_frame(None)
    try:
        yield
    finally:
        framecache.set_eval_frame(previous)
        framecache.reset()
        framecache.set_lru(True)
        framecache.set_recompile_limit(
            DEFAULT_RECOMPILE_LIMIT, accumulated=DEFAULT_ACCUMULATED_LIMIT
        )


def run_json_script(
    script: os.PathLike[str] | str, *args: str, timeout: float, env: dict[str, str] | None = None
) -> dict:
    """Runs a tests/stress script in a fresh interpreter and returns the JSON it prints.

    The framecache under test comes first on the child's path; the child must print nothing
    on stderr and exit 0 (its JSON is shown when it does not).
    """
    env = dict(os.environ if env is None else env)
    root = str(Path(framecache.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    result = json.loads(proc.stdout)
    assert proc.returncode == 0, result
    return result


def is_function_code(code: types.CodeType) -> bool:
    """True for the code of a function, generator, coroutine or lambda."""
    return bool(code.co_flags & 0x1)  # CO_OPTIMIZED


def none_callback(frame: framecache.FrameView, entry: object, frame_state: dict) -> None:
    """A callback that lets every frame run normally."""
    return None


def copy_result(code: types.CodeType, guard_manager: object = None) -> framecache.CallbackResult:
    """A CallbackResult that caches an identical copy of ``code`` under ``guard_manager``.

    With no guard manager the entry has an empty RootGuardManager: no guards, so
    it is hit by every later frame of the code.
    """
    if guard_manager is None:
        guard_manager = RootGuardManager()
    return framecache.CallbackResult(framecache.GuardedCode(code.replace(), guard_manager))


def copy_callback(
    frame: framecache.FrameView, entry: object, frame_state: dict
) -> framecache.CallbackResult | None:
    """Compiles ("copies") every function frame (generators and coroutines too) into a copy.

    Module and class-body frames run normally.
    """
    code = frame.f_code
    if not is_function_code(code):
        return None
    return copy_result(code)


def copy_all_callback(
    frame: framecache.FrameView, entry: object, frame_state: dict
) -> framecache.CallbackResult:
    """Like copy_callback, and also compiles module and class-body frames."""
    return copy_result(frame.f_code)


class CountingCallback:
    """Wraps a callback and records the code of every frame it is called for."""

    def __init__(self, inner: Callable[..., Any] = none_callback) -> None:
        self.inner = inner
        self.codes: list[types.CodeType] = []
        self._lock = threading.Lock()

    def __call__(self, frame: framecache.FrameView, entry: object, frame_state: dict) -> Any:
        with self._lock:
            self.codes.append(frame.f_code)
        return self.inner(frame, entry, frame_state)

    @property
    def names(self) -> list[str]:
        """The co_name of every frame the callback saw, in order."""
        return [code.co_name for code in self.codes]

    def count(self, code: types.CodeType) -> int:
        """How many times the callback was called for frames of ``code``."""
        return sum(1 for c in self.codes if c is code)


@pytest.fixture
def counting_none() -> CountingCallback:
    """A counting callback that runs every frame normally."""
    return CountingCallback(none_callback)


@pytest.fixture
def counting_copy() -> CountingCallback:
    """A counting callback that compiles every function frame into a copy."""
    return CountingCallback(copy_callback)


def run_python(source: str, timeout: float = 300.0) -> subprocess.CompletedProcess[str]:
    """Runs ``source`` in a fresh interpreter that imports this framecache.

    Used for scenarios that could crash the interpreter: the caller asserts the
    exit status and the output.
    """
    env = dict(os.environ)
    package_root = os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))
    inherited = env.get("PYTHONPATH")
    env["PYTHONPATH"] = package_root + (os.pathsep + inherited if inherited else "")
    return subprocess.run(
        [sys.executable, "-X", "faulthandler", "-c", textwrap.dedent(source)],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
