"""codegen.share_prefixes: a module tree's graph inputs read their shared paths once."""

from __future__ import annotations

import pytest

from framecache.compiler.codegen import share_prefixes  # imports torch

pytestmark = pytest.mark.torch


def _params(n: int) -> list[str]:
    return [
        f"self.__dict__['_modules']['layers'].__dict__['_modules'][{str(i)!r}]"
        f".__dict__['_parameters'][{name!r}]"
        for i in range(n)
        for name in ("weight", "bias")
    ]


class _Obj:
    def __init__(self, **kw: object) -> None:
        self.__dict__.update(kw)


def test_shared_paths_become_locals_read_once_and_give_the_same_objects():
    args = [*_params(3), "x", "xs[0]", "xs[1]", "f(x)"]
    lines, exprs = share_prefixes(args, "_fc")
    assert lines[0] == "_fcp0 = self.__dict__['_modules']['layers'].__dict__['_modules']"
    assert lines[1:] == [f"_fcp{i + 1} = _fcp0['{i}'].__dict__['_parameters']" for i in range(3)]
    assert exprs[:2] == ["_fcp1['weight']", "_fcp1['bias']"]
    assert exprs[6:] == ["x", "xs[0]", "xs[1]", "f(x)"]  # nothing to share, or not a path
    # Evaluated, the rewritten arguments are the very objects the originals read.
    layers = [_Obj(_parameters={"weight": object(), "bias": object()}) for _ in range(3)]
    holder = _Obj(_modules={str(i): m for i, m in enumerate(layers)})
    self = _Obj(_modules={"layers": holder})
    scope = {"self": self, "x": 1, "xs": [2, 3], "f": lambda v: v}
    before = [eval(a, dict(scope)) for a in args]
    exec("\n".join(lines), scope)
    after = [eval(e, scope) for e in exprs]
    assert all(a is b for a, b in zip(before, after, strict=True))


def test_a_single_argument_is_left_alone():
    lines, exprs = share_prefixes(_params(1)[:1], "_fc")
    assert lines == [] and exprs == _params(1)[:1]
