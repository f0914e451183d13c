"""Dynamic shapes: which tensor dimensions to compile as symbolic.

``dynamic=None`` (automatic, the default): the first compile is static; when a later
compile sees a tensor whose size changed in some dimension since the previous compile of
the same code, that dimension becomes symbolic from then on. The sizes seen are kept in
the code's ``frame_state``, which survives recompiles.

A dimension whose size is 0 or 1 in the call being compiled stays static in that compile,
whatever was decided for it: torch's symbolic shapes specialise such a size to the constant
when the fake input is made, with no guard, so the graph would bake it in (a broadcast, an
``expand`` to it) while the tensor guard let any size through. It is compiled symbolic at
the next compile that sees it larger.
"""

from __future__ import annotations

from typing import Any

import torch

from ..plan import sources
from ..plan.sources import Source
from .inputs import FrameArguments

_SIZES_KEY = "framecache.sizes"
_MARK_ATTR = "_framecache_dynamic_dims"


def mark_dynamic(tensor: torch.Tensor, dim: int | list[int] | tuple[int, ...]) -> None:
    """Compile dimension(s) ``dim`` of ``tensor`` as symbolic from the first compile on."""
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"mark_dynamic expects a tensor, got {type(tensor).__name__}")
    dims = [dim] if isinstance(dim, int) else list(dim)
    for d in dims:
        if not isinstance(d, int) or isinstance(d, bool):
            raise TypeError(f"mark_dynamic expects int dimensions, got {d!r}")
        if not -tensor.dim() <= d < tensor.dim():
            raise ValueError(f"dimension {d} out of range for a {tensor.dim()}-d tensor")
    marked = set(getattr(tensor, _MARK_ATTR, set()))
    marked.update(d % tensor.dim() for d in dims)
    setattr(tensor, _MARK_ATTR, marked)


def marked_dims(tensor: torch.Tensor) -> set[int]:
    """Dimensions marked dynamic with mark_dynamic (or torch._dynamo.mark_dynamic)."""
    dims = set(getattr(tensor, _MARK_ATTR, set()))
    dims.update(getattr(tensor, "_dynamo_dynamic_indices", set()))
    return dims


def decide(
    args: FrameArguments, frame_state: dict[str, Any], dynamic: bool | None
) -> dict[Source, set[int]]:
    """The symbolic dimensions of each tensor input for the next compile."""
    sizes: dict[str, list[int | None]] = frame_state.setdefault(_SIZES_KEY, {})
    decided: dict[Source, set[int]] = {}
    for tensor, source in zip(args.tensors, args.tensor_sources, strict=False):
        key = sources.render(source)
        dims = marked_dims(tensor)
        if dynamic is True:
            dims |= set(range(tensor.dim()))
        elif dynamic is None:
            previous = sizes.get(key)
            if previous is not None and len(previous) == tensor.dim():
                dims |= {
                    i
                    for i, (before, now) in enumerate(zip(previous, tensor.shape, strict=False))
                    if before is None or before != int(now)
                }
        sizes[key] = [None if i in dims else int(s) for i, s in enumerate(tensor.shape)]
        decided[source] = {i for i in dims if int(tensor.shape[i]) > 1}
    return decided


def changed_dims_reason(decided: dict[Source, set[int]]) -> str:
    """e.g. ``L['x'] dims [0]``."""
    parts = [f"{sources.render(s)} dims {sorted(d)}" for s, d in decided.items() if d]
    return ", ".join(parts)
