"""Evaluate a colour filling model on held-out colour images:
``python -m training.evaluate_colorize [--model colorize] [--images coffee chelsea grace_hopper]
[--out docs/images] [--checkpoint colorize.safetensors]``.

Each colour image is turned gray (its own L with a = b = 0); the model fills it. Reported per
image, for the model and for the plain gray baseline: PSNR (dB) against the original colour image,
the Hasler-Suesstrunk colourfulness and the mean Lab chroma next to the original's. Optionally
saves small PNGs (gray | model | original) for the docs.

With ``--checkpoint`` (the trained torch model), the realness critic D is judged too: the ROC AUC
of its score for real colour crops of the held-out images against the model's fills of the same
crops, and against randomly tinted copies of them (:func:`training.colorize.random_tint`).
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


def mean_chroma(rgb: np.ndarray) -> float:
    """Mean Lab chroma sqrt(a^2 + b^2) of a float (H, W, 3) sRGB image in [0, 1]."""
    from skimage import color

    lab = color.rgb2lab(rgb)
    return float(np.hypot(lab[..., 1], lab[..., 2]).mean())


def held_out_image(name: str) -> np.ndarray:
    """A held-out image: an image file, ``grace_hopper`` (Matplotlib's sample photo) or a
    scikit-image package image name -> float32 (H, W, 3) in [0, 1]."""
    if Path(name).suffix:
        return load_image_file(name)
    if name == "grace_hopper":
        import matplotlib.cbook

        return load_image_file(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False))
    return package_image(name)


def roc_auc(positive: Sequence[float], negative: Sequence[float]) -> float:
    """ROC AUC of scores: the probability that a positive outscores a negative (ties count 1/2)."""
    pos, neg = np.asarray(positive, np.float64)[:, None], np.asarray(negative, np.float64)[None, :]
    return float(((pos > neg) + 0.5 * (pos == neg)).mean())


def critic_auc(checkpoint: str, images: dict[str, np.ndarray], crops: int = 8, size: int = 128,
               seed: int = 0) -> dict[str, float]:
    """The realness critic's ROC AUC on ``crops`` random ``size`` crops per image: real colour
    crops against the model's fills of them (``fill``) and against randomly tinted copies
    (``tinted``); plus the mean realness of each group."""
    import torch

    from pyfill.export import load_checkpoint
    from pyfill.models.colorize import realness
    from training.colorize import random_tint, split_lab

    net, _ = load_checkpoint(checkpoint)
    gen = torch.Generator().manual_seed(seed)
    batch = []
    for img in images.values():
        t = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        for _ in range(crops):
            y = int(torch.randint(t.shape[1] - size + 1, (1,), generator=gen))
            x = int(torch.randint(t.shape[2] - size + 1, (1,), generator=gen))
            batch.append(t[:, y:y + size, x:x + size])
    rgb = torch.stack(batch)
    with torch.no_grad():
        l_norm, ab = split_lab(rgb)
        scores = {"real": realness(net.discriminator(l_norm, ab)),
                  "fill": realness(net.discriminator(l_norm, net.generator(l_norm))),
                  "tinted": realness(net.discriminator(l_norm, random_tint(ab, gen)))}
    s = {k: v.reshape(-1).numpy() for k, v in scores.items()}
    return {"auc_fill": roc_auc(s["real"], s["fill"]), "auc_tinted": roc_auc(s["real"], s["tinted"]),
            **{f"mean_{k}": float(v.mean()) for k, v in s.items()}}


def temperature_sweep(checkpoint: str, images: Sequence[np.ndarray],
                      temperatures: Sequence[float] = (1.0, 0.6, 0.45, 0.38, 0.3)) -> list[dict[str, float]]:
    """For a ``bins`` colour filling checkpoint: at each annealed-mean temperature, the mean PSNR
    gain over the gray image (dB) and the mean chroma as a share of the originals', over
    ``images`` (float (H, W, 3) in [0, 1], cropped to the model's size multiple). Used to choose
    the shipped temperature on training photographs."""
    import torch

    from pyfill.export import load_checkpoint

    net, manifest = load_checkpoint(checkpoint)
    if manifest.config.get("head") != "bins":
        raise ValueError(f"{checkpoint}: not a 'bins' colour filling model")
    m = manifest.size.multiple_of
    rows = []
    for t in temperatures:
        net.generator.temperature = float(t)
        gains, chroma, chroma_orig = [], [], []
        for img in images:
            h, w = img.shape[0] // m * m, img.shape[1] // m * m
            orig = img[:h, :w]
            with torch.no_grad():
                fill = net(torch.from_numpy(np.ascontiguousarray(orig.transpose(2, 0, 1)))[None])[0]
            fill_np = fill[0].permute(1, 2, 0).numpy()
            gains.append(psnr(fill_np, orig) - psnr(gray_version(orig), orig))
            chroma.append(mean_chroma(fill_np))
            chroma_orig.append(mean_chroma(orig))
        rows.append({"temperature": float(t), "gain": float(np.mean(gains)),
                     "chroma_share": float(np.mean(chroma) / np.mean(chroma_orig))})
    return rows


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
            "chroma_model": mean_chroma(fill), "chroma_original": mean_chroma(rgb),
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
    lines = ["| image | PSNR gray (dB) | PSNR model (dB) | model - gray (dB) | colourfulness model / original | "
             "mean chroma model / original | realness of the fill |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(f"| {r['image']} | {r['psnr_gray']:.2f} | {r['psnr_model']:.2f} | "
                     f"{r['psnr_model'] - r['psnr_gray']:+.2f} | {r['colourfulness_model']:.1f} / "
                     f"{r['colourfulness_original']:.1f} | {r['chroma_model']:.1f} / {r['chroma_original']:.1f} "
                     f"({100 * r['chroma_model'] / r['chroma_original']:.0f}%) | {r['realness']:.3f} |")
    gain = np.mean([r["psnr_model"] - r["psnr_gray"] for r in rows])
    chroma = np.mean([r["chroma_model"] for r in rows]) / np.mean([r["chroma_original"] for r in rows])
    lines.append(f"| mean | | | {gain:+.2f} | | {100 * chroma:.0f}% of the originals' | |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate colour filling against the gray baseline.")
    parser.add_argument("--model", default="colorize", help="a shipped model's name or a model file")
    parser.add_argument("--images", nargs="+", default=["coffee", "chelsea", "grace_hopper"],
                        help=f"package image names ({', '.join(PACKAGE_IMAGES)}), grace_hopper or image files "
                             "(held out from training)")
    parser.add_argument("--out", help="folder for the example PNGs")
    parser.add_argument("--checkpoint", help="the torch checkpoint (colorize.safetensors): also report the critic's AUC")
    parser.add_argument("--sweep", metavar="FOLDER",
                        help="with --checkpoint: PSNR gain and chroma per annealed-mean temperature over the "
                             "images of FOLDER (every third, shrunk to 400 pixels), instead of the evaluation")
    args = parser.parse_args(argv)
    if args.sweep:
        from training.data import list_images, shrink

        if not args.checkpoint:
            raise SystemExit("--sweep needs --checkpoint")
        photos = [shrink(load_image_file(p), 400) for p in list_images(args.sweep)[::3]]
        for row in temperature_sweep(args.checkpoint, photos):
            print(f"T {row['temperature']:.2f}: PSNR gain {row['gain']:+.2f} dB, chroma {100 * row['chroma_share']:.0f}%")
        return 0
    engine = Engine(args.model)
    images = {Path(n).stem if Path(n).suffix else n: held_out_image(n) for n in args.images}
    print(markdown_table(evaluate(engine, images, Path(args.out) if args.out else None)))
    if args.checkpoint:
        auc = critic_auc(args.checkpoint, images)
        print(f"\nrealness critic on held-out crops: AUC real vs fill {auc['auc_fill']:.3f}, real vs tinted "
              f"{auc['auc_tinted']:.3f}; mean realness real {auc['mean_real']:.3f}, fill {auc['mean_fill']:.3f}, "
              f"tinted {auc['mean_tinted']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
