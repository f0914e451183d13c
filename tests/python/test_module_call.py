"""Calling a compiled module skips torch's Module.__call__ only when it would just call forward.

framecache.compile(module) calls the wrapper's and the module's forward directly when their
__call__ has nothing else to do (src/module_call.cpp). Anything __call__ would do on top
(module hooks, global hooks, an overridden __call__ or _call_impl, a forward set on the
instance, Module.compile()'s _compiled_call_impl) must still happen.
"""

from __future__ import annotations

from typing import Any

import pytest

torch = pytest.importorskip("torch")
import framecache  # noqa: E402

pytestmark = pytest.mark.torch


class Net(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = torch.nn.Linear(3, 3)

    def forward(self, x: Any, scale: float = 1.0) -> Any:
        return torch.relu(self.lin(x)) * scale


def _compiled() -> tuple[Any, Any, Any]:
    torch.manual_seed(0)
    net = Net()
    return net, framecache.compile(net, backend="eager", cache=False), torch.randn(2, 3)


def test_plain_calls_match_eager_with_args_and_kwargs() -> None:
    net, compiled, x = _compiled()
    for _ in range(3):
        torch.testing.assert_close(compiled(x), net(x))
        torch.testing.assert_close(compiled(x, scale=2.0), net(x, scale=2.0))
        torch.testing.assert_close(compiled(x, 3.0), net(x, 3.0))


def test_hooks_on_the_module_still_run() -> None:
    net, compiled, x = _compiled()
    compiled(x)
    seen: list[str] = []
    handles = [
        net.register_forward_pre_hook(lambda m, a: seen.append("pre")),
        net.register_forward_hook(lambda m, a, out: seen.append("post")),
    ]
    compiled(x)
    assert seen == ["pre", "post"]
    for h in handles:
        h.remove()
    compiled(x)
    assert seen == ["pre", "post"]


def test_a_hook_that_changes_the_output_is_applied() -> None:
    net, compiled, x = _compiled()
    compiled(x)
    handle = net.register_forward_hook(lambda m, a, out: out + 100.0)
    torch.testing.assert_close(compiled(x), net(x))
    assert float(compiled(x).detach().min()) >= 100.0
    handle.remove()
    torch.testing.assert_close(compiled(x), net(x))


def test_hooks_on_the_wrapper_run() -> None:
    _, compiled, x = _compiled()
    seen: list[str] = []
    handle = compiled.register_forward_hook(lambda m, a, out: seen.append("wrapper"))
    compiled(x)
    assert seen == ["wrapper"]
    handle.remove()
    compiled(x)
    assert seen == ["wrapper"]


def test_global_hooks_run() -> None:
    from torch.nn.modules.module import register_module_forward_hook

    _, compiled, x = _compiled()
    compiled(x)
    seen: list[type] = []
    handle = register_module_forward_hook(lambda m, a, out: seen.append(type(m)))
    try:
        compiled(x)
    finally:
        handle.remove()
    assert Net in seen and framecache.OptimizedModule in seen


def test_backward_hooks_run() -> None:
    torch.manual_seed(0)
    net = Net()
    compiled = framecache.compile(net, backend="eager", cache=False)
    x = torch.randn(2, 3, requires_grad=True)
    compiled(x).sum().backward()
    seen: list[str] = []
    handle = net.register_full_backward_hook(lambda m, gin, gout: seen.append("bwd"))
    compiled(x).sum().backward()
    handle.remove()
    assert seen == ["bwd"]


def test_overridden_call_and_call_impl_are_used() -> None:
    calls: list[str] = []

    class OwnCall(Net):
        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("__call__")
            return super().__call__(*args, **kwargs)

    class OwnCallImpl(Net):
        def _call_impl(self, *args: Any, **kwargs: Any) -> Any:
            calls.append("_call_impl")
            return super()._call_impl(*args, **kwargs)

    x = torch.randn(2, 3)
    for cls, name in ((OwnCall, "__call__"), (OwnCallImpl, "_call_impl")):
        net = cls()
        compiled = framecache.compile(net, backend="eager", cache=False)
        calls.clear()
        torch.testing.assert_close(compiled(x), net.forward(x))
        torch.testing.assert_close(compiled(x), net.forward(x))
        assert calls == [name, name]


def test_forward_set_on_the_instance_is_used() -> None:
    net, compiled, x = _compiled()
    compiled(x)
    net.forward = lambda x, scale=1.0: x * 0 + 7.0  # type: ignore[method-assign]
    torch.testing.assert_close(compiled(x), torch.full((2, 3), 7.0))


def test_compiled_call_impl_is_used() -> None:
    net, compiled, x = _compiled()
    compiled(x)
    calls: list[int] = []

    def replacement(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return net.forward(*args, **kwargs)

    net._compiled_call_impl = replacement
    compiled(x)
    assert calls == [1]


def test_module_call_arguments_are_checked() -> None:
    from framecache import _C

    with pytest.raises(TypeError, match="three functions"):
        _C._configure_module_call(1, 2, 3, {}, len)
    with pytest.raises(TypeError, match="class"):
        _C._install_module_call(object())
