"""``python -m framecache [COMMAND]``: the demo, and developer tools.

Commands (each a subcommand with its own ``--help``):

* (none) or ``demo``: walk through the hook compiling, hitting and recompiling.
* ``profile module:function``: profile the guards of one call. ``function`` takes no
  arguments and returns ``(fn, args)`` or ``(fn, args, kwargs)``; ``fn`` is a
  framecache.compile'd function or module (or one decorated with framecache.optimize),
  and the guards profiled are those of the cache entry ``fn(*args, **kwargs)`` hits.
* ``cache info|list|clear|prune``: the disk cache of framecache.compile (see
  framecache/cache/cli.py).
* ``doctor``: the Python, framecache and torch this process runs with, and whether
  tensor guards use the C++ reader (and why not); exit status 1 when torch is
  importable but the C++ reader is off.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Callable, Sequence
from typing import Any


def _demo(args: argparse.Namespace) -> int:
    from .demo import main

    main()
    return 0


def _load(spec: str) -> Callable[[], Any]:
    module_name, sep, attr = spec.partition(":")
    if not sep or not module_name or not attr:
        raise SystemExit(f"profile: expected module:function, got {spec!r}")
    if "" not in sys.path and "." not in sys.path:
        sys.path.insert(0, "")  # like `python -m`, find modules in the current directory
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise SystemExit(f"profile: {spec} is not callable")
    return target


def _profile(args: argparse.Namespace) -> int:
    from .profiling import profile_guards

    made = _load(args.target)()
    if not isinstance(made, tuple) or len(made) not in (2, 3):
        raise SystemExit(
            f"profile: {args.target}() must return (fn, args) or (fn, args, kwargs), "
            f"got {type(made).__name__}"
        )
    fn, call_args, *rest = made
    call_kwargs = rest[0] if rest else {}
    print(profile_guards(fn, *tuple(call_args), **dict(call_kwargs)))
    return 0


def doctor_report() -> tuple[list[str], bool]:
    """The lines ``doctor`` prints, and whether the setup is healthy.

    Imports torch when it is installed and builds one tensor guard, which loads (or,
    once per torch install, compiles) the C++ tensor reader.
    """
    import importlib.util
    import os
    import platform

    import framecache

    from ._C import guards

    lines = [
        f"python      {platform.python_version()} ({sys.executable})",
        f"framecache  {framecache.__version__} ({os.path.dirname(framecache.__file__)})",
    ]
    if importlib.util.find_spec("torch") is None:
        lines.append("torch       not installed (tensor guards and framecache.compile need it)")
        lines.append("fast path   off: torch is not installed")
        return lines, True
    import torch

    from .guards import RootGuardManager

    RootGuardManager().local("x").tensor_match(torch.zeros(1))
    from .cache import torch_compat

    lines.append(f"torch       {torch.__version__} ({os.path.dirname(torch.__file__)})")
    if not torch_compat.is_supported():
        lines.append(
            f"            outside the supported range {torch_compat.SUPPORTED_RANGE}: "
            "framecache.compile warns and is not tested there"
        )
    lines.append(f"fast path   {guards.torch_fast_path_status()}")
    return lines, guards.torch_fast_path_enabled()


def _doctor(args: argparse.Namespace) -> int:
    lines, healthy = doctor_report()
    print("\n".join(lines))
    return 0 if healthy else 1


def build_parser() -> argparse.ArgumentParser:
    """The command line: one subparser per command."""
    parser = argparse.ArgumentParser(
        prog="python -m framecache", description="framecache's demo (the default) and tools."
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    demo = commands.add_parser("demo", help="run the demo (the default)")
    demo.set_defaults(run=_demo)
    profile = commands.add_parser(
        "profile",
        help="profile the guards of one call",
        description="Profile the guards of the cache entry a call hits. FUNCTION takes no "
        "arguments and returns (fn, args) or (fn, args, kwargs).",
    )
    profile.add_argument("target", metavar="module:function")
    profile.set_defaults(run=_profile)
    doctor = commands.add_parser(
        "doctor",
        help="say which Python and torch framecache runs with, and if its C++ tensor path is on",
    )
    doctor.set_defaults(run=_doctor)
    from .cache import cli as cache_cli

    cache_cli.add_parser(commands)
    parser.set_defaults(run=_demo)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command named in ``argv`` (default: sys.argv[1:])."""
    args = build_parser().parse_args(argv)
    return int(args.run(args))


if __name__ == "__main__":
    sys.exit(main())
