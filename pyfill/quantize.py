"""Post-training int8 quantisation of a pyfill ONNX model with NNCF (the ``int8`` extra).

``quantize_int8(model, calibration, out)`` calibrates on a folder of images, writes an ONNX file
with quantize/dequantize pairs that OpenVINO runs in int8 (VNNI or AMX-INT8 where the CPU has
them), records the quantisation in the manifest's provenance, and measures the int8 output
against fp32 (PSNR) on held-out images. ``pyfill export MODEL --int8 --calibration DIR`` calls it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyfill._core import require
from pyfill.images import IMAGE_SUFFIXES, read_image
from pyfill.manifest import ONNX_METADATA_KEY, Manifest, read_onnx_manifest

CALIBRATION_SIDE = 256  # calibration images are centre crops of at most this many pixels a side


@dataclass(frozen=True)
class QuantizationReport:
    """``psnr_db``: int8 vs fp32 output per held-out image (uint8 outputs, peak 255)."""

    path: Path
    calibration_images: int
    held_out: list[str]
    psnr_db: list[float]

    @property
    def mean_psnr_db(self) -> float:
        finite = [p for p in self.psnr_db if math.isfinite(p)]
        return float(np.mean(finite)) if finite else math.inf


def image_files(folder: str | os.PathLike[str]) -> list[Path]:
    root = Path(folder)
    if not root.is_dir():
        raise FileNotFoundError(f"not a folder of images: {root}")
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise ValueError(f"{root}: no image files ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _rgb(path: Path) -> np.ndarray:
    arr = read_image(path)
    if arr.dtype != np.uint8:
        arr = (arr / 257.0).round().astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=-1)
    return arr[..., :3]


def _model_input(manifest: Manifest, image: np.ndarray) -> dict[str, np.ndarray]:
    """A centre crop, rounded to the size rules, as the model's float NCHW input."""
    spec = manifest.primary_input
    size = manifest.size
    if size.fixed:
        from PIL import Image

        image = np.asarray(Image.fromarray(image).resize((size.fixed[1], size.fixed[0]), Image.Resampling.BILINEAR))
    else:
        m = size.multiple_of
        h = max(size.min_size, min(image.shape[0], CALIBRATION_SIDE) // m * m)
        w = max(size.min_size, min(image.shape[1], CALIBRATION_SIDE) // m * m)
        y, x = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
        image = image[max(0, y):max(0, y) + h, max(0, x):max(0, x) + w]
    lo, hi = spec.value_range
    x01 = image.transpose(2, 0, 1)[None].astype(np.float32) / 255.0
    if spec.channels == 1:
        x01 = (x01 * np.array([0.299, 0.587, 0.114], np.float32)[None, :, None, None]).sum(1, keepdims=True)
    return {spec.name: x01 * (hi - lo) + lo}


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return math.inf if mse == 0 else 10.0 * math.log10(255.0**2 / mse)


def quantize_int8(model: str | os.PathLike[str], calibration: str | os.PathLike[str], out: str | os.PathLike[str],
                  *, held_out: str | os.PathLike[str] | None = None, subset: int = 300) -> QuantizationReport:
    """Quantise a pyfill ONNX model (a file or a model name) to int8.

    Args:
        calibration: a folder of images (searched recursively); up to ``subset`` are used.
        out: the int8 ONNX file to write (the manifest travels with it).
        held_out: a folder of images to measure int8 against fp32 on (default: the calibration
            images, which flatters the figure: pass images the calibration did not see).
    """
    nncf = require("nncf", "int8")
    onnx = require("onnx", "int8")
    from pyfill import __version__
    from pyfill.engine import Engine
    from pyfill.export import file_sha256
    from pyfill.store import resolve_model

    src = resolve_model(model)
    if src.suffix.lower() != ".onnx":
        raise ValueError(f"{src}: int8 quantisation takes an ONNX file (export the checkpoint first)")
    manifest = read_onnx_manifest(src)
    if manifest is None:
        raise ValueError(f"{src}: has no pyfill manifest; quantisation needs to know its inputs")
    if sum(1 for s in manifest.inputs if not s.optional) != 1 or manifest.primary_input.kind != "image":
        raise ValueError(f"{src}: int8 quantisation handles models with one image input")
    files = image_files(calibration)[:subset]
    samples = [_model_input(manifest, _rgb(p)) for p in files]
    quantized = nncf.quantize(onnx.load(str(src)), nncf.Dataset(samples), subset_size=len(samples))

    held = image_files(held_out) if held_out is not None else files
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = out_path.with_name(f".partial-{out_path.name}")
    provenance = dict(manifest.provenance)
    provenance["quantization"] = {
        "method": "NNCF post-training int8 (quantize/dequantize pairs)", "nncf": nncf.__version__,
        "calibration_images": len(samples), "calibration_folder": str(calibration),
        "source_sha256": file_sha256(src), "pyfill_version": __version__,
    }
    _write(onnx, quantized, Manifest.from_dict({**manifest.to_dict(), "provenance": provenance, "fp16": False}), tmp)
    fp32 = Engine(src, backend="openvino", precision="fp32")
    int8 = Engine(tmp, backend="openvino", precision="fp32")  # the int8 layers stay int8
    scores = [psnr(int8(img), fp32(img)) for img in (_rgb(p) for p in held)]
    provenance["quantization"]["psnr_vs_fp32_db"] = {"images": len(held), "mean": round(float(np.mean(
        [s for s in scores if math.isfinite(s)] or [math.inf])), 3)}
    _write(onnx, quantized, Manifest.from_dict({**manifest.to_dict(), "provenance": provenance, "fp16": False}), tmp)
    os.replace(tmp, out_path)
    return QuantizationReport(out_path, len(samples), [str(p) for p in held], scores)


def _write(onnx: object, model: object, manifest: Manifest, path: Path) -> None:
    meta = {p.key: p.value for p in model.metadata_props}  # type: ignore[attr-defined]
    meta[ONNX_METADATA_KEY] = manifest.to_json()
    del model.metadata_props[:]  # type: ignore[attr-defined]
    for key, value in meta.items():
        entry = model.metadata_props.add()  # type: ignore[attr-defined]
        entry.key, entry.value = key, value
    onnx.save(model, str(path))  # type: ignore[attr-defined]
