"""Evaluate a colour filling model on held-out colour images:
``python -m training.evaluate_colorize [--model colorize] [--images coffee chelsea] [--out docs/images]``.

Each colour image is turned gray (its own L with a = b = 0); the model fills it. Reported per
image, for the model and for the plain gray baseline: PSNR (dB) against the original colour image,
and the Hasler-Suesstrunk colourfulness next to the original's. Optionally saves small PNGs
(gray | model | original) for the docs.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyfill.engine import Engine
from training.data import PACKAGE_IMAGES, load_image_file, package_image


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two float images in [0, 1]."""
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(1.0 / mse)


def colourfulness(rgb: np.ndarray) -> float:
    """Hasler and Suesstrunk (2003) colourfulness of a float (H, W, 3) image in [0, 1], on the
    0..255 scale: sqrt(sd_rg^2 + sd_yb^2) + 0.3 sqrt(mean_rg^2 + mean_yb^2), rg = R - G,
    yb = (R + G) / 2 - B."""
    x = rgb.astype(np.float64) * 255.0
    rg = x[..., 0] - x[..., 1]
    yb = 0.5 * (x[..., 0] + x[..., 1]) - x[..., 2]
    return float(np.hypot(rg.std(), yb.std()) + 0.3 * np.hypot(rg.mean(), yb.mean()))


def gray_version(rgb: np.ndarray) -> np.ndarray:
    """The image's own L with a = b = 0, as float (H, W, 3) in [0, 1]."""
    from skimage import color

    lab = color.rgb2lab(rgb)
    lab[..., 1:] = 0.0
    return np.clip(color.lab2rgb(lab), 0.0, 1.0).astype(np.float32)


def evaluate(engine: Engine, images: dict[str, np.ndarray], out: Path | None = None,
             thumb_width: int = 160) -> list[dict[str, float | str]]:
    """Rows of {image, psnr_model, psnr_gray, colourfulness_model/_gray/_original, realness}."""
    rows = []
    for name, rgb in images.items():
        gray = gray_version(rgb)
        gray8 = np.rint(gray * 255).astype(np.uint8)
        result = engine(gray8)
        fill = result["fill"].astype(np.float32) / 255.0
        rows.append({
            "image": name,
            "psnr_model": psnr(fill, rgb), "psnr_gray": psnr(gray, rgb),
            "colourfulness_model": colourfulness(fill), "colourfulness_gray": colourfulness(gray),
            "colourfulness_original": colourfulness(rgb),
            "realness": float(np.asarray(result["realness"]).reshape(-1)[0]),
        })
        if out is not None:
            save_thumbnails(out, name, [gray, fill, rgb], thumb_width)
    return rows


def save_thumbnails(out: Path, name: str, panels: Sequence[np.ndarray], width: int) -> Path:
    """One PNG: the panels side by side, each scaled to ``width`` pixels wide."""
    from PIL import Image

    out.mkdir(parents=True, exist_ok=True)
    thumbs = []
    for p in panels:
        im = Image.fromarray(np.rint(np.clip(p, 0, 1) * 255).astype(np.uint8))
        thumbs.append(np.asarray(im.resize((width, round(p.shape[0] * width / p.shape[1])), Image.Resampling.LANCZOS)))
    gap = np.full((thumbs[0].shape[0], 4, 3), 255, np.uint8)
    strip = np.concatenate([x for t in thumbs for x in (t, gap)][:-1], axis=1)
    path = out / f"colorize_{name}.png"
    Image.fromarray(strip).save(path, optimize=True)
    return path


def markdown_table(rows: list[dict[str, float | str]]) -> str:
    lines = ["| image | PSNR gray (dB) | PSNR model (dB) | colourfulness gray | colourfulness model | "
             "colourfulness original | realness of the fill |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['psnr_gray']:.2f} | {r['psnr_model']:.2f} | {r['colourfulness_gray']:.1f} | "
                     f"{r['colourfulness_model']:.1f} | {r['colourfulness_original']:.1f} | {r['realness']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate colour filling against the gray baseline.")
    parser.add_argument("--model", default="colorize", help="a shipped model's name or a model file")
    parser.add_argument("--images", nargs="+", default=["coffee", "chelsea"],
                        help=f"package image names ({', '.join(PACKAGE_IMAGES)}) or image files (held out from training)")
    parser.add_argument("--out", help="folder for the example PNGs")
    args = parser.parse_args(argv)
    engine = Engine(args.model)
    images = {Path(n).stem if Path(n).suffix else n: (load_image_file(n) if Path(n).suffix else package_image(n))
              for n in args.images}
    print(markdown_table(evaluate(engine, images, Path(args.out) if args.out else None)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
