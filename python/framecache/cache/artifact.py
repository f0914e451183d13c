"""What an entry stores of a compiled graph, per backend, and how it comes back.

* ``eager``: the (lifted) GraphModule, pickled; loading rebuilds its lean function.
* ``inductor``: torch's own serialisable output, ``torch._inductor.standalone_compile``'s
  CompiledArtifact saved in its binary format, so a warm start compiles no C++.
* any other backend: the GraphModule only; loading runs the backend on it again, which
  still skips capture.
"""

from __future__ import annotations

import contextlib
import os
import pickle
import tempfile
from collections.abc import Callable, Sequence
from typing import Any

import torch

from .entry import UnpicklableArtifact

INDUCTOR_ATTR = "_framecache_inductor_artifact"


def inductor_standalone(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
    """The inductor backend through standalone_compile, keeping its serialisable artifact.

    Falls back to plain compile_fx (the result is then not serialisable) when
    standalone_compile cannot handle the graph.
    """
    from torch._inductor import standalone_compile

    inputs = list(example_inputs)
    fakes = [t for t in inputs if isinstance(t, torch._subclasses.FakeTensor)]
    try:
        if fakes:
            artifact = standalone_compile(
                gm,
                inputs,
                dynamic_shapes="from_example_inputs",
                fake_mode=fakes[0].fake_mode,
            )
        else:
            artifact = standalone_compile(gm, inputs, dynamic_shapes="from_example_inputs")
    except Exception:
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, inputs)
    fn = artifact.__call__
    return _ArtifactCall(artifact, fn)


class _ArtifactCall:
    """The callable of a CompiledArtifact, with the artifact kept for saving."""

    __slots__ = ("artifact", "fn")

    def __init__(self, artifact: Any, fn: Callable[..., Any]) -> None:
        self.artifact = artifact
        self.fn = fn

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def graph_bytes(gm: torch.fx.GraphModule) -> bytes:
    """The pickled GraphModule; UnpicklableArtifact when it holds what cannot be pickled."""
    try:
        return pickle.dumps(gm, protocol=pickle.HIGHEST_PROTOCOL)
    except Exception as exc:
        raise UnpicklableArtifact(
            f"the graph cannot be pickled: {type(exc).__name__}: {exc}"
        ) from None


def compiled_bytes(backend: str, compiled: Any) -> tuple[str, bytes]:
    """``(kind, bytes)`` of the backend's compiled output (see the module docstring)."""
    if backend == "eager":
        return "eager", b""
    if backend == "inductor" and isinstance(compiled, _ArtifactCall):
        saver = getattr(compiled.artifact, "is_saveable", None)
        if saver is not None and not saver():
            return "graph", b""
        fd, path = tempfile.mkstemp(prefix="framecache-inductor-")
        os.close(fd)
        try:
            compiled.artifact.save(path=path, format="binary")
            with open(path, "rb") as fh:
                return "inductor", fh.read()
        except Exception as exc:
            raise UnpicklableArtifact(
                f"inductor's artifact cannot be saved: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return "graph", b""


def load_graph(data: bytes) -> torch.fx.GraphModule:
    """The GraphModule of an entry."""
    gm = pickle.loads(data)
    if not isinstance(gm, torch.fx.GraphModule):
        raise TypeError(f"stored graph is a {type(gm).__name__}")
    return gm


def load_inductor(data: bytes, scratch_dir: str) -> Callable[..., Any]:
    """A callable from saved CompiledArtifact bytes."""
    from torch._inductor import CompiledArtifact

    fd, path = tempfile.mkstemp(prefix=".inductor-", dir=scratch_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        return CompiledArtifact.load(path=path, format="binary")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


__all__ = ["compiled_bytes", "graph_bytes", "inductor_standalone", "load_graph", "load_inductor"]
