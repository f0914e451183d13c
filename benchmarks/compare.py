"""Compare two result files of benchmarks/run_all.py: NEW / OLD for every figure.

    python benchmarks/compare.py OLD.json NEW.json [--threshold 0.10] [--all]

Every number found in both files' benchmark results is matched by its path
(``runtime_overhead / cases / run_only hit / hit_ns``; list items by their ``case``,
``name`` or ``view``). Figures that are times (last key ending in a ``ns``, ``us``, ``ms``,
``s`` or ``seconds`` word, optionally ``/call``; lower is better) are flagged ``slower`` or
``faster`` when the ratio moves past the threshold; other numbers (ratios, counts) are
shown for reference. By default only times are printed; ``--all`` prints every number.
The exit status is 1 when a time got slower past the threshold, so that a review or CI
step can notice a regression.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

# A last key naming a time: "hit_ns", "overhead ns", "eager ns/call", "first call s".
_TIME = re.compile(r"(?:^|[\s_])(?:ns|us|ms|s|seconds)(?:/call)?$")
# Keys whose values name a list item (guard_lookup's rows) instead of its index.
_LABEL_KEYS = ("case", "name", "view")


def flatten(value: Any, prefix: str = "") -> dict[str, float]:
    """Every number inside ``value``, by its path of keys (lists by index)."""
    out: dict[str, float] = {}
    if isinstance(value, bool):
        return out
    if isinstance(value, int | float):
        out[prefix] = float(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            out.update(flatten(item, f"{prefix} / {key}" if prefix else str(key)))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            label = str(i)
            if isinstance(item, dict):
                named = [str(item[k]) for k in _LABEL_KEYS if isinstance(item.get(k), str)]
                label = " ".join(named) or label
            out.update(flatten(item, f"{prefix}[{label}]"))
    return out


def figures(report: dict[str, Any]) -> dict[str, float]:
    """The numbers of each benchmark's own results (not wall times or settings)."""
    out: dict[str, float] = {}
    for name, record in report.get("benchmarks", {}).items():
        out.update(flatten(record.get("results", {}), name))
    return out


def is_time(path: str) -> bool:
    return bool(_TIME.search(path.rsplit(" / ", 1)[-1].lower()))


def compare(
    old: dict[str, Any], new: dict[str, Any], threshold: float, show_all: bool
) -> tuple[list[str], int]:
    """The report's lines and how many times got slower past ``threshold``."""
    a, b = figures(old), figures(new)
    lines = [
        f"old: {old.get('date', '?')} ({old.get('machine', {}).get('processor', '?')})",
        f"new: {new.get('date', '?')} ({new.get('machine', {}).get('processor', '?')})",
        f"{'new/old':>8}  {'old':>12}  {'new':>12}  figure",
    ]
    slower = 0
    for path in sorted(set(a) & set(b)):
        timed = is_time(path)
        if not timed and not show_all:
            continue
        before, after = a[path], b[path]
        ratio = after / before if before else float("inf") if after else 1.0
        flag = ""
        if timed and ratio > 1 + threshold:
            flag, slower = "  slower", slower + 1
        elif timed and ratio < 1 - threshold:
            flag = "  faster"
        lines.append(f"{ratio:>7.2f}x  {before:>12.4g}  {after:>12.4g}  {path}{flag}")
    only_old, only_new = sorted(set(a) - set(b)), sorted(set(b) - set(a))
    if only_old:
        lines.append(f"only in old: {len(only_old)} figures, e.g. {only_old[0]}")
    if only_new:
        lines.append(f"only in new: {len(only_new)} figures, e.g. {only_new[0]}")
    lines.append(f"{slower} time(s) slower by more than {threshold:.0%}")
    return lines, slower


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("old", type=Path)
    parser.add_argument("new", type=Path)
    parser.add_argument("--threshold", type=float, default=0.10, help="default 0.10 (10%%)")
    parser.add_argument("--all", action="store_true", help="print every number, not only times")
    args = parser.parse_args(argv)
    old = json.loads(args.old.read_text())
    new = json.loads(args.new.read_text())
    lines, slower = compare(old, new, args.threshold, args.all)
    print("\n".join(lines))
    return 1 if slower else 0


if __name__ == "__main__":
    sys.exit(main())
