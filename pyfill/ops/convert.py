"""Image layout conversion for the Engine's per-call path, one compiled pass each way.

``image_to_chw``: uint8 (H, W, C) -> float32 (C, H, W), ``v * scale + offset`` (the model's value
range folded in). ``chw_to_image``: float32 (C, H, W) -> uint8 (H, W, C), ``v * scale + offset``
rounded half to even and clamped to [0, 255] (NaN -> 0). CPU only (on CUDA the Engine converts
with torch on the device). NumPy references: :mod:`pyfill.ops.reference.convert`.
"""

from __future__ import annotations

import numpy as np

from pyfill._core import _C


def image_to_chw(image: np.ndarray, scale: float = 1.0 / 255.0, offset: float = 0.0) -> np.ndarray:
    """uint8 (H, W, C) -> float32 (C, H, W) = image * scale + offset."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3:
        raise TypeError(f"image_to_chw takes a uint8 (H, W, C) NumPy array, got "
                        f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}")
    if image.size == 0:
        raise ValueError(f"image_to_chw: empty image of shape {image.shape}")
    return _C.image_u8_to_chw(np.ascontiguousarray(image), float(scale), float(offset))


def chw_to_image(x: np.ndarray, scale: float = 255.0, offset: float = 0.0) -> np.ndarray:
    """float32 (C, H, W) -> uint8 (H, W, C) = clamp(rint(x * scale + offset), 0, 255); NaN -> 0."""
    if not isinstance(x, np.ndarray) or x.dtype != np.float32 or x.ndim != 3:
        raise TypeError(f"chw_to_image takes a float32 (C, H, W) NumPy array, got "
                        f"{type(x).__name__} {getattr(x, 'dtype', '')} {getattr(x, 'shape', '')}")
    if x.size == 0:
        raise ValueError(f"chw_to_image: empty array of shape {x.shape}")
    return _C.chw_to_image_u8(np.ascontiguousarray(x), float(scale), float(offset))
