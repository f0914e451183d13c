"""Background package builds (cache/builds.py): the mode switch, one build per entry, and
what a failed build leaves. The end-to-end path (a cold process whose entry a builder
writes after it returned, and a warm process that loads it) is in test_warm_start_lean.py."""

from __future__ import annotations

import os
import time

import pytest
import torch

import framecache
from framecache.cache import builds

pytestmark = pytest.mark.torch


@pytest.mark.parametrize(
    ("value", "expected"),
    [(None, True), ("", True), ("background", True), (" Inline ", False), ("inline", False)],
)
def test_the_mode_comes_from_the_environment(monkeypatch, value, expected):
    if value is None:
        monkeypatch.delenv(builds.ENV, raising=False)
    else:
        monkeypatch.setenv(builds.ENV, value)
    assert builds.background() is expected


def test_an_unknown_mode_is_an_error(monkeypatch):
    monkeypatch.setenv(builds.ENV, "later")
    with pytest.raises(ValueError, match="FRAMECACHE_AOTI_BUILD='later'"):
        builds.background()


def test_one_build_per_entry_and_a_stale_job_is_replaced(tmp_path):
    job = tmp_path / "k-e.job"
    assert builds._claim(job, b"first")
    assert not builds._claim(job, b"second")  # a live build holds it
    assert job.read_bytes() == b"first"
    old = time.time() - 2 * 3600
    os.utime(job, (old, old))  # its builder died an hour ago
    assert builds._claim(job, b"third")
    assert job.read_bytes() == b"third"


def test_a_failed_build_keeps_its_log_and_frees_its_job(tmp_path, monkeypatch, caplog):
    # A job the builder cannot read stands for any failure inside the build.
    monkeypatch.setattr(builds, "_claim", lambda job, payload: job.write_bytes(b"junk") or True)
    assert builds.submit(tmp_path, "k" * 64, "e" * 32, b"", b"", [], None, False)
    assert builds.pending() == 1
    with caplog.at_level("WARNING", logger="framecache.cache"):
        assert builds.wait_for_builds(300) is False
    assert builds.pending() == 0
    directory = tmp_path / builds.BUILDS_DIR
    assert not list(directory.glob("*.job"))  # the next miss may build again
    (log,) = directory.glob("*.log")
    assert "Error" in log.read_text()
    assert "failed" in caplog.text and str(log) in caplog.text
    assert not list(tmp_path.glob("*/*/*.entry"))


def _gelu_square(x):
    return torch.nn.functional.gelu(x @ x.T) + 1


def _scaled(scale):
    class Settings:  # a class of a function's own: no importable name, so no disk entry
        pass

    settings = Settings()
    settings.scale = scale

    def scaled(x):
        return torch.relu(x @ x.T) * settings.scale

    return scaled


@pytest.mark.parametrize("stored", [True, False], ids=["stored entry", "entry not stored"])
def test_the_package_takes_over_in_the_process_that_compiled(tmp_path, monkeypatch, stored):
    """The first call runs inductor's compile; once the background build is done, the
    entry runs the package, stored or not."""
    from framecache.cache import artifact

    monkeypatch.setenv(builds.ENV, "background")
    adopted = []
    adopt = artifact.DeferredAoti.adopt

    def spy(self, package, root):
        adopt(self, package, root)
        adopted.append(self)

    monkeypatch.setattr(artifact.DeferredAoti, "adopt", spy)
    fn = _gelu_square if stored else _scaled(3.0)
    compiled = framecache.compile(fn, backend="inductor", cache_dir=tmp_path)
    x = torch.randn(8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), fn(x))
        assert builds.wait_for_builds(1200)
        assert len(adopted) == 1 and isinstance(adopted[0].run, artifact._AotiCall)
        for _ in range(2):
            x = torch.randn(8, 8)
            torch.testing.assert_close(compiled(x), fn(x))
    stats = framecache.stats(fn)
    assert stats.compiles == 1 and stats.disk_builds == 1, stats
    assert (stats.disk_bypasses == 0) == stored, stats
    assert bool(list(tmp_path.glob("*/*/*.entry"))) == stored
    assert not list((tmp_path / builds.BUILDS_DIR).glob("*")), "a job, log or package was left"


_SLOW_BUILDER = (
    "import subprocess, sys, time\n"
    "child = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(120)'])\n"
    "open(sys.argv[1] + '.child', 'w').write(str(child.pid))\n"
    "time.sleep(120)\n"
)


def _gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    # A zombie of a parent that has not reaped it yet is gone for our purposes.
    with open(f"/proc/{pid}/stat") as fh:
        return fh.read().split(") ", 1)[1].startswith("Z")


def test_cancel_stops_the_builder_and_what_it_started(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(builds, "_BUILDER", _SLOW_BUILDER)
    handed_back = []
    assert builds.submit(
        tmp_path, "k" * 64, "e" * 32, b"", b"", [], None, False, handed_back.append
    )
    directory = tmp_path / builds.BUILDS_DIR
    (job,) = directory.glob("*.job")
    marker = job.with_name(job.name + ".child")
    deadline = time.monotonic() + 60
    while not (marker.exists() and marker.read_text()):
        assert time.monotonic() < deadline, "the builder never started its child"
        time.sleep(0.05)
    child = int(marker.read_text())
    (build,) = builds._RUNNING
    with caplog.at_level("WARNING", logger="framecache.cache"):
        assert builds.cancel_builds() == 1
    assert builds.pending() == 0 and builds._RUNNING == []
    assert build.proc.returncode is not None
    deadline = time.monotonic() + 10
    while not _gone(child):
        assert time.monotonic() < deadline, "the builder's child outlived the cancel"
        time.sleep(0.05)
    assert handed_back == [] and "failed" not in caplog.text
    marker.unlink()
    assert not list(directory.glob("*")), "a job or log was left"
    assert builds.cancel_builds() == 0  # nothing left to stop


def test_a_cancelled_build_leaves_no_entry_and_the_function_runs(tmp_path, monkeypatch):
    monkeypatch.setenv(builds.ENV, "background")
    compiled = framecache.compile(_gelu_square, backend="inductor", cache_dir=tmp_path)
    x = torch.randn(8, 8)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), _gelu_square(x))
        assert builds.cancel_builds() == 1
        y = torch.randn(8, 8)
        torch.testing.assert_close(compiled(y), _gelu_square(y))
    assert not list(tmp_path.glob("*/*/*.entry"))
    assert not list((tmp_path / builds.BUILDS_DIR).glob("*"))
    assert framecache.stats(_gelu_square).compiles == 1
