"""Degradation operators for restoration training: blur, resize, noise and JPEG.

Every operator takes RGB images as (H, W, 3) or a batch (B, H, W, 3), dtype uint8 (0..255) or
float32 (values in [0, 1]), and returns the same shape (``resize``: the requested size), dtype
and library. Results are saturated to the input's range (0..255 or [0, 1]). NumPy arrays and CPU
torch tensors run the C++ kernels; torch CUDA tensors and ``__cuda_array_interface__`` arrays run
the CUDA kernels on the device that holds them, queued on that device's current stream. Noise is
drawn from a Philox4x32-10 counter-based generator: the same seed gives the same noise on the CPU
and on CUDA, and image ``b`` of a batch uses stream ``b`` (so a single image equals the first
image of a batch under the same seed). Both builds compile without FMA contraction, so CPU and
CUDA results are identical.

float32 inputs containing NaN are refused. On CUDA that check reads a flag back from the GPU, a
host synchronisation per call; code that chains ops on data it has already checked (such as
:class:`pyfill.degrade.Pipeline`) runs them inside :func:`assume_finite` to skip it.
"""

from __future__ import annotations

import contextlib
import contextvars
import math
import sys
from collections.abc import Iterator
from typing import Any, Callable

import numpy as np

from pyfill._core import _C
from pyfill.ops._arrays import CudaView, cuda_empty, cuda_view, is_cuda_array, require_cuda_kernels, to_host

__all__ = [
    "INTERPOLATIONS",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_salt_pepper",
    "assume_finite",
    "filter2d",
    "gaussian_blur",
    "gaussian_kernel",
    "jpeg",
    "motion_blur",
    "motion_kernel",
    "resize",
]

#: Interpolation names accepted by :func:`resize`, mapped to the kernels' codes.
INTERPOLATIONS: dict[str, int] = {"nearest": 0, "bilinear": 1, "bicubic": 2, "area": 3}
_SUBSAMPLING = {"4:2:0": True, "4:4:4": False}
_DTYPES = (np.dtype(np.uint8), np.dtype(np.float32))

# OpenCV's fixed kernels for small sizes when sigma <= 0 (getGaussianKernel's small_gaussian_tab).
_SMALL_GAUSSIAN = {
    1: [1.0],
    3: [0.25, 0.5, 0.25],
    5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125],
    9: [v / 256 for v in (4, 13, 30, 51, 60, 51, 30, 13, 4)],  # added in OpenCV 5
}


_ASSUME_FINITE: contextvars.ContextVar[bool] = contextvars.ContextVar("pyfill_assume_finite", default=False)


@contextlib.contextmanager
def assume_finite() -> Iterator[None]:
    """Within this block, float32 CUDA inputs are not checked for NaN: the caller vouches that
    they hold none. The check costs a host synchronisation per call (the GPU must finish before
    the answer is known), which stalls chains of ops; host inputs are always checked (it is
    cheap there). Ops never produce NaN from NaN-free input, so one check of a chain's input
    covers the whole chain. Thread- and task-local."""
    token = _ASSUME_FINITE.set(True)
    try:
        yield
    finally:
        _ASSUME_FINITE.reset(token)


def has_nan(img: Any) -> bool:
    """Whether a float32 image (NumPy, torch CPU/CUDA or a CUDA array library) holds a NaN.
    For a CUDA array this synchronises the host with the device."""
    if "torch" in sys.modules and isinstance(img, sys.modules["torch"].Tensor):
        return bool(sys.modules["torch"].isnan(img).any())
    if is_cuda_array(img):
        cupy = sys.modules.get("cupy")
        if cupy is not None and isinstance(img, cupy.ndarray):
            return bool(cupy.isnan(img).any())
        raise TypeError(f"cannot check a {type(img).__name__} for NaN: pass a torch or CuPy array")
    return bool(np.isnan(np.asarray(img)).any())


# ---- validation ------------------------------------------------------------------------------


def _check_number(value: Any, name: str, *, low: float | None = None, high: float | None = None) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        raise TypeError(f"{name} must be a number, got {type(value).__name__}")
    v = float(value)
    if not math.isfinite(v):
        raise ValueError(f"{name} must be finite, got {value}")
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return v


def _check_int(value: Any, name: str, *, low: int | None = None, high: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an integer, got {type(value).__name__}")
    v = int(value)
    if low is not None and v < low:
        raise ValueError(f"{name} must be >= {low}, got {value}")
    if high is not None and v > high:
        raise ValueError(f"{name} must be <= {high}, got {value}")
    return v


def _check_seed(seed: Any) -> int:
    return _check_int(seed, "seed", low=0, high=2**64 - 1)


def _check_layout(shape: tuple[int, ...], dtype: np.dtype, op: str) -> tuple[int, int, int, int]:
    if dtype not in _DTYPES:
        raise TypeError(f"{op}: images must be uint8 or float32, got {dtype}")
    if len(shape) not in (3, 4) or shape[-1] != 3:
        raise ValueError(f"{op}: expected RGB images of shape (H, W, 3) or (B, H, W, 3), got {shape}")
    b, h, w, c = (1, *shape) if len(shape) == 3 else shape
    if min(b, h, w) < 1:
        raise ValueError(f"{op}: empty image batch of shape {shape}")
    return b, h, w, c


def _run(
    img: Any,
    op: str,
    cpu: Callable[[np.ndarray], np.ndarray],
    cuda: Callable[[CudaView, CudaView, tuple[int, int, int, int]], None],
    out_hw: tuple[int, int] | None = None,
) -> Any:
    """Validate ``img``, run the C++ kernel ``cpu`` on a (B, H, W, 3) array or the CUDA launcher
    ``cuda(src, dst, bhwc)``, and return the result in the caller's layout and library."""
    if is_cuda_array(img):
        require_cuda_kernels(op)
        src = cuda_view(img, op)
        b, h, w, c = _check_layout(src.shape, src.dtype, op)
        if src.dtype == np.float32 and not _ASSUME_FINITE.get() and has_nan(img):
            raise ValueError(f"{op}: float input contains NaN")
        oh, ow = out_hw or (h, w)
        out_shape = (oh, ow, c) if len(src.shape) == 3 else (b, oh, ow, c)
        out = cuda_empty(src, out_shape, src.dtype)
        cuda(src, cuda_view(out, op), (b, h, w, c))
        return out
    arr, back = to_host(img, op)
    b, h, w, c = _check_layout(arr.shape, arr.dtype, op)
    if arr.dtype == np.float32 and np.isnan(arr).any():
        raise ValueError(f"{op}: float input contains NaN")
    batch = np.ascontiguousarray(arr.reshape(b, h, w, c))
    out = cpu(batch)
    return back(out[0] if arr.ndim == 3 else out)


def _is_u8(view: CudaView) -> bool:
    return view.dtype == np.uint8


def _cuda_fn(name: str) -> Callable[..., None]:
    return getattr(_C, f"degrade_cuda_{name}")


def _streams(b: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    return np.full(b, seed, dtype=np.uint64), np.arange(b, dtype=np.uint32)


# ---- blur ------------------------------------------------------------------------------------


# The longest Gaussian kernel: wider than any image side pyfill handles, and refused before a
# hostile size (2**31 + 1) allocates gigabytes.
MAX_KSIZE = 65535


def gaussian_kernel(ksize: int, sigma: float = 0.0) -> np.ndarray:
    """OpenCV's 1-D Gaussian kernel (``cv2.getGaussianKernel``): float32 of length ``ksize``
    (odd, 1..65535), summing to 1. ``sigma <= 0`` uses OpenCV's rule
    ``0.3 * ((ksize - 1) / 2 - 1) + 0.8`` (and OpenCV 5's fixed tables for ksize <= 9)."""
    ksize = _check_int(ksize, "ksize", low=1, high=MAX_KSIZE)
    if ksize % 2 == 0:
        raise ValueError(f"ksize must be odd, got {ksize}")
    sigma = _check_number(sigma, "sigma", low=0.0)
    if sigma == 0.0 and ksize in _SMALL_GAUSSIAN:
        return np.asarray(_SMALL_GAUSSIAN[ksize], dtype=np.float32)
    s = sigma if sigma > 0.0 else 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize, dtype=np.float64) - (ksize - 1) / 2
    k = np.exp(-(x * x) / (2 * s * s))
    return (k / k.sum()).astype(np.float32)


def motion_kernel(length: float, angle: float) -> np.ndarray:
    """Linear motion-blur PSF: a centred line of ``length`` pixels at ``angle`` degrees
    (counter-clockwise from the +x axis, image y pointing down), drawn with bilinear weights.
    Returns a float32 (K, K) kernel, K odd, summing to 1; ``length < 1`` gives the 1x1 identity."""
    length = _check_number(length, "length", low=0.0, high=1000.0)
    angle = _check_number(angle, "angle")
    if length < 1.0:
        return np.ones((1, 1), dtype=np.float32)
    k = 2 * math.ceil(length / 2) + 1
    centre = k // 2
    kernel = np.zeros((k, k), dtype=np.float64)
    t = np.linspace(-length / 2, length / 2, 4 * math.ceil(length) + 1)
    rad = math.radians(angle)
    xs = centre + t * math.cos(rad)
    ys = centre - t * math.sin(rad)
    x0, y0 = np.floor(xs).astype(int), np.floor(ys).astype(int)
    fx, fy = xs - x0, ys - y0
    for dy, wy in ((0, 1 - fy), (1, fy)):
        for dx, wx in ((0, 1 - fx), (1, fx)):
            xi, yi = np.clip(x0 + dx, 0, k - 1), np.clip(y0 + dy, 0, k - 1)
            np.add.at(kernel, (yi, xi), wx * wy)
    return (kernel / kernel.sum()).astype(np.float32)


def filter2d(img: Any, kernel: Any) -> Any:
    """Correlate each channel with a square, odd-sized ``kernel`` (K, K) as ``cv2.filter2D``
    does (no flip, reflect-101 borders). ``img``: (H, W, 3) or (B, H, W, 3), uint8 or float32
    in [0, 1]; the result is saturated to the input's range."""
    k = np.asarray(kernel, dtype=np.float32)
    if k.ndim != 2 or k.shape[0] != k.shape[1] or k.shape[0] % 2 == 0:
        raise ValueError(f"filter2d: kernel must be square with an odd size, got shape {k.shape}")
    if not np.isfinite(k).all():
        raise ValueError("filter2d: kernel must be finite")
    k = np.ascontiguousarray(k)

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("filter2d")(src.ptr, dst.ptr, *bhwc, _is_u8(src), k, src.device, src.stream)

    return _run(img, "filter2d", lambda a: _C.degrade_filter2d(a, k), cuda)


def _sep_filter(img: Any, op: str, kx: np.ndarray, ky: np.ndarray) -> Any:
    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("sep_filter")(src.ptr, dst.ptr, *bhwc, _is_u8(src), kx, ky, src.device, src.stream)

    return _run(img, op, lambda a: _C.degrade_sep_filter(a, kx, ky), cuda)


def gaussian_blur(img: Any, ksize: int, sigma: float = 0.0) -> Any:
    """Gaussian blur as ``cv2.GaussianBlur(img, (ksize, ksize), sigma)`` (reflect-101 borders).
    ``ksize``: odd, >= 1; ``sigma >= 0`` (0: OpenCV's rule from ksize). ``img``: (H, W, 3) or
    (B, H, W, 3), uint8 or float32 in [0, 1]."""
    k = gaussian_kernel(ksize, sigma)
    return _sep_filter(img, "gaussian_blur", k, k)


def motion_blur(img: Any, length: float, angle: float) -> Any:
    """Linear motion blur with :func:`motion_kernel` (``length`` pixels at ``angle`` degrees);
    ``length < 1`` returns an unchanged copy. ``img``: (H, W, 3) or (B, H, W, 3), uint8 or
    float32 in [0, 1]."""
    return filter2d(img, motion_kernel(length, angle))


# ---- resize ----------------------------------------------------------------------------------


def _resize_args(size: Any, interpolation: Any) -> tuple[int, int, int]:
    """Validated (height, width, interpolation code) of a resize."""
    if interpolation not in INTERPOLATIONS:
        raise ValueError(f"resize: interpolation must be one of {sorted(INTERPOLATIONS)}, got {interpolation!r}")
    if not isinstance(size, (tuple, list)) or len(size) != 2:
        raise TypeError(f"resize: size must be a (height, width) pair, got {size!r}")
    return _check_int(size[0], "height", low=1), _check_int(size[1], "width", low=1), INTERPOLATIONS[interpolation]


def resize(img: Any, size: tuple[int, int], interpolation: str = "bilinear") -> Any:
    """Resize to ``size`` = (height, width) with OpenCV's pixel conventions: ``"nearest"``
    (identical to ``cv2.INTER_NEAREST``), ``"bilinear"``, ``"bicubic"`` (a = -0.75, replicated
    borders) or ``"area"`` (cell averaging when shrinking), matching ``cv2.resize`` within one
    grey level. ``img``: (H, W, 3) or (B, H, W, 3), uint8 or float32 in [0, 1]; the result is
    (height, width, 3) or (B, height, width, 3), saturated to the input's range."""
    oh, ow, code = _resize_args(size, interpolation)

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("resize")(src.ptr, dst.ptr, *bhwc, _is_u8(src), oh, ow, code, src.device, src.stream)

    return _run(img, "resize", lambda a: _C.degrade_resize(a, oh, ow, code), cuda, out_hw=(oh, ow))


# ---- noise -----------------------------------------------------------------------------------


def add_gaussian_noise(img: Any, sigma: float, mean: float = 0.0, gray: bool = False, seed: int = 0) -> Any:
    """Add Gaussian noise N(mean, sigma^2), ``sigma >= 0`` and ``mean`` in grey levels of 0..255
    whatever the dtype, then clip to the input's range. ``gray``: one noise value per pixel shared
    by the channels; otherwise independent per channel. ``seed``: 0 <= seed < 2**64; image ``b``
    of a batch uses stream ``b``. ``img``: (H, W, 3) or (B, H, W, 3), uint8 or float32 in [0, 1]."""
    sigma = _check_number(sigma, "sigma", low=0.0)
    mean = _check_number(mean, "mean")
    seed = _check_seed(seed)
    gray = bool(gray)

    def cpu(a: np.ndarray) -> np.ndarray:
        return _C.degrade_gaussian_noise(a, sigma, mean, gray, *_streams(a.shape[0], seed))

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("gaussian_noise")(src.ptr, dst.ptr, *bhwc, _is_u8(src), sigma, mean, gray, *_streams(bhwc[0], seed),
                                   src.device, src.stream)

    return _run(img, "add_gaussian_noise", cpu, cuda)


def add_poisson_noise(img: Any, scale: float, gray: bool = False, seed: int = 0) -> Any:
    """Add shot noise: each value v (in grey levels of 0..255) becomes
    ``v + scale * (Poisson(v) - v)``, clipped to the input's range (``scale >= 0``; 1 = plain
    Poisson). ``gray``: counts drawn from each pixel's luma and shared by its channels.
    ``seed``: 0 <= seed < 2**64; image ``b`` of a batch uses stream ``b``. ``img``: (H, W, 3) or
    (B, H, W, 3), uint8 or float32 in [0, 1]."""
    scale = _check_number(scale, "scale", low=0.0)
    seed = _check_seed(seed)
    gray = bool(gray)

    def cpu(a: np.ndarray) -> np.ndarray:
        return _C.degrade_poisson_noise(a, scale, gray, *_streams(a.shape[0], seed))

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("poisson_noise")(src.ptr, dst.ptr, *bhwc, _is_u8(src), scale, gray, *_streams(bhwc[0], seed),
                                  src.device, src.stream)

    return _run(img, "add_poisson_noise", cpu, cuda)


def add_salt_pepper(img: Any, amount: float, seed: int = 0) -> Any:
    """Salt-and-pepper noise: each pixel, with probability ``amount`` in [0, 1], becomes black
    or white (even odds, all channels). ``seed``: 0 <= seed < 2**64; image ``b`` of a batch uses
    stream ``b``. ``img``: (H, W, 3) or (B, H, W, 3), uint8 or float32 in [0, 1]."""
    amount = _check_number(amount, "amount", low=0.0, high=1.0)
    seed = _check_seed(seed)

    def cpu(a: np.ndarray) -> np.ndarray:
        return _C.degrade_salt_pepper(a, amount, *_streams(a.shape[0], seed))

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("salt_pepper")(src.ptr, dst.ptr, *bhwc, _is_u8(src), amount, *_streams(bhwc[0], seed), src.device,
                                src.stream)

    return _run(img, "add_salt_pepper", cpu, cuda)


# ---- JPEG ------------------------------------------------------------------------------------


def jpeg(img: Any, quality: int, subsampling: str = "4:2:0") -> Any:
    """JPEG compression artefacts: the lossy half of a baseline JPEG round trip (JFIF YCbCr,
    ``subsampling`` "4:2:0" or "4:4:4", 8x8 DCT, libjpeg's quality-scaled standard tables,
    libjpeg's triangular chroma upsampling) without the lossless entropy coding. ``quality``:
    integer 1..100. float32 input is rounded to 8 bits first, as an encoder would. ``img``:
    (H, W, 3) or (B, H, W, 3), uint8 or float32 in [0, 1]."""
    quality = _check_int(quality, "quality", low=1, high=100)
    if subsampling not in _SUBSAMPLING:
        raise ValueError(f"jpeg: subsampling must be '4:2:0' or '4:4:4', got {subsampling!r}")
    sub420 = _SUBSAMPLING[subsampling]

    def cuda(src: CudaView, dst: CudaView, bhwc: tuple[int, int, int, int]) -> None:
        _cuda_fn("jpeg")(src.ptr, dst.ptr, *bhwc, _is_u8(src), quality, sub420, src.device, src.stream)

    return _run(img, "jpeg", lambda a: _C.degrade_jpeg(a, quality, sub420), cuda)
