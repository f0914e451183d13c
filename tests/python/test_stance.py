"""framecache.stance: fail_on_recompile, eager, run_only and default, nesting and threads."""

from __future__ import annotations

import contextvars
import threading

import pytest

import framecache
from framecache.stances import current_stance


def test_unknown_stance_is_a_value_error() -> None:
    with pytest.raises(ValueError, match=r"stance\(\) expects one of default, fail_on_recompile"):
        framecache.stance("lazy")  # type: ignore[arg-type]


def test_stances_nest_and_restore_on_error() -> None:
    assert current_stance() == "default"
    with framecache.stance("eager"):
        with pytest.raises(KeyError), framecache.stance("run_only"):
            assert current_stance() == "run_only"
            raise KeyError("boom")
        assert current_stance() == "eager"
    assert current_stance() == "default"


def test_stance_as_a_decorator() -> None:
    @framecache.stance("fail_on_recompile")
    def inside() -> str:
        return current_stance()

    assert inside() == "fail_on_recompile"
    assert current_stance() == "default"


def test_stance_is_per_thread() -> None:
    seen: dict[str, str] = {}

    def record(key: str) -> None:
        seen[key] = current_stance()

    with framecache.stance("run_only"):
        plain = threading.Thread(target=record, args=("plain",))
        plain.start()
        plain.join()
        context = contextvars.copy_context()
        carried = threading.Thread(target=context.run, args=(record, "carried"))
        carried.start()
        carried.join()
    assert seen == {"plain": "default", "carried": "run_only"}


@pytest.mark.torch
class TestStancesOnCompiledCode:
    def setup_method(self) -> None:
        import torch

        @framecache.compile
        def double(x: torch.Tensor) -> torch.Tensor:
            return x * 2

        self.torch = torch
        self.double = double

    def test_fail_on_recompile_allows_hits_and_names_the_guard(self) -> None:
        torch = self.torch
        x = torch.ones(3)
        self.double(x)
        with framecache.stance("fail_on_recompile"):
            assert torch.equal(self.double(x), x * 2)
            with pytest.raises(framecache.RecompileError) as info:
                self.double(torch.ones(3, dtype=torch.float64))
        message = str(info.value)
        assert "stance('fail_on_recompile'): " in message
        assert (
            "would recompile: L['x']: dtype mismatch, expected torch.float32, got torch.float64"
            in (message)
        )
        stats = framecache.stats(self.double)
        assert (stats.compiles, stats.hits) == (1, 1)
        # Back to default: the same call compiles.
        self.double(torch.ones(3, dtype=torch.float64))
        assert framecache.stats(self.double).compiles == 2

    def test_fail_on_recompile_allows_a_first_compile(self) -> None:
        torch = self.torch
        with framecache.stance("fail_on_recompile"):
            assert torch.equal(self.double(torch.ones(2)), torch.full((2,), 2.0))
        assert framecache.stats(self.double).compiles == 1

    def test_eager_neither_looks_up_nor_compiles(self) -> None:
        torch = self.torch
        x = torch.ones(4)
        with framecache.stance("eager"):
            assert torch.equal(self.double(x), x * 2)
        assert framecache.stats(self.double).compiles == 0
        self.double(x)
        with framecache.stance("eager"):
            self.double(x)
            self.double(x.double())
        stats = framecache.stats(self.double)
        assert (stats.compiles, stats.hits, stats.misses) == (1, 0, 1)

    def test_run_only_hits_but_never_compiles(self) -> None:
        torch = self.torch
        x = torch.ones(5)
        self.double(x)
        with framecache.stance("run_only"):
            assert torch.equal(self.double(x), x * 2)
            y = torch.ones(5, dtype=torch.float64)
            assert torch.equal(self.double(y), y * 2)
        stats = framecache.stats(self.double)
        assert (stats.compiles, stats.hits, stats.entries) == (1, 1, 1)

    def test_default_inside_another_stance_compiles(self) -> None:
        torch = self.torch
        with framecache.stance("run_only"), framecache.stance("default"):
            self.double(torch.ones(6))
        assert framecache.stats(self.double).compiles == 1
