"""The model zoo's smoke subset: every zoo model compiles and returns eager's result.

At the end, models beyond the zoo that each found a bug when first tried (Swin, ELECTRA,
Mistral generating with a KV cache, BART): they must keep running as eager does.

The models are benchmarks/zoo_models.py's, the ones benchmarks/models.py measures
(torchvision, timm and transformers models from configs, random weights, small inputs).
Here each runs with the eager backend only: a model that stops compiling, or whose
compiled result drifts from eager's, fails the suite. The full comparison with
torch.compile (inductor, timings) is the benchmark's.
"""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

import framecache

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import zoo_models

pytestmark = [
    pytest.mark.torch,
    # Raised by the model libraries' own code (configs, deprecated torch calls they make).
    pytest.mark.filterwarnings("ignore::DeprecationWarning"),
    pytest.mark.filterwarnings("ignore::FutureWarning"),
    pytest.mark.filterwarnings("ignore::UserWarning"),
]

# A model whose compile never ends must fail, not hang the suite.
_SECONDS_PER_MODEL = 120


@contextlib.contextmanager
def _time_limit(seconds: int, what: str) -> Iterator[None]:
    def expire(signum: int, frame: object) -> None:
        raise TimeoutError(f"{what} still running after {seconds}s")

    previous = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


@pytest.mark.parametrize("name", list(zoo_models.MODELS))
def test_zoo_model_matches_eager(name: str) -> None:
    model, args = zoo_models.MODELS[name].build(torch.device("cpu"))
    with torch.no_grad():
        expected = zoo_models.output_tensors(model(*args))
        compiled, records = zoo_models.compile_recorded(model, "eager", cache=False)
        with _time_limit(_SECONDS_PER_MODEL, f"compiling {name}"):
            first = zoo_models.output_tensors(compiled(*args))
        second = zoo_models.output_tensors(compiled(*args))
    graphs = [r for r in records if r.graph is not None]
    fallbacks = zoo_models.not_captured(records)
    assert graphs, f"{name}: nothing compiled; not captured: {fallbacks}"
    assert all(r.reason for r in records if r.graph is None), fallbacks
    for got in (first, second):
        assert len(got) == len(expected)
        for a, b in zip(expected, got, strict=True):
            torch.testing.assert_close(b, a)
    # The second call ran what the first compiled: no new compile.
    assert len(records) == len(graphs) + len(fallbacks)
    assert framecache.stats(compiled).hits >= 1 or fallbacks, framecache.stats(compiled)


def test_zoo_training_step_gradients_match() -> None:
    step, args = zoo_models.training_step(torch.device("cpu"))
    reference = zoo_models.training_step(torch.device("cpu"))[0]
    reference.load_state_dict(step.state_dict())
    loss = reference(*args)
    loss.backward()
    expected = {n: p.grad for n, p in reference.named_parameters()}
    compiled, records = zoo_models.compile_recorded(step, "eager", cache=False)
    for _ in range(2):  # the compiling call, then a hit
        step.zero_grad(set_to_none=True)
        with _time_limit(_SECONDS_PER_MODEL, "compiling the training step"):
            got = compiled(*args)
        got.backward()
        torch.testing.assert_close(got, loss)
        for n, p in step.named_parameters():
            assert p.grad is not None, n
            torch.testing.assert_close(p.grad, expected[n], msg=lambda m, n=n: f"{n}: {m}")
    assert [r for r in records if r.graph is not None], zoo_models.not_captured(records)
    assert framecache.stats(compiled).compiles == 1, framecache.stats(compiled)


# --- models beyond the zoo, each of which found a bug when first tried ---------------------


def _matches_eager(model: torch.nn.Module, *args: torch.Tensor, **kwargs: object) -> object:
    with torch.no_grad():
        expected = zoo_models.output_tensors(model(*args, **kwargs))
        compiled = framecache.compile(model, backend="eager", cache=False)
        for _ in range(3):
            got = zoo_models.output_tensors(compiled(*args, **kwargs))
            assert len(got) == len(expected)
            for a, b in zip(expected, got, strict=True):
                torch.testing.assert_close(b, a)
    return compiled


def _beyond(name: str) -> tuple[torch.nn.Module, tuple[object, ...]]:
    """A model of ``zoo_models.BEYOND`` on the CPU (the benchmark's own build)."""
    return zoo_models.BEYOND[name].build(torch.device("cpu"))


def test_swin_transformer_hits_after_its_first_call() -> None:
    # Its window helpers are registered with torch.fx.wrap: guards on the tracer's
    # wrappers failed on every call after the capture.
    model, args = _beyond("tv_swin_t")
    compiled = _matches_eager(model, *args)
    s = framecache.stats(compiled)
    assert (s.compiles, s.hits) == (1, 2), s


def test_electra_with_a_projected_embedding_compiles() -> None:
    # The embedding projection feeds the attention's linear layers directly: the eager
    # backend's linear recomposition read an erased node (KeyError) and the model raised.
    # (The model is one graph with transformers 5.24; with 5.17 its config wrapper falls
    # back, and the graph is its callee's.)
    model, args = _beyond("hf_electra")
    _matches_eager(model, *args)


def test_mistral_generation_with_a_kv_cache_matches_eager() -> None:
    # Each step stores its keys on the DynamicCache the caller passes: captures left fake
    # tensors and step counts on it, and the next eager step failed; then a recompile for
    # a decode step of one position served the next prefill (a size of 1 compiled as
    # symbolic).
    model, _ = _beyond("hf_mistral")
    transformers = pytest.importorskip("transformers")
    ids = torch.randint(0, 100, (1, 6), generator=torch.Generator().manual_seed(0))

    def generate(fn: object) -> list[torch.Tensor]:
        cache = transformers.DynamicCache(config=model.config)
        out = fn(input_ids=ids, past_key_values=cache, use_cache=True)  # type: ignore[operator]
        states = [out.last_hidden_state]
        for i in range(4):
            out = fn(input_ids=ids[:, -1:] + i, past_key_values=cache, use_cache=True)  # type: ignore[operator]
            states.append(out.last_hidden_state)
        assert cache.get_seq_length() == 10
        return states

    with torch.no_grad():
        expected = generate(model)
        compiled = framecache.compile(model, backend="eager", cache=False)
        for _ in range(2):
            for a, b in zip(expected, generate(compiled), strict=True):
                torch.testing.assert_close(b, a)


def test_bart_with_its_encoder_decoder_cache_matches_eager() -> None:
    # A deep copy of its config class compiled into ``type(**defaults)``; its cross
    # attention's is_updated flag stayed set after a capture put the keys back.
    model, args = _beyond("hf_bart")
    _matches_eager(model, *args)
