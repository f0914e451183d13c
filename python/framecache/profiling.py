"""Guard profiling: what a cache hit spends in guards, node by node.

``framecache.profile_guards(fn, *args, **kwargs)`` calls ``fn`` once (so the entry exists),
finds the cache entry of ``fn``'s code whose guards pass for these arguments, runs those
guards many times and returns a GuardProfile: ns per check of the whole tree, ns of each
top-level node (one per input the tree reads: ``L['x']``, ``G['cfg']``, ``B['len']``, plus
the root's own leaves and, for dynamic-shape entries, the symbolic shape guards), the
hottest first, and how many guards ran. ``profile_guard_tree(root, f_locals)`` does the
same for a tree you built.

How nodes are measured. A guard tree is checked in C++ from its root only, so a node's
cost is measured by ablation on ``check_verbose``, which walks every node without
stopping at a failure and, unlike ``check``, never reorders the tree: with ``V`` the time
of a verbose check of all the inputs and ``V_-x`` the time with input ``x`` removed from
``f_locals`` (or from the globals), the node of ``x`` costs ``V - V_-x + F_x``, where
``F_x``, what the failed fetch of ``x`` costs (its reason included), is measured on a
private tree holding only that accessor, with the same inputs. The root's own leaves cost
the verbose check with every input removed, less those failed fetches. The figures are
therefore verbose-path costs, a little above what ``check`` spends; a node far cheaper
than a failed fetch (a few tens of ns) is within the noise and may read 0. The
whole-tree figure is ``check`` itself. Every figure is the best of ``repeat`` samples,
the samples of all figures taking turns so that a drifting machine hits them alike, and
includes no Python loop overhead beyond the call of ``check`` (``baseline_ns``, an
empty tree's check, shows that fixed cost).
Deeper nodes are not measured apart: their cost is inside their top-level node, whose
row lists the kinds of leaf guards in its subtree.
"""

from __future__ import annotations

import functools
import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import _C
from .guards import RootGuardManager

_TARGET_SAMPLE_SECONDS = 0.01


@dataclass(frozen=True)
class NodeProfile:
    """One top-level node of a guard tree."""

    source: str
    ns: float
    guards: int
    kinds: tuple[str, ...]
    measured: bool = True


@dataclass(frozen=True)
class GuardProfile:
    """The cost of one guard tree for one set of inputs."""

    name: str
    ns_per_check: float
    baseline_ns: float
    guards_executed: int
    num_guards: int
    nodes: tuple[NodeProfile, ...]
    entry_index: int
    entries: int
    number: int
    repeat: int

    def __str__(self) -> str:
        lines = [
            f"guards of {self.name} (cache entry {self.entry_index + 1} of {self.entries}): "
            f"{self.ns_per_check:.0f} ns per check, {self.guards_executed} of "
            f"{self.num_guards} guards ran (an empty tree's check: {self.baseline_ns:.0f} ns)",
            f"  {'ns':>10}  {'share':>6}  {'guards':>6}  node",
        ]
        total = sum(n.ns for n in self.nodes) or 1.0
        for node in self.nodes:
            kinds = ", ".join(node.kinds)
            ns = f"{node.ns:>10.0f}" if node.measured else f"{'?':>10}"
            share = f"{100 * node.ns / total:>5.1f}%" if node.measured else f"{'?':>6}"
            lines.append(
                f"  {ns}  {share}  {node.guards:>6}  {node.source}"
                + (f"  [{kinds}]" if kinds else "")
            )
        lines.append(
            f"  (best of {self.repeat} samples of {self.number} checks; nodes by ablation)"
        )
        return "\n".join(lines)


def _best_ns(fn: Callable[[], Any], number: int, repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter_ns()
        for _ in range(number):
            fn()
        best = min(best, (time.perf_counter_ns() - start) / number)
    return best


def _interleaved_best_ns(
    samples: dict[str, Callable[[], Any]], number: int, repeat: int
) -> dict[str, float]:
    """Best ns per call of each callable; the samples of all of them take turns, so that
    a drift of a shared machine hits every figure alike."""
    best = dict.fromkeys(samples, float("inf"))
    for _ in range(repeat):
        for key, fn in samples.items():
            best[key] = min(best[key], _best_ns(fn, number, 1))
    return best


def _probe_for(source: str) -> RootGuardManager | None:
    """A tree holding only the accessor of a top-level node (no guards), or None."""
    if len(source) < 6 or source[1:3] != "['" or not source.endswith("']"):
        return None
    name = source[3:-2]
    probe = RootGuardManager()
    if source[0] == "L":
        probe.local(name)
    elif source[0] == "G":
        probe.global_(name)
    elif source[0] == "B":
        probe.builtin(name)
    else:
        return None
    return probe


def _verbose(tree: RootGuardManager, loc: dict[str, Any], glob: dict[str, Any] | None) -> Any:
    return tree.check_verbose(loc) if glob is None else tree.check_verbose(loc, glob)


def _calibrate(fn: Callable[[], Any]) -> int:
    number = 1
    while True:
        start = time.perf_counter()
        for _ in range(number):
            fn()
        if time.perf_counter() - start >= _TARGET_SAMPLE_SECONDS / 4 or number >= 1 << 20:
            return max(
                1, int(number * _TARGET_SAMPLE_SECONDS / max(time.perf_counter() - start, 1e-9))
            )
        number *= 4


def _subtree_kinds(node: Any) -> tuple[tuple[str, ...], int]:
    kinds: dict[str, None] = {}
    count = 0
    stack = [node]
    while stack:
        current = stack.pop()
        for kind, _ in current.leaf_guards():
            kinds[kind] = None
            count += 1
        stack.extend(current.children())
    return tuple(kinds), count


def _without(mapping: dict[str, Any], key: str) -> dict[str, Any]:
    copy = dict(mapping)
    copy.pop(key, None)
    return copy


def _ablated_inputs(
    source: str, f_locals: dict[str, Any], f_globals: dict[str, Any] | None
) -> tuple[dict[str, Any], dict[str, Any] | None] | None:
    """f_locals and f_globals without the input a top-level node reads; None if unknown
    (globals and builtins need ``f_globals``)."""
    if len(source) < 6 or source[1:3] != "['" or not source.endswith("']"):
        return None
    name = source[3:-2]
    if source[0] == "L" and name in f_locals:
        return _without(f_locals, name), f_globals
    if f_globals is None:
        return None
    if source[0] == "G" and name in f_globals:
        return f_locals, _without(f_globals, name)
    if source[0] == "B":
        builtins = f_globals.get("__builtins__")
        as_dict = builtins if isinstance(builtins, dict) else getattr(builtins, "__dict__", None)
        if isinstance(as_dict, dict) and name in as_dict:
            return f_locals, {**f_globals, "__builtins__": _without(as_dict, name)}
    return None


def profile_guard_tree(
    guard_manager: Any,
    f_locals: dict[str, Any],
    f_globals: dict[str, Any] | None = None,
    *,
    name: str = "<tree>",
    number: int | None = None,
    repeat: int = 5,
    entry_index: int = 0,
    entries: int = 1,
) -> GuardProfile:
    """Profile a RootGuardManager (or a dynamic-shape entry's ShapeGuardedRoot) that passes
    for ``f_locals``; see the module docstring for the method."""
    if not isinstance(f_locals, dict):
        raise TypeError(
            f"profile_guard_tree() expects f_locals as a dict, got {type(f_locals).__name__}"
        )
    if isinstance(repeat, bool) or not isinstance(repeat, int) or repeat < 1:
        raise ValueError(f"profile_guard_tree() expects repeat >= 1, got {repeat!r}")
    if isinstance(guard_manager, RootGuardManager):
        root, shaped = guard_manager, None
    elif isinstance(getattr(guard_manager, "root", None), RootGuardManager):
        root, shaped = guard_manager.root, guard_manager
    else:
        raise TypeError(
            "profile_guard_tree() expects a RootGuardManager or an entry's guard manager with "
            f"a .root, got {type(guard_manager).__name__}"
        )

    def check_root(loc: dict[str, Any], glob: dict[str, Any] | None) -> Any:
        return root.check(loc) if glob is None else root.check(loc, glob)

    def verbose_root(loc: dict[str, Any], glob: dict[str, Any] | None) -> Any:
        return root.check_verbose(loc) if glob is None else root.check_verbose(loc, glob)

    def whole() -> Any:
        return shaped.check(f_locals) if shaped is not None else check_root(f_locals, f_globals)

    if not whole():
        raise ValueError(f"profile_guard_tree(): the guards of {name} fail for these inputs")
    if number is None:
        number = _calibrate(whole)
    if isinstance(number, bool) or not isinstance(number, int) or number < 1:
        raise ValueError(f"profile_guard_tree() expects number >= 1, got {number!r}")

    empty = RootGuardManager()
    samples: dict[str, Callable[[], Any]] = {
        "baseline": lambda: empty.check({}),
        "empty_verbose": lambda: empty.check_verbose({}),
        "whole": whole,
        "verbose_all": lambda: verbose_root(f_locals, f_globals),
    }
    if shaped is not None:
        samples["tree_only"] = lambda: check_root(f_locals, f_globals)
    measured: list[tuple[int, Any, int, tuple[str, ...]]] = []
    unmeasured: list[NodeProfile] = []
    rest_locals, rest_globals = f_locals, f_globals
    for index, child in enumerate(root.children()):
        kinds, count = _subtree_kinds(child)
        inputs = _ablated_inputs(child.source, f_locals, f_globals)
        probe = _probe_for(child.source)
        if inputs is None or probe is None:
            unmeasured.append(NodeProfile(child.source, 0.0, count, kinds, measured=False))
            continue
        loc, glob = inputs
        samples[f"without {index}"] = functools.partial(verbose_root, loc, glob)
        samples[f"probe {index}"] = functools.partial(_verbose, probe, loc, glob)
        measured.append((index, child, count, kinds))
        rest_locals, rest_globals = _ablated_inputs(child.source, rest_locals, rest_globals) or (
            rest_locals,
            rest_globals,
        )
    root_leaves = root.leaf_guards()
    if root_leaves:
        samples["rest"] = functools.partial(verbose_root, rest_locals, rest_globals)

    ns = _interleaved_best_ns(samples, number, repeat)
    # The cost of each node's failed fetch, measured on a tree holding only that accessor.
    failed = {i: ns[f"probe {i}"] - ns["empty_verbose"] for i, _, _, _ in measured}
    nodes: list[NodeProfile] = []
    for index, child, count, kinds in measured:
        cost = ns["verbose_all"] - ns[f"without {index}"] + failed[index]
        nodes.append(NodeProfile(child.source, max(cost, 0.0), count, kinds))
    if root_leaves:
        cost = ns["rest"] - ns["empty_verbose"] - sum(failed.values())
        kinds = tuple(dict.fromkeys(kind for kind, _ in root_leaves))
        nodes.append(NodeProfile("<root>", max(cost, 0.0), len(root_leaves), kinds))
    ns_per_check = ns["whole"]
    baseline_ns = ns["baseline"]
    num_guards = root.num_guards()
    if shaped is not None:
        parts = tuple(getattr(shaped, "parts", ()))
        cost = ns_per_check - ns["tree_only"]
        nodes.append(NodeProfile("<shape guards>", max(cost, 0.0), len(parts), ("SHAPE",)))
        num_guards += len(parts)
    nodes.sort(key=lambda n: n.ns, reverse=True)
    info = (
        shaped.check_verbose(f_locals) if shaped is not None else verbose_root(f_locals, f_globals)
    )
    return GuardProfile(
        name=name,
        ns_per_check=ns_per_check,
        baseline_ns=baseline_ns,
        guards_executed=info.num_guards_executed,
        num_guards=num_guards,
        nodes=tuple(nodes + unmeasured),
        entry_index=entry_index,
        entries=entries,
        number=number,
        repeat=repeat,
    )


def _frame_inputs(
    fn: Any, args: tuple[Any, ...], kwargs: dict[str, Any]
) -> tuple[Any, dict[str, Any]]:
    """(function, f_locals at the start of its frame) for a call ``fn(*args, **kwargs)``."""
    target = getattr(fn, "_framecache_original", None)
    if target is None:
        target = inspect.unwrap(fn)
    if not inspect.isfunction(target) and not inspect.ismethod(target):
        forward = getattr(target, "forward", None)
        if forward is None:
            raise TypeError(
                f"profile_guards() expects a function or a module, got {type(fn).__name__}"
            )
        target = forward
    if inspect.ismethod(target):
        func, args = target.__func__, (target.__self__, *args)
    else:
        func = target
    if not inspect.isfunction(func):
        raise TypeError(f"profile_guards() expects a Python function, got {type(func).__name__}")
    # The frame's own parameters: a functools.wraps wrapper's (*args, **kwargs), not the
    # signature of what it wraps (which inspect.signature follows by default).
    bound = inspect.signature(func, follow_wrapped=False).bind(*args, **kwargs)
    bound.apply_defaults()
    f_locals = dict(bound.arguments)
    for name, cell in zip(func.__code__.co_freevars, func.__closure__ or (), strict=False):
        try:
            f_locals[name] = cell.cell_contents
        except ValueError:  # an empty cell: the frame has no value either
            pass
    return func, f_locals


def profile_guards(fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> GuardProfile:
    """Profile the guards of the cache entry that ``fn(*args, **kwargs)`` hits.

    ``fn`` is a framecache.compile'd function or module, or a function decorated with
    framecache.optimize; it is called once first, so that its entry exists.
    """
    if not callable(fn):
        raise TypeError(f"profile_guards() expects a callable, got {type(fn).__name__}")
    fn(*args, **kwargs)
    func, f_locals = _frame_inputs(fn, args, kwargs)
    code = func.__code__
    entries = _C.cache_entries(code)
    for index, entry in enumerate(entries):
        manager = entry.guard_manager
        if isinstance(manager, RootGuardManager):
            passed = manager.check(f_locals, func.__globals__)
        else:
            passed = manager.check(f_locals)
        if passed:
            return profile_guard_tree(
                manager,
                f_locals,
                func.__globals__,
                name=code.co_qualname,
                entry_index=index,
                entries=len(entries),
            )
    raise ValueError(
        f"profile_guards(): no cache entry of {code.co_qualname} passes for these arguments "
        f"({len(entries)} entries); is it compiled, and does it compile for them?"
    )


__all__ = ["GuardProfile", "NodeProfile", "profile_guard_tree", "profile_guards"]
