"""The model zoo's smoke subset: every zoo model compiles and returns eager's result.

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
