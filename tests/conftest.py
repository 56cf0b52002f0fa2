"""Fixtures: small models of each test architecture, as checkpoints and ONNX files."""

from __future__ import annotations

import os
import sys
import tempfile
import threading
from pathlib import Path

import pytest


ROOT = Path(__file__).resolve().parents[1]
# NNCF's telemetry (openvino_telemetry, consent assumed when no consent file exists) forks a
# sender process from whatever thread reports an event: inside a pytest-xdist worker, with its
# execnet threads, that is unsafe and reaches for a network the tests must not use. It is off
# when CI is set; the suite's own settings (Hypothesis's profile) are chosen explicitly.
os.environ.setdefault("CI", "true")
# With a regular (not editable) install the source tree has no compiled core, and it must not
# shadow the installed pyfill. Editable installs and in-place builds are unaffected.
SOURCE_TREE_SHADOWS = not any(p.suffix in (".so", ".pyd") for p in (ROOT / "pyfill").glob("_C*"))
if SOURCE_TREE_SHADOWS:  # ``python -m pytest`` puts the current directory first on sys.path
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != ROOT]


@pytest.fixture(scope="session", autouse=True)
def _run_outside_the_source_tree():
    """Subprocesses the tests start (training runs, Ray workers) import ``pyfill`` from their
    working directory first: with a regular install, run the tests from a scratch folder (after
    collection, so command-line paths still resolve)."""
    if not SOURCE_TREE_SHADOWS or Path.cwd().resolve() != ROOT:
        yield
        return
    os.chdir(tempfile.mkdtemp(prefix="pyfill-tests-"))
    try:
        yield
    finally:
        os.chdir(ROOT)


@pytest.fixture(scope="session")
def unet_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint .safetensors, .onnx) of a seeded random-weight test U-Net (depth 3)."""
    torch = pytest.importorskip("torch")
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("unet")
    ckpt = save_checkpoint(build_model("unet"), make_manifest("unet"), folder / "unet")
    return ckpt, export_onnx(ckpt, folder / "unet.onnx")


@pytest.fixture(scope="session")
def spade_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(checkpoint, .onnx) of a seeded random-weight SPADE generator: labels (8 classes) +
    latent (648) -> 32 x 32 RGB."""
    torch = pytest.importorskip("torch")
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(1)
    cfg = {"size": 32, "base": 32}
    folder = tmp_path_factory.mktemp("spade")
    ckpt = save_checkpoint(build_model("spade", cfg), make_manifest("spade", cfg, task="generate"), folder / "spade")
    return ckpt, export_onnx(ckpt, folder / "spade.onnx")


@pytest.fixture(scope="module")
def board():
    """A drawing-board server (shipped 'generate' model) on a free loopback port; ``.url``."""
    from pyfill.board.server import make_server

    server = make_server("127.0.0.1", 0)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()
