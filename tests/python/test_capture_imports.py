"""Imports that run while a frame is captured belong to the import system, not the frame.

A lazy import inside a model (``import x`` in a forward, transformers' lazy modules) runs
the module's body and the meta-path finders installed in the interpreter (setuptools'
``_distutils_hack`` is in nearly every virtual environment) during the capture. Their
reads are not what the graph computes and their side effects (a registry filled as the
module loads) happen once, as in an eager first call: the frame is still captured.
"""

from __future__ import annotations

import sys

import pytest
import torch

import framecache

pytestmark = pytest.mark.torch


@pytest.fixture(autouse=True)
def _fresh():
    framecache.reset()
    yield
    framecache.reset()


def _module_on_path(tmp_path, monkeypatch, name: str, source: str) -> None:
    """A module ``name`` importable from ``tmp_path`` and not imported yet."""
    (tmp_path / f"{name}.py").write_text(source)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, name, raising=False)


class _ComputedNameFinder:
    """Like setuptools' DistutilsMetaFinder: a name formatted from locals, read with getattr."""

    def __init__(self) -> None:
        self.asked: list[str] = []

    def find_spec(self, fullname, path, target=None):
        self.asked.append(fullname)
        method_name = "spec_for_{fullname}".format(**locals())
        method = getattr(self, method_name, lambda: None)
        return method()


def test_a_lazy_import_during_the_capture_is_captured_once(tmp_path, monkeypatch):
    name = "fc_lazy_import_mod"
    _module_on_path(
        tmp_path,
        monkeypatch,
        name,
        "LOADED = []\n"
        "LOADED.append('body ran')\n"  # a side effect of the import, not of the frame
        "def scale():\n"
        "    return 3.0\n",
    )
    finder = _ComputedNameFinder()
    monkeypatch.setattr(sys, "meta_path", [finder, *sys.meta_path])

    def lazily(x):
        import fc_lazy_import_mod

        return x * fc_lazy_import_mod.scale()

    f = framecache.compile(lazily, backend="eager")
    x = torch.randn(3)
    for _ in range(3):
        torch.testing.assert_close(f(x), x * 3.0)
    s = framecache.stats(lazily)
    assert not s.fallback_reasons, s.fallback_reasons
    assert (s.compiles, s.hits) == (1, 2), s
    assert sys.modules[name].LOADED == ["body ran"]  # imported once, by the capture
    assert finder.asked.count(name) == 1


def _scaled_by_module(x):
    import fc_lazy_import_scaled

    return x * fc_lazy_import_scaled.SCALE


def _scaled_by_name(x):
    from fc_lazy_import_scaled import SCALE

    return x * SCALE


@pytest.mark.parametrize("fn", [_scaled_by_module, _scaled_by_name], ids=["import m", "from m"])
def test_what_a_frame_reads_from_a_module_it_imports_is_guarded(tmp_path, monkeypatch, fn):
    """``import m`` / ``from m import a`` in a function body: the module's value is read
    through its globals and guarded like the frame's own globals."""
    name = "fc_lazy_import_scaled"
    _module_on_path(tmp_path, monkeypatch, name, "SCALE = 2.0\n")
    f = framecache.compile(fn, backend="eager")
    x = torch.randn(3)
    torch.testing.assert_close(f(x), x * 2.0)
    torch.testing.assert_close(f(x), x * 2.0)
    sys.modules[name].SCALE = 5.0
    torch.testing.assert_close(f(x), x * 5.0)
    s = framecache.stats(fn)
    assert (s.compiles, s.hits) == (2, 1), s
