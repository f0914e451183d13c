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


@pytest.mark.parametrize(
    "expr",
    [
        "x",
        "L['x']",
        'L["x"].weight',
        "self.__dict__['_modules']['0']",
        "xs[0][-1].t",
        "d['a]b'].c",
        "d['a.b']['[']",
        "ünïcode.attr",
    ],
)
def test_paths_split_into_the_steps_python_reads(expr: str) -> None:
    import ast

    from framecache.compiler.codegen import _chain, _spell

    chain = _chain(expr)
    assert chain is not None
    base, steps = chain
    # The same steps as Python's own parser gives, and spelled back to an equal expression.
    node = ast.parse(expr, mode="eval").body
    expected = []
    while not isinstance(node, ast.Name):
        if isinstance(node, ast.Attribute):
            expected.append(("attr", node.attr))
        else:
            expected.append(("item", ast.literal_eval(node.slice)))
        node = node.value
    assert (base, steps) == (node.id, tuple(reversed(expected)))
    assert ast.dump(ast.parse(_spell(base, steps))) == ast.dump(ast.parse(expr))


@pytest.mark.parametrize(
    "expr",
    [
        "f(x)",
        "x + y",
        "x .y",
        "x[i]",
        "x['a\\'b']",
        "x[0.5]",
        "x[True]",
        "None.x",
        "x.if",
        "1x",
        "x[01]",
        "",
    ],
)
def test_anything_else_is_used_as_written(expr: str) -> None:
    from framecache.compiler.codegen import _chain

    assert _chain(expr) is None


def test_no_python_parser_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    # On 3.11 ast.parse in two threads at once can fail one of them (CPython gh-106905): the
    # compile path, which runs in the user's threads, must not call it.
    import ast

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("ast.parse called")

    monkeypatch.setattr(ast, "parse", refuse)
    lines, exprs = share_prefixes(_params(2), "_fc")
    assert len(lines) == 3 and len(exprs) == 4
