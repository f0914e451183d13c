"""framecache's pytest plugin, run inside pytester: the isolation fixture and ini option,
the recompile budget marker and expect_recompiles, the stance from a test, xdist workers.

The inner runs are in-process, except those that compile with torch and the xdist one.
Without an installed entry point the plugin is loaded with ``-p``.
"""

from __future__ import annotations

import importlib.metadata
import os
import pathlib
import tomllib

import pytest

import framecache

pytest_plugins = ["pytester"]

_PLUGIN = "framecache.pytest_plugin"


def plugin_args() -> list[str]:
    """``-p framecache.pytest_plugin`` unless the installed entry point already loads it.

    pytest-benchmark is kept out: it warns when it sees an xdist worker id.
    """
    blocked = ["-p", "no:benchmark"]
    for ep in importlib.metadata.entry_points(group="pytest11"):
        if ep.value == _PLUGIN:
            return blocked
    return [*blocked, "-p", _PLUGIN]


def brackets(pattern: str) -> str:
    """A fnmatch pattern whose ``[`` are literal (guard sources read ``L['x']``)."""
    return pattern.replace("[", "[[]")


def package_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(framecache.__file__)))


def test_entry_point_is_declared() -> None:
    pyproject = pathlib.Path(__file__).parents[2] / "pyproject.toml"
    data = tomllib.loads(pyproject.read_text())
    assert data["project"]["entry-points"]["pytest11"] == {"framecache": _PLUGIN}


def test_isolated_fixture_gives_a_private_dir_and_resets(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRAMECACHE_CACHE_DIR", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(
        test_iso="""
        import os
        import framecache
        from framecache.guards import RootGuardManager

        def add(a, b):
            return a + b

        def copy(frame, entry, state):
            if frame.f_code is not add.__code__:
                return None
            return framecache.CallbackResult(
                framecache.GuardedCode(frame.f_code.replace(), RootGuardManager()))

        seen = []

        def test_first(framecache_isolated):
            assert framecache_isolated.is_dir()
            assert framecache_isolated.name == "framecache-cache-main"
            assert os.environ["FRAMECACHE_CACHE_DIR"] == str(framecache_isolated)
            seen.append(framecache_isolated)
            with framecache.optimize(copy):
                assert add(1, 2) == 3
            assert len(framecache.cache_entries(add.__code__)) == 1

        def test_second(framecache_isolated):
            assert framecache_isolated != seen[0]
            assert framecache.cache_entries(add.__code__) == []

        def test_env_restored():
            # Back to the session's private directory.
            assert os.path.basename(os.environ["FRAMECACHE_CACHE_DIR"]).startswith(
                "framecache-session-main-"
            )
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=3)


def test_ini_option_isolates_every_test(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("FRAMECACHE_CACHE_DIR", raising=False)
    pytester.makeini("[pytest]\nframecache_isolate = true\n")
    pytester.makepyfile(
        test_ini="""
        import os

        def test_one():
            assert os.path.isdir(os.environ["FRAMECACHE_CACHE_DIR"])
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)


def test_worker_id_names_the_directory(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PYTEST_XDIST_WORKER", "gw3")
    pytester.makepyfile(
        test_worker="""
        def test_dir(framecache_isolated):
            assert framecache_isolated.name == "framecache-cache-gw3"
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)


def test_under_xdist_each_worker_has_its_own_dir(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    # pytest-xdist is a test dependency (make deps).
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", package_root() + (os.pathsep + inherited if inherited else ""))
    monkeypatch.delenv("FRAMECACHE_CACHE_DIR", raising=False)
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(
        test_xdist="""
        import os
        import pytest

        @pytest.mark.parametrize("i", range(4))
        def test_dir(i, framecache_isolated):
            worker = os.environ["PYTEST_XDIST_WORKER"]
            assert worker.startswith("gw")
            assert framecache_isolated.name == "framecache-cache-" + worker
            print("DIR", framecache_isolated)
        """
    )
    result = pytester.runpytest_subprocess(*plugin_args(), "-n", "2", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=4)


_SESSION_TEST = """
import os, stat

def test_private(tmp_path_factory):
    directory = os.environ["FRAMECACHE_CACHE_DIR"]
    with open({record!r}, "w") as f:
        f.write(directory)
    assert directory != {real!r}
    assert os.listdir(directory) == []
    assert stat.S_IMODE(os.stat(directory).st_mode) == 0o700
"""


def test_a_session_gets_a_private_cache_dir_by_default(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    real = str(tmp_path / "real")
    record = str(tmp_path / "seen")
    monkeypatch.setenv("FRAMECACHE_CACHE_DIR", real)
    # The inner session runs in this process: when this suite runs on an xdist worker,
    # the worker's PYTEST_XDIST_WORKER would name the inner (non-xdist) session's dir.
    monkeypatch.delenv("PYTEST_XDIST_WORKER", raising=False)
    pytester.makepyfile(test_session=_SESSION_TEST.format(record=record, real=real))
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)
    seen = pathlib.Path(record).read_text()
    assert pathlib.Path(seen).name.startswith("framecache-session-main-")
    assert not pathlib.Path(seen).exists()  # removed with the session
    assert os.environ["FRAMECACHE_CACHE_DIR"] == real  # restored


@pytest.mark.parametrize("preset", [None, "background"])
def test_an_isolated_session_builds_packages_inside_the_call(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, preset: str | None
) -> None:
    """Packages built after the call would go to a directory the session removes."""
    if preset is None:
        monkeypatch.delenv("FRAMECACHE_AOTI_BUILD", raising=False)
    else:
        monkeypatch.setenv("FRAMECACHE_AOTI_BUILD", preset)
    pytester.makepyfile(
        test_mode=f"""
        import os

        def test_mode():
            assert os.environ["FRAMECACHE_AOTI_BUILD"] == {preset or "inline"!r}
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(passed=1)
    assert os.environ.get("FRAMECACHE_AOTI_BUILD") == preset  # left as it was


@pytest.mark.parametrize("how", ["flag", "ini"])
def test_the_real_cache_on_request(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path, how: str
) -> None:
    real = str(tmp_path / "real")
    monkeypatch.setenv("FRAMECACHE_CACHE_DIR", real)
    pytester.makepyfile(
        test_real=f"""
        import os

        def test_real():
            assert os.environ["FRAMECACHE_CACHE_DIR"] == {real!r}
        """
    )
    if how == "ini":
        pytester.makeini("[pytest]\nframecache_real_cache = true\n")
        result = pytester.runpytest(*plugin_args())
    else:
        result = pytester.runpytest(*plugin_args(), "--framecache-real-cache")
    result.assert_outcomes(passed=1)


_EARLIER_RUN_TEST = """
import torch
import framecache

scale = framecache.compile(lambda x: x * 3)

def test_compiles_from_scratch():
    scale(torch.ones(3))
    stats = framecache.stats(scale)
    assert stats.compiles == 1
    assert stats.disk_hits == 0
"""


@pytest.mark.torch
def test_an_earlier_run_never_turns_a_compile_into_a_disk_hit(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path
) -> None:
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", package_root() + (os.pathsep + inherited if inherited else ""))
    monkeypatch.delenv("FRAMECACHE_CACHE_DIR", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    pytester.makepyfile(test_earlier=_EARLIER_RUN_TEST)
    for _ in range(2):
        result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider")
        result.assert_outcomes(passed=1)
    # Nothing was written to the user's cache.
    assert not (tmp_path / "xdg" / "framecache").exists()
    assert not (tmp_path / "home" / ".cache").exists()


@pytest.fixture
def subprocess_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """An absolute PYTHONPATH to this framecache, for inner runs in a subprocess."""
    inherited = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", package_root() + (os.pathsep + inherited if inherited else ""))


_BUDGET_TESTS = """
import threading

import pytest
import torch

import framecache


@framecache.compile
def scale(x):
    return x * 2


def test_warm_up_then_hit():
    scale(torch.ones(3))
    with framecache.expect_recompiles(at_most=0) as rec:
        scale(torch.ones(3))
    assert (rec.compiles, rec.recompiles) == (0, 0)


@pytest.mark.framecache(max_recompiles=0)
def test_marker_recompile():
    scale(torch.ones(3))
    scale(torch.ones(3, dtype=torch.float64))  # CALL-SITE-MARKER


@pytest.mark.framecache(max_compiles=1)
def test_marker_compiles_in_a_thread():
    scale(torch.ones(2))
    t = threading.Thread(target=scale, args=(torch.ones(5, 5),), name="worker-1")
    t.start()
    t.join()


@pytest.mark.framecache(max_recompiles=1, max_compiles=2)
def test_marker_within_budget():
    scale(torch.ones(4))
    scale(torch.ones(4, dtype=torch.float64))


def test_context_manager():
    scale(torch.ones(6))
    with framecache.expect_recompiles(at_most=0):
        scale(torch.ones(6, dtype=torch.int64))  # CM-CALL-SITE


def test_stance_fail_on_recompile():
    scale(torch.ones(7))
    with framecache.stance("fail_on_recompile"):
        scale(torch.ones(7))
        scale(torch.ones(7, 7))
"""


@pytest.mark.torch
def test_budgets_and_stance_fail_with_reasons_and_call_site(
    pytester: pytest.Pytester, subprocess_env: None
) -> None:
    # In a subprocess: an in-process run would drop the torch modules that compiling
    # imports, and torch cannot import them a second time in this process.
    path = pytester.makepyfile(test_budget=_BUDGET_TESTS)
    lines = path.read_text().splitlines()
    marker_line = next(i for i, line in enumerate(lines, 1) if "CALL-SITE-MARKER" in line)
    cm_line = next(i for i, line in enumerate(lines, 1) if "CM-CALL-SITE" in line)
    result = pytester.runpytest_subprocess(*plugin_args(), "-p", "no:cacheprovider", "-rf")
    outcomes = result.parseoutcomes()
    assert outcomes == {"passed": 2, "failed": 4}, result.stdout.str()
    result.stdout.fnmatch_lines(
        [
            "*RecompileBudgetExceeded: framecache recompile budget exceeded: "
            "1 recompiles, at most 0 allowed",
            "*recompiled scale (*test_budget.py:*), called from "
            f"*test_budget.py:{marker_line} (in test_marker_recompile)",
            "*guard failures:",
            brackets("*L['x']: dtype mismatch, expected torch.float32, got torch.float64"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*framecache recompile budget exceeded: 2 compiles, at most 1 allowed",
            "*compiled scale (*), called from *test_budget.py:* "
            "(in test_marker_compiles_in_a_thread)",
            "*recompiled scale (*), called from * in thread worker-1",
            brackets("*L['x']: ndim mismatch, expected 1, got 2"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            f"*recompiled scale (*), called from *test_budget.py:{cm_line} "
            "(in test_context_manager)",
            brackets("*L['x']: dtype mismatch, expected torch.float32, got torch.int64"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "*RecompileError: stance('fail_on_recompile'): scale (*) would recompile: "
            + brackets("L['x']: ndim mismatch, expected 1, got 2"),
        ]
    )
    result.stdout.fnmatch_lines(
        [
            "FAILED test_budget.py::test_marker_recompile - *",
            "FAILED test_budget.py::test_marker_compiles_in_a_thread - *",
            "FAILED test_budget.py::test_context_manager - *",
            "FAILED test_budget.py::test_stance_fail_on_recompile - *",
        ]
    )


def test_marker_rejects_bad_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        test_bad="""
        import pytest

        @pytest.mark.framecache(max_recompiles=-1)
        def test_negative():
            pass

        @pytest.mark.framecache(max_recompile=1)
        def test_typo():
            pass
        """
    )
    result = pytester.runpytest(*plugin_args())
    result.assert_outcomes(failed=2)
    result.stdout.fnmatch_lines(
        [
            "*ValueError: @pytest.mark.framecache(max_recompiles=...) must be >= 0, got -1",
            brackets(
                "*TypeError: @pytest.mark.framecache got unknown arguments ['max_recompile']*"
            ),
        ]
    )


def test_marker_is_registered(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest(*plugin_args(), "--markers")
    result.stdout.fnmatch_lines(
        ["@pytest.mark.framecache(max_recompiles=None, max_compiles=None)*"]
    )
