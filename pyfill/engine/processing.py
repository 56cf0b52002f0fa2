"""Pre- and post-processing: user images <-> model tensors, label maps, resizes and padding.

Host inputs (NumPy, PIL, CPU tensors) are processed in NumPy; torch tensors on a CUDA device are
processed with torch on that device, so they never leave it.
"""

from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np

from pyfill.manifest import TensorSpec


def _torch_mod():
    return sys.modules.get("torch")


def is_torch(x: Any) -> bool:
    torch = _torch_mod()
    return torch is not None and isinstance(x, torch.Tensor)


def is_pil(x: Any) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


@dataclass(frozen=True)
class ImageKind:
    """How an input image came in, so the output goes back the same way."""

    container: str  # "numpy" | "pil" | "torch"
    dtype: str  # numpy dtype name of the input values ("uint8", "uint16", "float32", ...)
    layout: str  # "HWC" | "HW" | "CHW"
    device: str = "cpu"


def image_to_float(image: Any, name: str) -> tuple[Any, ImageKind]:
    """Convert one user image to float32 (H, W, C) in [0, 1].

    Accepts NumPy (H, W), (H, W, C) with C in 1..4, uint8 / uint16 / float in [0, 1]; PIL images
    (L, I;16, RGB, RGBA, P, ...); torch tensors (C, H, W) float in [0, 1] or uint8, on any device.
    Returns a NumPy array, or a torch tensor on the input's device for torch input.
    """
    if is_pil(image):
        mode = image.mode
        if mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(image).astype(np.float32) / 65535.0
            kind = ImageKind("pil", "uint16", "HW")
        else:
            if mode not in ("L", "RGB", "RGBA"):
                image = image.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
            arr = np.asarray(image)
            kind = ImageKind("pil", "uint8", "HW" if arr.ndim == 2 else "HWC")
            arr = arr.astype(np.float32) / 255.0
        return _check_hwc(arr if arr.ndim == 3 else arr[..., None], name, scan=False), kind
    if is_torch(image):
        torch = _torch_mod()
        t = image.detach()
        if t.ndim != 3:
            raise ValueError(f"{name}: a torch image must be (C, H, W), got shape {tuple(t.shape)}")
        dtype = str(t.dtype).replace("torch.", "")
        kind = ImageKind("torch", dtype, "CHW", str(t.device))
        if t.dtype == torch.uint8:
            t = t.float() / 255.0
        elif t.is_floating_point():
            t = t.float()
        else:
            raise TypeError(f"{name}: torch images must be float in [0, 1] or uint8, got {t.dtype}")
        t = t.permute(1, 2, 0)
        return _check_hwc(t, name, scan=kind.dtype != "uint8"), kind
    if not isinstance(image, np.ndarray):
        raise TypeError(
            f"{name}: expected a NumPy array, PIL image or torch tensor, got {type(image).__name__}"
        )
    arr = image
    if arr.ndim == 2:
        arr, layout = arr[..., None], "HW"
    elif arr.ndim == 3:
        layout = "HWC"
    else:
        raise ValueError(f"{name}: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
    kind = ImageKind("numpy", arr.dtype.name, layout)
    if arr.dtype == np.uint8:
        out = arr.astype(np.float32) / 255.0
    elif arr.dtype == np.uint16:
        out = arr.astype(np.float32) / 65535.0
    elif arr.dtype in (np.float32, np.float64, np.float16):
        out = arr.astype(np.float32)
    elif arr.dtype == np.bool_:
        raise TypeError(f"{name}: boolean arrays are not images")
    else:
        raise TypeError(f"{name}: unsupported dtype {arr.dtype}; use uint8, uint16 or float in [0, 1]")
    return _check_hwc(out, name, scan=arr.dtype.kind == "f"), kind


def _check_hwc(x: Any, name: str, scan: bool = True) -> Any:
    """Check the shape; with ``scan``, also NaN and the [0, 1] range (float inputs only: values
    converted from integers are in range by construction)."""
    h, w, c = x.shape
    if h == 0 or w == 0:
        raise ValueError(f"{name}: empty image of shape {tuple(x.shape)}")
    if c not in (1, 2, 3, 4):
        raise ValueError(f"{name}: expected 1 (gray), 3 (RGB) or 4 (RGBA) channels, got {c}")
    if c == 2:
        raise ValueError(f"{name}: 2-channel images are ambiguous; pass gray, RGB or RGBA")
    if not scan:
        return x
    if is_torch(x):
        torch = _torch_mod()
        if not bool(torch.isfinite(x).all()):
            raise ValueError(f"{name}: image contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
    else:
        if not np.isfinite(x).all():
            raise ValueError(f"{name}: image contains NaN or infinite values")
        lo, hi = float(x.min()), float(x.max())
    if lo < -1e-3 or hi > 1 + 1e-3:
        raise ValueError(f"{name}: float images must be in [0, 1], got values in [{lo:.4g}, {hi:.4g}]")
    return x


_LUMA = (0.299, 0.587, 0.114)


def adapt_channels(x: Any, channels: int, colour_space: str) -> Any:
    """(H, W, C) in [0, 1] -> (H, W, channels): gray<->RGB conversion, alpha dropped."""
    c = x.shape[-1]
    if c == 4:
        x, c = x[..., :3], 3
    if c == channels:
        return x
    if c == 1 and channels == 3:
        return x.repeat(1, 1, 3) if is_torch(x) else np.repeat(x, 3, axis=-1)
    if c == 3 and channels == 1:
        return (x[..., 0:1] * _LUMA[0] + x[..., 1:2] * _LUMA[1] + x[..., 2:3] * _LUMA[2])
    raise ValueError(f"cannot feed a {c}-channel image to a {channels}-channel ({colour_space}) input")


def to_range(x: Any, value_range: tuple[float, float]) -> Any:
    lo, hi = value_range
    return x * (hi - lo) + lo if (lo, hi) != (0.0, 1.0) else x


def from_range(x: Any, value_range: tuple[float, float]) -> Any:
    lo, hi = value_range
    return (x - lo) / (hi - lo) if (lo, hi) != (0.0, 1.0) else x


def float_to_output(x: Any, kind: ImageKind) -> Any:
    """float (H, W, C) in [0, 1] -> the container/dtype/layout the input came in."""
    if kind.container == "torch":
        t = x.clamp(0, 1).permute(2, 0, 1).contiguous()
        if kind.dtype == "uint8":
            return (t * 255.0).round().to(_torch_mod().uint8)
        return t
    x = np.clip(x, 0.0, 1.0)
    if kind.dtype == "uint16":
        out = np.rint(x * 65535.0).astype(np.uint16)
    elif kind.dtype in ("float32", "float64", "float16"):
        out = x.astype(np.dtype(kind.dtype))
    else:
        out = np.rint(x * 255.0).astype(np.uint8)
    if out.shape[-1] == 1 and kind.layout == "HW":
        out = out[..., 0]
    if kind.container == "pil":
        from PIL import Image

        if out.dtype == np.uint16:
            return Image.fromarray(out[..., 0] if out.ndim == 3 else out)
        return Image.fromarray(out[..., 0] if out.ndim == 3 and out.shape[-1] == 1 else out)
    return out


def labels_to_index(labels: Any, spec: TensorSpec, name: str) -> np.ndarray:
    """Validate a label map -> int64 (H, W) class indices.

    Accepts an (H, W) integer index map (NumPy, PIL mode L/P, or torch), or, when the manifest
    gives the labels a legend (``spec.palette``), a colour-coded uint8 (H, W, 3) / (H, W, 4)
    label image (NumPy or PIL RGB/RGBA; alpha ignored) whose every pixel is a legend colour.
    """
    if is_pil(labels):
        labels = np.asarray(labels.convert("RGB") if labels.mode not in ("L", "P") else labels)
    elif is_torch(labels):
        labels = labels.detach().cpu().numpy()
    if not isinstance(labels, np.ndarray):
        raise TypeError(f"{name}: expected an (H, W) integer label map, got {type(labels).__name__}")
    if labels.ndim == 3 and labels.shape[-1] in (3, 4):
        return colours_to_index(labels[..., :3], spec, name)
    if labels.ndim != 2:
        raise ValueError(f"{name}: expected an (H, W) label map of class indices or an (H, W, 3) colour-coded "
                         f"label image, got shape {labels.shape}")
    if labels.size == 0:
        raise ValueError(f"{name}: empty label map")
    if not np.issubdtype(labels.dtype, np.integer):
        raise TypeError(f"{name}: label maps must hold integer class indices, got {labels.dtype}")
    lo, hi = int(labels.min()), int(labels.max())
    if lo < 0 or hi >= spec.classes:
        raise ValueError(f"{name}: class indices must be in [0, {spec.classes - 1}], got [{lo}, {hi}]")
    return labels.astype(np.int64)


def colours_to_index(image: np.ndarray, spec: TensorSpec, name: str) -> np.ndarray:
    """uint8 (H, W, 3) colour-coded label image -> int64 (H, W) indices by exact match with the
    legend colours ``spec.palette``; any other colour raises ValueError."""
    if not spec.palette:
        raise ValueError(f"{name}: this model's labels have no legend colours; pass an (H, W) index map")
    if image.dtype != np.uint8:
        raise TypeError(f"{name}: colour-coded label images must be uint8, got {image.dtype}")
    if image.shape[0] == 0 or image.shape[1] == 0:
        raise ValueError(f"{name}: empty label image")
    code = (image[..., 0].astype(np.int64) << 16) | (image[..., 1].astype(np.int64) << 8) | image[..., 2]
    legend = np.asarray([(r << 16) | (g << 8) | b for r, g, b in spec.palette], np.int64)
    order = np.argsort(legend)
    pos = np.clip(np.searchsorted(legend[order], code), 0, len(legend) - 1)
    index = order[pos]
    unknown = legend[index] != code
    if unknown.any():
        y, x = np.argwhere(unknown)[0]
        names = spec.class_names or [str(i) for i in range(spec.classes)]
        legend_text = ", ".join(f"{n}={tuple(c)}" for n, c in zip(names, spec.palette))
        raise ValueError(f"{name}: {int(unknown.sum())} pixels have colours outside the legend, e.g. "
                         f"{tuple(int(v) for v in image[y, x])} at (row {y}, column {x}); legend: {legend_text}")
    return index.astype(np.int64)


def derive_vector(spec: TensorSpec, source: Any, extra: dict[str, Any], size: tuple[int, int] | None,
                  name: str) -> np.ndarray:
    """Run the pre-processing step a vector input declares (``spec.derive``) -> float32 (D,).

    ``stroke_grid``: ``source`` is an RGB stroke image on black, NumPy (H, W, 3) uint8 or float in
    [0, 1], or (H, W, 4) / PIL RGBA whose alpha marks the stroke pixels; ``extra["occupancy"]``
    an optional (H, W) mask. (H, W) must equal the spatial inputs' ``size``.
    """
    from pyfill.ops import stroke_grid, stroke_grid_latent

    occupancy = extra.get("occupancy")
    if is_pil(source):
        source = np.asarray(source.convert("RGBA" if "A" in source.getbands() else "RGB"))
    elif is_torch(source):
        raise TypeError(f"{name}: pass the stroke image as a NumPy (H, W, 3) array or a PIL image")
    if not isinstance(source, np.ndarray):
        raise TypeError(f"{name}: expected an (H, W, 3) RGB stroke image, got {type(source).__name__}")
    if source.ndim != 3 or source.shape[-1] not in (3, 4):
        raise ValueError(f"{name}: expected an (H, W, 3) RGB stroke image (or RGBA), got shape {source.shape}")
    if size is not None and tuple(source.shape[:2]) != tuple(size):
        raise ValueError(f"{name}: stroke image size {tuple(source.shape[:2])} differs from the labels' {tuple(size)}")
    if source.shape[-1] == 4:
        if occupancy is None:
            occupancy = source[..., 3] > 0
        source = source[..., :3]
    features = stroke_grid(source, occupancy, tuple(spec.derive["grid"]))
    vec = stroke_grid_latent(features).astype(np.float32)
    if vec.size != spec.length:
        raise ValueError(f"{name}: the stroke grid {spec.derive['grid']} gives {vec.size} values, "
                         f"the model takes {spec.length}")
    return vec


def one_hot(index: np.ndarray, classes: int) -> np.ndarray:
    """(N, H, W) int -> (N, classes, H, W) float32 one-hot."""
    out = np.zeros((index.shape[0], classes, *index.shape[1:]), dtype=np.float32)
    np.put_along_axis(out, index[:, None], 1.0, axis=1)
    return out


def resize_nearest(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Nearest resize of the last two axes with OpenCV's index rule floor(i * in / out)."""
    h, w = x.shape[-2:]
    rows = np.minimum((np.arange(size[0]) * h) // size[0], h - 1)
    cols = np.minimum((np.arange(size[1]) * w) // size[1], w - 1)
    return x[..., rows[:, None], cols[None, :]]


def resize_bilinear(x: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (half-pixel centres) of the last two axes of a float array."""
    h, w = x.shape[-2:]

    def coords(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
        lo = np.floor(pos).astype(np.int64)
        hi = np.minimum(lo + 1, n_in - 1)
        return lo, hi, (pos - lo).astype(np.float32)

    r0, r1, fr = coords(size[0], h)
    c0, c1, fc = coords(size[1], w)
    top = x[..., r0, :] * (1 - fr[:, None]) + x[..., r1, :] * fr[:, None]
    return top[..., c0] * (1 - fc) + top[..., c1] * fc


def padded_size(h: int, w: int, multiple_of: int, min_size: int) -> tuple[int, int]:
    def up(v: int) -> int:
        v = max(v, min_size)
        return int(math.ceil(v / multiple_of) * multiple_of)

    return up(h), up(w)


def pad_bottom_right(x: Any, ph: int, pw: int) -> Any:
    """Pad an (..., H, W) array (or (N, C, H, W) tensor) at the bottom and right: reflect where the image is
    large enough, edge replication otherwise."""
    if ph == 0 and pw == 0:
        return x
    h, w = x.shape[-2:]
    reflect = ph < h and pw < w
    if is_torch(x):
        from torch.nn import functional as F

        return F.pad(x, (0, pw, 0, ph), mode="reflect" if reflect else "replicate")
    width = [(0, 0)] * (x.ndim - 2) + [(0, ph), (0, pw)]
    return np.pad(x, width, mode="reflect") if reflect else np.pad(x, width, mode="edge")
