"""First call in a fresh process warm from the remote cache (Redis), side by side with a
local warm start and a cold compile, for the eager and inductor backends.

Each sample is one fresh interpreter that imports torch and framecache, builds the MLP
(``Linear(64, 128) -> GELU -> Linear(128, 64)`` plus the input as a residual, then
``LayerNorm`` and ``softmax``; a batch of 8, under ``torch.no_grad()``), compiles it and
times its first call (wall clock), and separately the compile wrapper plus the first call.
Per backend:

* ``cold``: empty local cache, no remote store, empty inductor cache directory;
* ``local warm``: the local cache filled by an earlier process, no remote store;
* ``remote warm``: an empty local cache, the remote store filled by an earlier process
  (a redis-server this script starts on 127.0.0.1, a port chosen at run time, its data
  in a temporary directory); the sample asserts it captured and compiled nothing.

The remote timeout is 2 s instead of 100 ms, so that a loaded machine does not turn a hit
into a timeout. Every sample has a fresh inductor cache directory, so nothing comes from
torch's caches.
The three kinds alternate, so load changes hit them alike; figures are medians.
Run: ``python benchmarks/remote_cache.py [--json PATH] [--repeats N] [--backends eager,inductor]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests" / "python"))
import redis_server  # tests/python/redis_server.py: the server the tests use

CHILD = textwrap.dedent(
    """
    import json, sys, time
    import torch, framecache

    class MLP(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.fc1 = torch.nn.Linear(64, 128)
            self.fc2 = torch.nn.Linear(128, 64)
            self.norm = torch.nn.LayerNorm(64)

        def forward(self, x):
            h = self.fc2(torch.nn.functional.gelu(self.fc1(x))) + x
            return torch.softmax(self.norm(h), dim=-1)

    torch.manual_seed(0)
    model = MLP()
    x = torch.randn(8, 64)
    backend, remote = sys.argv[1], sys.argv[2] or False
    if backend == "inductor":
        # Imports are not first-call time.
        import torch._inductor.compile_fx, torch._inductor.standalone_compile
    wrap = time.perf_counter()
    c = framecache.compile(model, backend=backend, remote=remote)
    wrap = time.perf_counter() - wrap
    with torch.no_grad():
        wall = time.perf_counter()
        out = c(x)
        wall = time.perf_counter() - wall
        torch.testing.assert_close(out, model(x))
    s, r = framecache.stats(c), framecache.stats().remote
    print(json.dumps({"wall_s": wall, "wrap_s": wrap, "compiles": s.compiles,
                      "disk_hits": s.disk_hits, "remote_hits": r.hits if r else 0,
                      "remote_errors": r.errors if r else 0}))
    """
)


def _sample(backend: str, fc_dir: str, inductor_dir: str, url: str) -> dict[str, float]:
    env = dict(os.environ, FRAMECACHE_CACHE_DIR=fc_dir, TORCHINDUCTOR_CACHE_DIR=inductor_dir)
    env.pop("FRAMECACHE_REMOTE", None)
    # A loaded machine can leave the server silent past the default 100 ms, which would
    # turn a hit into a local compile; a hit's cost does not depend on the timeout.
    env["FRAMECACHE_REMOTE_TIMEOUT"] = "2"
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, backend, url],
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=600,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"{backend} sample failed:\n{proc.stderr}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def measure(backend: str, repeats: int, tmp: str, url: str) -> dict[str, float]:
    """Medians of the three kinds of first call for one backend."""
    fresh = lambda: tempfile.mkdtemp(dir=tmp)  # noqa: E731
    local_dir = fresh()
    filled = _sample(backend, local_dir, fresh(), "")  # fills the local cache
    assert filled["compiles"] == 1, filled
    filled = _sample(backend, fresh(), fresh(), url)  # fills the remote store
    assert filled["compiles"] == 1 and filled["remote_errors"] == 0, filled
    samples: dict[str, list[dict[str, float]]] = {}
    for _ in range(repeats):
        runs = {
            "cold": (fresh(), ""),
            "local warm": (local_dir, ""),
            "remote warm": (fresh(), url),
        }
        for name, (fc_dir, remote) in runs.items():
            result = _sample(backend, fc_dir, fresh(), remote)
            if name == "local warm":
                assert result["compiles"] == 0 and result["disk_hits"] == 1, result
            if name == "remote warm":
                assert result["compiles"] == 0 and result["remote_hits"] == 1, result
            samples.setdefault(name, []).append(result)
    out: dict[str, float] = {}
    for name, values in samples.items():
        out[f"{name} wall ms"] = statistics.median(v["wall_s"] for v in values) * 1e3
        out[f"{name} wrap+call wall ms"] = (
            statistics.median(v["wrap_s"] + v["wall_s"] for v in values) * 1e3
        )
    out["remote warm / local warm"] = out["remote warm wall ms"] / out["local warm wall ms"]
    out["cold / remote warm"] = out["cold wall ms"] / out["remote warm wall ms"]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--json", help="write the results to this file")
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--backends", default="eager,inductor")
    args = parser.parse_args()
    if redis_server.available() is None:
        raise SystemExit(
            "remote_cache: redis-server is not installed (apt-get install redis-server)"
        )
    results: dict[str, dict[str, float]] = {}
    with tempfile.TemporaryDirectory(prefix="framecache-remote-") as tmp:
        os.chmod(tmp, 0o700)
        server = redis_server.RedisServer(Path(tmp) / "redis").start()
        try:
            for backend in args.backends.split(","):
                results[backend] = measure(backend, args.repeats, tmp, server.url)
        finally:
            server.stop()
    try:
        results["machine"] = {"load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    except OSError:
        pass
    for section, values in results.items():
        print(f"[{section}]")
        for k, v in values.items():
            print(f"  {k:<32} {v:12.3f}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
