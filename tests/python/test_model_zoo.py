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


def test_swin_transformer_hits_after_its_first_call() -> None:
    # Its window helpers are registered with torch.fx.wrap: guards on the tracer's
    # wrappers failed on every call after the capture.
    tv = zoo_models.import_torchvision()
    torch.manual_seed(0)
    model = tv.models.swin_t().eval()
    compiled = _matches_eager(model, torch.randn(1, 3, 64, 64))
    s = framecache.stats(compiled)
    assert (s.compiles, s.hits) == (1, 2), s


def _tiny(config_class: type, **extra: object) -> object:
    return config_class(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        vocab_size=1000,
        **extra,
    )


def test_electra_with_a_projected_embedding_compiles() -> None:
    # The embedding projection feeds the attention's linear layers directly: the eager
    # backend's linear recomposition read an erased node (KeyError) and the model raised.
    zoo_models._torchvision_if_installed()  # transformers imports it: declare its ops first
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    model = transformers.ElectraModel(_tiny(transformers.ElectraConfig, embedding_size=32))
    # (The model itself is one graph with transformers 5.24; 5.17's config wrapper falls
    # back, and the graph is then its callee's.)
    _matches_eager(model.eval(), torch.randint(0, 100, (2, 12)))


def test_mistral_generation_with_a_kv_cache_matches_eager() -> None:
    # Each step stores its keys on the DynamicCache the caller passes: captures left fake
    # tensors and step counts on it, and the next eager step failed.
    zoo_models._torchvision_if_installed()  # transformers imports it: declare its ops first
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = _tiny(transformers.MistralConfig, num_key_value_heads=1)
    model = transformers.MistralModel(config).eval()
    ids = torch.randint(0, 100, (1, 6))

    def generate(fn: object) -> list[torch.Tensor]:
        cache = transformers.DynamicCache(config=config)
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
    zoo_models._torchvision_if_installed()  # transformers imports it: declare its ops first
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(0)
    config = transformers.BartConfig(
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        vocab_size=1000,
    )
    _matches_eager(transformers.BartModel(config).eval(), torch.randint(0, 100, (2, 12)))
