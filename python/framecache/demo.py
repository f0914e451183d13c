"""A walk through the hook: compile on a miss, hit the cache, recompile on a guard failure.

Run it with ``python -m framecache``. The "compiler" here specialises a function
on the types of its arguments: it guards each argument with TYPE_MATCH and
caches a copy of the function's code under those guards.
"""

from __future__ import annotations

import time

from . import _C
from ._runtime import optimize
from .guards import RootGuardManager


def _type_specialising_callback(log: list[str], targets: set[str]):
    def callback(frame: _C.FrameView, first_entry: object, frame_state: dict) -> object:
        code = frame.f_code
        if code.co_name not in targets:
            return None
        f_locals = frame.f_locals
        root = RootGuardManager()
        for name in code.co_varnames[: code.co_argcount]:
            root.local(name).type_match(type(f_locals[name]))
        signature = ", ".join(
            f"{n}: {type(f_locals[n]).__name__}" for n in code.co_varnames[: code.co_argcount]
        )
        if first_entry is not None:
            failures = first_entry.guard_manager.check_verbose(f_locals).failures
            log.append(f"  recompile {code.co_name}({signature}) because " + "; ".join(failures))
        else:
            log.append(f"  compile   {code.co_name}({signature})")
        return _C.CallbackResult(
            _C.GuardedCode(code.replace(), root, compile_id=len(log), trace_annotation=signature)
        )

    return callback


# The demo's "user code". framecache never intercepts its own files, so the
# function is compiled from source under a filename of its own.
_USER_SOURCE = """
def scale(x, factor):
    return x * factor
"""
_namespace: dict[str, object] = {}
exec(compile(_USER_SOURCE, "<framecache-demo>", "exec"), _namespace)
_scale = _namespace["scale"]


def main() -> None:
    """Run the demo and print what the hook did."""
    log: list[str] = []
    callback = _type_specialising_callback(log, {"scale"})
    calls = [(2, 3), (4, 5), (1.5, 2), ("ab", 3), (6, 7)]
    print("framecache demo: calling scale(x, factor) with the hook on")
    with optimize(callback):
        for args in calls:
            before = len(log)
            result = _scale(*args)  # type: ignore[operator]
            event = log[before] if len(log) > before else "  hit       cached entry"
            print(f"{event:<72} -> scale{args!r} = {result!r}")
    print("\ncache entries of scale (most recently used first):")
    for entry in _C.cache_entries(_scale.__code__):  # type: ignore[attr-defined]
        print(f"  [{entry.trace_annotation}] hits={entry.hit_count} compile_id={entry.compile_id}")

    n = 200_000
    with optimize(callback):
        _scale(1, 2)  # type: ignore[operator]
        start = time.perf_counter_ns()
        for _ in range(n):
            _scale(1, 2)  # type: ignore[operator]
        hooked = (time.perf_counter_ns() - start) / n
    start = time.perf_counter_ns()
    for _ in range(n):
        _scale(1, 2)  # type: ignore[operator]
    plain = (time.perf_counter_ns() - start) / n
    print(
        f"\nper call: {hooked:.0f} ns through the cache (2 TYPE_MATCH guards), "
        f"{plain:.0f} ns with the hook off; overhead {hooked - plain:.0f} ns"
    )
    _C.reset_code(_scale.__code__)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
