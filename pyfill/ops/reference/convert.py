"""NumPy references of :mod:`pyfill.ops.convert` (float32 arithmetic, as the kernels do)."""

from __future__ import annotations

import numpy as np


def image_to_chw(image: np.ndarray, scale: float, offset: float) -> np.ndarray:
    return image.transpose(2, 0, 1).astype(np.float32) * np.float32(scale) + np.float32(offset)


def chw_to_image(x: np.ndarray, scale: float, offset: float) -> np.ndarray:
    v = x.transpose(1, 2, 0) * np.float32(scale) + np.float32(offset)
    v = np.where(np.isnan(v), 0, np.clip(v, 0, 255))
    return np.rint(v).astype(np.uint8)
