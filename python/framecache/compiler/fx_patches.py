"""Functions that torch.fx's tracer swaps out while a capture traces, and what they are
outside it.

make_fx traces with a torch.fx ``Tracer``, and ``Tracer.trace`` replaces, for as long as it
traces, every function registered with ``torch.fx.wrap`` in its module's globals (and every
method registered with the private ``_wrapped_methods_to_patch``) with a wrapper made by
``_create_wrapped_func`` / ``_create_wrapped_method``: timm's ``maybe_add_mask``,
torchvision's ``stochastic_depth``, the Swin Transformer's window helpers, ... The capture
runs the user's code inside that trace, so it reads the wrappers; every call after it finds
the functions themselves, which the tracer puts back.

Under make_fx a wrapper only calls its function: it records a leaf ``call_function`` node
only when an argument is a torch.fx ``Proxy``, which make_fx never hands to user code (its
tensors carry their proxies inside). So the graph depends on the function, and that is what
the guards must check; guarding the wrapper would fail on every call after the capture and
recompile until the recompile limit.
"""

from __future__ import annotations

import types
from typing import Any

__all__ = ["outside_trace"]

# The code objects of the wrappers (the functions nested in the two factories), found once;
# empty if torch's internals move, and then nothing is translated.
_WRAPPER_CODES: frozenset[types.CodeType] | None = None


def _wrapper_codes() -> frozenset[types.CodeType]:
    global _WRAPPER_CODES
    if _WRAPPER_CODES is None:
        from torch.fx import _symbolic_trace

        codes = set()
        for factory_name in ("_create_wrapped_func", "_create_wrapped_method"):
            factory = getattr(_symbolic_trace, factory_name, None)
            code = getattr(factory, "__code__", None)
            if code is None:
                continue
            nested = (c for c in code.co_consts if isinstance(c, types.CodeType))
            codes.update(c for c in nested if c.co_name == "wrapped")
        _WRAPPER_CODES = frozenset(codes)
    return _WRAPPER_CODES


def outside_trace(value: Any) -> Any:
    """``value``, or the function it wraps when it is a torch.fx tracer's patch wrapper."""
    if type(value) is not types.FunctionType or value.__closure__ is None:
        return value
    code = value.__code__
    if code not in _wrapper_codes():
        return value
    cells = dict(zip(code.co_freevars, value.__closure__, strict=True))
    cell = cells.get("orig_fn")
    if cell is None:
        return value
    try:
        return cell.cell_contents
    except ValueError:  # an empty cell: not a wrapper that was ever made
        return value
