"""framecache.profile_guards and ``python -m framecache profile``: the entry found, the
structure of the report, and a deliberately slow LAMBDA guard ranked first."""

from __future__ import annotations

import textwrap
import types
from pathlib import Path
from typing import Any

import pytest

import framecache
from conftest import run_python
from framecache.guards import RootGuardManager
from framecache.profiling import GuardProfile, NodeProfile, profile_guard_tree

SCALE = 3


def slow_check(value: object) -> bool:
    """A LAMBDA guard that takes far longer than any C++ guard."""
    total = 0
    for i in range(5000):
        total += i
    return total > 0


def typed_tree_callback(frame: framecache.FrameView, entry: object, state: dict) -> Any:
    """Caches a copy of ``target`` guarded on its arguments' types, a global and a slow
    LAMBDA guard on ``b``."""
    if frame.f_code is not target.__wrapped__.__code__:
        return None
    f_locals = frame.f_locals
    root = RootGuardManager()
    root.local("a").type_match(type(f_locals["a"]))
    root.local("b").type_match(type(f_locals["b"])).lambda_guard(slow_check, "slow check")
    root.local("c").type_match(type(f_locals["c"]))
    root.global_("SCALE").type_match(int)
    return framecache.CallbackResult(framecache.GuardedCode(frame.f_code.replace(), root))


@framecache.optimize(typed_tree_callback)
def target(a: Any, b: Any, c: Any = 0) -> Any:
    return (a + b + c) * SCALE


def test_profile_ranks_the_slow_lambda_first() -> None:
    target("x", "y", c="z")  # an entry for str arguments, which the call below misses
    profile = framecache.profile_guards(target, 1, 2, c=3)
    assert isinstance(profile, GuardProfile)
    assert profile.name == "target"
    assert (profile.entries, profile.entry_index) == (2, 0)  # the new entry is first (LRU)
    assert profile.num_guards == 5
    assert profile.guards_executed == 5
    assert profile.ns_per_check > 0 and profile.baseline_ns > 0
    assert profile.number >= 1 and profile.repeat == 5
    assert all(isinstance(n, NodeProfile) and n.measured for n in profile.nodes)
    assert {n.source for n in profile.nodes} == {"L['a']", "L['b']", "L['c']", "G['SCALE']"}
    hottest = profile.nodes[0]
    assert (hottest.source, hottest.guards, hottest.kinds) == (
        "L['b']",
        2,
        ("TYPE_MATCH", "LAMBDA"),
    )
    assert [n.ns for n in profile.nodes] == sorted((n.ns for n in profile.nodes), reverse=True)


def test_profile_report_text() -> None:
    text = str(framecache.profile_guards(target, 1, 2))
    lines = text.splitlines()
    assert lines[0].startswith("guards of target (cache entry 1 of 1): ")
    assert "ns per check, 5 of 5 guards ran (an empty tree's check: " in lines[0]
    assert lines[1].split() == ["ns", "share", "guards", "node"]
    assert lines[2].split()[2:] == ["2", "L['b']", "[TYPE_MATCH,", "LAMBDA]"]
    assert {line.split()[3] for line in lines[3:6]} == {"L['a']", "L['c']", "G['SCALE']"}
    assert lines[6].startswith("  (best of 5 samples of ")


def test_profile_guard_tree_unmeasured_nodes_come_last() -> None:
    root = RootGuardManager({"bound": 1})
    root.local("a").type_match(int)
    root.global_("bound").type_match(int)  # globals bound to the tree: cannot be ablated
    profile = profile_guard_tree(root, {"a": 1}, name="tree", number=10, repeat=2)
    assert profile.number == 10 and profile.repeat == 2
    sources = [(n.source, n.measured) for n in profile.nodes]
    assert sources == [("L['a']", True), ("G['bound']", False)]
    assert "?" in str(profile).splitlines()[3]


def test_profile_guard_tree_rejects_bad_input() -> None:
    root = RootGuardManager()
    root.local("a").type_match(int)
    with pytest.raises(ValueError, match=r"the guards of <tree> fail for these inputs"):
        profile_guard_tree(root, {"a": "no"})
    with pytest.raises(TypeError, match=r"expects a RootGuardManager"):
        profile_guard_tree(object(), {"a": 1})
    with pytest.raises(TypeError, match=r"expects f_locals as a dict"):
        profile_guard_tree(root, [("a", 1)])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"expects repeat >= 1"):
        profile_guard_tree(root, {"a": 1}, repeat=0)
    with pytest.raises(ValueError, match=r"expects number >= 1"):
        profile_guard_tree(root, {"a": 1}, number=0)


def test_profile_guards_without_an_entry() -> None:
    def plain(a: int) -> int:
        return a

    with pytest.raises(ValueError, match=r"no cache entry of .*plain passes .*0 entries"):
        framecache.profile_guards(plain, 1)
    with pytest.raises(TypeError, match=r"expects a callable"):
        framecache.profile_guards(3)  # type: ignore[arg-type]


def _passes_keywords(fn: Any) -> Any:
    import functools

    @functools.wraps(fn)  # inspect.signature(wrapper) now reports fn's parameters
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        return fn(*args, **kwargs)

    return wrapper


@pytest.mark.torch
def test_profile_a_module_whose_forward_is_a_wraps_decorator() -> None:
    # Hugging Face models' forwards look like this: the compiled frame is the wrapper's
    # (args, kwargs and the cell fn), which profile_guards must rebuild as it is.
    import torch

    class Scaled(torch.nn.Module):
        @_passes_keywords
        def forward(self, x: torch.Tensor, scale: float = 2.0) -> torch.Tensor:
            return x * scale

    compiled = framecache.compile(Scaled())
    profile = framecache.profile_guards(compiled, torch.ones(4), scale=3.0)
    sources = {n.source for n in profile.nodes}
    assert {"L['args']", "L['kwargs']"} <= sources, sources
    assert profile.entry_index == 0 and profile.guards_executed > 0


@pytest.mark.torch
def test_profile_a_compiled_function() -> None:
    import torch

    @framecache.compile
    def affine(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return x * w + 1

    profile = framecache.profile_guards(affine, torch.ones(4), torch.ones(4))
    sources = {n.source: n for n in profile.nodes}
    assert set(sources) >= {"L['x']", "L['w']", "<root>"}
    assert "TENSOR_MATCH" in sources["L['x']"].kinds
    assert "GLOBAL_STATE" in sources["<root>"].kinds
    assert profile.guards_executed == profile.num_guards


@pytest.mark.torch
def test_profile_a_dynamic_entry_reports_shape_guards() -> None:
    import torch

    @framecache.compile(dynamic=True)
    def grow(x: torch.Tensor) -> torch.Tensor:
        return torch.cat([x, x])

    profile = framecache.profile_guards(grow, torch.ones(4))
    shape = [n for n in profile.nodes if n.source == "<shape guards>"]
    assert len(shape) == 1 and shape[0].kinds == ("SHAPE",) and shape[0].guards >= 1
    assert "L['x']" in {n.source for n in profile.nodes}


def write_module(tmp_path: Path, name: str, source: str) -> Path:
    path = tmp_path / f"{name}.py"
    path.write_text(textwrap.dedent(source))
    return path


def test_cli_profile(tmp_path: Path) -> None:
    write_module(
        tmp_path,
        "prof_target",
        """
        import framecache
        from framecache.guards import RootGuardManager

        def add(a, b):
            return a + b

        def callback(frame, entry, state):
            if frame.f_code is not add.__code__:
                return None
            root = RootGuardManager()
            root.local("a").type_match(int)
            root.local("b").lambda_guard(lambda v: sum(range(3000)) > 0, "slow")
            return framecache.CallbackResult(
                framecache.GuardedCode(frame.f_code.replace(), root))

        def make():
            return framecache.optimize(callback)(add), (1,), {"b": 2}
        """,
    )
    result = run_python(
        f"""
        import os, sys
        os.chdir({str(tmp_path)!r})
        sys.argv = ["framecache", "profile", "prof_target:make"]
        import runpy
        runpy.run_module("framecache", run_name="__main__")
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("guards of add (cache entry 1 of 1): ")
    assert lines[2].split()[2:] == ["1", "L['b']", "[LAMBDA]"]


def test_cli_bad_target_and_default_demo(tmp_path: Path) -> None:
    write_module(tmp_path, "bad_target", "def make():\n    return 42\n")
    result = run_python(
        f"""
        import os, sys
        os.chdir({str(tmp_path)!r})
        from framecache.__main__ import main
        for argv in (["profile", "nocolon"], ["profile", "bad_target:make"]):
            try:
                main(argv)
            except SystemExit as exc:
                print("EXIT", exc)
        main([])
        """
    )
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "EXIT profile: expected module:function, got 'nocolon'"
    assert lines[1] == (
        "EXIT profile: bad_target:make() must return (fn, args) or (fn, args, kwargs), got int"
    )
    assert lines[2].startswith("framecache demo")


def test_cli_help_lists_profile() -> None:
    from framecache.__main__ import build_parser

    help_text = build_parser().format_help()
    assert "profile" in help_text and "demo" in help_text
    assert isinstance(build_parser().parse_args([]).run, types.FunctionType)
