"""The pass-through evaluator (``_C._passthrough_evaluator``): the floor that
benchmarks/python_overhead.py times framecache's hook against. It must run Python
exactly as CPython does, never displace another evaluator, and let framecache's hook
chain to it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

import framecache
from conftest import CountingCallback, copy_callback
from framecache import _C


@pytest.fixture(autouse=True)
def _removed_after() -> Iterator[None]:
    yield
    framecache.set_eval_frame(None)
    if _C._passthrough_evaluator_installed():
        _C._passthrough_evaluator(False)


def fib(n: int) -> int:
    return n if n < 2 else fib(n - 1) + fib(n - 2)


def squares(n: int) -> Iterator[int]:
    for i in range(n):
        yield i * i


def raises(depth: int) -> None:
    if depth == 0:
        raise KeyError("bottom")
    raises(depth - 1)


def tripled(x: int) -> int:
    return x * 3


def test_python_runs_as_without_it() -> None:
    _C._passthrough_evaluator(True)
    assert _C._passthrough_evaluator_installed()
    assert not framecache.hook_installed()
    assert fib(15) == 610
    assert sum(squares(10)) == 285
    with pytest.raises(KeyError, match="bottom"):
        raises(20)
    _C._passthrough_evaluator(False)
    assert not _C._passthrough_evaluator_installed()


def test_install_and_remove_twice_are_no_ops() -> None:
    _C._passthrough_evaluator(True)
    _C._passthrough_evaluator(True)
    assert _C._passthrough_evaluator_installed()
    _C._passthrough_evaluator(False)
    _C._passthrough_evaluator(False)
    assert not _C._passthrough_evaluator_installed()


def test_refuses_to_replace_framecache_hook() -> None:
    with framecache.optimize(CountingCallback(copy_callback)):
        assert framecache.hook_installed()
        with pytest.raises(RuntimeError, match="another frame evaluator"):
            _C._passthrough_evaluator(True)
        assert framecache.hook_installed()
        assert not _C._passthrough_evaluator_installed()
        assert tripled(2) == 6


def test_framecache_hook_chains_to_it_and_leaves_it_installed() -> None:
    _C._passthrough_evaluator(True)
    counting = CountingCallback(copy_callback)
    with framecache.optimize(counting):
        assert framecache.hook_installed()
        assert tripled(1) == 3  # compiled and cached
        assert tripled(2) == 6  # a hit
        # It cannot be removed from under the hook that chains to it.
        with pytest.raises(RuntimeError, match="installed over the pass-through"):
            _C._passthrough_evaluator(False)
    assert counting.count(tripled.__code__) == 1
    assert sum(e.hit_count for e in framecache.cache_entries(tripled.__code__)) == 1
    assert not framecache.hook_installed()
    assert _C._passthrough_evaluator_installed()
    _C._passthrough_evaluator(False)
    assert not _C._passthrough_evaluator_installed()


@pytest.mark.parametrize("value", [1, None, "yes"])
def test_bad_argument_is_a_type_error(value: object) -> None:
    with pytest.raises(TypeError, match="expects True or False"):
        _C._passthrough_evaluator(value)  # type: ignore[arg-type]
    assert not _C._passthrough_evaluator_installed()
