"""Backends: turn a captured GraphModule into a callable.

The contract is torch.compile's: ``backend(gm, example_inputs) -> callable``, where the
callable takes the graph's flat tensor inputs and returns its flat outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

Backend = Callable[[torch.fx.GraphModule, Sequence[Any]], Callable[..., Any]]


def eager(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """Run the captured graph's operators as they are, with no Python between them.

    Linear layers become one ``aten.linear`` call again and results nobody reads are not
    computed (``recompose``): the graph given here is changed in place, so the disk cache
    stores it that way.
    """
    del example_inputs
    from .lean_graph import lean_forward
    from .recompose import linear_calls, unused_results

    unused_results(gm)
    linear_calls(gm)
    return lean_forward(gm)


def inductor(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Callable[..., Any]:
    """Compile the graph with TorchInductor."""
    from torch._inductor.compile_fx import compile_fx

    return compile_fx(gm, list(example_inputs))


def wake_compile_workers() -> None:
    """Start inductor's Triton compile workers, or wake them, before a compile needs them.

    inductor compiles a graph's Triton kernels in a pool of worker processes, but only
    once the pool is up: until then it compiles them one by one in this process. The pool
    shuts its workers down after a minute without work and takes seconds to start them
    again. torch's registered ``inductor`` backend wakes it when the backend is called;
    framecache wakes it as soon as a miss is known to need a compile, so that the workers
    start while the frame is being captured. Needs no GPU; does nothing without Triton or
    with one compile thread. A torch without this hook is not an error.
    """
    try:
        from torch._inductor.async_compile import maybe_warm_pool
    except ImportError:  # not in every torch of the supported range
        return
    maybe_warm_pool()


_NAMED: dict[str, Backend] = {"eager": eager, "inductor": inductor}


def resolve(backend: str | Backend) -> tuple[str, Backend]:
    """The name and function of a backend given by name or as a callable."""
    if isinstance(backend, str):
        if backend not in _NAMED:
            raise ValueError(
                f"unknown backend {backend!r}; use one of {sorted(_NAMED)} or a callable "
                "backend(gm, example_inputs) -> callable"
            )
        return backend, _NAMED[backend]
    if not callable(backend):
        raise TypeError(f"backend must be a name or a callable, got {type(backend).__name__}")
    name = getattr(backend, "__qualname__", None) or type(backend).__qualname__
    return name, backend
