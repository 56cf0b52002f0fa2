"""Evaluate a restoration model on held-out clean images:
``python -m training.evaluate_restore [--model restore] [--images coffee chelsea] [--seeds 4] [--out docs/images]``.

Each clean image is degraded by the seed preset at the light, medium and heavy settings of
:data:`training.restore_data.LEVELS` with fixed seeds (0 .. seeds - 1). Reported per level, as
means over images and seeds: PSNR (dB) and SSIM (``skimage.metrics``) against the clean image of
the degraded input, of a classical baseline (OpenCV non-local-means denoising followed by unsharp
masking) and of the model. Optionally saves example PNGs (degraded | baseline | model | clean).

Good inputs too: each clean image saved as JPEG at quality 90 and restored; reported per image,
the PSNR of that input and of the model's output against the clean image (a model that knows
when to leave an image alone loses nothing here).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyfill.engine import Engine
from training.data import PACKAGE_IMAGES, load_image_file, package_image
from training.restore_data import LEVELS, level_pipeline

METHODS = ("degraded", "baseline", "model")


def classical_baseline(img: np.ndarray, h: float = 10.0, sharpen: float = 0.5, sigma: float = 1.0) -> np.ndarray:
    """uint8 (H, W, 3) RGB -> uint8: ``cv2.fastNlMeansDenoisingColored`` (filter strengths ``h``
    for luminance and colour, 7 x 7 patches, 21 x 21 search window), then unsharp masking
    (1 + sharpen) x - sharpen x Gaussian(x, sigma)."""
    import cv2

    bgr = np.ascontiguousarray(img[..., ::-1])
    den = cv2.fastNlMeansDenoisingColored(bgr, None, h, h, 7, 21)
    blur = cv2.GaussianBlur(den, (0, 0), sigma)
    sharp = cv2.addWeighted(den, 1.0 + sharpen, blur, -sharpen, 0)
    return np.ascontiguousarray(sharp[..., ::-1])


def metrics(out: np.ndarray, clean: np.ndarray) -> tuple[float, float]:
    """(PSNR dB, SSIM) of uint8 (H, W, 3) ``out`` against ``clean``."""
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    return (float(peak_signal_noise_ratio(clean, out, data_range=255)),
            float(structural_similarity(clean, out, data_range=255, channel_axis=-1)))


def evaluate(engine: Engine, images: dict[str, np.ndarray], seeds: int = 4,
             out: Path | None = None) -> dict[str, dict[str, dict[str, float]]]:
    """{level: {method: {"psnr", "ssim"}}} means over images and seeds; ``images``: uint8
    (H, W, 3). With ``out``, saves ``restore_<level>.png`` for the first image and seed."""
    table: dict[str, dict[str, dict[str, float]]] = {}
    for level in LEVELS:
        scores: dict[str, list[tuple[float, float]]] = {m: [] for m in METHODS}
        for name, clean in images.items():
            for seed in range(seeds):
                degraded, _ = level_pipeline(level, seed)(clean[None])
                results = {"degraded": degraded[0], "baseline": classical_baseline(degraded[0]),
                           "model": engine(degraded[0])}
                for method, img in results.items():
                    scores[method].append(metrics(img, clean))
                if out is not None and seed == 0 and name == next(iter(images)):
                    save_example(out / f"restore_{level}.png", [results[m] for m in METHODS] + [clean])
        table[level] = {m: {"psnr": float(np.mean([s[0] for s in v])), "ssim": float(np.mean([s[1] for s in v]))}
                        for m, v in scores.items()}
    return table


def good_inputs(engine: Engine, images: dict[str, np.ndarray], quality: int = 90) -> dict[str, dict[str, float]]:
    """{image: {"input": PSNR of the JPEG at ``quality``, "model": PSNR of its restoration}} in dB
    against the clean uint8 (H, W, 3) image."""
    import io

    from PIL import Image

    rows = {}
    for name, clean in images.items():
        buf = io.BytesIO()
        Image.fromarray(clean).save(buf, "JPEG", quality=quality)
        jpeg = np.asarray(Image.open(buf).convert("RGB"))
        rows[name] = {"input": metrics(jpeg, clean)[0], "model": metrics(engine(jpeg), clean)[0]}
    return rows


def save_example(path: Path, panels: Sequence[np.ndarray], crop: int = 160) -> Path:
    """The centre ``crop`` x ``crop`` of each uint8 panel, side by side with 4-pixel gaps, as a PNG."""
    from PIL import Image

    h, w = panels[0].shape[:2]
    y, x = max(0, (h - crop) // 2), max(0, (w - crop) // 2)
    tiles = [p[y : y + crop, x : x + crop] for p in panels]
    gap = np.full((tiles[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(strip).save(path, optimize=True)
    return path


def markdown_table(table: dict[str, dict[str, dict[str, float]]]) -> str:
    lines = ["| level | PSNR degraded | PSNR baseline | PSNR model | SSIM degraded | SSIM baseline | SSIM model |",
             "|---|---|---|---|---|---|---|"]
    for level, row in table.items():
        lines.append(f"| {level} | " + " | ".join(f"{row[m]['psnr']:.2f}" for m in METHODS) + " | "
                     + " | ".join(f"{row[m]['ssim']:.3f}" for m in METHODS) + " |")
    return "\n".join(lines)


def load_uint8(name: str) -> np.ndarray:
    """A package image name, ``grace_hopper`` (Matplotlib's sample photo) or an image file -> uint8
    (H, W, 3)."""
    from training.evaluate_colorize import held_out_image

    img = held_out_image(name)
    return np.rint(img * 255.0).astype(np.uint8)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description="Evaluate restoration against the degraded input and a classical baseline.")
    parser.add_argument("--model", default="restore", help="a shipped model's name or a model file")
    parser.add_argument("--images", nargs="+", default=["coffee", "chelsea", "grace_hopper"],
                        help=f"package image names ({', '.join(PACKAGE_IMAGES)}) or image files "
                             "(held out from training)")
    parser.add_argument("--seeds", type=int, default=4, help="degradation seeds per image and level (default 4)")
    parser.add_argument("--out", help="folder for the example PNGs")
    parser.add_argument("--json", help="also write the table as JSON to this file")
    args = parser.parse_args(argv)
    if args.seeds < 1:
        raise SystemExit("--seeds must be >= 1")
    engine = Engine(args.model)
    images = {Path(n).stem if Path(n).suffix else n: load_uint8(n) for n in args.images}
    table = evaluate(engine, images, args.seeds, Path(args.out) if args.out else None)
    print(markdown_table(table))
    good = good_inputs(engine, images)
    print("\n| good input (JPEG q90) | PSNR input | PSNR model | change (dB) |\n|---|---|---|---|")
    for name, row in good.items():
        print(f"| {name} | {row['input']:.2f} | {row['model']:.2f} | {row['model'] - row['input']:+.2f} |")
    if args.json:
        result: dict[str, Any] = {"images": list(images), "seeds": args.seeds, "table": table, "good_inputs": good}
        Path(args.json).write_text(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
