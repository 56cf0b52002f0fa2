"""Call arguments -> per-item arrays, one converter per tensor kind.

Each converter validates one item's value for one :class:`~pyfill.manifest.TensorSpec` and
returns what the Engine stacks into a batch: images (C, H, W) float32 in the model's range (a
torch tensor for torch input on the torch backend), label maps (H, W) int64, vectors and
embeddings (D,) float32, tensors of the declared shape, token ids (L,) int64, landmarks (K, 2)
and boxes (B, 4|5) float32 in input pixels.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from pyfill.engine import processing as P
from pyfill.manifest import TensorSpec
from pyfill.ops.convert import image_to_chw


def _numeric(value: Any, label: str) -> np.ndarray:
    arr = value.detach().cpu().numpy() if P.is_torch(value) else np.asarray(value)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{label}: expected numbers, got dtype {arr.dtype}")
    return arr


def _check_shape(arr: np.ndarray, shape: list[int | None], label: str) -> None:
    if len(arr.shape) != len(shape) or any(d is not None and d != a for d, a in zip(shape, arr.shape)):
        want = "(" + ", ".join("any" if d is None else str(d) for d in shape) + ")"
        raise ValueError(f"{label}: expected shape {want}, got {tuple(arr.shape)}")
    if arr.size == 0:
        raise ValueError(f"{label}: empty input of shape {tuple(arr.shape)}")


def _finite(arr: np.ndarray, label: str) -> np.ndarray:
    if not np.isfinite(arr).all():
        raise ValueError(f"{label}: contains NaN or infinite values")
    return arr


def _uint8_for(spec: TensorSpec, value: Any) -> tuple[np.ndarray, str] | None:
    """A NumPy uint8 image brought to the model's channel count without leaving uint8 (gray
    repeated, alpha dropped), with its layout; None where the general path applies."""
    if not isinstance(value, np.ndarray) or value.dtype != np.uint8 or value.ndim not in (2, 3) or not value.size:
        return None
    src = value[..., None] if value.ndim == 2 else value
    if src.shape[-1] == 4:
        src = src[..., :3]
    if src.shape[-1] == 1 and spec.channels == 3:
        src = np.repeat(src, 3, axis=-1)
    if src.shape[-1] != spec.channels:
        return None
    return src, "HW" if value.ndim == 2 else "HWC"


def image(spec: TensorSpec, value: Any, label: str, bgr: bool, keep_torch: bool) -> tuple[Any, P.ImageKind]:
    fast = _uint8_for(spec, value)
    if fast is not None:
        # The common case, one compiled pass: uint8 HWC -> float CHW in the model's range.
        src, layout = fast
        lo, hi = spec.value_range
        return image_to_chw(src[..., ::-1] if bgr else src, (hi - lo) / 255.0, lo), P.ImageKind("numpy", "uint8", layout)
    x, kind = P.image_to_float(value, label)
    x = P.adapt_channels(x, spec.channels, spec.colour_space)
    if bgr:
        x = x.flip(-1) if P.is_torch(x) else x[..., ::-1]  # torch has no negative steps
    if P.is_torch(x):
        t: Any = x.permute(2, 0, 1)
        if not keep_torch:
            t = t.cpu().numpy()
    else:
        t = np.ascontiguousarray(x.transpose(2, 0, 1))
    return P.to_range(t, spec.value_range), kind


def vector(spec: TensorSpec, value: Any, label: str) -> np.ndarray:
    vec = _numeric(value, label).astype(np.float32).reshape(-1)
    if vec.size != spec.length:
        raise ValueError(f"{label}: expected a {spec.kind} of length {spec.length}, got {vec.size} values")
    return _finite(vec, label)


def tensor(spec: TensorSpec, value: Any, label: str) -> np.ndarray:
    arr = _numeric(value, label).astype(np.float32)
    _check_shape(arr, spec.shape, label)
    return _finite(arr, label)


def tokens(spec: TensorSpec, value: Any, label: str) -> np.ndarray:
    arr = _numeric(value, label)
    if arr.dtype.kind == "f":
        raise TypeError(f"{label}: token ids are integers, got {arr.dtype}")
    _check_shape(arr, spec.shape, label)
    return arr.astype(np.int64)


def points(spec: TensorSpec, value: Any, label: str) -> np.ndarray:
    arr = _numeric(value, label).astype(np.float32)
    width = 2 if spec.kind == "landmarks" else arr.shape[-1] if arr.ndim == 2 and arr.shape[-1] in (4, 5) else 4
    _check_shape(arr, spec.shape or [None, width], label)
    return _finite(arr, label)


def zeros(spec: TensorSpec) -> np.ndarray:
    """The value an omitted optional input is fed as."""
    shape = [d or 1 for d in spec.shape] if spec.shape else [spec.length]
    return np.zeros(shape, np.int64 if spec.dtype == "int64" else np.float32)


def convert(spec: TensorSpec, value: Any, label: str) -> np.ndarray:
    """A non-spatial value -> its per-item array."""
    if spec.kind in ("vector", "embedding"):
        return vector(spec, value, label)
    if spec.kind == "tensor":
        return tensor(spec, value, label)
    if spec.kind == "tokens":
        return tokens(spec, value, label)
    if spec.kind in ("landmarks", "boxes"):
        return points(spec, value, label)
    raise ValueError(f"{label}: {spec.kind} inputs are spatial")
