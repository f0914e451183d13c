"""Guard trees compiled in C++.

Build a tree from a root and check it against a frame's locals::

    root = RootGuardManager()
    root.local("x").type_match(int)
    root.local("cfg").type_match(dict)
    root.check({"x": 1, "cfg": {}})          # True
    root.check_verbose({"x": "a", "cfg": {}}).failures
    # ["L['x']: expected type int, got str"]
"""

from __future__ import annotations

from ._C.guards import GuardDebugInfo, GuardManager, RootGuardManager

__all__ = ["GuardDebugInfo", "GuardManager", "RootGuardManager"]
