"""The seed degradation preset on 64 images of 256 x 256: pyfill's compiled ops vs the same steps
written the way a user would (OpenCV blur and resize, NumPy noise, Pillow JPEG round trip).

Parameters are sampled once and applied through both paths; the ratio of images per second is
printed and stored in ``extra_info``.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from pyfill import ops
from pyfill.degrade import Pipeline

BATCH, SIZE = 64, 256
CV2_INTERP = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


def clean_batch() -> np.ndarray:
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    base = np.stack([xx, yy, (xx + yy) / 2], -1) * (255 / SIZE)
    imgs = [cv2.GaussianBlur(base + rng.normal(0, 30, base.shape).astype(np.float32), (0, 0), 1.0) for _ in range(BATCH)]
    return np.clip(np.stack(imgs), 0, 255).astype(np.uint8)


def baseline_image(img: np.ndarray, steps: list[dict]) -> np.ndarray:
    """The same steps with OpenCV, NumPy and Pillow."""
    for s in steps:
        op = s["op"]
        if op == "gaussian_blur":
            img = cv2.GaussianBlur(img, (s["ksize"], s["ksize"]), s["sigma"])
        elif op == "motion_blur":
            img = cv2.filter2D(img, -1, ops.motion_kernel(s["length"], s["angle"]))
        elif op == "resize":
            h, w = s["size"]
            img = cv2.resize(img, (w, h), interpolation=CV2_INTERP[s["interpolation"]])
        elif op == "gaussian_noise":
            rng = np.random.default_rng(s["seed"])
            shape = img.shape[:2] + (1,) if s["gray"] else img.shape
            noise = rng.normal(s["mean"], s["sigma"], shape)
            img = np.clip(img + noise, 0, 255).round().astype(np.uint8)
        elif op == "poisson_noise":
            rng = np.random.default_rng(s["seed"])
            x = img.astype(np.float64)
            lam = (x @ np.array([0.299, 0.587, 0.114]))[..., None] if s["gray"] else x
            noisy = x + s["scale"] * (rng.poisson(lam) - lam)
            img = np.clip(noisy, 0, 255).round().astype(np.uint8)
        elif op == "salt_pepper":
            rng = np.random.default_rng(s["seed"])
            u = rng.random(img.shape[:2])
            img = img.copy()
            img[u < s["amount"] / 2] = 0
            img[(u >= s["amount"] / 2) & (u < s["amount"])] = 255
        elif op == "jpeg":
            buf = io.BytesIO()
            Image.fromarray(img).save(buf, "JPEG", quality=s["quality"], subsampling={"4:2:0": 2, "4:4:4": 0}[s["subsampling"]])
            img = np.asarray(Image.open(buf).convert("RGB"))
    return img


@pytest.fixture(scope="module")
def setup() -> tuple[np.ndarray, list[list[dict]], dict]:
    batch = clean_batch()
    pipe = Pipeline("seed", seed=0)
    return batch, pipe.sample(BATCH, (SIZE, SIZE)), {}


def test_seed_preset_baseline(benchmark, setup) -> None:
    batch, records, results = setup
    benchmark.group = "degrade-seed-preset-cpu"
    out = benchmark(lambda: np.stack([baseline_image(img, rec) for img, rec in zip(batch, records)]))
    assert out.shape == batch.shape
    results["baseline"] = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = results["baseline"]


def test_seed_preset_pyfill(benchmark, setup) -> None:
    batch, records, results = setup
    benchmark.group = "degrade-seed-preset-cpu"
    pipe = Pipeline("seed", seed=0)
    out = benchmark(pipe.apply, batch, records)
    assert out.shape == batch.shape
    ips = BATCH / benchmark.stats.stats.median
    benchmark.extra_info["images_per_s"] = ips
    if "baseline" in results:
        ratio = ips / results["baseline"]
        benchmark.extra_info["ratio_vs_opencv_numpy_pillow"] = ratio
        print(f"\nseed preset, {BATCH}x{SIZE}x{SIZE}: pyfill {ips:.1f} img/s, "
              f"OpenCV/NumPy/Pillow {results['baseline']:.1f} img/s, ratio {ratio:.2f}x")
