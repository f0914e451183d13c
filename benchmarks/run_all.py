"""Run every benchmark of the project and write one JSON file of the results.

    python benchmarks/run_all.py [--json PATH] [--quick] [--skip NAME ...] [--only NAME ...]

Each benchmark is a script in ``benchmarks/`` that accepts ``--json PATH``; it runs in its
own interpreter (this one, with this environment, so ``PYTHONPATH=build/dev/pkg`` works),
one after the other so that they do not compete for the CPU. Known benchmarks:

    runtime_overhead   the hook's cost on a cache hit, per call (a few seconds)
    guard_lookup       framecache's guard trees against torch's, hook and check views
    compile_overhead   framecache.compile's hit overhead and first-call (compile) time;
                       slow: it starts fresh interpreters for the first-call figures
    warm_start         first call in a fresh process: cold, warm from the disk cache, and
                       torch.compile's warm start; slow (fresh interpreters, inductor)

Any other ``benchmarks/*.py`` that mentions ``--json`` is run too, with ``--json`` only.
``--quick`` passes each known benchmark the flags that make it short (fewer samples; no
first-call figures), for a smoke run; figures for review come from a full run.

The output (default ``benchmarks/results/latest.json``) holds the date, the machine, and
per benchmark its command, wall time, exit status and the JSON it wrote. Compare two such
files with ``python benchmarks/compare.py OLD.json NEW.json``.
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
DEFAULT_OUTPUT = HERE / "results" / "latest.json"

# name -> (flags for --quick); the order is the order they run in.
KNOWN: dict[str, list[str]] = {
    "runtime_overhead": ["--repeats", "5", "--calls", "5000"],
    "guard_lookup": ["--quick"],
    "compile_overhead": ["--repeats", "3", "--calls", "2000", "--skip-first-call"],
    "warm_start": ["--repeats", "1", "--backends", "eager"],
    "remote_cache": ["--repeats", "1", "--backends", "eager"],
    "python_overhead": ["--repeats", "5"],
    "models": ["--backends", "eager", "--repeats", "3", "--no-training"],
}
NOT_BENCHMARKS = {"run_all", "compare", "zoo_models"}


def discover() -> list[str]:
    """The benchmarks present: the known ones first, then other scripts taking --json."""
    present = [name for name in KNOWN if (HERE / f"{name}.py").is_file()]
    for path in sorted(HERE.glob("*.py")):
        name = path.stem
        if name in KNOWN or name in NOT_BENCHMARKS or name.startswith("_"):
            continue
        if "--json" in path.read_text(encoding="utf-8", errors="replace"):
            present.append(name)
    return present


def machine() -> dict[str, Any]:
    """What ran the benchmarks."""
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = None
    return {
        "platform": platform.platform(),
        "processor": platform.processor() or platform.machine(),
        "cpus": os.cpu_count(),
        "python": sys.version.split()[0],
        "load_average_1min": load,
    }


def run_one(name: str, extra: list[str], timeout: float) -> dict[str, Any]:
    """Run one benchmark script; its JSON (or why there is none) and how long it took."""
    with tempfile.TemporaryDirectory(prefix="framecache-bench-") as tmp:
        out = Path(tmp) / f"{name}.json"
        command = [sys.executable, str(HERE / f"{name}.py"), "--json", str(out), *extra]
        started = time.perf_counter()
        try:
            proc = subprocess.run(
                command, capture_output=True, text=True, timeout=timeout, check=False
            )
        except subprocess.TimeoutExpired:
            return {
                "command": command[1:],
                "seconds": time.perf_counter() - started,
                "returncode": None,
                "error": f"timed out after {timeout:.0f}s",
            }
        record: dict[str, Any] = {
            "command": command[1:],
            "seconds": round(time.perf_counter() - started, 2),
            "returncode": proc.returncode,
        }
        if proc.returncode != 0:
            record["error"] = proc.stderr.strip().splitlines()[-20:]
        elif out.is_file():
            record["results"] = json.loads(out.read_text())
        else:
            record["error"] = "the benchmark wrote no JSON"
        record["stdout"] = proc.stdout.splitlines()
        return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", metavar="PATH", default=str(DEFAULT_OUTPUT))
    parser.add_argument("--quick", action="store_true", help="short runs (smoke test)")
    parser.add_argument("--skip", action="append", default=[], metavar="NAME")
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--timeout", type=float, default=3600.0, help="seconds per benchmark")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)

    names = discover()
    if args.list:
        print("\n".join(names))
        return 0
    unknown = sorted(set(args.skip + args.only) - set(names))
    if unknown:
        parser.error(f"unknown benchmarks {unknown}; present: {names}")
    selected = [n for n in names if n not in args.skip and (not args.only or n in args.only)]

    report: dict[str, Any] = {
        "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
        "machine": machine(),
        "quick": args.quick,
        "benchmarks": {},
    }
    failed = 0
    for name in selected:
        extra = KNOWN.get(name, []) if args.quick else []
        print(f"== {name} {' '.join(extra)}", flush=True)
        record = run_one(name, extra, args.timeout)
        report["benchmarks"][name] = record
        if "error" in record:
            failed += 1
            print(f"   FAILED: {record['error']}", flush=True)
        else:
            print("\n".join(f"   {line}" for line in record["stdout"]), flush=True)
            print(f"   ({record['seconds']:.1f}s)", flush=True)
    output = Path(args.json)
    output.parent.mkdir(parents=True, exist_ok=True)
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
