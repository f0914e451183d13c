"""Recompile budgets for tests: ``framecache.expect_recompiles(at_most=N)``.

A budget records every compile framecache.compile makes while it is open, on any
thread, and fails (RecompileBudgetExceeded, an AssertionError) when there were more
recompiles or compiles than allowed::

    f(x)                                         # warm up
    with framecache.expect_recompiles(at_most=0):
        f(x)                                     # fine: a cache hit
        f(x.double())                            # fails on exit of the block

A *compile* is any compile; a *recompile* is a compile of a code object that already had
cache entries (its first entry's guards failed, and those failures are the reasons). The
failure message lists each recompile with the guards that failed (source, expected,
actual) and the file:line of the call that triggered it. The pytest marker
``@pytest.mark.framecache(max_recompiles=N, max_compiles=M)`` is the same budget around
a whole test (see framecache.pytest_plugin). Nothing here imports torch.
"""

from __future__ import annotations

import os
import sys
import threading
import types
from dataclasses import dataclass
from types import TracebackType

from . import _events

_PACKAGE_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


class RecompileBudgetExceeded(AssertionError):
    """More compiles or recompiles happened than a budget allowed."""


@dataclass(frozen=True)
class CompileRecord:
    """One compile seen by a budget."""

    name: str
    where: str
    recompile: bool
    reasons: tuple[str, ...]
    called_from: str
    thread: str

    def describe(self) -> str:
        what = "recompiled" if self.recompile else "compiled"
        text = f"{what} {self.name} ({self.where}), called from {self.called_from}"
        if self.thread != "MainThread":
            text += f" in thread {self.thread}"
        if self.reasons:
            text += "\n      guard failures:" + "".join(f"\n        {r}" for r in self.reasons)
        return text


def _skipped_dirs() -> tuple[str, ...]:
    dirs = [_PACKAGE_DIR]
    torch = sys.modules.get("torch")
    torch_file = getattr(torch, "__file__", None)
    if torch_file:
        dirs.append(os.path.dirname(os.path.abspath(torch_file)) + os.sep)
    return tuple(dirs)


def _call_site(code: types.CodeType) -> str:
    """file:line of the nearest caller outside framecache and torch (the user's call).

    Runs inside the compile callback: the frame being compiled has no frame object yet,
    so the stack starts at the frame that called it.
    """
    skipped = _skipped_dirs()
    frame: types.FrameType | None = sys._getframe(1)
    while frame is not None:
        filename = os.path.abspath(frame.f_code.co_filename)
        if frame.f_code is not code and not filename.startswith(skipped):
            return f"{frame.f_code.co_filename}:{frame.f_lineno} (in {frame.f_code.co_name})"
        frame = frame.f_back
    return "<unknown>"


class RecompileRecorder:
    """Counts framecache.compile's compiles while open; the base of every budget."""

    def __init__(self) -> None:
        self.records: list[CompileRecord] = []
        self._lock = threading.Lock()
        self._open = False

    def _observe(self, event: _events.CompileEvent) -> None:
        code = event.code
        record = CompileRecord(
            name=code.co_qualname,
            where=f"{code.co_filename}:{code.co_firstlineno}",
            recompile=event.recompile,
            reasons=event.reasons,
            called_from=_call_site(code),
            thread=threading.current_thread().name,
        )
        with self._lock:
            self.records.append(record)

    def start(self) -> None:
        if self._open:
            raise RuntimeError("this recorder is already recording")
        self._open = True
        _events.add_observer(self._observe)

    def stop(self) -> None:
        if self._open:
            self._open = False
            _events.remove_observer(self._observe)

    @property
    def compiles(self) -> int:
        """Every compile seen so far."""
        with self._lock:
            return len(self.records)

    @property
    def recompiles(self) -> int:
        """Compiles of code objects that already had cache entries."""
        with self._lock:
            return sum(1 for r in self.records if r.recompile)

    def violations(self, max_recompiles: int | None, max_compiles: int | None) -> str | None:
        """A report of what exceeded the limits, or None when the budget held."""
        with self._lock:
            records = list(self.records)
        recompiles = sum(1 for r in records if r.recompile)
        broken = []
        if max_recompiles is not None and recompiles > max_recompiles:
            broken.append(f"{recompiles} recompiles, at most {max_recompiles} allowed")
        if max_compiles is not None and len(records) > max_compiles:
            broken.append(f"{len(records)} compiles, at most {max_compiles} allowed")
        if not broken:
            return None
        lines = [f"framecache recompile budget exceeded: {'; '.join(broken)}"]
        for i, record in enumerate(records, 1):
            lines.append(f"  {i}. {record.describe()}")
        return "\n".join(lines)


def _check_limit(name: str, value: int | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int or None, got {type(value).__name__}")
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value}")


class expect_recompiles:
    """Fail when the block recompiles more than ``at_most`` times (or compiles more than
    ``max_compiles`` times, when given).

    The recorder is returned by ``__enter__``: ``rec.recompiles``, ``rec.compiles`` and
    ``rec.records`` can be inspected in the block. When the block itself raises, its
    exception wins and the budget is not checked.
    """

    def __init__(self, at_most: int | None = 0, *, max_compiles: int | None = None) -> None:
        _check_limit("expect_recompiles(at_most=...)", at_most)
        _check_limit("expect_recompiles(max_compiles=...)", max_compiles)
        self.at_most = at_most
        self.max_compiles = max_compiles
        self.recorder = RecompileRecorder()

    def __enter__(self) -> RecompileRecorder:
        self.recorder.start()
        return self.recorder

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.recorder.stop()
        if exc_type is not None:
            return
        report = self.recorder.violations(self.at_most, self.max_compiles)
        if report is not None:
            raise RecompileBudgetExceeded(report)


__all__ = ["CompileRecord", "RecompileBudgetExceeded", "RecompileRecorder", "expect_recompiles"]
