"""Training images: the user's folders (recursive) and the images installed packages ship
(scikit-image's ``skimage.data``); random crops for batches; images with label maps (a user's
segmentation folder or the procedural landscapes). No downloads."""

from __future__ import annotations

import os
import warnings
from collections import OrderedDict
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
    """Images with label maps, decoded (or rendered) when a batch asks for them: samples are
    uint8 images (size, size, 3) and uint8 label maps (size, size) of class indices into
    ``names``. Memory is bounded whatever the number of samples: each process keeps at most
    ``cache`` decoded samples (least recently used first out).

    Use :meth:`from_folder` for a user's segmentation data set or :meth:`from_landscapes` for
    the procedural landscapes. The set pickles small (sources, not pixels), so DataLoader
    workers decode in parallel.
    """

    def __init__(self, count: int, names: Sequence[str], colours: Sequence[tuple[int, int, int]] | None,
                 size: int, cache: int = 256) -> None:
        if count < 1:
            raise ValueError("no training images")
        if cache < 0:
            raise ValueError(f"cache must be >= 0, got {cache}")
        self.count, self.size, self.cache_size = int(count), int(size), int(cache)
        self.names = list(names)
        self.colours = [tuple(int(v) for v in c) for c in colours] if colours is not None else None
        self._cache: OrderedDict[int, tuple[np.ndarray, np.ndarray]] = OrderedDict()

    def __len__(self) -> int:
        return self.count

    def __getstate__(self) -> dict:
        return {**self.__dict__, "_cache": OrderedDict()}  # workers start with an empty cache

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def sample(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """Sample ``index``: (uint8 image (size, size, 3), uint8 labels (size, size)); read-only
        arrays shared with the cache."""
        if not 0 <= index < self.count:
            raise IndexError(f"sample {index} out of range for {self.count}")
        if index in self._cache:
            self._cache.move_to_end(index)
            return self._cache[index]
        image, labels = self._load(index)
        if int(labels.max()) >= len(self.names):
            raise ValueError(f"{self.describe(index)}: class index {int(labels.max())} but only {len(self.names)} "
                             f"labels in {LABEL_LIST_FILE}")
        image.flags.writeable = labels.flags.writeable = False
        if self.cache_size:
            self._cache[index] = (image, labels)
            while len(self._cache) > self.cache_size:
                self._cache.popitem(last=False)
        return image, labels

    def describe(self, index: int) -> str:
        """Where sample ``index`` comes from, for messages."""
        return f"sample {index}"

    @classmethod
    def from_folder(cls, folder: str | os.PathLike[str], size: int, cache: int = 256) -> LabelledImageSet:
        """``folder/images/<stem>.<ext>`` photos, ``folder/labels/<stem>.png`` label maps (8-bit
        gray or palette PNGs whose pixel values are class indices) and ``folder/labels.txt``
        (:func:`read_label_list`). Every image needs a label map of the same size; all are
        centre-cropped to a square and resized to ``size`` when a batch needs them. Missing label
        maps, wrong modes and mismatched sizes are found here from the files' headers; a class
        index beyond the list is reported when its map is first decoded."""
        return _FolderLabelled(Path(folder), size, cache)

    @classmethod
    def from_landscapes(cls, count: int, size: int, seed: int = 0, cache: int = 256) -> LabelledImageSet:
        """``count`` procedural landscapes (seeds ``seed`` .. ``seed + count - 1``) of ``size`` x
        ``size`` pixels, each rendered when first needed."""
        return _Landscapes(count, size, seed, cache)

    def batch(self, batch: int, generator: torch.Generator) -> tuple[np.ndarray, np.ndarray]:
        """``batch`` random samples, each flipped horizontally with probability 1/2 ->
        (uint8 images (B, H, W, 3), int64 labels (B, H, W)). Deterministic for ``generator``."""
        idx = torch.randint(len(self), (batch,), generator=generator).tolist()
        flip = (torch.rand(batch, generator=generator) < 0.5).tolist()
        pairs = [self.sample(i) for i in idx]
        images = np.stack([im[:, ::-1] if f else im for (im, _), f in zip(pairs, flip)])
        labels = np.stack([lab[:, ::-1] if f else lab for (_, lab), f in zip(pairs, flip)]).astype(np.int64)
        return images, labels


class _FolderLabelled(LabelledImageSet):
    def __init__(self, folder: Path, size: int, cache: int) -> None:
        from PIL import Image

        names, colours = read_label_list(folder / LABEL_LIST_FILE)
        label_files = {p.stem: p for p in sorted((folder / "labels").glob("*.png"))}
        pairs = []
        for path in list_images(folder / "images"):
            if path.stem not in label_files:
                raise ValueError(f"{path}: no label map {folder / 'labels' / (path.stem + '.png')}")
            with Image.open(label_files[path.stem]) as lab, Image.open(path) as im:  # headers only
                if lab.mode not in ("L", "P"):
                    raise ValueError(f"{label_files[path.stem]}: label maps are 8-bit gray or palette PNGs of class "
                                     f"indices, got mode {lab.mode}")
                if lab.size != im.size:
                    raise ValueError(f"{label_files[path.stem]}: size {lab.size[::-1]} differs from its image's "
                                     f"{im.size[::-1]}")
            pairs.append((path, label_files[path.stem]))
        if not pairs:
            raise ValueError(f"no images under {folder / 'images'}")
        super().__init__(len(pairs), names, colours, size, cache)
        self.pairs = pairs

    def describe(self, index: int) -> str:
        return str(self.pairs[index][1])

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from PIL import Image

        path, label_path = self.pairs[index]
        with Image.open(label_path) as im:
            labels = np.asarray(im).copy()
        rgb = np.rint(load_image_file(path) * 255).astype(np.uint8)
        if labels.shape != rgb.shape[:2]:  # e.g. an EXIF rotation the header check did not see
            raise ValueError(f"{label_path}: size {labels.shape} differs from its image's {rgb.shape[:2]}")
        return _square_resize(rgb, self.size, nearest=False), _square_resize(labels, self.size, nearest=True)


class _Landscapes(LabelledImageSet):
    def __init__(self, count: int, size: int, seed: int, cache: int) -> None:
        from training.landscapes import LABELS

        super().__init__(count, [n for n, _ in LABELS], [c for _, c in LABELS], size, cache)
        self.seed = int(seed)

    def describe(self, index: int) -> str:
        return f"landscape {self.seed + index}"

    def _load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        from training.landscapes import render_landscape

        image, labels = render_landscape(self.size, self.size, self.seed + index)
        return np.ascontiguousarray(image, np.uint8), np.ascontiguousarray(labels, np.uint8)
