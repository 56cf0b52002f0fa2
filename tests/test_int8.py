"""int8 export with NNCF: the shipped restoration model quantised on packaged photos, checked
against fp32 on a held-out photo (Matplotlib's sample, never used for calibration)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("nncf")
skimage_data = pytest.importorskip("skimage.data")
cbook = pytest.importorskip("matplotlib.cbook")
from skimage.metrics import peak_signal_noise_ratio  # noqa: E402

from pyfill.cli import main  # noqa: E402
from pyfill.engine import Engine  # noqa: E402
from pyfill.export import onnx_operators  # noqa: E402
from pyfill.images import read_image, write_image  # noqa: E402
from pyfill.manifest import read_onnx_manifest  # noqa: E402


def test_export_int8_of_the_shipped_restore_model(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    cal, held = tmp_path / "cal", tmp_path / "held"
    for name in ("astronaut", "coffee", "chelsea", "rocket"):
        write_image(cal / f"{name}.png", getattr(skimage_data, name)()[..., :3])
    photo = read_image(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))[:256, :256]
    write_image(held / "hopper.png", photo)
    out = tmp_path / "restore_int8.onnx"
    assert main(["export", "restore", "--int8", "--calibration", str(cal), "--held-out", str(held), "-o", str(out)]) == 0
    assert "PSNR of int8 vs fp32 on 1 held-out images" in capsys.readouterr().out

    assert {"QuantizeLinear", "DequantizeLinear"} <= onnx_operators(out)
    q = read_onnx_manifest(out).provenance["quantization"]
    assert q["calibration_images"] == 4 and q["psnr_vs_fp32_db"]["images"] == 1
    int8 = Engine(out, backend="openvino", precision="fp32")(photo)
    fp32 = Engine("restore", backend="openvino", precision="fp32")(photo)
    measured = peak_signal_noise_ratio(fp32, int8, data_range=255)
    assert measured >= 40.0 and abs(measured - q["psnr_vs_fp32_db"]["mean"]) < 0.01
    assert not np.array_equal(int8, fp32)  # it is really quantised


def test_export_int8_refuses_missing_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["export", "restore", "--int8", "-o", str(tmp_path / "x.onnx")]) == 1
    assert "needs --calibration DIR and -o OUT.onnx" in capsys.readouterr().err
    assert main(["export", "restore", "--int8", "--calibration", str(tmp_path), "-o", str(tmp_path / "x.onnx")]) == 1
    assert "no image files" in capsys.readouterr().err
