"""A user's install gets the C++ tensor path: pip with build isolation, in a fresh venv.

The build environment of ``pip install <checkout>`` cannot import torch, so the wheel
has no prebuilt ``framecache._torch_C``; the first torch guard must compile it against
the venv's torch (framecache/_torch_build.py) and framecache must say so, in
``python -m framecache doctor`` and in ``framecache.stats()``. One full Release build
plus the torch part's compile: minutes, so it is marked ``install`` as well as ``torch``
(it runs once in CI, in the torch run on 3.11; ``-m "not install"`` skips it locally).
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = [pytest.mark.torch, pytest.mark.install]

torch = pytest.importorskip("torch")

CHECKOUT = Path(__file__).resolve().parents[2]


def _run(cmd: list[str], env: dict[str, str], timeout: float) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    assert done.returncode == 0, f"{cmd[:4]} failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
    return done


def test_pip_install_with_build_isolation_turns_the_fast_path_on(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    # torch comes from the interpreter's site-packages, as for a user whose torch was
    # installed before framecache.
    subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["FRAMECACHE_TORCH_PART_DIR"] = str(tmp_path / "torch_part")
    # Build isolation on (pip's default), its own build dir so that the checkout's
    # other builds are left alone.
    _run(
        [
            python,
            "-m",
            "pip",
            "install",
            "-q",
            f"-Cbuild-dir={tmp_path / 'build'}",
            str(CHECKOUT),
        ],
        env,
        timeout=3600,
    )
    # The wheel carries no torch part, only its sources.
    where = _run(
        [python, "-c", "import framecache, os; print(os.path.dirname(framecache.__file__))"],
        env,
        timeout=120,
    ).stdout.strip()
    package = Path(where)
    assert package.is_relative_to(venv), f"framecache was imported from {package}, not the venv"
    assert not list(package.glob("_torch_C*")), "the isolated build had torch after all"
    assert (package / "_torch_src" / "torch_module.cpp").is_file()

    # First use: doctor compiles the torch part and reports it on.
    first = _run([python, "-m", "framecache", "doctor"], env, timeout=1800)
    report = first.stdout
    assert f"torch       {torch.__version__} ({os.path.dirname(torch.__file__)})" in report
    assert f"fast path   on: C++ reader for torch {torch.__version__} (built in " in report
    assert str(venv) in report  # the interpreter line names the venv's python
    assert "compiling its C++ tensor reader" in first.stderr

    # Later processes load it from the cache; stats() says the same, and the reader
    # is what guards use.
    later = _run(
        [
            python,
            "-c",
            textwrap.dedent(
                """
                import torch, framecache
                from framecache._C import guards as G
                from framecache.guards import RootGuardManager
                root = RootGuardManager()
                root.local("x").tensor_match(torch.zeros(2, 3))
                print(G.torch_fast_path_enabled())
                print(root.check({"x": torch.ones(2, 3)}), root.check({"x": torch.ones(3, 2)}))
                print(framecache.stats().torch_fast_path)
                """
            ),
        ],
        env,
        timeout=600,
    )
    enabled, checks, status = later.stdout.strip().splitlines()
    assert enabled == "True"
    assert checks == "True False"
    assert status.startswith(f"on: C++ reader for torch {torch.__version__} (cached in ")
    assert "compiling" not in later.stderr
