"""Restoration (SPEC S3): deblur, denoise and de-JPEG any image, keeping its form."""

from __future__ import annotations

from typing import Any

import numpy as np

from pyfill.engine import Engine
from pyfill.tasks._common import get_engine, join_alpha, split_alpha, to_array

TASKS = ("restore", "image-to-image")


def restore_engine(model: str | Engine = "restore", *, backend: str = "auto", static_shapes: bool = False,
                   tile: int | None = None, throughput: bool = False) -> Engine:
    """The cached Engine :func:`restore` runs (a restoration or other image-to-image model)."""
    return get_engine(model, TASKS, "restore", backend=backend, static_shapes=static_shapes, tile=tile,
                      throughput=throughput)


def restore(image: Any, *, model: str | Engine = "restore", backend: str = "auto", tile: int | None = None) -> np.ndarray:
    """Restore one image.

    Args:
        image: NumPy uint8 / uint16 / float (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA, or a
            PIL image (decoded like an image file).
        model: a model name, a model file or an Engine (default: the shipped ``restore``).
        tile: None = the model's advice; 0 = never tile; N = tiles of N pixels.

    Returns the restored image in the input's form: the same dtype, gray stays gray (the mean
    of the restored channels), alpha is kept as it was. An upscaler returns the larger size
    (alpha is then resized with nearest neighbours).
    """
    arr = to_array(image)
    engine = restore_engine(model, backend=backend, tile=tile)
    return finish_restored(arr, engine(split_alpha(arr)[0]))


def finish_restored(source: np.ndarray, restored: np.ndarray) -> np.ndarray:
    """Bring the engine's RGB result back to the source's form (gray stays gray, alpha kept)."""
    colour, alpha = split_alpha(source)
    if colour.ndim == 2 and restored.ndim == 3:
        mean = restored.astype(np.float64).mean(axis=-1)
        restored = mean.astype(colour.dtype) if colour.dtype.kind == "f" else np.rint(mean).astype(colour.dtype)
    if alpha is not None and alpha.shape[:2] != restored.shape[:2]:
        sy, sx = restored.shape[0] // alpha.shape[0], restored.shape[1] // alpha.shape[1]
        alpha = np.repeat(np.repeat(alpha, sy, axis=0), sx, axis=1)
    return join_alpha(restored, alpha)
