"""The access-chain parser (compiler/reads.py) on the bytecode of CPython 3.11 to 3.13.

reads.py imports neither torch nor the extension, so each interpreter pyenv has runs it
from the source file in a subprocess: 3.12 folds LOAD_METHOD into LOAD_ATTR and inlines
comprehensions, 3.13 adds LOAD_FAST_LOAD_FAST and moves the call's NULL.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
READS = ROOT / "python" / "framecache" / "compiler" / "reads.py"

_PROBE = r"""
import dis, importlib.util, json, sys, types
spec = importlib.util.spec_from_file_location("reads", sys.argv[1])
reads = importlib.util.module_from_spec(spec)
spec.loader.exec_module(reads)

def f(self, cfg, name, d, k, lst, i, keys):
    a = getattr(cfg, name)
    b = hasattr(cfg, "x")
    c = d[k] + lst[i]
    e = d.get(k, 1)
    g = cfg.__dict__.get(name)
    h = vars(cfg)[k]
    z = [getattr(cfg, q).y for q in keys]
    w = self.a.b(torch.nn.functional.gelu(x), getattr(self.config, "_attn", None))
    v = getattr(cfg, "sc" + name)
    u = d[(k := 3)]
    t = getattr(cfg, name, (name := "other"))
    s = d.get(k, **{})

def walk(code):
    yield code
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from walk(const)

static, dynamic = [], []
for code in walk(f.__code__):
    ops = {ins.offset: ins.opname for ins in dis.get_instructions(code)}
    table = reads.code_chains(code)
    for line, chains in table.by_line.items():
        static += [[line - f.__code__.co_firstlineno, repr(c)] for c in chains]
    for offset, chains in table.by_offset.items():
        dynamic += [[ops[offset], repr(c)] for c in chains]
print(json.dumps({"static": sorted(static), "dynamic": sorted(dynamic)}))
"""

EXPECTED_DYNAMIC = sorted(
    [
        ["CALL", repr(("L", "cfg", (("getattr", ("local", "name"), False),)))],
        ["CALL", repr(("L", "cfg", (("hasattr", ("const", "x")),)))],
        ["BINARY_SUBSCR", repr(("L", "d", (("item_of", ("local", "k")),)))],
        ["BINARY_SUBSCR", repr(("L", "lst", (("item_of", ("local", "i")),)))],
        ["CALL", repr(("L", "d", (("get", ("local", "k")),)))],
        ["CALL", repr(("L", "cfg", (("attr", "__dict__"), ("get", ("local", "name")))))],
        ["CALL", repr(("L", "cfg", (("vars",), ("item_of", ("local", "k")))))],
        ["CALL", repr(("L", "cfg", (("getattr", ("local", "q"), False), ("attr", "y"))))],
        [
            "CALL",
            repr(("L", "self", (("attr", "config"), ("getattr", ("const", "_attn"), True)))),
        ],
        ["CALL", repr(("L", "cfg", (("getattr", ("unknown", None), False),)))],
        # ``getattr(cfg, name, (name := ...))`` rebinds its key before the call reads it.
        ["CALL", repr(("L", "cfg", (("getattr", ("unknown", None), True),)))],
    ]
)
# Constant chains, by line offset from ``def f``: globals, attribute loads, the walrus key.
EXPECTED_STATIC = [
    [8, repr(("G", "torch", (("attr", "nn"), ("attr", "functional"), ("attr", "gelu"))))],
    [8, repr(("L", "self", (("attr", "a"), ("attr", "b"))))],
    [10, repr(("L", "d", (("item", 3),)))],
]


def _interpreters() -> list[str]:
    found = [sys.executable]
    finder = ROOT / ".ci" / "find-python"
    for version in ("3.12", "3.13"):
        try:
            out = subprocess.run([str(finder), version], capture_output=True, text=True, timeout=30)
        except OSError:
            continue
        path = out.stdout.strip()
        if out.returncode == 0 and path and shutil.which(path):
            found.append(path)
    return found


@pytest.mark.parametrize("python", _interpreters())
def test_chains_are_the_same_on_every_bytecode(python: str) -> None:
    out = subprocess.run(
        [python, "-c", _PROBE, str(READS)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    got = json.loads(out.stdout)
    assert got["dynamic"] == EXPECTED_DYNAMIC
    for entry in EXPECTED_STATIC:
        assert entry in got["static"], (entry, got["static"])
    # ``d.get(k, **{})`` is not a plain get call.
    assert sum("('get'" in chain for _, chain in got["dynamic"]) == 2
