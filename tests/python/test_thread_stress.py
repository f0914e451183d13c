"""Thread stress (tests/stress/thread_stress.py) in a subprocess: 8 threads compiling,
hitting, invalidating (reset_code, reset) and switching modes on shared and own functions,
each result checked exactly: 0 crashes, 0 wrong results."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import framecache

STRESS = Path(__file__).resolve().parent.parent / "stress" / "thread_stress.py"
SANITIZER = os.environ.get("FRAMECACHE_SANITIZER_BUILD") == "1"


def run_stress(*args: str, timeout: float) -> dict:
    env = dict(os.environ)
    root = str(Path(framecache.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run(
        [sys.executable, "-X", "faulthandler", str(STRESS), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
        check=False,
    )
    assert proc.stderr == "", proc.stderr
    report = json.loads(proc.stdout)
    assert proc.returncode == 0, report
    return report


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
