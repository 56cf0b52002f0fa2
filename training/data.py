"""Training images: the user's folders (recursive) and the images installed packages ship
(scikit-image's ``skimage.data``); random crops for batches. No downloads."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm")

# Colour photographs that scikit-image installs with the package itself (no download needed).
PACKAGE_IMAGES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry", "hubble_deep_field",
                  "retina", "stereo_motorcycle")


def list_images(folder: str | os.PathLike[str]) -> list[Path]:
    """Image files under ``folder`` (recursive, by suffix, case-insensitive), sorted."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"image folder not found: {folder}")
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)


def to_rgb_float(arr: np.ndarray) -> np.ndarray:
    """(H, W), (H, W, 3) or (H, W, 4) uint8 / uint16 / float -> float32 (H, W, 3) in [0, 1]
    (alpha dropped, gray repeated)."""
    if arr.dtype == np.uint8:
        x = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        x = arr.astype(np.float32) / 65535.0
    elif np.issubdtype(arr.dtype, np.floating):
        x = np.clip(arr.astype(np.float32), 0.0, 1.0)
    else:
        raise TypeError(f"unsupported image dtype {arr.dtype}")
    if x.ndim == 2:
        x = x[..., None]
    if x.ndim != 3 or x.shape[-1] not in (1, 3, 4):
        raise ValueError(f"expected an (H, W), (H, W, 3) or (H, W, 4) image, got shape {arr.shape}")
    return np.repeat(x, 3, axis=-1) if x.shape[-1] == 1 else x[..., :3]


def load_image_file(path: str | os.PathLike[str]) -> np.ndarray:
    """Decode an image file -> float32 (H, W, 3) in [0, 1]. Raises ValueError when unreadable."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im).astype(np.uint16)
            else:
                arr = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    except Exception as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc
    return to_rgb_float(arr)


def shrink(img: np.ndarray, max_side: int) -> np.ndarray:
    """Downscale (area filter) so the longer side is at most ``max_side``; smaller images stay."""
    h, w = img.shape[:2]
    if max(h, w) <= max_side:
        return img
    from PIL import Image

    scale = max_side / max(h, w)
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    channels = [np.asarray(Image.fromarray(img[..., c]).resize(size, Image.Resampling.BOX)) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.float32)


def package_image(name: str) -> np.ndarray:
    """One of :data:`PACKAGE_IMAGES` as float32 (H, W, 3) in [0, 1]."""
    if name not in PACKAGE_IMAGES:
        raise ValueError(f"unknown package image {name!r}; known: {list(PACKAGE_IMAGES)}")
    from skimage import data

    arr = getattr(data, name)()
    return to_rgb_float(arr[0] if isinstance(arr, tuple) else arr)


class ImageSet:
    """Colour training images held in memory as float32 (H, W, 3) in [0, 1].

    Built from folders (every readable image file; unreadable ones are skipped with a warning
    and counted in ``skipped``) and from :data:`PACKAGE_IMAGES` names. Images are shrunk to
    ``max_side`` and must be at least ``min_side`` on both sides (smaller ones are skipped and
    counted too).
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]] = (), package: Sequence[str] = (),
                 max_side: int = 256, min_side: int = 32) -> None:
        self.images: list[np.ndarray] = []
        self.names: list[str] = []
        self.skipped: list[str] = []
        for folder in folders:
            for path in list_images(folder):
                try:
                    img = load_image_file(path)
                except ValueError as exc:
                    warnings.warn(f"skipping {exc}", stacklevel=2)
                    self.skipped.append(str(path))
                    continue
                self._add(img, str(path), max_side, min_side)
        for name in package:
            self._add(package_image(name), name, max_side, min_side)
        if not self.images:
            raise ValueError(f"no usable training images (skipped {len(self.skipped)})")

    def _add(self, img: np.ndarray, name: str, max_side: int, min_side: int) -> None:
        img = shrink(img, max_side)
        if min(img.shape[:2]) < min_side:
            warnings.warn(f"skipping {name}: smaller than {min_side} pixels", stacklevel=3)
            self.skipped.append(name)
            return
        self.images.append(img)
        self.names.append(name)

    def __len__(self) -> int:
        return len(self.images)

    def random_crops(self, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` random ``size`` x ``size`` crops (random image, position, horizontal flip)
        -> float32 (batch, 3, size, size) in [0, 1]. Deterministic for a given ``generator``."""
        out = torch.empty(batch, 3, size, size)
        for i in range(batch):
            img = self.images[int(torch.randint(len(self.images), (1,), generator=generator))]
            h, w = img.shape[:2]
            if min(h, w) < size:
                raise ValueError(f"crop size {size} exceeds an image of {h} x {w}; lower the crop size")
            y = int(torch.randint(h - size + 1, (1,), generator=generator))
            x = int(torch.randint(w - size + 1, (1,), generator=generator))
            crop = torch.from_numpy(np.ascontiguousarray(img[y : y + size, x : x + size])).permute(2, 0, 1)
            out[i] = crop.flip(-1) if bool(torch.rand((), generator=generator) < 0.5) else crop
        return out
