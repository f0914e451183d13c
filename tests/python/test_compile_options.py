"""Wrappers of one function with different framecache.compile options keep their own
entries (options tags, see compiler/callback.py options_tag), and a fallback decided by one
wrapper does not decide for another."""

from __future__ import annotations

from typing import Any

import pytest
import torch

import framecache

pytestmark = pytest.mark.torch


def add_one(x: torch.Tensor) -> torch.Tensor:
    return x + 1


def data_dependent(x: torch.Tensor) -> torch.Tensor:
    if x.sum() > 0:
        return x + 1
    return x - 1


class RecordingBackend:
    """A backend that counts its compiles and runs the graph as it is."""

    def __init__(self) -> None:
        self.graphs = 0

    def __call__(self, gm: torch.fx.GraphModule, example_inputs: Any) -> Any:
        self.graphs += 1
        return gm


def test_a_second_backend_gets_its_own_entry() -> None:
    eager = framecache.compile(add_one, backend="eager")
    mine = RecordingBackend()
    custom = framecache.compile(add_one, backend=mine)
    x = torch.ones(3)
    torch.testing.assert_close(eager(x), x + 1)
    torch.testing.assert_close(custom(x), x + 1)
    assert mine.graphs == 1  # before: custom ran the entry eager compiled
    torch.testing.assert_close(custom(x), x + 1)
    torch.testing.assert_close(eager(x), x + 1)
    assert mine.graphs == 1  # both hit their own entry now
    entries = framecache.cache_entries(add_one.__code__)
    assert len(entries) == 2
    assert [e.hit_count for e in entries] == [1, 1]


def test_wrappers_with_equal_options_share_entries() -> None:
    mine = RecordingBackend()
    first = framecache.compile(add_one, backend=mine)
    second = framecache.compile(add_one, backend=mine)
    x = torch.ones(3)
    first(x)
    second(x)
    assert mine.graphs == 1
    assert len(framecache.cache_entries(add_one.__code__)) == 1
    # Equal options under a new context: the same tag, the same entries.
    eager_a = framecache.compile(add_one)
    eager_b = framecache.compile(add_one, backend="eager", dynamic=None, fullgraph=False)
    eager_a(x)
    eager_b(x)
    assert len(framecache.cache_entries(add_one.__code__)) == 2


@pytest.mark.parametrize(
    "options", [{"dynamic": True}, {"dynamic": False}, {"fullgraph": True}], ids=str
)
def test_dynamic_and_fullgraph_get_their_own_entries(options: dict[str, Any]) -> None:
    base = RecordingBackend()
    framecache.compile(add_one, backend=base)(torch.ones(3))
    assert base.graphs == 1
    # Same backend object, other options: a compile of its own.
    framecache.compile(add_one, backend=base, **options)(torch.ones(3))
    assert base.graphs == 2
    assert len(framecache.cache_entries(add_one.__code__)) == 2


def test_fullgraph_raises_on_a_function_another_wrapper_gave_up_on() -> None:
    lenient = framecache.compile(data_dependent)
    x = torch.ones(3)
    torch.testing.assert_close(lenient(x), x + 1)
    assert framecache.stats(lenient).fallbacks == 1
    strict = framecache.compile(data_dependent, fullgraph=True)
    with pytest.raises(framecache.FullGraphError, match="data-dependent"):
        strict(x)
    # One fallback per wrapper (stats are per code); the lenient wrapper keeps its own
    # decision: its frames run normally, with no new capture attempt.
    assert framecache.stats(lenient).fallbacks == 2
    torch.testing.assert_close(lenient(-x), -x - 1)
    assert framecache.stats(lenient).fallbacks == 2


def test_a_module_wrapper_is_tagged_too() -> None:
    layer = torch.nn.Linear(3, 3)
    mine = RecordingBackend()
    eager = framecache.compile(layer)
    custom = framecache.compile(layer, backend=mine)
    x = torch.ones(2, 3)
    torch.testing.assert_close(eager(x), layer(x))
    torch.testing.assert_close(custom(x), layer(x))
    assert mine.graphs == 1


def test_a_dynamic_wrapper_does_not_load_a_static_entry_from_disk() -> None:
    x = torch.ones(3)
    framecache.compile(add_one)(x)  # stores a static graph on disk
    framecache.reset()  # in-memory entries gone; the disk keeps the graph
    framecache.compile(add_one)(x)
    [warm] = framecache.cache_entries(add_one.__code__)
    assert warm.trace_annotation.endswith("disk")  # equal options: a disk hit
    framecache.reset()
    framecache.compile(add_one, dynamic=True)(x)
    [entry] = framecache.cache_entries(add_one.__code__)
    # The key has the dynamic dims by name: the static graph is not served.
    assert "static" not in entry.trace_annotation


def test_cuda_graph_options_get_their_own_entries() -> None:
    # cudagraphs=True changes what an entry runs (a recording, or a refusal on CPU):
    # a plain wrapper must not run a graphed wrapper's entry, nor the reverse, and
    # cudagraph_clone_outputs=False (aliased outputs) must not leak into a cloning wrapper.
    mine = RecordingBackend()
    plain = framecache.compile(add_one, backend=mine)
    graphed = framecache.compile(add_one, backend=mine, cudagraphs=True)
    aliased = framecache.compile(
        add_one, backend=mine, cudagraphs=True, cudagraph_clone_outputs=False
    )
    x = torch.ones(3)
    for wrapper in (plain, graphed, aliased):
        torch.testing.assert_close(wrapper(x), x + 1)
    assert mine.graphs == 3
    for wrapper in (plain, graphed, aliased):
        torch.testing.assert_close(wrapper(x), x + 1)
    assert mine.graphs == 3
    assert sorted(e.hit_count for e in framecache.cache_entries(add_one.__code__)) == [1, 1, 1]


@pytest.mark.parametrize(("backend", "woken"), [("inductor", True), ("eager", False)])
def test_inductor_wakes_its_compile_workers_before_capturing(
    monkeypatch: pytest.MonkeyPatch, backend: str, woken: bool
) -> None:
    """The Triton compile pool starts while the frame is captured, not when inductor
    first needs it (it compiles kernels in this process until the pool is up)."""
    from torch._inductor import async_compile

    from framecache.compiler import callback

    events: list[str] = []
    monkeypatch.setattr(async_compile, "maybe_warm_pool", lambda: events.append("wake"))
    capture = callback.capture_frame

    def spy(*args: Any, **kwargs: Any) -> Any:
        events.append("capture")
        return capture(*args, **kwargs)

    monkeypatch.setattr(callback, "capture_frame", spy)
    monkeypatch.setattr(
        callback.backends, "_NAMED", {**callback.backends._NAMED, "inductor": lambda gm, _: gm}
    )

    def scaled(x: torch.Tensor) -> torch.Tensor:
        return x * 3 + 1

    compiled = framecache.compile(scaled, backend=backend, cache=False)
    x = torch.randn(4)
    torch.testing.assert_close(compiled(x), scaled(x))
    assert events == (["wake", "capture"] if woken else ["capture"])
