"""The package is typed: ``py.typed`` ships, the ``_C`` stub names what the compiled module
has, and mypy is clean on ``pyfill/`` (the configuration is in pyproject.toml)."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import pyfill
from pyfill import _C

PKG = Path(pyfill.__file__).resolve().parent
ROOT = PKG.parent


def _stub_names() -> set[str]:
    tree = ast.parse((PKG / "_C.pyi").read_text())
    return {n.name for n in tree.body if isinstance(n, ast.FunctionDef)}


def test_package_is_marked_typed() -> None:
    assert (PKG / "py.typed").is_file()


def test_stub_declares_every_compiled_function() -> None:
    compiled = {n for n in dir(_C) if not n.startswith("_")}
    stub = _stub_names()
    assert compiled <= stub, f"missing from pyfill/_C.pyi: {sorted(compiled - stub)}"
    extra = stub - compiled
    if _C.build_config()["cuda"]:
        assert not extra, f"pyfill/_C.pyi declares functions the module lacks: {sorted(extra)}"
    else:  # a CPU-only build lacks just the CUDA faces
        assert all("cuda" in n for n in extra), sorted(extra)


@pytest.mark.skipif(shutil.which("mypy") is None and not (Path(sys.executable).parent / "mypy").exists(),
                    reason="mypy is not installed (it comes with the test extra)")
def test_mypy_is_clean_on_the_package() -> None:
    if not (ROOT / "pyproject.toml").is_file():
        pytest.skip("runs from a source checkout")
    proc = subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(ROOT / "pyproject.toml")],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
