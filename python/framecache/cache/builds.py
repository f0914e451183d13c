"""AOTInductor packages built after the first call has returned, in a process of their own.

An inductor entry on disk is an AOTInductor package, so that a warm start loads it without
importing the compiler stack. Building one is a second compile (export, inductor's C++
wrapper, one shared library) on top of the compile the first call needs, and on a small
machine it took longer than the first one. So the cold call compiles the graph the way
torch.compile does (``compile_fx``), returns, and the package is built by a detached
Python process running ``builds.main(JOB)``:

* the job file (``<cache>/.builds/<key>-<entry id>.job``) holds the graph (graph_codec),
  the shapes, strides, dtypes and devices of its inputs, and the entry to write, whole
  but for the package. It is created with ``O_EXCL``: one build per entry, however many
  processes miss it at once; a job file older than an hour is a build that died.
* the builder writes the entry through the same store (lock, atomic rename, eviction, the
  remote store) and removes the job; it outlives the process that started it, so a
  short script still leaves its entry behind. What it printed stays in ``<job>.log``
  when it fails.
* the package also comes back to the process that asked for it: a thread of that process
  waits for the builder, loads the package and hands it to ``on_built``, which makes it the
  entry's callable from then on (the compiler's ``DeferredAoti``). AOTInductor's C++
  wrapper runs a small graph faster than inductor's Python one, so a long-running process
  ends up with the package's speed without having paid for it in its first call. An entry
  that cannot be stored (a guard with no portable form) gets a build of its package alone
  (``entry=None``), for this hand-back.
* ``wait_for_builds()`` waits for this process's builds and hand-backs (benchmarks and
  tests call it before they time calls or start the warm process); ``cancel_builds()``
  stops them instead (a benchmark's throwaway compiles: their entries are not wanted).

A new process is used rather than a thread: the build holds the GIL for most of its
seconds (export, inductor's Python) and would stall the caller's own calls, and it must
survive the caller's exit. ``concurrent.futures.ProcessPoolExecutor`` would do neither of
the last two (its workers die with their parent), hence plain ``subprocess``.

``FRAMECACHE_AOTI_BUILD=inline`` builds the package inside the first call instead (the
entry exists when the call returns).
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

log = logging.getLogger("framecache.cache")

ENV = "FRAMECACHE_AOTI_BUILD"
BUILDS_DIR = ".builds"
_STALE_SECONDS = 3600.0
_JOB_FORMAT = 1

# The builder's command (not ``-m``: this module is already imported with its package).
_BUILDER = "import sys; from framecache.cache.builds import main; sys.exit(main(sys.argv[1:]))"

_LOCK = threading.Lock()


class _Build:
    """One builder process this process started, and the thread waiting for it."""

    def __init__(
        self, proc: subprocess.Popen[bytes], job: Path, on_built: Callable[[bytes], None] | None
    ) -> None:
        self.proc = proc
        self.job = job
        self.on_built = on_built
        self.ok = False
        self.cancelled = False
        self.watcher = threading.Thread(
            target=self._watch, name=f"framecache-build-{proc.pid}", daemon=True
        )
        self.watcher.start()

    def _watch(self) -> None:
        code = self.proc.wait()
        package = self.job.with_suffix(".pt2")
        try:
            if self.cancelled:
                return
            if code != 0:
                log.warning(
                    "the AOTInductor build of %s failed (exit %s); see %s",
                    self.job.stem,
                    code,
                    self.job.with_suffix(".log"),
                )
                return
            if self.on_built is not None:
                self.on_built(package.read_bytes())
            self.ok = True
        except Exception as exc:  # a package that does not load here: keep inductor's
            log.warning("the AOTInductor package of %s is not used: %s", self.job.stem, exc)
        finally:
            with contextlib.suppress(OSError):
                package.unlink()


_RUNNING: list[_Build] = []


def background() -> bool:
    """Whether packages are built after the first call (the default) or inside it."""
    value = os.environ.get(ENV, "background").strip().lower()
    if value in ("", "background"):
        return True
    if value == "inline":
        return False
    raise ValueError(f"{ENV}={value!r}: expected 'background' or 'inline'")


def submit(
    root: Path,
    key: str,
    entry_id: str,
    entry: bytes | None,
    graph: bytes,
    inputs: Sequence[tuple[Any, ...]],
    size_limit: int | None,
    remote: str | bool | None,
    on_built: Callable[[bytes], None] | None = None,
) -> bool:
    """Start the build of one entry's package; False when one is already under way.
    OSError when no process can be started (the job file is removed again).

    ``entry`` is the encoded Entry (kind ``aoti``) with an empty package, or None for a
    package that is only handed back; ``inputs`` are ``(sizes, strides, dtype, device,
    dynamic dims)`` per graph input; ``on_built(package)`` runs in a thread of this
    process once the builder is done.
    """
    directory = root / BUILDS_DIR
    directory.mkdir(mode=0o700, exist_ok=True)
    _remove_stale(directory)
    job = directory / f"{key}-{entry_id}.job"
    payload = pickle.dumps(
        {
            "format": _JOB_FORMAT,
            "root": str(root),
            "key": key,
            "entry_id": entry_id,
            "entry": entry,
            "graph": graph,
            "inputs": [tuple(i) for i in inputs],
            "size_limit": size_limit,
            "remote": remote,
            "hand_back": os.getpid() if on_built is not None else None,
        },
        protocol=pickle.HIGHEST_PROTOCOL,
    )
    if not _claim(job, payload):
        log.info("a build of %s/%s is already under way", key, entry_id)
        return False
    env = dict(os.environ)
    # The builder imports this very framecache (a source tree or a --target install too).
    package_parent = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH", "")) if p)
    try:
        with open(job.with_suffix(".log"), "wb") as out:
            proc = subprocess.Popen(
                [sys.executable, "-c", _BUILDER, str(job)],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,  # not killed by the caller's Ctrl-C, outlives it
                close_fds=True,
            )
    except OSError:
        with contextlib.suppress(OSError):
            job.unlink()
        raise
    with _LOCK:
        _RUNNING.append(_Build(proc, job, on_built))
    log.info("building the AOTInductor package of %s/%s in process %d", key, entry_id, proc.pid)
    return True


def _claim(job: Path, payload: bytes) -> bool:
    """Create the job file, unless a live build holds it (a stale one is replaced)."""
    for _ in range(2):
        try:
            fd = os.open(job, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            try:
                age = time.time() - job.stat().st_mtime
            except OSError:
                continue  # it finished meanwhile: try again
            if age < _STALE_SECONDS:
                return False
            with contextlib.suppress(OSError):
                job.unlink()
            continue
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        return True
    return False


def pending() -> int:
    """How many builds this process started are still running."""
    with _LOCK:
        return sum(1 for build in _RUNNING if build.watcher.is_alive())


def wait_for_builds(timeout: float | None = None) -> bool:
    """Wait until every build this process started has ended and handed its package
    back: True when all of them succeeded, False on timeout or when one failed.

    A build that failed leaves no entry (the next cold call compiles again), a warning,
    and its log beside its job file; the entry keeps running inductor's compile.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    with _LOCK:
        running = list(_RUNNING)
    ok = True
    for build in running:
        left = None if deadline is None else max(0.0, deadline - time.monotonic())
        build.watcher.join(left)
        if build.watcher.is_alive():
            return False
        ok = ok and build.ok
        with _LOCK:
            if build in _RUNNING:
                _RUNNING.remove(build)
    return ok


def cancel_builds() -> int:
    """Stop the builds this process started that are still running; how many were stopped.

    A stopped build writes no entry and hands nothing back (its entry keeps running
    inductor's compile), and its job file goes, so that the next process to miss the entry
    builds it again. The builder runs in a session of its own; its whole process group
    (the compiler processes it started too) is killed. Builds that had already ended are
    waited for as ``wait_for_builds`` would.
    """
    with _LOCK:
        running = list(_RUNNING)
        _RUNNING.clear()
    stopped = 0
    for build in running:
        if build.proc.poll() is None:
            build.cancelled = True
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(build.proc.pid, signal.SIGKILL)
            stopped += 1
        build.watcher.join()
        if build.cancelled:
            for leftover in (
                build.job,
                build.job.with_suffix(".log"),
                build.job.with_suffix(".pt2"),
            ):
                with contextlib.suppress(OSError):
                    leftover.unlink()
    if stopped:
        log.info("stopped %d AOTInductor build(s)", stopped)
    return stopped


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _remove_stale(directory: Path) -> None:
    """Packages nobody took back (their process died between the check and the read)."""
    now = time.time()
    for path in directory.glob("*.pt2*"):
        with contextlib.suppress(OSError):
            if now - path.stat().st_mtime > _STALE_SECONDS:
                path.unlink()


def _build(job: Path) -> None:
    """The builder: compile the package, write the entry, remove the job."""
    import tempfile

    import torch

    from . import artifact, entry, session, torch_compat

    spec = pickle.loads(job.read_bytes())
    if spec.get("format") != _JOB_FORMAT:
        raise ValueError(f"{job}: job format {spec.get('format')!r}, expected {_JOB_FORMAT}")
    gm = artifact.load_graph(spec["graph"])
    reals, dims = [], []
    for sizes, strides, dtype, device, dynamic in spec["inputs"]:
        tensor = torch.empty_strided(sizes, strides, dtype=getattr(torch, dtype), device=device)
        reals.append(tensor.zero_())
        dims.append(set(dynamic))
    with tempfile.TemporaryDirectory(prefix="framecache-aoti-") as scratch:
        path = os.path.join(scratch, "graph.pt2")
        torch_compat.aoti_package(gm, reals, dims, path)
        package = Path(path).read_bytes()
    if spec["hand_back"] is not None and _alive(spec["hand_back"]):
        # For the process that asked (still running): <job>.pt2, whole or absent.
        tmp = job.with_suffix(".pt2.tmp")
        tmp.write_bytes(package)
        os.replace(tmp, job.with_suffix(".pt2"))
    if spec["entry"] is None:
        return
    stored = entry.loads(spec["entry"])
    stored.artifact_kind = "aoti"
    stored.artifact = package
    cache = session.DiskCache(spec["root"], stored.backend, spec["size_limit"], spec["remote"])
    cache.write(spec["key"], spec["entry_id"], entry.dumps(stored), None)


def main(argv: Sequence[str]) -> int:
    if len(argv) != 1:
        print("usage: builds.main([JOB])", file=sys.stderr)
        return 2
    job = Path(argv[0])
    started = time.perf_counter()
    try:
        _build(job)
    finally:
        with contextlib.suppress(OSError):
            job.unlink()
    print(f"built {job.stem} in {time.perf_counter() - started:.1f}s", flush=True)
    with contextlib.suppress(OSError):
        job.with_suffix(".log").unlink()
    return 0


__all__ = ["ENV", "background", "main", "pending", "submit", "wait_for_builds"]
