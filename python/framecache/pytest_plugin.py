"""framecache's pytest plugin, registered through the ``pytest11`` entry point.

Installing framecache is enough; without the entry point (a source tree on PYTHONPATH),
load it with ``-p framecache.pytest_plugin``. It gives:

* isolation by default: the test session gets a private, empty cache directory
  (``FRAMECACHE_CACHE_DIR`` points at it from configuration to the end of the session;
  one per pytest-xdist worker, removed afterwards), so tests never write the user's
  real disk cache and entries left by an earlier run never turn a compile into a disk
  hit. Opt into the real cache with the ini option ``framecache_real_cache = true`` or
  the flag ``--framecache-real-cache``. Inductor entries' AOTInductor packages are then
  built inside the first call (``FRAMECACHE_AOTI_BUILD=inline``, unless set): an entry
  exists when the call returns, for a subprocess of the test to find, and no builder
  process outlives the session's directory.
* the fixture ``framecache_isolated``: a fresh, private cache directory for the test
  (``FRAMECACHE_CACHE_DIR`` points at it while the test runs; the fixture's value is its
  ``pathlib.Path``), and every code object's cache entries dropped after the test
  (``framecache.reset()``), so tests never see each other's compiled code. Under
  pytest-xdist the directory name carries the worker id (``PYTEST_XDIST_WORKER``).
* the ini option ``framecache_isolate = true``: the same for every test.
* the marker ``@pytest.mark.framecache(max_recompiles=N, max_compiles=M)``: a recompile
  budget around the test's call (not its fixtures), failing the test with the guard
  failures and the call site of every compile when exceeded; a marked test is isolated.

Importing the plugin does not import torch.
"""

from __future__ import annotations

import os
import pathlib
import re
import shutil
import tempfile
from collections.abc import Generator, Iterator

import pytest

import framecache

from .testing import RecompileBudgetExceeded, RecompileRecorder, _check_limit

_ENV = "FRAMECACHE_CACHE_DIR"
_MARKER = "framecache"
_MARKER_HELP = (
    "framecache(max_recompiles=None, max_compiles=None): fail the test when its call "
    "recompiles or compiles more often than this (framecache.compile); isolates the test"
)


_REAL_CACHE_HELP = (
    "use the real framecache disk cache ($FRAMECACHE_CACHE_DIR, else "
    "~/.cache/framecache) instead of a private directory for the test session"
)
# The session's private directory and the FRAMECACHE_CACHE_DIR it replaced.
_SESSION_DIR = pytest.StashKey[tuple[pathlib.Path, "str | None"]]()
# Whether the session set FRAMECACHE_AOTI_BUILD (cache/builds.py) and must unset it.
_BUILD_ENV = "FRAMECACHE_AOTI_BUILD"
_SET_BUILD = pytest.StashKey[bool]()


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addini(
        "framecache_isolate",
        type="bool",
        default=False,
        help="give every test a private framecache cache directory and reset framecache after it",
    )
    parser.addini("framecache_real_cache", type="bool", default=False, help=_REAL_CACHE_HELP)
    parser.getgroup("framecache").addoption(
        "--framecache-real-cache",
        action="store_true",
        default=False,
        dest="framecache_real_cache",
        help=_REAL_CACHE_HELP,
    )


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", _MARKER_HELP)
    if config.getoption("framecache_real_cache") or config.getini("framecache_real_cache"):
        return
    # mkdtemp makes it 0700, which the disk cache requires; a fresh name per session
    # (and per xdist worker, each configuring its own) means nothing from an earlier run.
    directory = pathlib.Path(tempfile.mkdtemp(prefix=f"framecache-session-{worker_id()}-"))
    config.stash[_SESSION_DIR] = (directory, os.environ.get(_ENV))
    os.environ[_ENV] = str(directory)
    if _BUILD_ENV not in os.environ:
        os.environ[_BUILD_ENV] = "inline"
        config.stash[_SET_BUILD] = True


def pytest_unconfigure(config: pytest.Config) -> None:
    state = config.stash.get(_SESSION_DIR, None)
    if state is None:
        return
    directory, previous = state
    del config.stash[_SESSION_DIR]
    if config.stash.get(_SET_BUILD, False):
        os.environ.pop(_BUILD_ENV, None)
    if previous is None:
        os.environ.pop(_ENV, None)
    else:
        os.environ[_ENV] = previous
    shutil.rmtree(directory, ignore_errors=True)


def worker_id() -> str:
    """The pytest-xdist worker id (``gw0``, ``gw1``, ...) or ``main`` without xdist."""
    worker = os.environ.get("PYTEST_XDIST_WORKER", "") or "main"
    return re.sub(r"[^A-Za-z0-9_.-]", "_", worker)


@pytest.fixture
def framecache_isolated(tmp_path: pathlib.Path) -> Iterator[pathlib.Path]:
    """A private cache directory for this test (in ``FRAMECACHE_CACHE_DIR``); every code
    object's cache entries are dropped after the test."""
    cache_dir = tmp_path / f"framecache-cache-{worker_id()}"
    cache_dir.mkdir()
    previous = os.environ.get(_ENV)
    os.environ[_ENV] = str(cache_dir)
    try:
        yield cache_dir
    finally:
        if previous is None:
            os.environ.pop(_ENV, None)
        else:
            os.environ[_ENV] = previous
        framecache.reset()


@pytest.fixture(autouse=True)
def _framecache_autoisolate(request: pytest.FixtureRequest) -> None:
    # Isolates when the ini option asks for it or the test carries the marker.
    if request.config.getini("framecache_isolate") or request.node.get_closest_marker(_MARKER):
        request.getfixturevalue("framecache_isolated")


def _limits(marker: pytest.Mark) -> tuple[int | None, int | None]:
    if marker.args:
        raise TypeError("@pytest.mark.framecache takes keyword arguments only")
    unknown = set(marker.kwargs) - {"max_recompiles", "max_compiles"}
    if unknown:
        raise TypeError(
            f"@pytest.mark.framecache got unknown arguments {sorted(unknown)}; "
            "known: max_recompiles, max_compiles"
        )
    max_recompiles = marker.kwargs.get("max_recompiles")
    max_compiles = marker.kwargs.get("max_compiles")
    _check_limit("@pytest.mark.framecache(max_recompiles=...)", max_recompiles)
    _check_limit("@pytest.mark.framecache(max_compiles=...)", max_compiles)
    return max_recompiles, max_compiles


@pytest.hookimpl(wrapper=True)
def pytest_runtest_call(item: pytest.Item) -> Generator[None, object, object]:
    marker = item.get_closest_marker(_MARKER)
    if marker is None:
        return (yield)
    max_recompiles, max_compiles = _limits(marker)
    recorder = RecompileRecorder()
    recorder.start()
    try:
        result = yield
    finally:
        recorder.stop()
    report = recorder.violations(max_recompiles, max_compiles)
    if report is not None:
        raise RecompileBudgetExceeded(report)
    return result
