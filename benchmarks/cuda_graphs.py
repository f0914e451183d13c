"""CUDA graphs: framecache ``cudagraphs=True`` against torch.compile ``mode="reduce-overhead"``.

Launch-bound inference at batch 1, side by side in one process (µs per call):

* ``mlp``: 4 x (Linear(256, 256) -> ReLU) on a (1, 256) input;
* ``add``: ``x + y`` on two 4-float tensors;
* ``transformer``: a tiny GPT-2 (transformers' GPT2Model, hidden 64, 2 layers, 2 heads,
  16 tokens) when framecache captures it as one graph, else a hand-written block model
  of the same size (the output says which);
* ``hf_gpt2``: that GPT2Model whole, with graph breaks allowed for both compilers (the
  frames neither captures run eagerly between graphs).

Variants, each under ``torch.no_grad()``: eager; framecache inductor; framecache inductor
with CUDA graphs; torch.compile inductor; torch.compile ``mode="reduce-overhead"``. Each
variant gets its own code objects (the source is executed once per variant), so that no
two compiled variants share a cache entry. One sample is ``--calls`` calls followed by
``torch.cuda.synchronize()``, divided by the number of calls; the variants' samples are
interleaved in a shuffled order per repeat; figures are medians over ``--repeats``. A
second table gives the CPU's µs per call of the same samples, up to the last call's return
(before synchronizing): where it equals the first, the calls are bound by the CPU work
each call does (guards, argument handling, launching), not by the GPU.

Run: ``python benchmarks/cuda_graphs.py --device cuda [--json PATH] [--repeats N]
[--calls N] [--cases mlp,add,transformer,hf_gpt2]``. ``--device cpu`` is a smoke run (no graphs:
framecache says why, torch.compile's reduce-overhead skips CPU graphs too).
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
import statistics
import sys
import textwrap
import time
import types
from collections.abc import Callable
from typing import Any

import torch

import framecache

SOURCE = textwrap.dedent(
    """
    import torch
    import torch.nn.functional as F

    class MLP(torch.nn.Module):
        def __init__(self, width=256, depth=4):
            super().__init__()
            self.layers = torch.nn.ModuleList(
                torch.nn.Linear(width, width) for _ in range(depth)
            )

        def forward(self, x):
            for layer in self.layers:
                x = torch.relu(layer(x))
            return x

    def add(x, y):
        return x + y

    class Block(torch.nn.Module):
        def __init__(self, d=64, heads=2):
            super().__init__()
            self.heads = heads
            self.ln1 = torch.nn.LayerNorm(d)
            self.qkv = torch.nn.Linear(d, 3 * d)
            self.proj = torch.nn.Linear(d, d)
            self.ln2 = torch.nn.LayerNorm(d)
            self.fc1 = torch.nn.Linear(d, 4 * d)
            self.fc2 = torch.nn.Linear(4 * d, d)

        def forward(self, x):
            b, t, c = x.shape
            q, k, v = self.qkv(self.ln1(x)).split(c, dim=2)
            q = q.view(b, t, self.heads, c // self.heads).transpose(1, 2)
            k = k.view(b, t, self.heads, c // self.heads).transpose(1, 2)
            v = v.view(b, t, self.heads, c // self.heads).transpose(1, 2)
            a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            x = x + self.proj(a.transpose(1, 2).reshape(b, t, c))
            return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))

    class TinyGPT(torch.nn.Module):
        def __init__(self, vocab=1000, d=64, layers=2, positions=64):
            super().__init__()
            self.wte = torch.nn.Embedding(vocab, d)
            self.wpe = torch.nn.Embedding(positions, d)
            self.blocks = torch.nn.ModuleList(Block(d) for _ in range(layers))
            self.ln = torch.nn.LayerNorm(d)

        def forward(self, ids):
            positions = torch.arange(ids.shape[1], device=ids.device)
            x = self.wte(ids) + self.wpe(positions)
            for block in self.blocks:
                x = block(x)
            return self.ln(x)

    class HFWrapper(torch.nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model = model

        def forward(self, ids):
            return self.model(input_ids=ids).last_hidden_state
    """
)
_counter = itertools.count()


def fresh() -> types.SimpleNamespace:
    """The benchmark's classes and functions with code objects of their own."""
    scope: dict[str, Any] = {"__name__": f"cuda_graphs_variant_{next(_counter)}"}
    exec(compile(SOURCE, f"<cuda_graphs variant {next(_counter)}>", "exec"), scope)
    return types.SimpleNamespace(**scope)


def hf_gpt2(device: str) -> torch.nn.Module | None:
    """A tiny GPT2Model (hidden 64, 2 layers), or None when transformers is missing."""
    import zoo_models  # the zoo's torchvision shim: transformers imports torchvision

    zoo_models._torchvision_if_installed()
    try:
        from transformers import GPT2Config, GPT2Model
    except ImportError:
        return None
    config = GPT2Config(
        vocab_size=1000, n_positions=64, n_embd=64, n_layer=2, n_head=2, use_cache=False
    )
    config._attn_implementation = "sdpa"
    return GPT2Model(config).to(device).eval()


def case_inputs(case: str, device: str) -> tuple[Any, ...]:
    if case == "mlp":
        return (torch.randn(1, 256, device=device),)
    if case == "add":
        return (torch.randn(4, device=device), torch.randn(4, device=device))
    return (torch.randint(0, 1000, (1, 16), device=device),)


def build(case: str, device: str, transformer: str) -> Callable[..., Any]:
    """A fresh (uncompiled) callable of ``case`` with the same weights for every variant."""
    ns = fresh()
    torch.manual_seed(0)
    if case == "add":
        return ns.add  # type: ignore[no-any-return]
    if case == "mlp":
        return ns.MLP().to(device).eval()  # type: ignore[no-any-return]
    if transformer == "hf" or case == "hf_gpt2":
        torch.manual_seed(0)
        return ns.HFWrapper(hf_gpt2(device)).eval()  # type: ignore[no-any-return]
    return ns.TinyGPT().to(device).eval()  # type: ignore[no-any-return]


VARIANTS = [
    "eager",
    "framecache inductor",
    "framecache cudagraphs",
    "torch.compile inductor",
    "torch.compile reduce-overhead",
]


def wrap(variant: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    if variant == "eager":
        return fn
    if variant == "framecache inductor":
        return framecache.compile(fn, backend="inductor")
    if variant == "framecache cudagraphs":
        return framecache.compile(fn, backend="inductor", cudagraphs=True)
    if variant == "torch.compile inductor":
        return torch.compile(fn, backend="inductor")
    return torch.compile(fn, mode="reduce-overhead")


def choose_transformer(device: str) -> tuple[str, str]:
    """``("hf", why)`` when framecache captures tiny GPT-2 as one graph, else ``("block", why)``."""
    try:
        model = hf_gpt2(device)
        if model is None:
            return "block", "transformers is not installed"
        ns = fresh()
        compiled = framecache.compile(ns.HFWrapper(model), fullgraph=True, cache=False)
        with torch.no_grad():
            compiled(*case_inputs("transformer", device))
    except Exception as exc:
        reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        return "block", f"framecache does not capture GPT2Model whole here ({reason[:200]})"
    finally:
        framecache.reset()
    return "hf", "transformers GPT2Model (hidden 64, 2 layers, 2 heads), 16 tokens"


def sample(
    fn: Callable[..., Any], args: tuple[Any, ...], calls: int, device: str
) -> tuple[float, float]:
    """µs per call over ``calls`` calls, the device drained at the end, and the CPU's µs
    per call until the last call returned (before draining): when the two are equal the
    calls are bound by the CPU work per call, not by the GPU."""
    sync = torch.cuda.synchronize if device == "cuda" else (lambda: None)
    sync()
    start = time.perf_counter()
    for _ in range(calls):
        fn(*args)
    enqueued = time.perf_counter()
    sync()
    end = time.perf_counter()
    return (end - start) / calls * 1e6, (enqueued - start) / calls * 1e6


def run_case(case: str, device: str, transformer: str, repeats: int, calls: int) -> dict[str, Any]:
    args = case_inputs(case, device)
    fns: dict[str, Callable[..., Any]] = {}
    reference = None
    mismatches = []
    failed: dict[str, str] = {}
    with torch.no_grad():
        for variant in VARIANTS:
            try:
                fn = wrap(variant, build(case, device, transformer))
                started = time.perf_counter()
                out = fn(*args)
                first = time.perf_counter() - started
                for _ in range(5):  # reduce-overhead records on a later call
                    out = fn(*args)
            except Exception as exc:  # a variant that fails is reported, not fatal
                failed[variant] = f"{type(exc).__name__}: {str(exc)[:300]}"
                print(f"  {case}: {variant} FAILED: {failed[variant]}", flush=True)
                continue
            if reference is None:
                reference = out
            elif not torch.allclose(out, reference, rtol=1e-3, atol=1e-3):
                mismatches.append(variant)
            fns[variant] = fn
            print(f"  {case}: {variant} ready (first call {first:.2f} s)", flush=True)
        samples: dict[str, list[float]] = {v: [] for v in VARIANTS if v in fns}
        cpu: dict[str, list[float]] = {v: [] for v in samples}
        order = list(samples)
        rng = random.Random(0)
        for _ in range(repeats):
            rng.shuffle(order)
            for variant in order:
                wall, enqueued = sample(fns[variant], args, calls, device)
                samples[variant].append(wall)
                cpu[variant].append(enqueued)
    nan = float("nan")
    medians = {v: statistics.median(samples[v]) if v in samples else nan for v in VARIANTS}
    cpu_medians = {v: statistics.median(cpu[v]) if v in cpu else nan for v in VARIANTS}
    graphed = fns.get("framecache cudagraphs")
    stats = framecache.stats(graphed) if graphed is not None else None
    return {
        "case": case,
        "us/call": medians,
        "ratio framecache cudagraphs / reduce-overhead": (
            medians["framecache cudagraphs"] / medians["torch.compile reduce-overhead"]
        ),
        "ratio framecache cudagraphs / eager": medians["framecache cudagraphs"] / medians["eager"],
        "cpu us/call": cpu_medians,
        "cudagraph recordings": stats.cudagraph_recordings if stats else 0,
        "cudagraph reasons": list(stats.cudagraph_reasons) if stats else [],
        "fallbacks": list(stats.fallback_reasons) if stats else [],
        "outputs differ from eager": mismatches,
        "failed": failed,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--cases", default="mlp,add,transformer,hf_gpt2")
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        print("no CUDA device", file=sys.stderr)
        return 2
    cases = [c for c in args.cases.split(",") if c]
    transformer, why = ("block", "not run")
    if "transformer" in cases:
        transformer, why = choose_transformer(args.device)
        print(f"transformer: {transformer} ({why})", flush=True)
    results = [run_case(case, args.device, transformer, args.repeats, args.calls) for case in cases]
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    print(
        f"\n{name}, torch {torch.__version__}, Python {sys.version.split()[0]}; "
        f"µs per call, medians of {args.repeats} interleaved samples of {args.calls} calls"
    )
    print("| case | " + " | ".join(VARIANTS) + " | fc cudagraphs / reduce-overhead |")
    print("| --- |" + " ---: |" * (len(VARIANTS) + 1))
    for r in results:
        cells = " | ".join(f"{r['us/call'][v]:.1f}" for v in VARIANTS)
        ratio = r["ratio framecache cudagraphs / reduce-overhead"]
        print(f"| {r['case']} | {cells} | {ratio:.2f} |")
    print("\nCPU µs per call (until the last call returned, before synchronizing):")
    print("| case | " + " | ".join(VARIANTS) + " |")
    print("| --- |" + " ---: |" * len(VARIANTS))
    for r in results:
        cells = " | ".join(f"{r['cpu us/call'][v]:.1f}" for v in VARIANTS)
        print(f"| {r['case']} | {cells} |")
    for r in results:
        notes = {k: r[k] for k in list(r)[5:]}
        print(f"{r['case']}: {json.dumps(notes)}")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"device": name, "transformer": why, "results": results}, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
