"""NumPy/SciPy reference of the stroke-grid features (SPEC S2), written from the definition.

Components come from ``scipy.ndimage.label`` with an 8-connected structure; everything else is
plain loops over components and cells. Values are computed in float64 and rounded to float32
once, as the kernels do. Single images only: (H, W, 3) in, (S1, S2, 8) out.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

_MASK64 = (1 << 64) - 1


def cell_edges(n: int, s: int) -> list[int]:
    """Edges floor(i * n / s) for i = 0..s: cell i spans [edges[i], edges[i + 1])."""
    return [i * n // s for i in range(s + 1)]


def _cell_index(p: int, edges: list[int]) -> int:
    return next(i for i in range(len(edges) - 1) if edges[i] <= p < edges[i + 1])


def _scale(image: np.ndarray) -> float:
    return 255.0 if image.dtype == np.uint8 else 1.0


def stroke_grid(image: np.ndarray, occupancy: np.ndarray | None = None, grid: tuple[int, int] = (9, 9)) -> np.ndarray:
    """(H, W, 3) uint8 or float32 strokes, optional (H, W) bool occupancy -> float32 (S1, S2, 8)."""
    h, w, _ = image.shape
    s1, s2 = grid
    occ = np.asarray((image > 0).any(axis=2) if occupancy is None else occupancy, dtype=bool)
    rows, cols = cell_edges(h, s1), cell_edges(w, s2)
    out = np.zeros((s1, s2, 8), np.float64)

    labels, _ = ndimage.label(occ, structure=np.ones((3, 3), int))
    boxes: dict[tuple[int, int], list[int]] = {}
    for sl in ndimage.find_objects(labels):
        y0, y1, x0, x1 = sl[0].start, sl[0].stop, sl[1].start, sl[1].stop
        cell = (_cell_index(y0, rows), _cell_index(x0, cols))
        box = boxes.setdefault(cell, [x0, y0, x1, y1])
        boxes[cell] = [min(box[0], x0), min(box[1], y0), max(box[2], x1), max(box[3], y1)]

    for i in range(s1):
        for j in range(s2):
            cy0, cy1, cx0, cx1 = rows[i], rows[i + 1], cols[j], cols[j + 1]
            inside = occ[cy0:cy1, cx0:cx1]
            n = int(inside.sum())
            if n:
                out[i, j, 0] = 1.0
                pixels = image[cy0:cy1, cx0:cx1][inside]
                sums = pixels.astype(np.int64 if image.dtype == np.uint8 else np.float64).sum(axis=0)
                out[i, j, 5:8] = [s / (n * _scale(image)) for s in sums]
            if (i, j) in boxes:
                x0, y0, x1, y1 = boxes[(i, j)]
                out[i, j, 1:5] = [(x0 - cx0) / (cx1 - cx0), (y0 - cy0) / (cy1 - cy0), (x1 - x0) / w, (y1 - y0) / h]
    return out.astype(np.float32)


def splitmix64(z: int) -> int:
    z = (z + 0x9E3779B97F4A7C15) & _MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def dropped_cells(n: int, k: int, seed: int, image: int) -> list[int]:
    """The k of n row-major cell indices zeroed for image `image` of a batch (partial Fisher-Yates
    over splitmix64(splitmix64(splitmix64(seed) + image) + t), index from the high 32 bits)."""
    perm = list(range(n))
    base = splitmix64(seed)
    for t in range(k):
        r = splitmix64((splitmix64((base + image) & _MASK64) + t) & _MASK64)
        j = t + (((r >> 32) * (n - t)) >> 32)
        perm[t], perm[j] = perm[j], perm[t]
    return perm[:k]


def stroke_grid_from_image(
    image: np.ndarray, grid: tuple[int, int] = (9, 9), drop: float = 0.75, seed: int = 0, index: int = 0
) -> np.ndarray:
    """Training synthesis for image `index` of a batch: (H, W, 3) -> float32 (S1, S2, 8)."""
    h, w, _ = image.shape
    s1, s2 = grid
    rows, cols = cell_edges(h, s1), cell_edges(w, s2)
    out = np.zeros((s1, s2, 8), np.float64)
    for i in range(s1):
        for j in range(s2):
            cell = image[rows[i]:rows[i + 1], cols[j]:cols[j + 1]].reshape(-1, 3)
            sums = cell.astype(np.int64 if image.dtype == np.uint8 else np.float64).sum(axis=0)
            out[i, j, 0] = 1.0
            out[i, j, 3] = (cols[j + 1] - cols[j]) / w
            out[i, j, 4] = (rows[i + 1] - rows[i]) / h
            out[i, j, 5:8] = [s / (len(cell) * _scale(image)) for s in sums]
    for c in dropped_cells(s1 * s2, round(drop * s1 * s2), seed, index):
        out[c // s2, c % s2] = 0.0
    return out.astype(np.float32)
