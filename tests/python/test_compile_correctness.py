"""framecache.compile matches eager on functions and small models, for each backend.

Every test runs once per device: on the CPU everywhere, and on CUDA where a CUDA device
exists (the GPU machine; elsewhere the ``cuda`` cases skip, saying why).
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

import framecache

pytestmark = [
    pytest.mark.torch,
    # Inductor's advice on CUDA matmuls (the cuda cases), not a framecache concern.
    pytest.mark.filterwarnings("ignore:TensorFloat32 tensor cores:UserWarning"),
]

BACKENDS = ["eager", "inductor"]
OFFSET = 0.5


class MLP(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = torch.nn.Linear(16, 32)
        self.fc2 = torch.nn.Linear(32, 8)

    def forward(self, x):
        return self.fc2(torch.relu(self.fc1(x)))


class Attention(torch.nn.Module):
    def __init__(self, dim: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.qkv = torch.nn.Linear(dim, 3 * dim)
        self.proj = torch.nn.Linear(dim, dim)

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).chunk(3, dim=-1)
        q = q.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        k = k.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        v = v.view(b, t, self.heads, d // self.heads).transpose(1, 2)
        att = (q @ k.transpose(-2, -1)) / math.sqrt(d // self.heads)
        out = att.softmax(-1) @ v
        return self.proj(out.transpose(1, 2).reshape(b, t, d))


class ConvNet(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.bn = torch.nn.BatchNorm2d(4)
        self.head = torch.nn.Linear(4, 2)

    def forward(self, x):
        x = F.relu(self.bn(self.conv(x)))
        return self.head(x.mean(dim=(2, 3)))


def shape_dependent(x):
    if x.shape[0] > 2:
        return x.sum(0)
    return x * 2


def data_dependent(x):
    if x.sum() > 0:
        return x + 1
    return x - 1


def reads_globals(x):
    return torch.tanh(x) + OFFSET


class Scaler:
    def __init__(self, k: float) -> None:
        self.k = k

    def apply(self, x):
        return x * self.k + 1


@pytest.fixture(
    params=[
        "cpu",
        pytest.param(
            "cuda",
            marks=[
                pytest.mark.cuda,
                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device"),
            ],
        ),
    ]
)
def device(request: pytest.FixtureRequest) -> torch.device:
    """The device every tensor and model of a test lives on."""
    return torch.device(request.param)


@pytest.fixture(autouse=True)
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


@pytest.mark.parametrize("backend", BACKENDS)
def test_models(backend, device):
    torch.manual_seed(0)
    cases = [
        (MLP().to(device), torch.randn(4, 16, device=device)),
        (Attention().to(device), torch.randn(2, 5, 16, device=device)),
        (ConvNet().eval().to(device), torch.randn(2, 3, 8, 8, device=device)),
    ]
    for model, x in cases:
        compiled = framecache.compile(model, backend=backend)
        expected = model(x)
        torch.testing.assert_close(compiled(x), expected)
        torch.testing.assert_close(compiled(x), expected)
        s = framecache.stats(compiled)
        assert s.compiles == 1, (type(model).__name__, s)
        assert s.hits == 1


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("backend", BACKENDS)
def test_models_with_cuda_graphs(backend):
    """The models above, recorded into CUDA graphs: each replay returns eager's result."""
    torch.manual_seed(0)
    cuda = torch.device("cuda")
    cases = [
        (MLP().to(cuda), torch.randn(4, 16, device=cuda)),
        (Attention().to(cuda), torch.randn(2, 5, 16, device=cuda)),
        (ConvNet().eval().to(cuda), torch.randn(2, 3, 8, 8, device=cuda)),
    ]
    with torch.no_grad():
        for model, x in cases:
            compiled = framecache.compile(model, backend=backend, cudagraphs=True)
            expected = model(x)
            for _ in range(3):
                torch.testing.assert_close(compiled(x), expected)
            s = framecache.stats(compiled)
            assert (s.compiles, s.cudagraph_recordings) == (1, 1), (type(model).__name__, s)
            assert s.cudagraph_reasons == (), s


@pytest.mark.parametrize("backend", BACKENDS)
def test_functions(backend, device):
    x = torch.randn(4, 3, device=device)
    small = torch.randn(2, 3, device=device)
    for fn, args in [
        (shape_dependent, (x,)),
        (shape_dependent, (small,)),
        (reads_globals, (x,)),
    ]:
        torch.testing.assert_close(framecache.compile(fn, backend=backend)(*args), fn(*args))
    assert framecache.stats(shape_dependent).compiles == 2
    assert framecache.stats(reads_globals).compiles == 1


@pytest.mark.parametrize("backend", BACKENDS)
def test_data_dependent_branch_runs_normally(backend, device):
    f = framecache.compile(data_dependent, backend=backend)
    for x in (torch.ones(3, device=device), -torch.ones(3, device=device)):
        torch.testing.assert_close(f(x), data_dependent(x))
    s = framecache.stats(f)
    assert s.compiles == 0
    assert s.fallbacks == 1
    assert "data-dependent" in s.fallback_reasons[0]


def test_data_dependent_branch_with_fullgraph_raises(device):
    f = framecache.compile(data_dependent, fullgraph=True)
    with pytest.raises(framecache.FullGraphError, match="data-dependent"):
        f(torch.ones(3, device=device))


@pytest.mark.parametrize("backend", BACKENDS)
def test_calls_another_compiled_function(backend, device):
    inner = framecache.compile(lambda x: torch.sin(x) * 2, backend=backend)

    def outer(x):
        return inner(x) + torch.cos(x)

    f = framecache.compile(outer, backend=backend)
    x = torch.randn(5, device=device)
    expected = torch.sin(x) * 2 + torch.cos(x)
    torch.testing.assert_close(f(x), expected)
    torch.testing.assert_close(f(x), expected)
    torch.testing.assert_close(inner(x), torch.sin(x) * 2)


@pytest.mark.parametrize("backend", BACKENDS)
def test_method(backend, device):
    s = Scaler(3.0)
    f = framecache.compile(s.apply, backend=backend)
    x = torch.randn(4, device=device)
    torch.testing.assert_close(f(x), x * 3.0 + 1)
    torch.testing.assert_close(f(x), x * 3.0 + 1)
    assert framecache.stats(Scaler.apply).hits == 1
    if backend == "inductor":
        return  # inductor compiles are slow; the recompile below is backend-independent
    # The instance's state is part of what was compiled.
    s.k = 5.0
    torch.testing.assert_close(f(x), x * 5.0 + 1)
    assert framecache.stats(Scaler.apply).compiles == 2


class Doubler:
    """framecache.compile used on a method in the class body: it binds like a function."""

    def __init__(self, k: float) -> None:
        self.k = k

    @framecache.compile
    def apply(self, x):
        return x * self.k * 2


def test_compiled_function_in_a_class_body_binds_as_a_method(device):
    a, b = Doubler(1.0), Doubler(3.0)
    x = torch.randn(4, device=device)
    torch.testing.assert_close(a.apply(x), x * 2.0)
    torch.testing.assert_close(b.apply(x), x * 6.0)
    torch.testing.assert_close(Doubler.apply(a, x), x * 2.0)
    torch.testing.assert_close(a.apply(x), x * 2.0)
    s = framecache.stats(Doubler.apply)
    assert (s.compiles, s.hits) == (2, 2), s
    assert Doubler.apply.__name__ == "apply"
    assert Doubler.apply.__wrapped__.__qualname__ == "Doubler.apply"


@pytest.mark.parametrize("backend", BACKENDS)
def test_fallback_lets_callees_compile(backend, device):
    def helper(x):
        return x * 3

    def outer(x):
        y = helper(x)
        if y.sum() > 0:
            return y + 1
        return y - 1

    f = framecache.compile(outer, backend=backend)
    x = torch.ones(3, device=device)
    torch.testing.assert_close(f(x), outer(x))
    torch.testing.assert_close(f(x), outer(x))
    assert framecache.stats(outer).fallbacks == 1
    assert framecache.stats(helper).compiles == 1
    assert framecache.stats(helper).hits == 1


def test_backward_through_compiled_module(device):
    torch.manual_seed(0)
    model = MLP().to(device)
    compiled = framecache.compile(model)
    x = torch.randn(4, 16, device=device)
    compiled(x).sum().backward()
    grads = [p.grad.clone() for p in model.parameters()]
    model.zero_grad()
    model(x).sum().backward()
    for got, want in zip(grads, [p.grad for p in model.parameters()], strict=False):
        torch.testing.assert_close(got, want)


def test_output_structures(device):
    def many(x, y):
        return {"sum": x + y, "pair": (x * 2, 3), "n": x.shape[0]}

    f = framecache.compile(many)
    x, y = torch.randn(3, device=device), torch.randn(3, device=device)
    out = f(x, y)
    want = many(x, y)
    assert out.keys() == want.keys()
    torch.testing.assert_close(out["sum"], want["sum"])
    torch.testing.assert_close(out["pair"][0], want["pair"][0])
    assert out["pair"][1] == 3
    assert out["n"] == 3

    def with_nones(x):
        return [None, x * 2], None

    g = framecache.compile(with_nones)
    for _ in range(2):
        out = g(x)
        assert type(out) is tuple and type(out[0]) is list
        assert out[0][0] is None and out[1] is None
        torch.testing.assert_close(out[0][1], x * 2)
    assert framecache.stats(with_nones).hits == 1


def test_nested_inputs_and_keyword_arguments(device):
    def f(xs, *, scale=1.0, bias=None):
        out = xs[0] * scale + xs[1]
        return out if bias is None else out + bias["b"]

    c = framecache.compile(f)
    a, b = torch.randn(3, device=device), torch.randn(3, device=device)
    bias = {"b": torch.randn(3, device=device)}
    torch.testing.assert_close(c([a, b], scale=2.0), f([a, b], scale=2.0))
    torch.testing.assert_close(c((a, b), scale=2.0, bias=bias), f((a, b), scale=2.0, bias=bias))
    torch.testing.assert_close(c([a, b], scale=2.0), f([a, b], scale=2.0))
    assert framecache.stats(f).hits == 1
