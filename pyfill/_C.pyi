"""
pyfill compiled core: C++ kernels, and CUDA kernels when built with them
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
__all__: list[str] = ['build_config', 'cpu_simd', 'cuda_devices', 'degrade_apply_pipeline', 'degrade_filter2d', 'degrade_gaussian_noise', 'degrade_jpeg', 'degrade_poisson_noise', 'degrade_resize', 'degrade_salt_pepper', 'degrade_sep_filter', 'get_num_threads', 'hardware_threads', 'set_num_threads', 'stroke_grid_cpu', 'stroke_grid_from_image_cpu']
def build_config() -> dict:
    """
    Facts fixed when this extension was compiled.
    """
def cpu_simd() -> str:
    """
    Widest SIMD extension the running CPU supports.
    """
def cuda_devices() -> tuple[list, str]:
    """
    (devices, reason): CUDA devices visible now, probed at call time; reason says why none.
    """
def degrade_apply_pipeline(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], steps: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], seeds: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], kernels: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], offsets: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Apply per-image step lists to (B, H, W, C) uint8/float32 images, each image's chain in one task, images in parallel. Image i's steps are rows offsets[i]..offsets[i+1] (offsets: int64 (B + 1,)) of steps (int64 (S, 6): code, i0, i1, i2, kernel offset, kernel length), params (float32 (S, 2): f0, f1) and seeds (uint64 (S,)); kernels is the float32 array the kernel slices index. Codes: 0 separable blur (1-D taps on both axes), 1 2-D correlation (K*K taps), 2 resize (i0 height, i1 width, i2 interpolation), 3 Gaussian noise (f0 sigma, f1 mean, i0 gray), 4 Poisson noise (f0 scale, i0 gray), 5 salt and pepper (f0 amount), 6 JPEG (i0 quality, i1 4:2:0). Noise uses stream 0 of its seed, as a lone image does. Every image's steps must end at the input size. Returns the (B, H, W, C) result.
    """
def degrade_filter2d(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], kernel: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    2-D correlation of (B, H, W, C) uint8/float32 images with a square odd (K, K) float32 kernel, reflect-101 borders; parallel over images.
    """
def degrade_gaussian_noise(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], sigma: typing.SupportsFloat | typing.SupportsIndex, mean: typing.SupportsFloat | typing.SupportsIndex, gray: bool, seeds: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], streams: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Add N(mean, sigma^2) noise (grey levels of 0..255) to (B, H, W, C) images from per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_jpeg(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], quality: typing.SupportsInt | typing.SupportsIndex, subsample_420: bool) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    JPEG's lossy path (colour conversion, chroma subsampling, DCT quantisation) on (B, H, W, 3) images, without entropy coding; parallel over images.
    """
def degrade_poisson_noise(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], scale: typing.SupportsFloat | typing.SupportsIndex, gray: bool, seeds: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], streams: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Add scaled Poisson noise (counts = grey levels of 0..255) to (B, H, W, C) images from per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_resize(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], height: typing.SupportsInt | typing.SupportsIndex, width: typing.SupportsInt | typing.SupportsIndex, interp: typing.SupportsInt | typing.SupportsIndex) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Resize (B, H, W, C) uint8/float32 images to (B, height, width, C) with OpenCV's conventions (0 nearest, 1 bilinear, 2 bicubic, 3 area); parallel over images.
    """
def degrade_salt_pepper(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], amount: typing.SupportsFloat | typing.SupportsIndex, seeds: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], streams: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Set a fraction `amount` of the pixels of (B, H, W, C) images to black or white from per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_sep_filter(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], kx: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], ky: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Separable correlation of (B, H, W, C) uint8/float32 images with odd 1-D float32 kernels, reflect-101 borders; parallel over images.
    """
def get_num_threads() -> int:
    """
    Worker threads the CPU kernels use per call.
    """
def hardware_threads() -> int:
    """
    Hardware threads of this machine.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Set the worker threads of the CPU kernels; 0 restores the hardware default.
    """
def stroke_grid_cpu(strokes: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], occupancy: typing.Any, s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Stroke-grid features of C-contiguous (B, H, W, 3) uint8/float32 strokes with an optional (B, H, W) uint8/bool occupancy (None: any channel > 0) -> float32 (B, s1, s2, 8).
    """
def stroke_grid_from_image_cpu(images: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex, dropped: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Training synthesis from C-contiguous (B, H, W, 3) uint8/float32 images with `dropped` cells zeroed per image -> float32 (B, s1, s2, 8).
    """
