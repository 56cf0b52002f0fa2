"""Training images: the user's folders (recursive) and the images installed packages ship
(scikit-image's ``skimage.data``); random crops for batches; images with label maps (a user's
segmentation folder or the procedural landscapes). No downloads."""

from __future__ import annotations

import os
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from pyfill.images import IMAGE_SUFFIXES  # one list of image suffixes for the package and training

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

    size = _shrunk_size(w, h, max_side)
    channels = [np.asarray(Image.fromarray(img[..., c]).resize(size, Image.Resampling.BOX)) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.float32)


def package_image(name: str) -> np.ndarray:
    """One of :data:`PACKAGE_IMAGES` as float32 (H, W, 3) in [0, 1]."""
    if name not in PACKAGE_IMAGES:
        raise ValueError(f"unknown package image {name!r}; known: {list(PACKAGE_IMAGES)}")
    from skimage import data

    arr = getattr(data, name)()
    return to_rgb_float(arr[0] if isinstance(arr, tuple) else arr)


def _shrunk_size(width: int, height: int, max_side: int) -> tuple[int, int]:
    """(width, height) after :func:`shrink` to ``max_side``."""
    if max(width, height) <= max_side:
        return width, height
    scale = max_side / max(width, height)
    return max(1, round(width * scale)), max(1, round(height * scale))


def _decode_shrunk(path: str | os.PathLike[str], size: tuple[int, int]) -> np.ndarray:
    """Decode an image file and shrink it (area filter) to ``size`` = (width, height), the size
    :func:`shrink` gives it -> float32 (H, W, 3) in [0, 1]. Large JPEGs are decoded at a reduced
    DCT scale first (never below ``size``)."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            if im.format == "JPEG" and im.size != size:
                im.draft("RGB", size)
            im.load()
            if im.mode in ("I;16", "I;16B", "I;16L"):
                arr = np.asarray(im).astype(np.uint16)
            else:
                arr = np.asarray(im.convert("RGBA" if "A" in im.getbands() else "RGB"))
    except Exception as exc:
        raise ValueError(f"{path}: unreadable image ({exc})") from exc
    img = to_rgb_float(arr)
    if (img.shape[1], img.shape[0]) == tuple(size):
        return img
    channels = [np.asarray(Image.fromarray(img[..., c]).resize(size, Image.Resampling.BOX)) for c in range(3)]
    return np.stack(channels, axis=-1).astype(np.float32)


class _LazyImages(Sequence):
    """``images[i]`` decodes image ``i`` of an :class:`ImageSet` on demand."""

    def __init__(self, owner: ImageSet) -> None:
        self.owner = owner

    def __len__(self) -> int:
        return len(self.owner)

    def __getitem__(self, index: int) -> np.ndarray:  # type: ignore[override]
        if not -len(self) <= index < len(self):
            raise IndexError(index)
        return self.owner.image(index % len(self))


class ImageSet:
    """Colour training images, streamed: the folders are scanned once (file headers only) and an
    image is decoded when a crop of it is drawn, so memory does not grow with the number of files.

    Built from folders (every readable image file; unreadable ones are skipped with a warning
    and counted in ``skipped``) and from :data:`PACKAGE_IMAGES` names (at most eight photos, kept
    in memory). Images are shrunk (area filter) to ``max_side`` and must be at
    least ``min_side`` on both sides after that (smaller ones are skipped and counted too).
    ``images[i]`` gives image ``i`` as float32 (H, W, 3) in [0, 1]. ``in_memory``: keep each image
    once decoded (for small sets whose decoding would dominate a step).
    """

    def __init__(self, folders: Sequence[str | os.PathLike[str]] = (), package: Sequence[str] = (),
                 max_side: int = 256, min_side: int = 32, in_memory: bool = False) -> None:
        from PIL import Image

        self._cache: dict[int, np.ndarray] | None = {} if in_memory else None
        self.max_side, self.min_side = int(max_side), int(min_side)
        self.sources: list[str] = []
        self.sizes: list[tuple[int, int]] = []
        self.names: list[str] = []
        self.skipped: list[str] = []
        self.files: list[tuple[str, int]] = []  # (name relative to its folder, bytes) for the data manifest
        self._package: dict[str, np.ndarray] = {}
        for folder in folders:
            for path in list_images(folder):
                try:
                    with Image.open(path) as im:
                        width, height = im.size
                except Exception as exc:
                    warnings.warn(f"skipping {path}: unreadable image ({exc})", stacklevel=2)
                    self.skipped.append(str(path))
                    continue
                if self._add(str(path), str(path), (width, height)):
                    self.files.append((str(path.relative_to(folder)), path.stat().st_size))
        for name in package:
            img = shrink(package_image(name), self.max_side)
            if self._add(f"package:{name}", name, (img.shape[1], img.shape[0])):
                self._package[name] = img
        self.package = [n for n in package if n in self._package]
        if not self.sources:
            raise ValueError(f"no usable training images (skipped {len(self.skipped)})")
        self.images: Sequence[np.ndarray] = _LazyImages(self)

    def _add(self, source: str, name: str, size: tuple[int, int]) -> bool:
        width, height = _shrunk_size(*size, self.max_side)
        if min(width, height) < self.min_side:
            warnings.warn(f"skipping {name}: smaller than {self.min_side} pixels", stacklevel=3)
            self.skipped.append(name)
            return False
        self.sources.append(source)
        self.sizes.append((height, width))
        self.names.append(name)
        return True

    def __len__(self) -> int:
        return len(self.sources)

    def image(self, index: int) -> np.ndarray:
        """Image ``index`` decoded and shrunk: float32 (H, W, 3) in [0, 1]."""
        source = self.sources[index]
        if source.startswith("package:"):
            return self._package[source[len("package:"):]]
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        h, w = self.sizes[index]
        img = _decode_shrunk(source, (w, h))
        if self._cache is not None:
            self._cache[index] = img
        return img

    def manifest(self) -> dict[str, object]:
        """What the set holds, for provenance: file count and hash (see
        :func:`training.harness.data_manifest`), package images, sizes and the skipped count."""
        from training.harness import data_manifest

        return data_manifest(self.files, {"package_images": self.package, "max_side": self.max_side,
                                          "skipped": len(self.skipped)})

    def random_crops(self, batch: int, size: int, generator: torch.Generator) -> torch.Tensor:
        """``batch`` random ``size`` x ``size`` crops (random image, position, horizontal flip)
        -> float32 (batch, 3, size, size) in [0, 1]. Deterministic for a given ``generator``;
        each image is decoded when drawn."""
        out = torch.empty(batch, 3, size, size)
        for i in range(batch):
            index = int(torch.randint(len(self), (1,), generator=generator))
            h, w = self.sizes[index]
            if min(h, w) < size:
                raise ValueError(f"crop size {size} exceeds an image of {h} x {w}; lower the crop size")
            y = int(torch.randint(h - size + 1, (1,), generator=generator))
            x = int(torch.randint(w - size + 1, (1,), generator=generator))
            flip = bool(torch.rand((), generator=generator) < 0.5)
            img = self.image(index)
            crop = torch.from_numpy(np.ascontiguousarray(img[y : y + size, x : x + size])).permute(2, 0, 1)
            out[i] = crop.flip(-1) if flip else crop
        return out


# ---- label maps (SPEC S2) ----------------------------------------------------------------------
LABEL_LIST_FILE = "labels.txt"


def read_label_list(path: str | os.PathLike[str]) -> tuple[list[str], list[tuple[int, int, int]] | None]:
    """A label list file: one class per line in index order, ``name`` or ``name R G B`` (legend
    colour, 0..255). Blank lines and ``#`` comments are skipped. Returns (names, colours or None
    when no line gives a colour); colours must be given on every line or on none."""
    names: list[str] = []
    colours: list[tuple[int, int, int] | None] = []
    for number, line in enumerate(Path(path).read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) not in (1, 4):
            raise ValueError(f"{path}:{number}: expected 'name' or 'name R G B', got {line!r}")
        names.append(parts[0])
        if len(parts) == 4:
            try:
                rgb = tuple(int(v) for v in parts[1:])
            except ValueError:
                raise ValueError(f"{path}:{number}: colour values must be integers, got {parts[1:]}") from None
            if not all(0 <= v <= 255 for v in rgb):
                raise ValueError(f"{path}:{number}: colour values must lie in 0..255, got {rgb}")
            colours.append(rgb)  # type: ignore[arg-type]
        else:
            colours.append(None)
    if not names:
        raise ValueError(f"{path}: no labels listed")
    if len(set(names)) != len(names):
        raise ValueError(f"{path}: label names must be unique")
    given = [c for c in colours if c is not None]
    if given and len(given) != len(names):
        raise ValueError(f"{path}: give a colour on every line or on none")
    return names, (given or None)  # type: ignore[return-value]


def _square_resize(arr: np.ndarray, size: int, nearest: bool) -> np.ndarray:
    """Centre-crop to a square, then resize to ``size`` x ``size`` (nearest for label maps,
    area/bicubic for images)."""
    from PIL import Image

    h, w = arr.shape[:2]
    side = min(h, w)
    y, x = (h - side) // 2, (w - side) // 2
    crop = np.ascontiguousarray(arr[y : y + side, x : x + side])
    resample = Image.Resampling.NEAREST if nearest else Image.Resampling.BICUBIC
    if side > size and not nearest:
        resample = Image.Resampling.BOX
    return np.asarray(Image.fromarray(crop).resize((size, size), resample))


class LabelledImageSet:
    """Images with label maps held in memory: uint8 ``images`` (N, size, size, 3) and uint8
    ``labels`` (N, size, size) of class indices into ``names``.

    Use :meth:`from_folder` for a user's segmentation data set or :meth:`from_landscapes` for
    the procedural landscapes.
    """

    def __init__(self, images: np.ndarray, labels: np.ndarray, names: Sequence[str],
                 colours: Sequence[tuple[int, int, int]] | None = None) -> None:
        if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
            raise ValueError(f"images must be uint8 (N, H, W, 3), got {images.dtype} {images.shape}")
        if labels.shape != images.shape[:3] or labels.dtype != np.uint8:
            raise ValueError(f"labels must be uint8 {images.shape[:3]}, got {labels.dtype} {labels.shape}")
        if len(images) == 0:
            raise ValueError("no training images")
        if int(labels.max()) >= len(names):
            raise ValueError(f"class index {int(labels.max())} out of range for {len(names)} labels")
        self.images, self.labels = images, labels
        self.names = list(names)
        self.colours = [tuple(int(v) for v in c) for c in colours] if colours is not None else None

    def __len__(self) -> int:
        return len(self.images)

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], size: int) -> LabelledImageSet:
        """``folder/images/<stem>.<ext>`` photos, ``folder/labels/<stem>.png`` label maps (8-bit
        gray or palette PNGs whose pixel values are class indices) and ``folder/labels.txt``
        (:func:`read_label_list`). Every image needs a label map of the same size; all are
        centre-cropped to a square and resized to ``size``."""
        from PIL import Image

        folder = Path(folder)
        names, colours = read_label_list(folder / LABEL_LIST_FILE)
        label_files = {p.stem: p for p in sorted((folder / "labels").glob("*.png"))}
        images, labels = [], []
        for path in list_images(folder / "images"):
            if path.stem not in label_files:
                raise ValueError(f"{path}: no label map {folder / 'labels' / (path.stem + '.png')}")
            with Image.open(label_files[path.stem]) as im:
                if im.mode not in ("L", "P"):
                    raise ValueError(f"{label_files[path.stem]}: label maps are 8-bit gray or palette PNGs of class "
                                     f"indices, got mode {im.mode}")
                index = np.asarray(im).copy()
            rgb = np.rint(load_image_file(path) * 255).astype(np.uint8)
            if index.shape != rgb.shape[:2]:
                raise ValueError(f"{label_files[path.stem]}: size {index.shape} differs from its image's {rgb.shape[:2]}")
            if int(index.max()) >= len(names):
                raise ValueError(f"{label_files[path.stem]}: class index {int(index.max())} but only "
                                 f"{len(names)} labels in {LABEL_LIST_FILE}")
            images.append(_square_resize(rgb, size, nearest=False))
            labels.append(_square_resize(index, size, nearest=True))
        if not images:
            raise ValueError(f"no images under {folder / 'images'}")
        return cls(np.stack(images), np.stack(labels), names, colours)

    @classmethod
    def from_landscapes(cls, count: int, size: int, seed: int = 0) -> LabelledImageSet:
        """``count`` procedural landscapes (seeds ``seed`` .. ``seed + count - 1``) of ``size`` x
        ``size`` pixels."""
        from training.landscapes import LABELS, render_landscape

        scenes = [render_landscape(size, size, seed + i) for i in range(count)]
        return cls(np.stack([s[0] for s in scenes]), np.stack([s[1] for s in scenes]),
                   [n for n, _ in LABELS], [c for _, c in LABELS])

    def batch(self, batch: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` random samples, each flipped horizontally with probability 1/2 ->
        (uint8 images (B, H, W, 3), int64 labels (B, H, W)). Deterministic for ``generator``."""
        idx = torch.randint(len(self), (batch,), generator=generator).numpy()
        flip = (torch.rand(batch, generator=generator) < 0.5).numpy()
        images, labels = self.images[idx].copy(), self.labels[idx].astype(np.int64)
        images[flip] = images[flip, :, ::-1]
        labels[flip] = labels[flip, :, ::-1]
        return images, labels
