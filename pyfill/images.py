"""Image files for the command line: decode to NumPy keeping bit depth and alpha, and write
back (16-bit colour as PNG, which Pillow cannot write, through a small encoder here).

Uses Pillow (a dependency of pyfill, imported only here).
"""

from __future__ import annotations

import os
import struct
import threading
import warnings
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")
_WRITABLE_8BIT = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".ppm")


# The largest image (width x height) read_image decodes unless told otherwise: 100 megapixels,
# i.e. 300 MB of 8-bit RGB (a 10,000 x 10,000 photo). A file declaring more is refused from its
# header, before any pixel memory is allocated. Raise it with the environment variable or the
# ``max_pixels`` argument of :func:`read_image`.
DEFAULT_MAX_PIXELS = 100_000_000
MAX_PIXELS_ENV = "PYFILL_MAX_IMAGE_PIXELS"
# Pillow's own decompression-bomb limit is a process-wide setting; it is lifted (under this lock)
# only while opening a file that pyfill's limit allows and Pillow's does not.
_PIL_LIMIT_LOCK = threading.Lock()


class ImageTooLargeError(ValueError):
    """An image file declares more pixels than the reader's limit (a decompression bomb)."""


def max_image_pixels() -> int:
    """The pixel limit of :func:`read_image`: ``$PYFILL_MAX_IMAGE_PIXELS`` (a positive integer)
    when set, else :data:`DEFAULT_MAX_PIXELS`."""
    text = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not text:
        return DEFAULT_MAX_PIXELS
    try:
        value = int(text.replace("_", ""))
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"{MAX_PIXELS_ENV}={text!r}: expected a positive number of pixels")
    return value


def read_image(path: str | os.PathLike[str], max_pixels: int | None = None) -> np.ndarray:
    """Decode an image file -> uint8 or uint16 array: (H, W) gray, (H, W, 3) RGB or
    (H, W, 4) RGBA (see :func:`pil_to_array`).

    The EXIF orientation of a photo is applied (the array is upright as a viewer shows it). Of
    an animated image (GIF, APNG, WebP) the first frame is read, with a warning. A file whose
    header declares more than ``max_pixels`` pixels (default :func:`max_image_pixels`: 100
    million, or ``$PYFILL_MAX_IMAGE_PIXELS``) is refused with :class:`ImageTooLargeError` before
    it is decoded.

    Raises FileNotFoundError for a missing file, ValueError for a file that is not a readable
    image (truncated, corrupt, an unknown format) or too large.
    """
    limit = max_image_pixels() if max_pixels is None else int(max_pixels)
    if limit < 1:
        raise ValueError(f"max_pixels must be >= 1, got {max_pixels}")
    if isinstance(path, (str, os.PathLike)) and not Path(path).is_file():
        raise FileNotFoundError(f"image file not found: {path}")
    image_mod: Any = require("PIL.Image", "core")
    try:
        try:
            return _decode(image_mod, path, limit)
        except image_mod.DecompressionBombError:
            # Pillow's process-wide limit is below the one asked for: open once without it.
            with _PIL_LIMIT_LOCK:
                saved = image_mod.MAX_IMAGE_PIXELS
                image_mod.MAX_IMAGE_PIXELS = None
                try:
                    return _decode(image_mod, path, limit)
                finally:
                    image_mod.MAX_IMAGE_PIXELS = saved
    except ImageTooLargeError:
        raise
    except (OSError, SyntaxError, ValueError, EOFError, struct.error, IndexError,
            image_mod.DecompressionBombError) as exc:
        # IndexError: Pillow's GIF reader indexes past a truncated extension block while it
        # looks for a second frame (found by benchmarks/fuzz.py)
        raise ValueError(f"{path}: not a readable image ({type(exc).__name__}: {exc})") from exc


def _decode(image_mod: Any, path: Any, limit: int) -> np.ndarray:
    if hasattr(path, "seek"):
        path.seek(0)
    with warnings.catch_warnings():
        # pyfill's limit replaces Pillow's warning threshold.
        warnings.simplefilter("ignore", image_mod.DecompressionBombWarning)
        with image_mod.open(path) as im:
            w, h = im.size
            if w * h > limit:
                raise ImageTooLargeError(
                    f"{path}: the image declares {w} x {h} = {w * h:,} pixels, over the limit of {limit:,} "
                    f"(raise it with read_image(..., max_pixels=N) or the environment variable {MAX_PIXELS_ENV})"
                )
            if w < 1 or h < 1:
                raise ValueError(f"{path}: the image declares an empty size {w} x {h}")
            if getattr(im, "is_animated", False):
                warnings.warn(f"{path}: an animated image of {im.n_frames} frames; only the first is used "
                              f"(use pyfill video for frame sequences)", stacklevel=3)
                im.seek(0)
            if im.format == "PNG" and im.mode in ("RGB", "RGBA") and any(
                    str(t[3]).endswith(";16B") for t in im.tile if len(t) > 3):
                deep = _png16_colour(path, im)
                if deep is not None:
                    return deep
            im.load()
            ops = require("PIL.ImageOps", "core")
            upright = ops.exif_transpose(im)
            return pil_to_array(upright if upright is not None else im)


# EXIF orientation -> the NumPy steps that make the array upright (as PIL.ImageOps.exif_transpose).
_ORIENT = {
    2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
    5: lambda a: a.swapaxes(0, 1), 6: lambda a: np.rot90(a, -1), 7: lambda a: a[::-1, ::-1].swapaxes(0, 1),
    8: lambda a: np.rot90(a, 1),
}


def _png16_colour(path: Any, im: Any) -> np.ndarray | None:
    """A 16-bit RGB(A) PNG as uint16 (Pillow decodes these to 8 bits), through OpenCV; None with
    a warning where OpenCV is not installed."""
    try:
        import cv2
    except ImportError:
        warnings.warn(f"{path}: a 16-bit colour PNG is read as 8-bit; install opencv-python-headless "
                      "to keep its 16 bits", stacklevel=4)
        return None
    if hasattr(path, "read"):
        path.seek(0)
        data = path.read()
    else:
        data = Path(path).read_bytes()
    arr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None or arr.dtype != np.uint16 or arr.ndim != 3:
        raise ValueError("OpenCV could not decode the 16-bit PNG")
    arr = arr[..., [2, 1, 0, 3][: arr.shape[-1]]]
    orient = _ORIENT.get(im.getexif().get(0x0112, 1))
    return np.ascontiguousarray(orient(arr) if orient else arr)


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
    chroma subsampling) and WebP.

    The file is written whole or not at all: into a temporary file beside it, renamed over
    ``path`` when complete, so an interrupted run never leaves a truncated image behind."""
    path = Path(path)
    if array.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"write_image takes uint8 or uint16 arrays, got {array.dtype}")
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[-1] not in (3, 4)):
        raise ValueError(f"expected (H, W), (H, W, 3) or (H, W, 4), got shape {array.shape}")
    if array.dtype == np.uint16 and path.suffix.lower() != ".png":
        raise ValueError(f"{path}: 16-bit images are written as .png")
    if array.dtype == np.uint8 and not 1 <= quality <= 100:
        raise ValueError(f"quality must be in 1..100, got {quality}")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.{threading.get_ident()}.partial{path.suffix}")
    try:
        if array.dtype == np.uint16:
            tmp.write_bytes(encode_png16(array))
        else:
            image_mod = require("PIL.Image", "core")
            options: dict[str, Any] = {}
            if path.suffix.lower() in (".jpg", ".jpeg"):
                options = {"quality": quality, "subsampling": 0}
            elif path.suffix.lower() == ".webp":
                options = {"quality": quality}
            fmt = image_mod.registered_extensions().get(path.suffix.lower())
            if fmt is None:
                raise ValueError(f"{path}: unknown image file suffix {path.suffix!r}")
            image_mod.fromarray(array).save(str(tmp), format=fmt, **options)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
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
