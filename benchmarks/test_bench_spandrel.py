"""Other projects' checkpoints (pyfill.foreign, through spandrel): pyfill.Engine on the CPU vs the
eager PyTorch module a user would run instead, batch 1, one image of SIZE x SIZE (face models at
their 512 x 512). Each architecture is built with spandrel's classes at random weights and a small
config (ARCHS), saved as a .pth, and loaded by the Engine as a user's file would be.

Besides the timings, each model's row of the table in docs/engine.md is measured here: whether it
exports to ONNX, the largest difference between the Engine's ONNX output and PyTorch's on a random
image, and the tiling probe (tiles of 64 px vs the whole image). With PYFILL_SPANDREL_TABLE=FILE
the rows are written there as JSON.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

torch = pytest.importorskip("torch")
try:
    from spandrel.architectures.Compact import Compact
    from spandrel.architectures.DAT import DAT
    from spandrel.architectures.ESRGAN import ESRGAN
    from spandrel.architectures.GFPGAN import GFPGAN
    from spandrel.architectures.HAT import HAT
    from spandrel.architectures.NAFNet import NAFNet
    from spandrel.architectures.SCUNet import SCUNet
    from spandrel.architectures.SwinIR import SwinIR
except Exception as exc:  # noqa: BLE001  (torchvision built for another torch raises RuntimeError)
    pytest.skip(f"spandrel cannot be imported here ({type(exc).__name__}: {exc})", allow_module_level=True)

from pyfill.engine import Engine  # noqa: E402
from pyfill.engine import files as F  # noqa: E402

SIZE = 128
ARCHS: dict[str, Callable[[], Any]] = {
    "ESRGAN (RRDBNet) x4": lambda: ESRGAN(num_filters=32, num_blocks=4, scale=4),
    "Real-ESRGAN Compact x4": lambda: Compact(num_feat=64, num_conv=16, upscale=4),
    "SwinIR x2": lambda: SwinIR(img_size=64, embed_dim=60, depths=[6, 6, 6, 6], num_heads=[6, 6, 6, 6], window_size=8,
                                upscale=2, upsampler="pixelshuffledirect"),
    "HAT x2": lambda: HAT(img_size=64, embed_dim=48, depths=(2, 2), num_heads=(2, 2), window_size=8, upscale=2,
                          num_feat=32, squeeze_factor=12),
    "DAT x2": lambda: DAT(img_size=64, embed_dim=48, split_size=[4, 8], depth=[2, 2], num_heads=[2, 2], upscale=2),
    "SCUNet": lambda: SCUNet(config=[2, 2, 2, 2, 2, 2, 2], dim=32),
    "NAFNet": lambda: NAFNet(width=16, middle_blk_num=2, enc_blk_nums=[1, 1, 1], dec_blk_nums=[1, 1, 1]),
    "GFPGAN v1.3 (face)": lambda: GFPGAN(),
}
_ROWS: dict[str, dict[str, Any]] = {}


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Any, Engine, np.ndarray]]:
    """name -> (eager module, Engine on the CPU, input image); fills the table rows."""
    folder = tmp_path_factory.mktemp("bench_spandrel")
    os.environ.setdefault("PYFILL_CACHE", str(folder / "cache"))
    out: dict[str, tuple[Any, Engine, np.ndarray]] = {}
    for i, (name, build) in enumerate(ARCHS.items()):
        torch.manual_seed(0)
        net = build().eval()
        path = folder / f"model{i}.pth"
        torch.save(net.state_dict(), path)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            files = F.locate(path)
            backend = "auto" if files.onnx is not None else "torch"
            engine = Engine(path, backend=backend, device="cpu", tile=0)
            probe = Engine(path, backend=backend, device="cpu", tiling="probe", tile=64, tile_overlap=16)
        side = engine.manifest.size.fixed[0] if engine.manifest.size.fixed else SIZE
        image = np.random.default_rng(i).random((side, side, 3), dtype=np.float32)
        with torch.no_grad():
            want = net(torch.from_numpy(image.transpose(2, 0, 1)[None].copy()))
            want = (want[0] if isinstance(want, (tuple, list)) else want).clamp(0, 1)[0].numpy().transpose(1, 2, 0)
        diff = float(np.abs(engine(image) - want).max())
        _ROWS[name] = {
            "exports": files.onnx is not None,
            "why_not": "" if files.onnx is not None else engine.manifest.provenance.get("onnx_export", ""),
            "backend": engine.info["backend"],
            "max_diff_vs_torch": diff,
            "tiling_probe": probe.info["tiling"],
            "manifest_tiling": engine.manifest.tiling.supported,
            "size": side,
        }
        out[name] = (net, engine, image)
    target = os.environ.get("PYFILL_SPANDREL_TABLE")
    if target:
        Path(target).write_text(json.dumps(_ROWS, indent=2))
    return out


def _rounds(name: str) -> int:
    return 2 if "GFPGAN" in name or "SwinIR" in name else 5


@pytest.mark.parametrize("name", list(ARCHS))
def test_torch_eager(benchmark: Any, ratios: Any, models: dict[str, Any], name: str) -> None:
    net, _, image = models[name]
    x = torch.from_numpy(image.transpose(2, 0, 1)[None].copy())

    def run() -> Any:
        with torch.inference_mode():
            return net(x)

    benchmark.pedantic(run, rounds=_rounds(name), warmup_rounds=1)
    ratios.record(benchmark, f"{name} b1 {image.shape[0]}px", "torch eager", "torch eager")


@pytest.mark.parametrize("name", list(ARCHS))
def test_pyfill_engine(benchmark: Any, ratios: Any, models: dict[str, Any], name: str) -> None:
    _, engine, image = models[name]
    benchmark.pedantic(lambda: engine(image), rounds=_rounds(name), warmup_rounds=1)
    ratios.record(benchmark, f"{name} b1 {image.shape[0]}px", f"pyfill {engine.info['backend']}", "torch eager")
