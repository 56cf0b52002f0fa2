"""Evaluate drawing-board generators on held-out procedural landscapes:
``python -m training.evaluate_generate MODEL.onnx [MODEL.onnx ...] [--size 256] [--scenes 16]
[--out docs/images]``.

Every model draws the same held-out scenes (:func:`training.landscapes.render_landscape` with
seeds from 100,000, far from the seeds the training runs draw: the first ``data.count`` from 0) at ``--size``; a model of another size
is resized by the Engine the way a user gets it. Reported per model, as means over the scenes:

- ``psnr``: PSNR (dB) against the rendered scene when the whole scene is given as colour strokes
  (every stroke-grid cell filled, the trainer's validation setting);
- ``grid``: the block-grid score. Over pixel pairs that straddle a 9 x 9 stroke-grid cell edge
  with the same label on both sides, the mean absolute step in RGB, divided by the same mean over
  all other same-label neighbour pairs. 1 means the cell edges are invisible; a plateau per cell
  shows as a score well above 1. The rendered scenes' own score is reported as ``reference``;
- ``periodic``: the same steps averaged by their position within a grid cell (8 phase bins from
  one cell edge to the next), as (largest bin - smallest bin) / mean. Any structure that repeats
  with the stroke grid — hard cell edges or a soft bump per cell — raises it; the rendered scenes
  give the ``reference`` value;
- ``sharpness``: the mean absolute Laplacian of the gray output divided by the rendered scene's
  (1 = as much fine detail as the data; blur lowers it).

With ``--out``, saves ``generate_eval.png``: per scene a row of labels (legend colours) | sky
scribbles | each model without strokes, then with the scribbles | the rendered scene.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pyfill.engine import Engine
from training.landscapes import SKY, legend_image, render_landscape

SEED0 = 100_000
ORANGE = (245, 130, 30)


def _steps(image: np.ndarray, labels: np.ndarray, cells: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per neighbour direction: the mean absolute RGB steps between same-label neighbours, and
    each step's position within its stroke-grid cell (0 = the pair straddles a cell edge,
    1/2 = the middle of a cell), as flat arrays."""
    img = image.astype(np.float64)
    out = []
    for axis in (0, 1):
        n = img.shape[axis]
        step = np.abs(np.diff(img, axis=axis)).mean(axis=-1)
        same = np.diff(labels.astype(np.int64), axis=axis) == 0
        phase = (np.arange(1, n) * cells / n) % 1.0  # of the boundary between pixels i - 1 and i
        ph = np.broadcast_to(phase[:, None] if axis == 0 else phase[None, :], step.shape)
        out.append((step[same], ph[same]))
    return out


def grid_score(image: np.ndarray, labels: np.ndarray, cells: int = 9) -> float:
    """The block-grid score of a uint8 (H, W, 3) image over an (H, W) label map (module doc).
    A pair straddles a cell edge where the boundary's position in cells is within a pixel of
    the edge below it."""
    parts = _steps(image, labels, cells)
    n = image.shape[0], image.shape[1]
    at_edge = [ph < cells / size for (_, ph), size in zip(parts, n)]
    on = np.concatenate([st[e] for (st, _), e in zip(parts, at_edge)])
    off = np.concatenate([st[~e] for (st, _), e in zip(parts, at_edge)])
    return float(on.mean() / max(off.mean(), 1e-9))


def periodic_score(image: np.ndarray, labels: np.ndarray, cells: int = 9, bins: int = 8) -> float:
    """The cell-periodic variation of a uint8 (H, W, 3) image over an (H, W) label map (module doc)."""
    parts = _steps(image, labels, cells)
    step = np.concatenate([st for st, _ in parts])
    which = np.minimum((np.concatenate([ph for _, ph in parts]) * bins).astype(int), bins - 1)
    profile = np.bincount(which, step, bins) / np.maximum(np.bincount(which, minlength=bins), 1)
    return float((profile.max() - profile.min()) / max(profile.mean(), 1e-9))


def laplacian_energy(image: np.ndarray) -> float:
    """Mean absolute 3 x 3 Laplacian (``cv2.Laplacian``) of the gray image."""
    import cv2

    gray = cv2.cvtColor(np.ascontiguousarray(image), cv2.COLOR_RGB2GRAY).astype(np.float64)
    return float(np.abs(cv2.Laplacian(gray, cv2.CV_64F, ksize=1)).mean())


def sky_scribbles(labels: np.ndarray, colour: tuple[int, int, int] = ORANGE) -> np.ndarray:
    """Horizontal scribbles (1/85 of the height thick, at least 2 rows) every 1/6 of the height,
    kept to the sky: a few lines, as a user would draw them."""
    h = labels.shape[0]
    strokes = np.zeros((*labels.shape, 3), np.uint8)
    gap, width = max(h // 6, 4), max(h // 85, 2)
    for y in range(gap // 4, h, gap):
        strokes[y : y + width, labels.shape[1] // 32 : -labels.shape[1] // 32] = colour
    strokes[labels != SKY] = 0
    return strokes


def evaluate(models: Sequence[str | Path], size: int = 256, scenes: int = 16,
             out: Path | None = None, rows: int = 3) -> dict[str, dict[str, float]]:
    from skimage.metrics import peak_signal_noise_ratio

    engines = {Path(m).stem: Engine(m, backend="onnxruntime") for m in models}
    scores: dict[str, dict[str, list[float]]] = {k: {"psnr": [], "grid": [], "periodic": [], "sharpness": []} for k in engines}
    reference: dict[str, list[float]] = {"grid": [], "periodic": []}
    picture_rows = []
    for i in range(scenes):
        real, labels = render_landscape(size, size, SEED0 + i)
        reference["grid"].append(grid_score(real, labels))
        reference["periodic"].append(periodic_score(real, labels))
        full = np.ones(labels.shape, bool)
        scribbles = sky_scribbles(labels)
        row = [legend_image(labels), scribbles]
        for name, engine in engines.items():
            fake = engine(labels=labels, strokes=real, occupancy=full)
            scores[name]["psnr"].append(float(peak_signal_noise_ratio(real, fake, data_range=255)))
            scores[name]["grid"].append(grid_score(fake, labels))
            scores[name]["periodic"].append(periodic_score(fake, labels))
            scores[name]["sharpness"].append(laplacian_energy(fake) / laplacian_energy(real))
            if out is not None and i < rows:
                row += [engine(labels=labels), engine(labels=labels, strokes=scribbles)]
        picture_rows.append(row + [real])
    table = {name: {k: float(np.mean(v)) for k, v in s.items()} for name, s in scores.items()}
    table["reference"] = {k: float(np.mean(v)) for k, v in reference.items()}
    if out is not None:
        from training.harness import save_image_grid

        out.mkdir(parents=True, exist_ok=True)
        save_image_grid([[im / 255.0 for im in row] for row in picture_rows[:rows]], out / "generate_eval.png")
    return table


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.evaluate_generate", description=__doc__.split("\n\n")[0])
    parser.add_argument("models", nargs="+", help="ONNX files or pretrained names")
    parser.add_argument("--size", type=int, default=256)
    parser.add_argument("--scenes", type=int, default=16)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args(argv)
    table = evaluate(args.models, args.size, args.scenes, args.out)
    for name, row in table.items():
        print(f"{name:>24}: " + ", ".join(f"{k} {v:.3f}" for k, v in row.items()))
    if args.out is not None:
        (args.out / "generate_eval.json").write_text(json.dumps(table, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
