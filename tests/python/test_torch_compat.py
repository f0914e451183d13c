"""torch_compat: each private torch API the disk cache uses, and its public fallback.

A missing private API is simulated with monkeypatch; the test checks the logged reason
and that the public path is the one that ran.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
import tomllib
import warnings
import zipfile
from pathlib import Path
from typing import Any

import pytest
import torch

import framecache
from framecache.cache import torch_compat, vec_isa

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _fresh_fallbacks():
    torch_compat.reset_fallbacks()
    yield
    torch_compat.reset_fallbacks()


def _reasons(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == "framecache.cache"]


def test_version_parsing_and_the_supported_range():
    assert torch_compat.torch_version("2.11.0+cu128") == (2, 11)
    assert torch_compat.torch_version("2.13.0+cpu") == (2, 13)
    assert torch_compat.torch_version("garbage") == (0, 0)
    assert torch_compat.is_supported("2.11.1") and torch_compat.is_supported("2.12.0")
    assert torch_compat.is_supported("2.13.0+cpu")
    assert not torch_compat.is_supported("2.10.0") and not torch_compat.is_supported("2.14.0")
    assert torch_compat.is_supported()  # the torch this suite runs on


def test_a_torch_outside_the_range_gets_one_warning_naming_it(monkeypatch):
    monkeypatch.setattr(torch_compat, "_warned_unsupported", False)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert torch_compat.warn_if_unsupported("2.13.0+cpu") is False
        assert torch_compat.warn_if_unsupported("2.14.1+cu130") is True
        assert torch_compat.warn_if_unsupported("2.14.1+cu130") is True
    found = [w for w in caught if issubclass(w.category, torch_compat.UnsupportedTorchWarning)]
    assert len(found) == 1, [str(w.message) for w in caught]
    message = str(found[0].message)
    assert "2.14.1+cu130" in message and torch_compat.SUPPORTED_RANGE in message
    assert framecache.UnsupportedTorchWarning is torch_compat.UnsupportedTorchWarning


def test_the_declared_range_is_the_one_pyproject_states():
    pyproject = Path(__file__).resolve().parents[2] / "pyproject.toml"
    extra = tomllib.loads(pyproject.read_text())["project"]["optional-dependencies"]["torch"]
    assert extra == [f"torch{torch_compat.SUPPORTED_RANGE}"]


def test_importing_the_compiler_on_an_unsupported_torch_warns_and_doctor_says_so():
    """A fresh process whose torch reports 2.14.1: one warning at the compiler's import,
    and doctor's torch line is followed by the range it is outside of."""
    script = textwrap.dedent(
        """
        import warnings
        import torch
        torch.__version__ = "2.14.1+cu130"
        from framecache.__main__ import doctor_report
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            import framecache.compiler
        names = [w.category.__name__ for w in caught]
        print("WARNINGS", names.count("UnsupportedTorchWarning"))
        print("\\n".join(doctor_report()[0]))
        """
    )
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300, check=True
    ).stdout
    assert "WARNINGS 1" in out, out
    assert "outside the supported range >=2.11,<2.14" in out, out


def test_a_fallback_is_logged_once_with_its_reason(caplog):
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        torch_compat.fallback("some.api", "gone in this torch")
        torch_compat.fallback("some.api", "gone in this torch")
    messages = [m for m in _reasons(caplog) if "some.api" in m]
    assert len(messages) == 1 and "gone in this torch" in messages[0]
    assert torch_compat.fallbacks() == {"some.api": "gone in this torch"}


def _add(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return x * 2 + y


@pytest.fixture(scope="module")
def package(tmp_path_factory) -> str:
    """One small AOTInductor package (``x * 2 + y`` on 3x4 tensors), compiled once.

    Only where framecache uses AOTInductor packages (every supported torch; below them
    test_aoti_is_refused_below_the_supported_range covers the other side).
    """
    why_not = torch_compat.aoti_unavailable()
    if why_not is not None:
        pytest.skip(why_not)
    gm = torch.fx.symbolic_trace(_add)
    path = str(tmp_path_factory.mktemp("aoti") / "add.pt2")
    torch_compat.aoti_package(gm, [torch.randn(3, 4), torch.randn(3, 4)], [set(), set()], path)
    return path


def test_aoti_load_uses_the_private_loader(package, caplog):
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        run = torch_compat.aoti_load(package)
    torch.testing.assert_close(run([x, y])[0], x * 2 + y)
    assert torch_compat.fallbacks() == {}


def test_aoti_load_of_a_changed_loader_signature_takes_the_public_loader(
    package, monkeypatch, caplog
):
    import torch._inductor as inductor

    real = torch._C._aoti.AOTIModelPackageLoader

    def changed(path, *, model_name="model"):  # a signature torch_compat does not know
        raise AssertionError("never reached: the call does not bind")

    monkeypatch.setattr(torch._C._aoti, "AOTIModelPackageLoader", changed)
    used = []
    public = inductor.aoti_load_package

    def spy(path, *a, **k):
        # The public loader is the one that knows the (simulated) new signature: here it
        # runs with the real class again.
        used.append(path)
        monkeypatch.setattr(torch._C._aoti, "AOTIModelPackageLoader", real)
        return public(path, *a, **k)

    monkeypatch.setattr(inductor, "aoti_load_package", spy)
    x, y = torch.randn(3, 4), torch.randn(3, 4)
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        run = torch_compat.aoti_load(package)
    torch.testing.assert_close(run([x, y])[0], x * 2 + y)
    assert used == [package]
    reason = torch_compat.fallbacks()["torch._C._aoti.AOTIModelPackageLoader"]
    assert reason.startswith("TypeError")
    assert any("AOTIModelPackageLoader" in m and "TypeError" in m for m in _reasons(caplog))


def test_aoti_load_without_the_private_loader_routes_to_the_public_one(monkeypatch, caplog):
    import torch._inductor as inductor

    monkeypatch.delattr(torch._C._aoti, "AOTIModelPackageLoader")
    used = []

    class Public:  # what aoti_load_package returns: the runner is its .loader
        class loader:
            @staticmethod
            def run(flat):
                return [flat[0] + 1]

    monkeypatch.setattr(inductor, "aoti_load_package", lambda path: used.append(path) or Public)
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        run = torch_compat.aoti_load("some.pt2")
    assert run([torch.zeros(2)])[0].tolist() == [1.0, 1.0] and used == ["some.pt2"]
    reason = torch_compat.fallbacks()["torch._C._aoti.AOTIModelPackageLoader"]
    assert reason == "not in this torch build"
    assert any("AOTIModelPackageLoader" in m and reason in m for m in _reasons(caplog))


def test_aoti_package_refuses_a_specialised_dynamic_dim(tmp_path):
    # x.shape[0] is read as a constant: export cannot keep it symbolic.
    def f(x):
        return x.reshape(4, 3) + 1

    gm = torch.fx.symbolic_trace(f)
    with pytest.raises(Exception, match=r"specialised|Constraints violated|specializ"):
        torch_compat.aoti_package(gm, [torch.randn(4, 3)], [{0}], str(tmp_path / "f.pt2"))


def test_standalone_compile_without_fake_mode_is_called_without_it(monkeypatch, caplog):
    import torch._inductor as inductor

    calls = []

    def old_signature(gm, inputs, *, dynamic_shapes="from_graph", options=None):
        calls.append(dynamic_shapes)
        return "artifact"

    monkeypatch.setattr(inductor, "standalone_compile", old_signature)
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        got = torch_compat.standalone_compile(object(), [], fake_mode=object())
    assert got == "artifact" and calls == ["from_example_inputs"]
    assert "standalone_compile(fake_mode=)" in torch_compat.fallbacks()
    assert any("lacks it" in m for m in _reasons(caplog))


def test_standalone_compile_passes_fake_mode_when_the_signature_has_it(monkeypatch):
    import torch._inductor as inductor

    calls = []

    def new_signature(gm, inputs, *, dynamic_shapes="from_graph", options=None, fake_mode=None):
        calls.append((dynamic_shapes, fake_mode))
        return "artifact"

    monkeypatch.setattr(inductor, "standalone_compile", new_signature)
    mode = object()
    assert torch_compat.standalone_compile(object(), [], fake_mode=mode) == "artifact"
    assert calls == [("from_example_inputs", mode)] and torch_compat.fallbacks() == {}


def test_artifact_load_without_load_impl_takes_the_public_loader(monkeypatch, tmp_path, caplog):
    from torch._inductor import CompiledArtifact
    from torch._inductor.standalone_compile import CacheCompiledArtifact

    monkeypatch.delattr(CacheCompiledArtifact, "_load_impl")
    seen = []

    def public_load(*, path, format):
        with open(path, "rb") as fh:
            seen.append((fh.read(), format))
        return "loaded"

    monkeypatch.setattr(CompiledArtifact, "load", staticmethod(public_load))
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        got = torch_compat.load_compiled_artifact(b"saved bytes", str(tmp_path))
    assert got == "loaded" and seen == [(b"saved bytes", "binary")]
    assert "no _load_impl" in torch_compat.fallbacks()["CacheCompiledArtifact._load_impl"]
    assert any("_load_impl" in m for m in _reasons(caplog))
    assert os.listdir(tmp_path) == []  # the scratch file is gone


def test_artifact_load_of_an_unknown_format_takes_the_public_loader(monkeypatch, tmp_path):
    from torch._inductor import CompiledArtifact
    from torch.utils._appending_byte_serializer import BytesWriter

    writer = BytesWriter()
    writer.write_bytes(b"SomeFutureArtifact")
    seen = []
    monkeypatch.setattr(
        CompiledArtifact, "load", staticmethod(lambda *, path, format: seen.append(format) or 7)
    )
    assert torch_compat.load_compiled_artifact(writer.to_bytes(), str(tmp_path)) == 7
    assert seen == ["binary"]
    reason = torch_compat.fallbacks()["CacheCompiledArtifact._load_impl"]
    assert "not a CacheCompiledArtifact" in reason


def test_vec_isa_without_the_probe_hook_probes_as_usual(monkeypatch, caplog):
    from torch._inductor import cpu_vec_isa

    # Absent already on torch 2.11, whose inductor has no such hook.
    monkeypatch.delattr(cpu_vec_isa.VecISA, "_probe_load", raising=False)
    with caplog.at_level(logging.WARNING, logger="framecache.cache"):
        assert torch_compat.vec_isa_module() is None
        # Nothing to replay with: inductor is left to probe itself.
        assert vec_isa.replay({"some_test_library.so": True}) is False
    assert "VecISA._probe_load" in torch_compat.fallbacks()["VecISA._probe_load"]
    assert any("VecISA._probe_load" in m for m in _reasons(caplog))


def test_aoti_is_refused_below_the_supported_range(monkeypatch: pytest.MonkeyPatch) -> None:
    # Below the supported torches entries take standalone_compile, with the reason logged
    # once; every supported torch (2.11 included) loads AOTInductor packages.
    torch_compat.reset_fallbacks()
    monkeypatch.setattr(torch, "__version__", "2.10.0+cpu")
    reason = torch_compat.aoti_unavailable()
    assert reason is not None and "2.10" in reason
    assert "AOTInductor packages" in torch_compat.fallbacks()
    for version in ("2.11.0+cu130", "2.13.0+cpu"):
        monkeypatch.setattr(torch, "__version__", version)
        assert torch_compat.aoti_unavailable() is None


def _fake_package(path: Path, library: bytes) -> None:
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("model/data/aotinductor/model/abc.wrapper.so", library)
        z.writestr("model/archive_format", "pt2")


def test_a_package_with_a_static_cxx_runtime_is_detected(tmp_path: Path) -> None:
    shared = tmp_path / "shared.pt2"
    _fake_package(shared, b"\x7fELF...libtorch.so\x00libstdc++.so.6\x00libc.so.6\x00")
    assert torch_compat._shared_cxx_runtime(str(shared)) is None
    static = tmp_path / "static.pt2"
    _fake_package(static, b"\x7fELF...libtorch.so\x00libgcc_s.so.1\x00libc.so.6\x00")
    reason = torch_compat._shared_cxx_runtime(str(static))
    assert reason is not None and "static libstdc++" in reason


def test_a_static_cxx_runtime_is_rebuilt_with_g_plus_plus(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # The GPU machine's CXX linked libstdc++ statically into packages, which crashed their
    # loader: aoti_package builds such a package again with g++ from PATH.
    import torch._inductor as inductor
    from torch._inductor import config as inductor_config

    compilers = []

    def fake_compile_and_package(ep: Any, package_path: str) -> str:
        cxx = inductor_config.cpp.cxx[-1]
        compilers.append(cxx)
        runtime = b"libstdc++.so.6" if cxx == "g++" else b"libgcc_s.so.1"
        _fake_package(Path(package_path), b"\x7fELF..." + runtime)
        return package_path

    monkeypatch.setattr(inductor, "aoti_compile_and_package", fake_compile_and_package)
    path = tmp_path / "graph.pt2"
    gm = torch.fx.symbolic_trace(_add)
    with inductor_config.patch({"cpp.cxx": (None, "/opt/static-gcc/bin/g++")}):
        with caplog.at_level(logging.WARNING, logger="framecache.cache"):
            torch_compat.aoti_package(gm, [torch.randn(3, 4)] * 2, [set(), set()], str(path))
    assert compilers == ["/opt/static-gcc/bin/g++", "g++"]
    assert torch_compat._shared_cxx_runtime(str(path)) is None
    assert any("static libstdc++" in r.getMessage() for r in caplog.records)

    # A g++ that links it statically too: the package is refused, not loaded.
    monkeypatch.setattr(torch_compat, "_FALLBACK_CXX", "/opt/static-gcc/bin/g++")
    compilers.clear()
    with inductor_config.patch({"cpp.cxx": (None, "/opt/static-gcc/bin/g++")}):
        with pytest.raises(ValueError, match="static libstdc"):
            torch_compat.aoti_package(gm, [torch.randn(3, 4)] * 2, [set(), set()], str(path))
    assert len(compilers) == 2
