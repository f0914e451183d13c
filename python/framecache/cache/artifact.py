"""What an entry stores of a compiled graph, per backend, and how it comes back.

* ``eager``: the (lifted) GraphModule, pickled; loading rebuilds its lean function.
* ``inductor``: torch's own serialisable output, ``torch._inductor.standalone_compile``'s
  CompiledArtifact saved in its binary format, so a warm start compiles no C++.
* any other backend: the GraphModule only; loading runs the backend on it again, which
  still skips capture.
"""

from __future__ import annotations

import contextlib
import logging
import os
import pickle
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

from . import vec_isa
from .entry import UnpicklableArtifact

log = logging.getLogger("framecache.cache")


def inductor_standalone(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
    """The inductor backend through standalone_compile, keeping its serialisable artifact.

    The compile runs with inductor's cache directory pointed at a fresh private
    directory, so every C++ library it builds lands there and is bundled with the
    artifact (a CompiledArtifact alone recompiles its C++ kernels in a process whose
    inductor cache lacks them). Falls back to plain compile_fx (not serialisable) when
    standalone_compile cannot handle the graph.
    """
    from torch._inductor import standalone_compile
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    inputs = list(example_inputs)
    fakes = [t for t in inputs if isinstance(t, torch._subclasses.FakeTensor)]
    scratch = tempfile.mkdtemp(prefix="framecache-inductor-")
    try:
        with temporary_cache_dir(scratch), _no_precompiled_headers():
            vec_isa.record()  # before compiling: the probes' test libraries land in scratch
            if fakes:
                artifact = standalone_compile(
                    gm, inputs, dynamic_shapes="from_example_inputs", fake_mode=fakes[0].fake_mode
                )
            else:
                artifact = standalone_compile(gm, inputs, dynamic_shapes="from_example_inputs")
        libraries = {**vec_isa.test_libraries(), **_libraries(scratch)}
        probe_answers = vec_isa.recorded()
    except Exception as exc:
        log.info(
            "standalone_compile failed (%s: %s); compiling with compile_fx", type(exc).__name__, exc
        )
        from torch._inductor.compile_fx import compile_fx

        return compile_fx(gm, inputs)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return _ArtifactCall(artifact, artifact.__call__, libraries, probe_answers)


def _no_precompiled_headers() -> Any:
    """Inductor's config without precompiled headers, at compile and at load alike.

    With them, finding a kernel's library by its key runs the C++ preprocessor over the
    header on every load (its hash is part of the key), which is C++ work a warm start
    should not do; without them the key is the kernel's source and flags.
    """
    from torch._inductor import config

    return config.patch(cpp_cache_precompile_headers=False)


def _libraries(root: str) -> dict[str, bytes]:
    """The shared libraries under ``root``, by path relative to it."""
    out = {}
    for path in sorted(Path(root).rglob("*.so")):
        out[str(path.relative_to(root))] = path.read_bytes()
    return out


class _ArtifactCall:
    """The callable of a CompiledArtifact, with the artifact kept for saving."""

    __slots__ = ("artifact", "fn", "libraries", "probe_answers")

    def __init__(
        self,
        artifact: Any,
        fn: Callable[..., Any],
        libraries: dict[str, bytes],
        probe_answers: dict[str, bool] | None = None,
    ) -> None:
        self.artifact = artifact
        self.fn = fn
        self.libraries = libraries
        self.probe_answers = probe_answers

    def __call__(self, *args: Any) -> Any:
        return self.fn(*args)


def graph_bytes(gm: torch.fx.GraphModule) -> bytes:
    """The graph, encoded (graph_codec) and pickled; UnpicklableArtifact when it cannot be."""
    from . import graph_codec
    from .refs import NotPortable

    try:
        return pickle.dumps(graph_codec.encode(gm), protocol=pickle.HIGHEST_PROTOCOL)
    except (NotPortable, pickle.PicklingError, TypeError, AttributeError) as exc:
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
                saved = fh.read()
            bundle = {
                "artifact": saved,
                "libraries": compiled.libraries,
                "probe_answers": compiled.probe_answers,
            }
            return "inductor", pickle.dumps(bundle, protocol=pickle.HIGHEST_PROTOCOL)
        except Exception as exc:
            raise UnpicklableArtifact(
                f"inductor's artifact cannot be saved: {type(exc).__name__}: {exc}"
            ) from None
        finally:
            with contextlib.suppress(OSError):
                os.unlink(path)
    return "graph", b""


def load_graph(data: bytes, module: bool = True) -> Any:
    """The GraphModule of an entry (a lighter GraphHolder when ``module`` is False)."""
    from . import graph_codec

    return graph_codec.decode(pickle.loads(data), module=module)


def load_inductor(data: bytes, scratch_dir: str) -> Callable[..., Any]:
    """A callable from a stored inductor bundle, compiling no C++ and probing nothing.

    The bundled libraries go into inductor's cache directory first (where its loader
    looks for them by content hash). The vector-ISA probes recorded at compile are
    replayed (vec_isa), then the artifact is loaded (_load_artifact).
    """
    bundle = pickle.loads(data)
    _install_libraries(bundle["libraries"])
    probe_answers = bundle.get("probe_answers")
    vec_isa.replay(probe_answers if isinstance(probe_answers, dict) else None)
    with _no_precompiled_headers():
        return _load_artifact(bundle["artifact"], scratch_dir)


def _install_libraries(libraries: dict[str, bytes]) -> None:
    """Write the bundled libraries into inductor's cache directory (atomically, once)."""
    from torch._inductor.runtime.cache_dir_utils import cache_dir

    target = Path(cache_dir())
    for rel, blob in libraries.items():
        relative = Path(rel)
        if relative.is_absolute() or ".." in relative.parts:
            continue  # never outside the cache directory
        path = target / relative
        if path.exists():
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".framecache-", dir=path.parent)
        with os.fdopen(fd, "wb") as fh:
            fh.write(blob)
        os.replace(tmp, path)


def _load_artifact(saved: bytes, scratch_dir: str) -> Callable[..., Any]:
    """The CompiledArtifact in ``saved`` (its binary format), loaded.

    CompiledArtifact.load first asserts that the bytes' source hash of torch equals
    this torch's, and computing that hash reads every source file of torch (about
    150 ms). The entry's key already pins the torch version, so the artifact's AOTAutograd
    cache key and bytes are read here and handed to the loader underneath. When the
    format is not the one this code knows, the public loader runs instead.
    """
    parsed = None
    try:
        from torch._inductor.standalone_compile import CacheCompiledArtifact
        from torch.utils._appending_byte_serializer import BytesReader

        reader = BytesReader(saved)
        if reader.read_bytes() == CacheCompiledArtifact.CACHE_HEADER:
            reader.read_bytes()  # the source hash of the torch that saved it
            key = reader.read_str()
            artifact_bytes = reader.read_bytes()
            if reader.is_finished() and hasattr(CacheCompiledArtifact, "_load_impl"):
                parsed = (key, artifact_bytes)
    except (ImportError, AttributeError, AssertionError, IndexError, ValueError) as exc:
        log.debug("inductor artifact read through the public loader: %s", exc)
    if parsed is not None:
        torch.compiler.load_cache_artifacts(parsed[1])
        return CacheCompiledArtifact._load_impl(contextlib.nullcontext(), parsed[0])
    from torch._inductor import CompiledArtifact

    fd, path_str = tempfile.mkstemp(prefix=".inductor-", dir=scratch_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(saved)
        return CompiledArtifact.load(path=path_str, format="binary")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path_str)


__all__ = ["compiled_bytes", "graph_bytes", "inductor_standalone", "load_graph", "load_inductor"]
