"""The one door to torch's private APIs that the disk cache uses, per supported torch.

framecache supports torch ``SUPPORTED_RANGE`` (2.11 to 2.13, as pyproject.toml's
``framecache[torch]`` extra says). The disk cache leans on a few private torch APIs:

=============================  ==========================================================
private API                    what for; the public path it falls back to
=============================  ==========================================================
``torch._C._aoti``             loading an AOTInductor package without importing
``.AOTIModelPackageLoader``    torch._inductor (the warm start); falls back to
                               ``torch._inductor.aoti_load_package`` (imports inductor)
``standalone_compile``         inductor's serialisable artifact (the fallback when AOTI
``(fake_mode=...)``            cannot take a graph); without ``fake_mode`` (a torch that
                               lacks it) the inputs' own shapes are used
``CacheCompiledArtifact``      loading a stored artifact without hashing torch's sources
``._load_impl``                (~150 ms); falls back to ``CompiledArtifact.load``
``VecISA._probe_load``         replaying inductor's vector-ISA dlopen probes (vec_isa.py);
                               falls back to inductor probing as usual
=============================  ==========================================================

Each function here checks what this torch has, uses the private path when it is there
and otherwise takes the public one, logging why once per API (``fallbacks()`` lists the
reasons of this process). Version differences are named where they are handled; when
torch 2.11 leaves the supported range, its branches can go.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import os
import tempfile
import threading
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch

log = logging.getLogger("framecache.cache")

#: The torch releases framecache is built and tested against (major, minor), inclusive.
SUPPORTED = ((2, 11), (2, 13))
#: The same as a requirement specifier (pyproject.toml's ``framecache[torch]``).
SUPPORTED_RANGE = ">=2.11,<2.14"

_fallbacks: dict[str, str] = {}
_lock = threading.Lock()


def torch_version(version: str | None = None) -> tuple[int, int]:
    """``(major, minor)`` of ``version`` (default: the running torch's)."""
    text = torch.__version__ if version is None else version
    parts = str(text).split("+")[0].split(".")
    try:
        return int(parts[0]), int(parts[1])
    except (IndexError, ValueError):
        return (0, 0)


def is_supported(version: str | None = None) -> bool:
    """Whether ``version`` (default: the running torch's) is in ``SUPPORTED``."""
    return SUPPORTED[0] <= torch_version(version) <= SUPPORTED[1]


class UnsupportedTorchWarning(UserWarning):
    """framecache runs on a torch release outside ``SUPPORTED_RANGE``."""


_warned_unsupported = False


def warn_if_unsupported(version: str | None = None) -> bool:
    """Warn once per process when ``version`` (default: the running torch's) is outside
    ``SUPPORTED``; returns whether it is outside.

    Called when framecache's compiler is first imported. An install can end up outside
    the range without asking for it: ``pip install timm`` may upgrade torch beside
    framecache. Nothing is refused: the private APIs below are probed, not assumed, and
    fall back to torch's public paths; what is not vouched for is the compiler's capture
    of a torch it was never tested against.
    """
    global _warned_unsupported
    if is_supported(version):
        return False
    if not _warned_unsupported:
        _warned_unsupported = True
        found = version if version is not None else torch.__version__
        warnings.warn(
            f"framecache supports torch {SUPPORTED_RANGE} and runs on torch {found}: "
            "it is not tested there; private torch APIs it uses fall back to public paths "
            "when they differ (framecache.cache.torch_compat.fallbacks() lists them), and a "
            "capture or guard may be wrong in ways the tests would have caught. Install a "
            f"supported torch ('torch{SUPPORTED_RANGE}') to be sure.",
            UnsupportedTorchWarning,
            stacklevel=2,
        )
    return True


def fallback(api: str, reason: str) -> None:
    """Record (and log once per api) that ``api`` took its public fallback, and why."""
    with _lock:
        if api in _fallbacks:
            return
        _fallbacks[api] = reason
    log.warning(
        "framecache: torch %s: %s unavailable (%s); using the public path",
        torch.__version__,
        api,
        reason,
    )


def fallbacks() -> dict[str, str]:
    """The private APIs that fell back in this process, with the reason of each."""
    with _lock:
        return dict(_fallbacks)


def reset_fallbacks() -> None:
    """Forget the recorded fallbacks (tests)."""
    with _lock:
        _fallbacks.clear()


# -- AOTInductor -------------------------------------------------------------------------
# The first torch whose AOTInductor packages framecache loads. Every supported torch
# qualifies: the SIGSEGV first seen on torch 2.11 (the GPU machine) was not that torch's
# but the machine's compiler: CXX named a g++ that links its own libstdc++ statically into
# the package, and the wrapper's std::regex then mixed that copy's locale with the
# process's shared libstdc++ (the crash is in std::regex_traits, reached from
# AOTInductorModel's device-string parser). The same packages built with the system g++
# load and run on 2.11, CPU and CUDA. aoti_package() checks for that (_shared_cxx_runtime).
AOTI_SINCE = (2, 11)

# The compiler a package is rebuilt with when the configured one links the C++ runtime
# statically: the first g++ on PATH, which is what inductor uses when CXX is unset.
_FALLBACK_CXX = "g++"


def aoti_unavailable() -> str | None:
    """Why inductor entries cannot be AOTInductor packages in this torch, or None."""
    if torch_version() < AOTI_SINCE:
        fallback(
            "AOTInductor packages",
            f"torch {torch.__version__} < {AOTI_SINCE[0]}.{AOTI_SINCE[1]}: not a supported "
            "torch; inductor entries use standalone_compile",
        )
        return f"torch {torch.__version__} predates the AOTInductor packages framecache loads"
    return None


def _shared_cxx_runtime(package_path: str) -> str | None:
    """None if the package's shared libraries link a shared C++ runtime, else why not.

    A wrapper that carries its own (static) libstdc++ crashes when loaded into a process
    whose torch uses the shared one; one that names libstdc++.so (or libc++.so) in its
    dynamic section does not. The name must be in the file for the loader to find it.
    """
    import zipfile

    with zipfile.ZipFile(package_path) as z:
        libraries = [n for n in z.namelist() if n.endswith(".so")]
        for name in libraries:
            data = z.read(name)
            if b"libstdc++.so" not in data and b"libc++.so" not in data:
                return f"{os.path.basename(name)} links no shared C++ runtime (a static libstdc++)"
    return None


def aoti_package(
    gm: torch.fx.GraphModule,
    inputs: Sequence[torch.Tensor],
    dynamic_dims: Sequence[set[int]],
    package_path: str,
) -> None:
    """Export ``gm`` (flat tensor inputs) and compile it into an AOTInductor package.

    ``dynamic_dims[i]`` are the dimensions of input ``i`` that stay symbolic; ValueError
    when export specialises one of them (the package would reject other sizes that the
    entry's guards accept). A package whose library carries a static C++ runtime (the
    configured compiler links libstdc++ statically; loading it would crash this process)
    is built again with ``g++`` from PATH; ValueError if that one does too.
    """
    from torch._inductor import aoti_compile_and_package
    from torch._inductor import config as inductor_config

    dims = torch.export.Dim.DYNAMIC
    shapes = tuple({d: dims for d in sorted(ds)} or None for ds in dynamic_dims)
    with torch.no_grad():
        ep = torch.export.export(
            gm, tuple(inputs), dynamic_shapes=shapes if any(dynamic_dims) else None, strict=False
        )
    placeholders = [n for n in ep.graph.nodes if n.op == "placeholder"]
    for i, ds in enumerate(dynamic_dims):
        val = placeholders[i].meta.get("val") if i < len(placeholders) else None
        for d in ds:
            if val is None or not isinstance(val.shape[d], torch.SymInt):
                raise ValueError(f"export specialised dimension {d} of input {i}")
    with warnings.catch_warnings():
        # torch's own packaging pickles a pytree spec through a deprecated isinstance.
        warnings.filterwarnings("ignore", "`isinstance.treespec, LeafSpec.`", FutureWarning)
        aoti_compile_and_package(ep, package_path=package_path)
        problem = _shared_cxx_runtime(package_path)
        if problem is None:
            return
        configured = inductor_config.cpp.cxx
        log.warning(
            "framecache: the AOTInductor package built with %s: %s, which would crash when "
            "loaded next to torch's shared libstdc++; building it again with %s from PATH",
            configured,
            problem,
            _FALLBACK_CXX,
        )
        # Caches off: the first build's library must not be found again by its hash.
        rebuild = {"cpp.cxx": (None, _FALLBACK_CXX), "force_disable_caches": True}
        with inductor_config.patch(rebuild):
            aoti_compile_and_package(ep, package_path=package_path)
    problem = _shared_cxx_runtime(package_path)
    if problem is not None:
        raise ValueError(f"AOTInductor package unusable in this process: {problem}")


def aoti_load(package_path: str) -> Callable[[list[torch.Tensor]], list[torch.Tensor]]:
    """``run(flat_inputs) -> flat_outputs`` of an AOTInductor package.

    The private C++ loader imports nothing of inductor (the whole point of a warm start);
    its signature ``(path, model_name, run_single_threaded, num_runners, device_index)``
    is the same in 2.11 and 2.13. Without it, inductor's public loader runs.
    """
    loader_type = getattr(getattr(torch._C, "_aoti", None), "AOTIModelPackageLoader", None)
    if loader_type is not None:
        try:
            loader = loader_type(package_path, "model", False, 1, -1)
        except TypeError as exc:  # a signature this module does not know
            fallback("torch._C._aoti.AOTIModelPackageLoader", f"{type(exc).__name__}: {exc}")
        else:
            return loader.run
    else:
        fallback("torch._C._aoti.AOTIModelPackageLoader", "not in this torch build")
    from torch._inductor import aoti_load_package

    compiled = aoti_load_package(package_path)
    return lambda flat: list(compiled.loader.run(flat))


# -- standalone_compile ------------------------------------------------------------------
def standalone_compile(gm: torch.fx.GraphModule, inputs: list[Any], fake_mode: Any) -> Any:
    """inductor's ``standalone_compile`` with its dynamic shapes taken from ``inputs``.

    2.13 accepts ``fake_mode=`` (the capture's, whose ShapeEnv the fake inputs belong to);
    a torch whose signature lacks it reads the inputs' shapes through
    ``dynamic_shapes="from_example_inputs"`` alone (checked, not assumed, for 2.11).
    """
    from torch._inductor import standalone_compile as compile_

    if fake_mode is not None:
        if "fake_mode" in inspect.signature(compile_).parameters:
            return compile_(gm, inputs, dynamic_shapes="from_example_inputs", fake_mode=fake_mode)
        fallback("standalone_compile(fake_mode=)", "this torch's standalone_compile lacks it")
    return compile_(gm, inputs, dynamic_shapes="from_example_inputs")


def load_compiled_artifact(saved: bytes, scratch_dir: str) -> Callable[..., Any]:
    """A CompiledArtifact saved in its binary format, loaded.

    ``CompiledArtifact.load`` asserts that the bytes' source hash of torch equals this
    torch's, and computing that hash reads every source file of torch (about 150 ms).
    The entry's key already pins the torch version, so the private loader underneath
    (``CacheCompiledArtifact._load_impl``, 2.11 and 2.13) gets the artifact's key and
    bytes directly. When the format or the class is not the one this module knows, the
    public loader runs instead.
    """
    parsed = None
    try:
        from torch._inductor.standalone_compile import CacheCompiledArtifact
        from torch.utils._appending_byte_serializer import BytesReader

        if not hasattr(CacheCompiledArtifact, "_load_impl"):
            raise AttributeError("CacheCompiledArtifact has no _load_impl")
        reader = BytesReader(saved)
        if reader.read_bytes() != CacheCompiledArtifact.CACHE_HEADER:
            raise ValueError("not a CacheCompiledArtifact")
        reader.read_bytes()  # the source hash of the torch that saved it
        key = reader.read_str()
        artifact_bytes = reader.read_bytes()
        if not reader.is_finished():
            raise ValueError("trailing bytes after the artifact")
        parsed = (key, artifact_bytes)
    except (ImportError, AttributeError, AssertionError, IndexError, ValueError) as exc:
        fallback("CacheCompiledArtifact._load_impl", f"{type(exc).__name__}: {exc}")
    if parsed is not None:
        torch.compiler.load_cache_artifacts(parsed[1])
        return CacheCompiledArtifact._load_impl(contextlib.nullcontext(), parsed[0])
    from torch._inductor import CompiledArtifact

    fd, path = tempfile.mkstemp(prefix=".inductor-", dir=scratch_dir)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(saved)
        return CompiledArtifact.load(path=path, format="binary")
    finally:
        with contextlib.suppress(OSError):
            os.unlink(path)


# -- vector-ISA probes -------------------------------------------------------------------
def vec_isa_module() -> Any:
    """inductor's cpu_vec_isa module when its probe hook (``VecISA._probe_load``) is there.

    None, with the fallback logged, when it is not: then inductor probes as usual.
    """
    try:
        from torch._inductor import cpu_vec_isa
    except ImportError as exc:
        fallback("torch._inductor.cpu_vec_isa", str(exc))
        return None
    missing = [
        name
        for name, owner in (
            ("VecISA._probe_load", getattr(cpu_vec_isa, "VecISA", None)),
            ("valid_vec_isa_list.cache_info", getattr(cpu_vec_isa, "valid_vec_isa_list", None)),
        )
        if owner is None or not hasattr(owner, name.split(".")[1])
    ]
    if missing:
        fallback("VecISA._probe_load", f"missing {', '.join(missing)}")
        return None
    return cpu_vec_isa


__all__ = [
    "SUPPORTED",
    "SUPPORTED_RANGE",
    "UnsupportedTorchWarning",
    "aoti_load",
    "aoti_package",
    "fallback",
    "fallbacks",
    "is_supported",
    "load_compiled_artifact",
    "reset_fallbacks",
    "standalone_compile",
    "torch_version",
    "aoti_unavailable",
    "vec_isa_module",
    "warn_if_unsupported",
]
