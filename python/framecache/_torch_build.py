"""framecache's torch part, built against the torch that is running.

The core (``framecache._C``) is built without torch. Its C++ tensor reader,
``framecache._torch_C``, needs torch's headers and libraries; it is found, in order:

1. beside ``_C`` in the package, when torch was importable when framecache was built
   (``make install``, ``pip install --no-build-isolation``, a cmake build);
2. in the build cache, ``$FRAMECACHE_TORCH_PART_DIR`` (default
   ``$XDG_CACHE_HOME/framecache/torch_part``, i.e. ``~/.cache/framecache/torch_part``),
   under a key of everything the binary depends on: framecache's version and the shipped
   sources, torch's version, location and C++ ABI, the interpreter's ABI tag, the compiler;
3. else compiled there once, from the sources shipped in the package
   (``framecache/_torch_src``), by the C++ compiler (``$CXX``, else ``c++``), under a
   file lock so that concurrent processes build it once.

The C++ core calls :func:`load` the first time a torch guard is built and checks the
table it gets against its own Python reader on probe tensors before using it
(torch_access.cpp). Anything that fails leaves the Python reader in force; the core
then warns once, naming why and what it costs. ``FRAMECACHE_TORCH_PART=0`` turns the
build off (the prebuilt module is still used). docs/torch_fast_path.md explains the
choice.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import importlib.machinery
import importlib.util
import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path
from types import ModuleType

__all__ = ["cache_dir", "load", "source_dir"]

_MODULE = "framecache._torch_C"
_ENV_DIR = "FRAMECACHE_TORCH_PART_DIR"
_ENV_SWITCH = "FRAMECACHE_TORCH_PART"
_BUILD_TIMEOUT_S = 900

# How the module in use was found: "prebuilt", "cached <path>", "built <path> in N s".
origin: str = ""


def source_dir() -> Path:
    """Where the package keeps the torch part's sources."""
    return Path(__file__).resolve().parent / "_torch_src"


def cache_dir() -> Path:
    """The build cache's root directory."""
    explicit = os.environ.get(_ENV_DIR)
    if explicit:
        return Path(explicit)
    xdg = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(xdg) / "framecache" / "torch_part"


def _compiler() -> list[str]:
    cxx = os.environ.get("CXX") or ""
    if cxx:
        return cxx.split()
    found = shutil.which("c++") or shutil.which("g++") or shutil.which("clang++")
    if found is None:
        raise RuntimeError("no C++ compiler found (set CXX, or install g++)")
    return [found]


def _sources() -> list[Path]:
    root = source_dir()
    files = [root / "torch_module.cpp", root / "framecache" / "guards" / "torch_api.h"]
    missing = [str(f) for f in files if not f.is_file()]
    if missing:
        raise RuntimeError(f"the torch part's sources are not in the package ({missing[0]})")
    return files


def _torch_facts(torch: ModuleType) -> tuple[str, Path, int]:
    version = str(torch.__version__)
    root = Path(torch.__file__).resolve().parent
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    return version, root, abi


def build_key(torch: ModuleType) -> str:
    """The cache key: everything the compiled module depends on."""
    from . import __version__ as fc_version

    version, root, abi = _torch_facts(torch)
    h = hashlib.sha256()
    for part in (
        fc_version,
        version,
        str(root),
        str(abi),
        sysconfig.get_config_var("EXT_SUFFIX") or "",
        sys.version,
        " ".join(_compiler()),
    ):
        h.update(part.encode() + b"\0")
    for f in _sources():
        h.update(f.read_bytes())
    return f"torch-{version}-{h.hexdigest()[:16]}"


def _command(torch: ModuleType, source: Path, output: Path) -> list[str]:
    version, root, abi = _torch_facts(torch)
    include = sysconfig.get_paths()["include"]
    return [
        *_compiler(),
        "-O2",
        "-std=c++20",
        "-fPIC",
        "-shared",
        "-fvisibility=hidden",
        "-w",  # torch's headers are not ours to keep warning-free
        f"-D_GLIBCXX_USE_CXX11_ABI={abi}",
        f'-DFRAMECACHE_TORCH_VERSION="{version}"',
        f"-I{source.parent}",
        f"-isystem{root / 'include'}",
        f"-isystem{root / 'include' / 'torch' / 'csrc' / 'api' / 'include'}",
        f"-isystem{include}",
        str(source),
        "-o",
        str(output),
        f"-L{root / 'lib'}",
        "-lc10",
        "-ltorch_cpu",
        "-ltorch_python",
        f"-Wl,-rpath,{root / 'lib'}",
    ]


@contextlib.contextmanager
def _locked(path: Path):  # type: ignore[no-untyped-def]
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def _import_from(path: Path) -> ModuleType:
    loader = importlib.machinery.ExtensionFileLoader(_MODULE, str(path))
    spec = importlib.util.spec_from_file_location(_MODULE, path, loader=loader)
    if spec is None:
        raise RuntimeError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    sys.modules[_MODULE] = module
    return module


def build(torch: ModuleType, target: Path) -> float:
    """Compiles the torch part into ``target`` (atomically); returns the seconds taken."""
    source = source_dir() / "torch_module.cpp"
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".build-", suffix=".so", dir=target.parent)
    os.close(fd)
    start = time.monotonic()
    try:
        done = subprocess.run(
            _command(torch, source, Path(tmp)),
            capture_output=True,
            text=True,
            timeout=_BUILD_TIMEOUT_S,
            check=False,
        )
        if done.returncode != 0:
            tail = (done.stderr or done.stdout).strip().splitlines()[-12:]
            (target.parent / "build.log").write_text(done.stderr + done.stdout)
            raise RuntimeError(
                f"compiling the torch part failed (exit {done.returncode}): "
                + " | ".join(tail)[-600:]
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    return time.monotonic() - start


def load() -> ModuleType:
    """framecache._torch_C for the running torch: prebuilt, cached, or built now.

    Raises RuntimeError (or ImportError) saying why it cannot be had. Imports torch.
    """
    global origin
    if _MODULE in sys.modules:
        return sys.modules[_MODULE]
    prebuilt = "not built with the package"
    try:
        module = importlib.import_module(_MODULE)
    except ModuleNotFoundError as e:
        if e.name != _MODULE:
            raise
    except ImportError as e:
        # Prebuilt against another torch (it checks the version when imported): build
        # one for this torch below.
        prebuilt = f"the prebuilt one failed to import ({e})"
    else:
        origin = "prebuilt with the package"
        return module
    if os.environ.get(_ENV_SWITCH, "1") == "0":
        raise RuntimeError(f"{prebuilt}, and {_ENV_SWITCH}=0 forbids building it")
    import torch

    key = build_key(torch)
    target = cache_dir() / key / f"_torch_C{sysconfig.get_config_var('EXT_SUFFIX')}"
    with _locked(cache_dir() / f"{key}.lock"):
        if target.is_file():
            origin = f"cached in {target.parent}"
        else:
            print(
                f"framecache: compiling its C++ tensor reader against torch {torch.__version__} "
                f"(once per torch install) into {target.parent}",
                file=sys.stderr,
                flush=True,
            )
            seconds = build(torch, target)
            origin = f"built in {seconds:.0f} s into {target.parent}"
    return _import_from(target)
