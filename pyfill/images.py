"""Image files for the command line: decode to NumPy keeping bit depth and alpha, and write
back (16-bit colour as PNG, which Pillow cannot write, through a small encoder here).

Uses Pillow (a dependency of pyfill, imported only here).
"""

from __future__ import annotations

import os
import struct
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
_WRITABLE_8BIT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


def read_image(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file -> uint8 or uint16 array: (H, W) gray, (H, W, 3) RGB or
    (H, W, 4) RGBA (see :func:`pil_to_array`).

    Raises ValueError for a file that is not a readable image.
    """
    image_mod = require("PIL.Image", "core")
    try:
        with image_mod.open(path) as im:
            im.load()
            frames = getattr(im, "n_frames", 1)
            if frames > 1:
                warnings.warn(f"{path}: an animated image of {frames} frames; only the first is used "
                              f"(use pyfill video for frame sequences)", stacklevel=2)
            return pil_to_array(im)
    except (OSError, SyntaxError, ValueError) as exc:
        raise ValueError(f"{path}: not a readable image ({exc})") from exc


def pil_to_array(im: Any) -> np.ndarray:
    """A PIL image -> uint8 or uint16 array: (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA.
    16-bit gray stays uint16; palette and gray+alpha images become RGB(A)."""
    mode = im.mode
    if mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(im)
        if arr.min() < 0 or arr.max() > 65535:
            raise ValueError("32-bit integer pixel values outside [0, 65535]")
        return arr.astype(np.uint16)
    if mode in ("L", "RGB", "RGBA"):
        return np.asarray(im).copy()
    if mode == "1":
        return np.asarray(im.convert("L")).copy()
    has_alpha = "A" in im.getbands() or (mode == "P" and "transparency" in im.info)
    return np.asarray(im.convert("RGBA" if has_alpha else "RGB")).copy()


def output_suffix(source_suffix: str, array: np.ndarray) -> str:
    """The suffix to write ``array`` with: the source's when it can hold the data (8-bit, and
    no alpha for JPEG/BMP/PPM), else ``.png``."""
    s = source_suffix.lower()
    if array.dtype == np.uint16 or s not in _WRITABLE_8BIT:
        return ".png"
    if array.ndim == 3 and array.shape[-1] == 4 and s in (".jpg", ".jpeg", ".bmp", ".ppm"):
        return ".png"
    return s


DEFAULT_QUALITY = 95


def write_image(path: str | os.PathLike[str], array: np.ndarray, quality: int = DEFAULT_QUALITY) -> Path:
    """Write a uint8 or uint16 (H, W), (H, W, 3) or (H, W, 4) array. uint16 images must go to a
    ``.png`` path (written as 16-bit PNG). ``quality`` (1..100) applies to JPEG (written without
    chroma subsampling) and WebP."""
    path = Path(path)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_image takes uint8 or uint16 arrays, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if array.dtype == np.uint16:
        if path.suffix.lower() != ".png":
            raise ValueError(f"{path}: 16-bit images are written as .png")
        path.write_bytes(encode_png16(array))
        return path
    if not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    image_mod = require("PIL.Image", "core")
    options: dict[str, Any] = {}
    if path.suffix.lower() in (".jpg", ".jpeg"):
        options = {"quality": quality, "subsampling": 0}
    elif path.suffix.lower() == ".webp":
        options = {"quality": quality}
    image_mod.fromarray(array).save(str(path), **options)
    return path


def encode_png16(array: np.ndarray) -> bytes:
    """A 16-bit PNG (gray, RGB or RGBA) of a uint16 (H, W), (H, W, 3) or (H, W, 4) array."""
    a = array if array.ndim == 3 else array[..., None]
    h, w, c = a.shape
    colour_type = {1: 0, 3: 2, 4: 6}[c]
    rows = a.astype(">u2").reshape(h, w * c).view(np.uint8)
    raw = np.concatenate([np.zeros((h, 1), np.uint8), rows], axis=1).tobytes()

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", w, h, 16, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw, 6)) + chunk(b"IEND", b"")
