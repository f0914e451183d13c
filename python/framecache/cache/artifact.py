"""What an entry stores of a compiled graph, per backend, and how it comes back.

* ``eager``: the (lifted) GraphModule, pickled; loading rebuilds its lean function.
* ``aoti``: an AOTInductor package (the graph exported and compiled into one shared
  library); a warm start loads it through torch's C++ runner and imports neither
  torch._inductor nor torch._dynamo. The package is built after the cold call returns,
  in a process of its own (builds.py), while the cold call runs inductor's ordinary
  compile; with ``FRAMECACHE_AOTI_BUILD=inline`` the cold call builds the package and
  runs it, loaded.
* ``inductor``: torch's own serialisable output, ``torch._inductor.standalone_compile``'s
  CompiledArtifact saved in its binary format, so a warm start compiles no C++; used
  when AOTInductor cannot take the graph (training graphs, non-tensor outputs).
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

from . import builds, torch_compat, vec_isa
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
    from torch._inductor.runtime.cache_dir_utils import temporary_cache_dir

    inputs = list(example_inputs)
    fakes = [t for t in inputs if isinstance(t, torch._subclasses.FakeTensor)]
    scratch = tempfile.mkdtemp(prefix="framecache-inductor-")
    headers = _precompiled_headers_for(inputs)
    try:
        with temporary_cache_dir(scratch), _precompiled_headers(headers):
            vec_isa.record()  # before compiling: the probes' test libraries land in scratch
            mode = fakes[0].fake_mode if fakes else None
            artifact = torch_compat.standalone_compile(gm, inputs, mode)
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
    return _ArtifactCall(artifact, artifact.__call__, libraries, probe_answers, headers)


def inductor_aoti(gm: torch.fx.GraphModule, example_inputs: Sequence[Any]) -> Any:
    """The inductor backend of a disk-cached function: an AOTInductor package, loaded.

    AOTInductor compiles inference graphs only: a graph whose inputs require grad
    while grad mode is on, or whose outputs are not all tensors, goes through
    inductor_standalone instead, and so does one that export or AOTInductor refuses
    (logged).
    """
    inputs = list(example_inputs)
    reason = _aoti_refusal(gm, inputs)
    if reason is None and builds.background():
        # The package is built after this call returns (builds.py); this process runs
        # what torch.compile would have compiled.
        from torch._inductor.compile_fx import compile_fx

        described = [_described(t) for t in inputs]
        return DeferredAoti(compile_fx(gm, inputs), described)
    if reason is None:
        try:
            return _compile_aoti(gm, inputs)
        except Exception as exc:
            reason = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
    log.info("not an AOTInductor package (%s); compiling with standalone_compile", reason)
    return inductor_standalone(gm, inputs)


def _aoti_refusal(gm: torch.fx.GraphModule, inputs: list[Any]) -> str | None:
    """Why AOTInductor cannot serve this graph, or None when it can."""
    unavailable = torch_compat.aoti_unavailable()
    if unavailable is not None:
        return unavailable
    if not all(isinstance(t, torch.Tensor) for t in inputs):
        return "a non-tensor graph input"
    if torch.is_grad_enabled() and any(t.requires_grad for t in inputs):
        return "inputs require grad under grad mode (AOTInductor compiles inference only)"
    output = next(n for n in reversed(gm.graph.nodes) if n.op == "output")
    leaves = output.args[0] if isinstance(output.args[0], (list, tuple)) else [output.args[0]]
    for leaf in leaves:
        meta = getattr(leaf, "meta", {})
        val = meta.get("val", meta.get("example_value"))
        if not isinstance(val, torch.Tensor):
            return "a graph output that is not a tensor"
    return None


def _hinted(t: torch.Tensor) -> tuple[list[int], list[int], set[int]]:
    """Sizes and strides of ``t`` (a fake's hints) and its symbolic dims."""

    def hint(v: Any) -> int:
        return int(v.node.hint) if isinstance(v, torch.SymInt) else int(v)

    dims = {i for i, s in enumerate(t.shape) if _symbolic(s)}
    return [hint(s) for s in t.shape], [hint(s) for s in t.stride()], dims


def _real_input(t: torch.Tensor) -> tuple[torch.Tensor, set[int]]:
    """A real tensor shaped like ``t`` (a fake's hinted sizes) and its symbolic dims."""
    if not isinstance(t, torch._subclasses.FakeTensor):
        return t, set()
    sizes, strides, dims = _hinted(t)
    real = torch.empty_strided(sizes, strides, dtype=t.dtype, device=t.device).zero_()
    return real, dims


def _symbolic(size: Any) -> bool:
    """Whether a fake's size stays symbolic: not an int, nor a symbol its ShapeEnv pinned.

    ``dynamic=True`` marks every dimension, and capture pins those the graph forces (a
    Linear's input features) to a constant; export must not be asked to keep them free.
    """
    if not isinstance(size, torch.SymInt):
        return False
    expr = size.node.expr
    env = getattr(size.node, "shape_env", None)
    if env is not None:
        expr = env.replace(expr)
    return bool(getattr(expr, "free_symbols", None))


def _described(t: torch.Tensor) -> tuple[Any, ...]:
    """``(sizes, strides, dtype, device, dynamic dims)`` of a package input (builds.py)."""
    sizes, strides, dims = _hinted(t)  # no tensor allocated: the builder makes its own
    dtype = str(t.dtype).removeprefix("torch.")
    return (tuple(sizes), tuple(strides), dtype, str(t.device), sorted(dims))


class DeferredAoti:
    """The callable of a graph whose package is built later (builds.py): inductor's
    in-process compile until the package comes back, then the package.

    ``inputs`` describe the package's inputs; the store hands them to the builder.
    """

    __slots__ = ("capture_target", "inputs", "run")

    def __init__(self, run: Callable[..., Any], inputs: list[tuple[Any, ...]]) -> None:
        self.run = run
        self.inputs = inputs
        # What a CUDA graph records (compiler/cudagraphs.py): inductor's own callable,
        # never the package that may replace ``run`` (see _AotiCall.capture_target).
        self.capture_target = run

    def __call__(self, *args: Any) -> Any:
        return self.run(*args)

    def adopt(self, package: bytes, root: str) -> None:
        """Run ``package`` from now on (one attribute store: a call sees one or the other)."""
        self.run = load_aoti(package, root)


class _AotiCall:
    """An AOTInductor package, loaded: its bytes (for the entry) and its runner."""

    __slots__ = ("package", "run")

    # AOTInductor's runner cannot be recorded into a CUDA graph: on torch 2.11 (H200) its run
    # inside a capture failed with "operation not permitted when stream is capturing" (a
    # call the capture forbids; its container synchronises on the event of its previous
    # run, the likely one), and the failed capture left the device's random generator in
    # capture state, so every later random op raised. compiler/cudagraphs.py refuses it.
    capture_target = None

    def __init__(self, package: bytes, run: Callable[[list[Any]], list[Any]]) -> None:
        self.package = package
        self.run = run

    def __call__(self, *args: Any) -> Any:
        return self.run(list(args))


def _compile_aoti(gm: torch.fx.GraphModule, inputs: list[Any]) -> _AotiCall:
    """Compile ``gm`` into a package once; load that package as the in-process callable."""
    pairs = [_real_input(t) for t in inputs]
    # The package needs no probe answers, but AOTInductor settles inductor's ISA list: a
    # later standalone_compile entry of this process could not record them any more.
    vec_isa.record()
    scratch = tempfile.mkdtemp(prefix="framecache-aoti-")
    try:
        path = os.path.join(scratch, "graph.pt2")
        torch_compat.aoti_package(gm, [p[0] for p in pairs], [p[1] for p in pairs], path)
        with open(path, "rb") as fh:
            package = fh.read()
        return _AotiCall(package, torch_compat.aoti_load(path))
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def load_aoti(data: bytes, root: str) -> Callable[..., Any]:
    """A callable from a stored AOTInductor package; imports nothing of the compiler stack.

    The C++ loader reads a file: the package is written once under ``root/aoti`` by its
    content hash (a rename, so readers never see half a file).
    """
    import hashlib

    directory = Path(root) / "aoti"
    path = directory / (hashlib.sha256(data).hexdigest()[:32] + ".pt2")
    if not path.exists() or path.stat().st_size != len(data):
        directory.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=".framecache-", dir=directory)
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
        os.replace(tmp, path)
    return _AotiCall(data, torch_compat.aoti_load(str(path)))


def _precompiled_headers_for(inputs: Sequence[Any]) -> bool:
    """Whether a graph of these inputs is compiled with precompiled C++ headers.

    Inference graphs are not: with them, finding a kernel's library by its key runs the
    C++ preprocessor over the header on every load (its hash is part of the key), which
    is C++ work a warm start should not do; without them the key is the kernel's source
    and flags. Training graphs (an input requires grad under grad mode) are: they have
    many more kernels (the backward's too), and without the header compiled once each
    kernel parses torch's headers again: a small ViT's training step took 26 s to
    compile against torch.compile's 15 s. Their warm start runs the preprocessor once.
    """
    return torch.is_grad_enabled() and any(
        isinstance(t, torch.Tensor) and t.requires_grad for t in inputs
    )


def _precompiled_headers(on: bool) -> Any:
    """Inductor's config with precompiled headers on or off, at compile and at load alike
    (the same setting gives the same library keys)."""
    from torch._inductor import config

    return config.patch(cpp_cache_precompile_headers=on)


def _libraries(root: str) -> dict[str, bytes]:
    """The shared libraries under ``root``, by path relative to it."""
    out = {}
    for path in sorted(Path(root).rglob("*.so")):
        out[str(path.relative_to(root))] = path.read_bytes()
    return out


class _ArtifactCall:
    """The callable of a CompiledArtifact, with the artifact kept for saving."""

    __slots__ = ("artifact", "fn", "libraries", "precompiled_headers", "probe_answers")

    def __init__(
        self,
        artifact: Any,
        fn: Callable[..., Any],
        libraries: dict[str, bytes],
        probe_answers: dict[str, bool] | None = None,
        precompiled_headers: bool = False,
    ) -> None:
        self.artifact = artifact
        self.fn = fn
        self.libraries = libraries
        self.probe_answers = probe_answers
        self.precompiled_headers = precompiled_headers

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
    if isinstance(compiled, _AotiCall):
        return "aoti", compiled.package
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
                "precompiled_headers": compiled.precompiled_headers,
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
    with _precompiled_headers(bool(bundle.get("precompiled_headers", False))):
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
    """The CompiledArtifact in ``saved`` (its binary format), loaded (torch_compat)."""
    return torch_compat.load_compiled_artifact(saved, scratch_dir)


__all__ = [
    "DeferredAoti",
    "compiled_bytes",
    "graph_bytes",
    "inductor_aoti",
    "inductor_standalone",
    "load_aoti",
    "load_graph",
    "load_inductor",
]
