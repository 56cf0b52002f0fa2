"""Tiling: run a model on overlapping tiles of a large input and blend them seamlessly."""

from __future__ import annotations

import math
from typing import Any, Callable

import numpy as np

from pyfill.engine.processing import _torch_mod, is_torch


def tile_layout(length: int, tile: int, overlap: int) -> tuple[list[int], int]:
    """(start offsets, tile size) of the fewest tiles of at most ``tile`` pixels that cover
    [0, length) with neighbours overlapping by at least ``overlap``; the size is shrunk so the
    tiles are evenly spread and no work is spent on needless overlap."""
    if length <= tile:
        return [0], length
    n = math.ceil((length - overlap) / (tile - overlap))
    size = min(tile, math.ceil((length + (n - 1) * overlap) / n))
    return [round(i * (length - size) / (n - 1)) for i in range(n)], size


def _ramp(tile: int, overlap: int, ramp_start: bool, ramp_end: bool) -> np.ndarray:
    w = np.ones(tile, dtype=np.float32)
    if overlap > 0:
        r = 0.5 - 0.5 * np.cos(np.pi * (np.arange(overlap, dtype=np.float32) + 0.5) / overlap)
        if ramp_start:
            w[:overlap] = r
        if ramp_end:
            w[tile - overlap:] = r[::-1]
    return w


def run_tiled(run: Callable[[Any], Any], x: Any, tile: int, overlap: int, multiple_of: int,
              max_batch: int = 8, progress: Callable[[int, int], None] | None = None) -> Any:
    """Run ``run`` on overlapping tiles of ``x`` (N, C, H, W) and blend the results.

    Core tiles of at most ``tile`` pixels (see :func:`tile_layout`) overlap by ``overlap`` and
    are blended with a raised-cosine window there. Each tile is run with ``overlap`` extra
    pixels of context on every side (its input start aligned to ``multiple_of`` so strided
    layers see the same grid as a whole-image run), and the context is cropped away, so no used
    pixel sits next to an artificial edge. ``run`` maps (B, C, th, tw) -> (B, C', s*th, s*tw)
    for an integer scale s.

    Tiles whose input windows have the same shape (all interior tiles, and the border tiles of
    each side) run together as one batch of up to ``max_batch`` tiles per image, so a large image
    costs a few runtime calls instead of one per tile. ``progress(done, total)`` is called as
    tiles finish.
    """
    n, _, h, w = x.shape
    tile = max(multiple_of, tile // multiple_of * multiple_of)
    overlap = min(overlap, tile // 2)
    (ys, th), (xs, tw) = tile_layout(h, tile, overlap), tile_layout(w, tile, overlap)
    windows = []
    for y0 in ys:
        for x0 in xs:
            iy0 = max(0, (y0 - overlap) // multiple_of * multiple_of)
            ix0 = max(0, (x0 - overlap) // multiple_of * multiple_of)
            windows.append((y0, x0, iy0, ix0, min(h, y0 + th + overlap), min(w, x0 + tw + overlap)))
    groups: dict[tuple[int, int], list[tuple[int, ...]]] = {}
    for win in windows:
        groups.setdefault((win[4] - win[2], win[5] - win[3]), []).append(win)
    acc: Any = None
    weight: Any = None
    done = 0
    per_call = max(1, max_batch)
    for (wh, ww), members in groups.items():
        for start in range(0, len(members), per_call):
            chunk = members[start:start + per_call]
            crops = [x[:, :, iy0:iy0 + wh, ix0:ix0 + ww] for _, _, iy0, ix0, _, _ in chunk]
            stacked = _torch_mod().cat(crops) if is_torch(x) else np.concatenate(crops)
            outs = run(stacked)
            s = outs.shape[-1] // ww
            for k, (y0, x0, iy0, ix0, _, _) in enumerate(chunk):
                out = outs[k * n:(k + 1) * n]
                core = out[:, :, (y0 - iy0) * s:(y0 - iy0 + th) * s, (x0 - ix0) * s:(x0 - ix0 + tw) * s]
                if acc is None:
                    acc = _zeros_like_out(core, (n, core.shape[1], h * s, w * s))
                    weight = _zeros_like_out(core, (h * s, w * s))
                wy = _ramp(th * s, overlap * s, y0 > 0, y0 + th < h)
                wx = _ramp(tw * s, overlap * s, x0 > 0, x0 + tw < w)
                win = wy[:, None] * wx[None, :]
                if is_torch(acc):
                    win = _torch_mod().from_numpy(win).to(acc.device, acc.dtype)
                acc[:, :, y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += core * win
                weight[y0 * s:(y0 + th) * s, x0 * s:(x0 + tw) * s] += win
            done += len(chunk)
            if progress is not None:
                progress(done, len(windows))
    return acc / weight


def _zeros_like_out(ref: Any, shape: tuple[int, ...]) -> Any:
    if is_torch(ref):
        return _torch_mod().zeros(shape, dtype=ref.dtype, device=ref.device)
    return np.zeros(shape, dtype=np.float32)
