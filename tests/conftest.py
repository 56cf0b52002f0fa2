"""Fixtures: small models of each test architecture, as checkpoints and ONNX files."""

from __future__ import annotations

import sys
import threading
from pathlib import Path

import pytest


def _drop_source_tree_from_path() -> None:
    """``python -m pytest`` puts the current directory first on ``sys.path``; run from the
    repository root, the source tree (which has no compiled core) would then shadow the
    installed pyfill. Editable installs and in-place builds are unaffected."""
    root = Path(__file__).resolve().parents[1]
    if any(p.suffix in (".so", ".pyd") for p in (root / "pyfill").glob("_C*")):
        return
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]


_drop_source_tree_from_path()


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
