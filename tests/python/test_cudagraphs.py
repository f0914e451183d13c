"""CUDA graphs in framecache.compile (cudagraphs=True / mode="reduce-overhead").

The first part runs everywhere: option validation, the fallback of CPU tensors with its
reason in stats and explain, and the disk cache's indifference to the option. The tests
marked ``cuda`` need a CUDA device and skip without one (they run on the GPU machine).
"""

from __future__ import annotations

import importlib

import pytest
import torch

import framecache
from framecache.compiler import cudagraphs as cg

pytestmark = [
    pytest.mark.torch,
    # Inductor's advice on CUDA matmuls, not a framecache concern.
    pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning"),
]

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")


def _add(x, y):
    return x + y


# -- everywhere ----------------------------------------------------------------------------


def test_mode_reduce_overhead_turns_cudagraphs_on():
    compiled = framecache.compile(_add, mode="reduce-overhead")
    assert compiled._framecache_context.cudagraphs is True
    assert framecache.compile(_add, mode="default")._framecache_context.cudagraphs is False
    assert framecache.compile(_add)._framecache_context.cudagraphs is False
    module = framecache.compile(torch.nn.Linear(2, 2), cudagraphs=True)
    assert module._framecache_context.cudagraphs is True
    context = framecache.compile(_add, cudagraphs=True, cudagraph_clone_outputs=False)
    assert context._framecache_context.cudagraph_clone_outputs is False


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"mode": "max-speed"}, ValueError, "unknown mode"),
        ({"mode": "reduce-overhead", "cudagraphs": False}, ValueError, "reduce-overhead"),
        ({"cudagraphs": 1}, TypeError, "cudagraphs must be a bool"),
        ({"cudagraph_clone_outputs": None}, TypeError, "cudagraph_clone_outputs"),
    ],
)
def test_bad_options_are_clear_errors(kwargs, error, match):
    with pytest.raises(error, match=match):
        framecache.compile(_add, **kwargs)


@pytest.mark.parametrize("backend", ["eager", "inductor"])
def test_cpu_tensors_run_without_graphs_and_say_why(backend):
    def f(x, y):
        return x * 2 + y

    compiled = framecache.compile(f, backend=backend, cudagraphs=True, cache=False)
    x, y = torch.randn(4), torch.randn(4)
    for _ in range(3):
        torch.testing.assert_close(compiled(x, y), f(x, y))
    stats = framecache.stats(compiled)
    assert stats.compiles == 1 and stats.hits == 2
    assert stats.cudagraph_recordings == 0
    assert stats.cudagraph_reasons == ("x is a CPU tensor",)
    assert "without cudagraphs: x is a CPU tensor" in str(stats)


def test_explain_says_whether_graphs_would_be_recorded():
    def f(x):
        return x.sin() + 1

    compiled = framecache.compile(f, cudagraphs=True)
    out = framecache.explain(compiled, torch.randn(3))
    assert out.cudagraphs == ["no cudagraphs: x is a CPU tensor"]
    assert "no cudagraphs: x is a CPU tensor" in str(out)
    # Without the option explain says nothing about graphs.
    assert framecache.explain(framecache.compile(f), torch.randn(3)).cudagraphs == [None]


def test_graph_mutating_an_input_is_refused():
    def f(x, y):
        x.add_(1)
        return x * y

    from framecache.compiler.capture import capture_frame
    from framecache.compiler.inputs import split_arguments

    x, y = torch.randn(3), torch.randn(3)
    args = split_arguments(f.__code__, {"x": x, "y": y})
    capture = capture_frame(f.__code__, f.__globals__, None, args, {})
    assert cg._mutated_inputs(capture.gm) == [0]
    # A view of an input written through counts too; a fresh tensor written does not.

    def g(x):
        x[0].mul_(2)
        z = x * 3
        z.add_(1)
        return z

    args = split_arguments(g.__code__, {"x": x})
    capture = capture_frame(g.__code__, g.__globals__, None, args, {})
    assert cg._mutated_inputs(capture.gm) == [0]


def test_disk_entries_are_shared_with_and_without_graphs():
    """The option changes how an entry runs, not what is stored: the disk key ignores it."""

    def f(x):
        return x.cos() * 3

    x = torch.randn(5)
    plain = framecache.compile(f)
    torch.testing.assert_close(plain(x), f(x))
    assert framecache.stats(plain).disk_stores == 1
    framecache.reset()
    graphed = framecache.compile(f, cudagraphs=True)
    torch.testing.assert_close(graphed(x), f(x))
    stats = framecache.stats(graphed)
    assert stats.disk_hits == 1 and stats.compiles == 0
    assert stats.cudagraph_reasons == ("x is a CPU tensor",)


def test_reset_releases_recordings_of_live_runners():
    calls = []

    def compiled(*args):
        calls.append(args)
        return (args[0],)

    counters = importlib.import_module("framecache.compiler.stats").CodeStats("t")
    runner = cg._Runner(
        compiled,
        num_frame_inputs=1,
        num_inputs=1,
        labels=["x"],
        constants=[],
        dynamic=False,
        clone_outputs=True,
        counters=counters,
        check_mutation=True,
    )
    assert runner in cg._LIVE
    runner.recordings[()] = object()  # type: ignore[assignment]
    cg._POOLS[0] = object()
    framecache.reset()
    assert runner.recordings == {} and cg._POOLS == {}
    # Released: the function records again on its next call (here the body is _record).
    assert "_record" in runner.function.__code__.co_names


# -- CUDA ----------------------------------------------------------------------------------


class MLP(torch.nn.Module):
    def __init__(self, width: int = 64, depth: int = 4) -> None:
        super().__init__()
        layers: list[torch.nn.Module] = []
        for _ in range(depth):
            layers += [torch.nn.Linear(width, width), torch.nn.ReLU()]
        self.net = torch.nn.Sequential(*layers)

    def forward(self, x):
        return self.net(x)


BACKENDS = ["eager", "inductor"]


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("cache", [True, False])
def test_outputs_match_eager(backend, cache):
    torch.manual_seed(0)
    model = MLP().cuda().eval()
    compiled = framecache.compile(model, backend=backend, cudagraphs=True, cache=cache)
    with torch.no_grad():
        for _ in range(4):
            x = torch.randn(2, 64, device="cuda")
            torch.testing.assert_close(compiled(x), model(x))
    stats = framecache.stats(model)
    assert stats.cudagraph_recordings == 1, stats
    assert stats.cudagraph_reasons == ()


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_a_stored_entry_comes_back_with_graphs(backend, tmp_path):
    """The compiled graph is stored, not its CUDA-graph wrapper: a later compile of the
    same model loads it (no capture, no compile) and records it again."""
    torch.manual_seed(0)
    model = MLP().cuda().eval()
    first = framecache.compile(model, backend=backend, cudagraphs=True, cache_dir=tmp_path)
    x = torch.randn(2, 64, device="cuda")
    with torch.no_grad():
        torch.testing.assert_close(first(x), model(x))
    assert framecache.stats(model).disk_stores == 1
    framecache.reset()
    again = framecache.compile(model, backend=backend, cudagraphs=True, cache_dir=tmp_path)
    with torch.no_grad():
        for _ in range(3):
            x = torch.randn(2, 64, device="cuda")
            torch.testing.assert_close(again(x), model(x))
    stats = framecache.stats(model)
    assert stats.disk_hits == 1 and stats.compiles == 0, stats
    assert stats.cudagraph_recordings == 1 and stats.cudagraph_reasons == (), stats


def test_a_package_is_never_what_a_capture_records():
    """AOTInductor's runner waits on a CUDA event, which a capture forbids (and a failed
    capture breaks the device's random generator): the capture takes inductor's own
    callable, kept by DeferredAoti when its package replaces what it runs, and refuses a
    loaded package."""
    from framecache.cache import artifact

    def inductor_call(*args):
        return args

    deferred = artifact.DeferredAoti(inductor_call, [])
    assert cg.capture_target(deferred) is inductor_call
    deferred.run = lambda *args: args  # what adopt() does with a loaded package
    assert cg.capture_target(deferred) is inductor_call
    package = artifact._AotiCall(b"", lambda args: args)
    assert cg.capture_target(package) is None
    assert cg.capture_target(inductor_call) is inductor_call


def test_cudagraphs_with_inductor_stores_inductors_artifact_not_a_package(tmp_path):
    from framecache.cache import artifact

    graphed = framecache.compile(_add, backend="inductor", cudagraphs=True, cache_dir=tmp_path)
    plain = framecache.compile(_add, backend="inductor", cache_dir=tmp_path)
    assert graphed._framecache_context.backend is artifact.inductor_standalone
    assert plain._framecache_context.backend is artifact.inductor_aoti


@pytest.mark.cuda
@needs_cuda
def test_a_package_stored_without_graphs_is_recompiled_to_record_graphs(tmp_path, monkeypatch):
    """An entry stored by a compile without CUDA graphs holds an AOTInductor package; a
    compile with graphs finds it and records inductor's compile of its graph instead."""
    monkeypatch.setenv("FRAMECACHE_AOTI_BUILD", "inline")
    torch.manual_seed(0)
    model = MLP().cuda().eval()
    x = torch.randn(2, 64, device="cuda")
    with torch.no_grad():
        plain = framecache.compile(model, backend="inductor", cache_dir=tmp_path)
        torch.testing.assert_close(plain(x), model(x))
        framecache.reset()
        graphed = framecache.compile(model, backend="inductor", cudagraphs=True, cache_dir=tmp_path)
        for _ in range(3):
            x = torch.randn(2, 64, device="cuda")  # the generator still works after recording
            torch.testing.assert_close(graphed(x), model(x))
    stats = framecache.stats(model)
    assert stats.cudagraph_recordings == 1 and stats.cudagraph_reasons == (), stats


@pytest.mark.cuda
@needs_cuda
def test_a_context_keeping_compile_records_still_records_graphs():
    """The model zoo keeps the compile records of a real run (what explain() reads): that
    must not turn it into explain()'s dry run, which records no graph."""
    model = MLP().cuda().eval()
    compiled = framecache.compile(model, backend="eager", cudagraphs=True)
    compiled._framecache_context.records = []
    with torch.no_grad():
        x = torch.randn(2, 64, device="cuda")
        for _ in range(3):
            torch.testing.assert_close(compiled(x), model(x))
    assert framecache.stats(model).cudagraph_recordings == 1
    assert len(compiled._framecache_context.records) == 1


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_functions_and_structured_outputs(backend):
    def f(x, y, scale: float):
        a = x @ y
        return {"sum": a + scale, "parts": (a.relu(), y.t().contiguous())}

    compiled = framecache.compile(f, backend=backend, cudagraphs=True)
    x, y = torch.randn(8, 8, device="cuda"), torch.randn(8, 8, device="cuda")
    for _ in range(3):
        got, want = compiled(x, y, 0.5), f(x, y, 0.5)
        torch.testing.assert_close(got["sum"], want["sum"])
        torch.testing.assert_close(got["parts"][0], want["parts"][0])
        torch.testing.assert_close(got["parts"][1], want["parts"][1])
    assert framecache.stats(compiled).cudagraph_recordings == 1


@pytest.mark.cuda
@needs_cuda
def test_kept_outputs_are_not_overwritten_by_later_replays():
    compiled = framecache.compile(_add, backend="inductor", cudagraphs=True)
    xs = [torch.full((4,), float(i), device="cuda") for i in range(4)]
    y = torch.ones(4, device="cuda")
    kept = [compiled(x, y) for x in xs]
    for i, out in enumerate(kept):
        torch.testing.assert_close(out, torch.full((4,), i + 1.0, device="cuda"))
    assert len({o.data_ptr() for o in kept}) == len(kept)


@pytest.mark.cuda
@needs_cuda
def test_clone_outputs_false_aliases_the_static_output():
    compiled = framecache.compile(_add, cudagraphs=True, cudagraph_clone_outputs=False)
    y = torch.ones(4, device="cuda")
    first = compiled(torch.zeros(4, device="cuda"), y)
    second = compiled(torch.full((4,), 5.0, device="cuda"), y)
    assert first.data_ptr() == second.data_ptr()
    torch.testing.assert_close(first, torch.full((4,), 6.0, device="cuda"))


@pytest.mark.cuda
@needs_cuda
def test_inputs_are_read_at_each_call():
    """A static buffer passed back in is not copied; an input changed in place is re-read."""
    compiled = framecache.compile(lambda x: x * 2, backend="inductor", cudagraphs=True)
    x = torch.arange(4.0, device="cuda")
    torch.testing.assert_close(compiled(x), x * 2)
    x.add_(10)  # the same tensor, new contents
    torch.testing.assert_close(compiled(x), x * 2)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_input_mutation_runs_without_graphs_and_mutates(backend):
    def f(x, y):
        x.add_(y)
        return x * 2

    compiled = framecache.compile(f, backend=backend, cudagraphs=True, cache=False)
    x, y = torch.zeros(4, device="cuda"), torch.ones(4, device="cuda")
    x_ref = x.clone()
    for _ in range(3):
        out = compiled(x, y)
        ref = f(x_ref, y)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(x, x_ref)
    stats = framecache.stats(compiled)
    assert stats.cudagraph_recordings == 0
    assert any("mutates" in r for r in stats.cudagraph_reasons), stats


@pytest.mark.cuda
@needs_cuda
def test_recording_under_inference_mode_replays_under_no_grad():
    """Guards see grad mode only: the static buffers must not be inference tensors."""
    compiled = framecache.compile(lambda x: x.cos() + 1, backend="inductor", cudagraphs=True)
    x = torch.randn(8, device="cuda")
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x), x.cos() + 1)
    with torch.no_grad():
        torch.testing.assert_close(compiled(x * 2), (x * 2).cos() + 1)
    with torch.inference_mode():
        torch.testing.assert_close(compiled(x * 3), (x * 3).cos() + 1)


@pytest.mark.cuda
@needs_cuda
def test_parameter_moved_in_memory_records_again():
    torch.manual_seed(0)
    model = MLP(16, 2).cuda().eval()
    compiled = framecache.compile(model, backend="inductor", cudagraphs=True)
    x = torch.randn(3, 16, device="cuda")
    with torch.no_grad():
        compiled(x)
        model.net[0].weight.data = torch.randn(16, 16, device="cuda")  # new storage
        torch.testing.assert_close(compiled(x), model(x))
        model.net[0].weight.mul_(0.5)  # in place: same storage, the graph reads it
        torch.testing.assert_close(compiled(x), model(x))
    assert framecache.stats(model).cudagraph_recordings == 2


@pytest.mark.cuda
@needs_cuda
def test_second_stream_and_synchronize():
    compiled = framecache.compile(
        lambda a, b: (a @ b).relu() + 1, backend="inductor", cudagraphs=True
    )
    a, b = torch.randn(64, 64, device="cuda"), torch.randn(64, 64, device="cuda")
    expected = (a @ b).relu() + 1
    torch.testing.assert_close(compiled(a, b), expected)  # records on the default stream
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        outs = [compiled(a, b) for _ in range(3)]
    # Work on the side stream is ordered there; synchronizing makes it visible anywhere.
    torch.cuda.synchronize()
    for out in outs:
        torch.testing.assert_close(out, expected)
    event = torch.cuda.Event()
    with torch.cuda.stream(side):
        later = compiled(a * 2, b)
        event.record()
    event.synchronize()
    torch.testing.assert_close(later, ((a * 2) @ b).relu() + 1)


@pytest.mark.cuda
@needs_cuda
@pytest.mark.parametrize("backend", BACKENDS)
def test_training_step_runs_without_graphs_and_matches_eager(backend):
    """Grad mode with parameters requiring grad: replay is inference only, said in stats."""
    torch.manual_seed(0)
    model = MLP(32, 2).cuda()
    reference = MLP(32, 2).cuda()
    reference.load_state_dict(model.state_dict())
    compiled = framecache.compile(model, backend=backend, cudagraphs=True)
    x = torch.randn(4, 32, device="cuda")
    compiled(x).square().sum().backward()
    reference(x).square().sum().backward()
    for p, q in zip(model.parameters(), reference.parameters(), strict=True):
        torch.testing.assert_close(p.grad, q.grad)
    stats = framecache.stats(model)
    assert stats.cudagraph_recordings == 0
    assert any("autograd" in r for r in stats.cudagraph_reasons), stats
    out = framecache.explain(compiled, x)
    assert any(c is not None and "autograd" in c for c in out.cudagraphs), str(out)


@pytest.mark.cuda
@needs_cuda
def test_dynamic_entry_records_per_size_up_to_the_bound():
    def f(x):
        return x.sin() * 2

    compiled = framecache.compile(f, backend="inductor", dynamic=True, cudagraphs=True)
    sizes = list(range(2, cg.MAX_SIZES_PER_ENTRY + 4))  # 0 and 1 would specialise
    for _ in range(2):
        for n in sizes:
            x = torch.randn(n, device="cuda")
            torch.testing.assert_close(compiled(x), f(x))
    stats = framecache.stats(compiled)
    assert stats.compiles == 1
    assert stats.cudagraph_recordings == cg.MAX_SIZES_PER_ENTRY
    assert any("more than" in r for r in stats.cudagraph_reasons), stats


@pytest.mark.cuda
@needs_cuda
def test_cpu_and_cuda_entries_of_one_function():
    compiled = framecache.compile(_add, cudagraphs=True)
    torch.testing.assert_close(compiled(torch.ones(2), torch.ones(2)), torch.full((2,), 2.0))
    cuda = torch.ones(2, device="cuda")
    torch.testing.assert_close(compiled(cuda, cuda), torch.full((2,), 2.0, device="cuda"))
    stats = framecache.stats(compiled)
    assert stats.entries == 2 and stats.cudagraph_recordings == 1
    assert stats.cudagraph_reasons == ("x is a CPU tensor",)


@pytest.mark.cuda
@needs_cuda
def test_reset_frees_the_recordings():
    model = MLP(256, 4).cuda().eval()
    compiled = framecache.compile(model, backend="inductor", cudagraphs=True)
    with torch.no_grad():
        compiled(torch.randn(64, 256, device="cuda"))
    runners = list(cg._LIVE)
    assert any(r.recordings for r in runners)
    framecache.reset()
    assert all(not r.recordings for r in runners)
    assert cg._POOLS == {}
    with torch.no_grad():  # records again after the reset
        x = torch.randn(64, 256, device="cuda")
        torch.testing.assert_close(compiled(x), model(x))
    assert framecache.stats(model).cudagraph_recordings == 1
