"""Guard plans: what a compiled graph depends on, as data (imports neither torch nor the compiler).

* ``sources``: where a guarded value comes from, as a path from the frame.
* ``guards``: one class per guard kind (named as the C++ leaf guard it lowers to), each
  owning its description, its lowering to the C++ tree and its written-down form.
* ``plan``: ``GuardPlan`` (a list of guards), ``materialize`` (the C++ tree).

The compiler builds plans (compiler/guard_plan.py); the disk cache writes them down and
reads them back through a ``Codec`` of its own (cache/portable.py).
"""

from __future__ import annotations

from . import guards, sources
from .guards import KINDS, Codec, Encoded, Guard
from .plan import GuardPlan, materialize
from .sources import Source

__all__ = [
    "KINDS",
    "Codec",
    "Encoded",
    "Guard",
    "GuardPlan",
    "Source",
    "guards",
    "materialize",
    "sources",
]
