"""The interpreters framecache supports, checked when framecache is imported.

``framecache/__init__.py`` imports this module first, before the compiled core.

The core reads CPython's internal frame layout, which framecache knows for CPython 3.11,
3.12 and 3.13 with the GIL (see include/framecache/cpython.h). Building for anything else
fails in CMake; this check gives the same clear answer at import time when a wheel or a
staged build meets an interpreter it was not made for, instead of a bare
``ModuleNotFoundError`` for ``framecache._C``.
"""

from __future__ import annotations

import sys
import sysconfig

__all__ = ["SUPPORTED_VERSIONS", "check_interpreter", "unsupported_reason"]

#: (major, minor) versions of CPython the frame hook supports.
SUPPORTED_VERSIONS: tuple[tuple[int, int], ...] = ((3, 11), (3, 12), (3, 13))


def unsupported_reason(
    version: tuple[int, int] | None = None,
    implementation: str | None = None,
    gil_disabled: bool | None = None,
) -> str | None:
    """Why this interpreter (or the one described) cannot run framecache, or None if it can."""
    if version is None:
        version = (sys.version_info[0], sys.version_info[1])
    if implementation is None:
        implementation = sys.implementation.name
    if gil_disabled is None:
        gil_disabled = bool(sysconfig.get_config_var("Py_GIL_DISABLED"))
    supported = ", ".join(f"{major}.{minor}" for major, minor in SUPPORTED_VERSIONS)
    if implementation != "cpython":
        return f"framecache needs CPython ({supported}); this is {implementation}"
    if tuple(version) not in SUPPORTED_VERSIONS:
        return (
            f"framecache supports CPython {supported}; this is CPython "
            f"{version[0]}.{version[1]}, whose frame layout it does not know"
        )
    if gil_disabled:
        return "framecache does not support free-threaded CPython builds (Py_GIL_DISABLED)"
    return None


def check_interpreter() -> None:
    """Raise ImportError with a clear message if this interpreter is not supported."""
    reason = unsupported_reason()
    if reason is not None:
        raise ImportError(reason)


check_interpreter()
