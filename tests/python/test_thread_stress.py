"""Thread stress (tests/stress/thread_stress.py) in a subprocess: 8 threads compiling,
hitting, invalidating (reset_code, reset) and switching modes on shared and own functions,
each result checked exactly: 0 crashes, 0 wrong results."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_json_script

STRESS = Path(__file__).resolve().parent.parent / "stress" / "thread_stress.py"
SANITIZER = os.environ.get("FRAMECACHE_SANITIZER_BUILD") == "1"


def run_stress(*args: str, timeout: float) -> dict:
    return run_json_script(STRESS, *args, timeout=timeout)


@pytest.mark.parametrize("seed", [1, 2])
def test_eight_threads_with_a_checking_callback(seed: int) -> None:
    iterations = 2000 if SANITIZER else 10_000
    report = run_stress(
        "--threads", "8", "--iterations", str(iterations), "--seed", str(seed), timeout=900
    )
    assert report["wrong"] == 0, report["errors"]
    counts = report["counts"]
    assert counts["calls"] >= 8 * iterations * 0.6
    assert counts["compiled_results"] > 0 and counts["reset_code"] > 0 and counts["reset"] > 0
    assert report["hook_installed_after"] is False


@pytest.mark.torch
def test_eight_threads_with_framecache_compile_eager() -> None:
    report = run_stress("--backend", "eager", "--threads", "8", "--iterations", "100", timeout=900)
    assert report["wrong"] == 0, report["errors"]
    assert report["counts"]["calls"] > 8 * 100 * 0.7
