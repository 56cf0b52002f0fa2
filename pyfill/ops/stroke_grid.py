"""Stroke-grid colour features (SPEC S2): the drawing board's strokes as an S1 x S2 x 8 grid.

Cell (i, j) covers rows ``[floor(i*H/S1), floor((i+1)*H/S1))`` and columns
``[floor(j*W/S2), floor((j+1)*W/S2))``. Strokes are 8-connected components of occupied pixels; a
stroke belongs to the cell holding the top-left corner (min column, min row) of its bounding box.
Per cell, channels ``(mask, x, y, w, h, r, g, b)``:

- ``mask``: 1 if any occupied pixel lies in the cell, else 0;
- ``x, y``: offset of the union box of the cell's strokes from the cell's top-left corner, in
  cell widths / heights; ``w, h``: that box's size as a fraction of the image width / height
  (zero when no stroke belongs to the cell; the box may extend past the cell);
- ``r, g, b``: mean colour of the occupied pixels in the cell, in [0, 1] (zero if none).

NumPy arrays and CPU torch tensors run the C++ kernel; torch CUDA tensors (and CuPy arrays) run
the CUDA kernel and get a result of the same library on the same device.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np

from pyfill._core import _C
from pyfill.ops._arrays import (
    CudaView,
    check_seed,
    cuda_empty,
    cuda_view,
    is_cuda_array,
    require_cuda_kernels,
    to_host,
)

__all__ = ["stroke_grid", "stroke_grid_from_image", "stroke_grid_latent"]

CHANNELS = 8


def _grid_pair(grid: Any) -> tuple[int, int]:
    try:
        s1, s2 = grid
        pair = (operator.index(s1), operator.index(s2))
    except (TypeError, ValueError) as exc:
        raise TypeError(f"grid: expected a pair of ints (S1, S2), got {grid!r}") from exc
    if isinstance(s1, bool) or isinstance(s2, bool):
        raise TypeError(f"grid: expected a pair of ints (S1, S2), got {grid!r}")
    return pair


def _check_shape(shape: tuple[int, ...], name: str, grid: tuple[int, int]) -> tuple[int, int, int]:
    """Validate an image shape (H, W, 3) or (B, H, W, 3) against the grid; return (B, H, W)."""
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(f"{name}: expected shape (H, W, 3) or (B, H, W, 3), got {tuple(shape)}")
    h, w = shape[-3], shape[-2]
    if h == 0 or w == 0:
        raise ValueError(f"{name}: image is empty (shape {tuple(shape)})")
    s1, s2 = grid
    if not (1 <= s1 <= h and 1 <= s2 <= w):
        raise ValueError(f"grid: {grid} must be between 1 and the image size ({h}, {w}) on each axis")
    return (shape[0] if len(shape) == 4 else 1), h, w


def _host_pixels(arr: np.ndarray, name: str) -> np.ndarray:
    """uint8 stays; other integers must lie in [0, 255] (-> uint8); floats in [0, 1] (-> float32)."""
    if arr.dtype == np.uint8:
        return np.ascontiguousarray(arr)
    if arr.dtype.kind in "iu":
        if arr.size and (arr.min() < 0 or arr.max() > 255):
            raise ValueError(f"{name}: integer pixels must lie in [0, 255]")
        return np.ascontiguousarray(arr, dtype=np.uint8)
    if arr.dtype.kind == "f":
        if arr.size and not bool(np.all((arr >= 0) & (arr <= 1))):
            bad = "NaN" if np.isnan(arr).any() else "values outside [0, 1]"
            raise ValueError(f"{name}: float pixels must lie in [0, 1]; found {bad}")
        return np.ascontiguousarray(arr, dtype=np.float32)
    raise TypeError(f"{name}: expected uint8 or float pixels, got dtype {arr.dtype}")


def _host_occupancy(occ: np.ndarray, batched_shape: tuple[int, int, int], single: bool) -> np.ndarray:
    expected = batched_shape[1:] if single else batched_shape
    if tuple(occ.shape) != tuple(expected):
        raise ValueError(f"occupancy: expected shape {tuple(expected)} to match strokes, got {tuple(occ.shape)}")
    if occ.dtype == np.bool_ or occ.dtype == np.uint8:
        return np.ascontiguousarray(occ).reshape(batched_shape)
    if occ.dtype.kind in "iu":
        return np.ascontiguousarray(occ != 0).reshape(batched_shape)
    raise TypeError(f"occupancy: expected a bool or integer mask, got dtype {occ.dtype}")


def stroke_grid(strokes: Any, occupancy: Any = None, grid: tuple[int, int] = (9, 9)) -> Any:
    """Stroke-grid colour features of one stroke image or a batch.

    Args:
        strokes: RGB strokes on a black background, (H, W, 3) or (B, H, W, 3); uint8 in
            [0, 255] (other integer dtypes in that range are converted) or float in [0, 1]
            (NaN and values outside [0, 1] are refused).
        occupancy: which pixels are stroke pixels, (H, W) or (B, H, W), bool or integer
            (nonzero = occupied); None: pixels with any channel > 0. Needed for black strokes.
        grid: (S1, S2) cells along rows and columns, each between 1 and the image size.

    Returns:
        float32 (S1, S2, 8) or (B, S1, S2, 8), channels (mask, x, y, w, h, r, g, b); a NumPy
        array for NumPy input, a torch tensor for torch input (CUDA in, CUDA out).
    """
    s1, s2 = _grid_pair(grid)
    if is_cuda_array(strokes):
        return _stroke_grid_cuda(strokes, occupancy, (s1, s2))
    if occupancy is not None and is_cuda_array(occupancy):
        raise ValueError("occupancy: is a CUDA array but strokes are on the host; put both on one device")
    arr, back = to_host(strokes, "strokes")
    pixels = _host_pixels(arr, "strokes")
    b, h, w = _check_shape(arr.shape, "strokes", (s1, s2))
    single = arr.ndim == 3
    pixels = pixels.reshape(b, h, w, 3)
    occ = None
    if occupancy is not None:
        occ_arr, _ = to_host(occupancy, "occupancy")
        occ = _host_occupancy(occ_arr, (b, h, w), single)
    out = _C.stroke_grid_cpu(pixels, occ, s1, s2)
    return back(out[0] if single else out)


def _dropped_cells(drop: Any, cells: int) -> int:
    try:
        drop = float(drop)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"drop: expected a number in [0, 1], got {drop!r}") from exc
    if not 0.0 <= drop <= 1.0:
        raise ValueError(f"drop: expected a fraction in [0, 1], got {drop}")
    return round(drop * cells)


def stroke_grid_from_image(images: Any, grid: tuple[int, int] = (9, 9), drop: float = 0.75, seed: int = 0) -> Any:
    """Training synthesis of stroke-grid features from ground-truth images.

    Every cell gets mask 1, the whole cell as its rect (x = y = 0, w = cell width / W,
    h = cell height / H) and the mean colour of all its pixels; then exactly
    ``round(drop * S1 * S2)`` cells per image (Python's ``round``), drawn uniformly without
    replacement from a counter-based generator keyed by (seed, index of the image in the batch),
    are set to all-zero. The same seed gives the same cells on the CPU and on CUDA.

    Args:
        images: (H, W, 3) or (B, H, W, 3) RGB, uint8 in [0, 255] or float in [0, 1].
        grid: (S1, S2) cells, each between 1 and the image size.
        drop: fraction of cells to zero, in [0, 1].
        seed: int in [0, 2**64).

    Returns:
        float32 (S1, S2, 8) or (B, S1, S2, 8), same library and device as ``images``.
    """
    s1, s2 = _grid_pair(grid)
    dropped = _dropped_cells(drop, s1 * s2)
    seed = check_seed(seed)
    if is_cuda_array(images):
        return _from_image_cuda(images, (s1, s2), dropped, seed)
    arr, back = to_host(images, "images")
    pixels = _host_pixels(arr, "images")
    b, h, w = _check_shape(arr.shape, "images", (s1, s2))
    pixels = pixels.reshape(b, h, w, 3)
    out = _C.stroke_grid_from_image_cpu(pixels, s1, s2, dropped, seed)
    return back(out[0] if arr.ndim == 3 else out)


def stroke_grid_latent(features: Any) -> Any:
    """The generator latent: the row-major flattening of stroke-grid features.

    Args:
        features: (B, S1, S2, 8) or (S1, S2, 8), as returned by :func:`stroke_grid`.

    Returns:
        (B, S1 * S2 * 8) or (S1 * S2 * 8,) of the same library, dtype and device (648 values per
        image for the default 9 x 9 grid).
    """
    shape = tuple(getattr(features, "shape", ()))
    if len(shape) not in (3, 4) or shape[-1] != CHANNELS:
        raise ValueError(f"features: expected shape (B, S1, S2, 8) or (S1, S2, 8), got {shape}")
    flat = math.prod(shape[-3:])
    return features.reshape((shape[0], flat) if len(shape) == 4 else (flat,))


# ---- CUDA dispatch ---------------------------------------------------------------------------


def _contiguous_cuda(x: Any) -> Any:
    return x.contiguous() if hasattr(x, "contiguous") and callable(x.contiguous) else x


def _cuda_pixels(x: Any, name: str, grid: tuple[int, int]) -> tuple[CudaView, tuple[int, int, int]]:
    view = cuda_view(_contiguous_cuda(x), name)
    b, h, w = _check_shape(view.shape, name, grid)
    if view.dtype == np.float32:
        if not bool(((view.owner >= 0) & (view.owner <= 1)).all()):
            raise ValueError(f"{name}: float pixels must lie in [0, 1] (found NaN or values outside)")
    elif view.dtype != np.uint8:
        raise TypeError(f"{name}: CUDA input must be uint8 or float32, got {view.dtype}")
    return view, (b, h, w)


def _stroke_grid_cuda(strokes: Any, occupancy: Any, grid: tuple[int, int]) -> Any:
    require_cuda_kernels("stroke_grid")
    view, (b, h, w) = _cuda_pixels(strokes, "strokes", grid)
    single = len(view.shape) == 3
    occ_ptr = 0
    occ_view = None
    if occupancy is not None:
        if not is_cuda_array(occupancy):
            raise ValueError("occupancy: strokes are on a CUDA device but occupancy is not; put both on one device")
        occ_view = cuda_view(_contiguous_cuda(occupancy), "occupancy")
        expected = (h, w) if single else (b, h, w)
        if occ_view.shape != expected:
            raise ValueError(f"occupancy: expected shape {expected} to match strokes, got {occ_view.shape}")
        if occ_view.device != view.device:
            raise ValueError("occupancy: must be on the same CUDA device as strokes")
        if occ_view.dtype.kind not in "biu":
            raise TypeError(f"occupancy: expected a bool or integer mask, got dtype {occ_view.dtype}")
        if occ_view.dtype.itemsize != 1:
            occ_view = cuda_view(occ_view.owner != 0, "occupancy")
        occ_ptr = occ_view.ptr
    s1, s2 = grid
    out = cuda_empty(view, (b, s1, s2, CHANNELS), np.float32)
    labels = cuda_empty(view, (b * h * w,), np.int32)
    boxes = cuda_empty(view, (4 * b * s1 * s2,), np.int32)
    _C.stroke_grid_cuda(
        view.ptr, view.dtype == np.float32, occ_ptr, cuda_view(out, "out").ptr, cuda_view(labels, "labels").ptr,
        cuda_view(boxes, "boxes").ptr, b, h, w, s1, s2, view.device, view.stream,
    )
    return out[0] if single else out


def _from_image_cuda(images: Any, grid: tuple[int, int], dropped: int, seed: int) -> Any:
    require_cuda_kernels("stroke_grid_from_image")
    view, (b, h, w) = _cuda_pixels(images, "images", grid)
    s1, s2 = grid
    out = cuda_empty(view, (b, s1, s2, CHANNELS), np.float32)
    perm = cuda_empty(view, (b * s1 * s2,), np.int32)
    _C.stroke_grid_from_image_cuda(
        view.ptr, view.dtype == np.float32, cuda_view(out, "out").ptr, cuda_view(perm, "perm").ptr,
        b, h, w, s1, s2, dropped, seed, view.device, view.stream,
    )
    return out[0] if len(view.shape) == 3 else out
