"""Leak soak (tests/stress/soak.py) in a subprocess: resident memory stays flat, the inputs'
reference counts are unchanged, and every dead function's code, guard managers and
compiled codes are freed, over calls mixing hits, misses, recompiles and resets."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import run_json_script

SOAK = Path(__file__).resolve().parent.parent / "stress" / "soak.py"
SANITIZER = os.environ.get("FRAMECACHE_SANITIZER_BUILD") == "1"


def run_soak(*args: str, timeout: float) -> dict:
    env = dict(os.environ)
    if SANITIZER:
        # ASan keeps freed blocks in a quarantine (256 MB by default) to catch use after
        # free: resident memory grows until it is full. A small one keeps RSS meaningful.
        env["ASAN_OPTIONS"] = env.get("ASAN_OPTIONS", "") + ":quarantine_size_mb=16"
    return run_json_script(SOAK, *args, timeout=timeout, env=env)


def check_figures(figures: dict, calls: int, growth_mb: float) -> None:
    assert figures["calls"] == calls
    assert figures["errors"] == []
    assert figures["dead_functions"] >= 9
    assert figures["dead_objects_alive"] == 0
    assert figures["dead_codes_alive"] == 0
    assert all(c == 0 for c in figures["refcount_changes"])
    assert figures["rss_growth_after_warmup_mb"] <= growth_mb, figures


def test_soak_with_a_plain_callback() -> None:
    # 1,000,000 calls (200,000 under the sanitizer build, whose every call is ~20x slower).
    calls = 200_000 if SANITIZER else 1_000_000
    figures = run_soak(
        "--backend", "callback", "--calls", str(calls), "--functions", "100", timeout=1500
    )
    # Under ASan the quarantine and the allocator's caches fill up during the soak.
    check_figures(figures, calls, growth_mb=48.0 if SANITIZER else 4.0)
    assert figures["compiles"] >= calls // 2000  # 918 for 1,000,000 calls, 265 for 200,000


@pytest.mark.torch
def test_soak_with_framecache_compile_eager() -> None:
    figures = run_soak("--backend", "eager", "--calls", "100000", "--functions", "10", timeout=1500)
    check_figures(figures, 100_000, growth_mb=8.0)
