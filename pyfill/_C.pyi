"""
pyfill compiled core: C++ kernels, and CUDA kernels when built with them
"""
from __future__ import annotations
import numpy
import numpy.typing
import typing
__all__: list[str] = ['build_config', 'chw_to_image_u8', 'cpu_simd', 'cuda_devices', 'cuda_smoke_saxpy', 'degrade_apply_pipeline', 'degrade_cuda_filter2d', 'degrade_cuda_gaussian_noise', 'degrade_cuda_jpeg', 'degrade_cuda_poisson_noise', 'degrade_cuda_resize', 'degrade_cuda_salt_pepper', 'degrade_cuda_sep_filter', 'degrade_filter2d', 'degrade_gaussian_noise', 'degrade_jpeg', 'degrade_poisson_noise', 'degrade_resize', 'degrade_salt_pepper', 'degrade_sep_filter', 'dispatch_isa', 'get_num_threads', 'hardware_threads', 'image_u8_to_chw', 'set_num_threads', 'stroke_grid_cpu', 'stroke_grid_cuda', 'stroke_grid_from_image_cpu', 'stroke_grid_from_image_cuda']
def build_config() -> dict:
    """
    Facts fixed when this extension was compiled.
    """
def chw_to_image_u8(x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], scale: typing.SupportsFloat | typing.SupportsIndex, offset: typing.SupportsFloat | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.uint8]:
    """
    float32 (C, H, W) C-contiguous -> uint8 (H, W, C): v * scale + offset rounded half to even, clamped to [0, 255], NaN -> 0; parallel over rows.
    """
def cpu_simd() -> str:
    """
    Widest SIMD extension the running CPU supports.
    """
def cuda_devices() -> tuple[list, str]:
    """
    (devices, reason): CUDA devices visible now, probed at call time; reason says why none.
    """
def cuda_smoke_saxpy(a: typing.SupportsFloat | typing.SupportsIndex, x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], y: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> numpy.typing.NDArray[numpy.float32]:
    """
    a * x + y on the GPU: a smoke test that the CUDA kernels load and run.
    """
def degrade_apply_pipeline(img: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], steps: typing.Annotated[numpy.typing.ArrayLike, numpy.int64], params: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], seeds: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], kernels: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], offsets: typing.Annotated[numpy.typing.ArrayLike, numpy.int64]) -> numpy.ndarray[typing.Any, numpy.dtype[typing.Any]]:
    """
    Apply per-image step lists to (B, H, W, C) uint8/float32 images, each image's chain in one task, images in parallel. Image i's steps are rows offsets[i]..offsets[i+1] (offsets: int64 (B + 1,)) of steps (int64 (S, 6): code, i0, i1, i2, kernel offset, kernel length), params (float32 (S, 2): f0, f1) and seeds (uint64 (S,)); kernels is the float32 array the kernel slices index. Codes: 0 separable blur (1-D taps on both axes), 1 2-D correlation (K*K taps), 2 resize (i0 height, i1 width, i2 interpolation), 3 Gaussian noise (f0 sigma, f1 mean, i0 gray), 4 Poisson noise (f0 scale, i0 gray), 5 salt and pepper (f0 amount), 6 JPEG (i0 quality, i1 4:2:0). Noise uses stream 0 of its seed, as a lone image does. Every image's steps must end at the input size. Returns the (B, H, W, C) result.
    """
def degrade_cuda_filter2d(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg8: typing.SupportsInt | typing.SupportsIndex, arg9: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    2-D correlation on the GPU (see degrade_filter2d).
    """
def degrade_cuda_gaussian_noise(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.SupportsFloat | typing.SupportsIndex, arg9: bool, arg10: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], arg11: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg12: typing.SupportsInt | typing.SupportsIndex, arg13: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Gaussian noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_cuda_jpeg(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.SupportsInt | typing.SupportsIndex, arg8: bool, arg9: typing.SupportsInt | typing.SupportsIndex, arg10: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    JPEG's lossy path on the GPU (see degrade_jpeg).
    """
def degrade_cuda_poisson_noise(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: bool, arg9: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], arg10: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg11: typing.SupportsInt | typing.SupportsIndex, arg12: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Poisson noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_cuda_resize(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.SupportsInt | typing.SupportsIndex, arg8: typing.SupportsInt | typing.SupportsIndex, arg9: typing.SupportsInt | typing.SupportsIndex, arg10: typing.SupportsInt | typing.SupportsIndex, arg11: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Resize on the GPU (see degrade_resize).
    """
def degrade_cuda_salt_pepper(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.SupportsFloat | typing.SupportsIndex, arg8: typing.Annotated[numpy.typing.ArrayLike, numpy.uint64], arg9: typing.Annotated[numpy.typing.ArrayLike, numpy.uint32], arg10: typing.SupportsInt | typing.SupportsIndex, arg11: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Salt-and-pepper noise on the GPU with per-image Philox streams (seeds: uint64 (B,), streams: uint32 (B,)).
    """
def degrade_cuda_sep_filter(arg0: typing.SupportsInt | typing.SupportsIndex, arg1: typing.SupportsInt | typing.SupportsIndex, arg2: typing.SupportsInt | typing.SupportsIndex, arg3: typing.SupportsInt | typing.SupportsIndex, arg4: typing.SupportsInt | typing.SupportsIndex, arg5: typing.SupportsInt | typing.SupportsIndex, arg6: bool, arg7: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg8: typing.Annotated[numpy.typing.ArrayLike, numpy.float32], arg9: typing.SupportsInt | typing.SupportsIndex, arg10: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Separable correlation on the GPU (see degrade_sep_filter).
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
def dispatch_isa() -> str:
    """
    The instruction set the multi-versioned hot loops run on this CPU: avx512f, avx2, baseline or none.
    """
def get_num_threads() -> int:
    """
    Worker threads the CPU kernels use per call.
    """
def hardware_threads() -> int:
    """
    Hardware threads of this machine.
    """
def image_u8_to_chw(img: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], scale: typing.SupportsFloat | typing.SupportsIndex, offset: typing.SupportsFloat | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    uint8 (H, W, C) C-contiguous -> float32 (C, H, W) with v * scale + offset, in one pass; parallel over rows.
    """
def set_num_threads(n: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Set the worker threads of the CPU kernels; 0 restores the hardware default.
    """
def stroke_grid_cpu(strokes: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], occupancy: typing.Any, s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Stroke-grid features of C-contiguous (B, H, W, 3) uint8/float32 strokes with an optional (B, H, W) uint8/bool occupancy (None: any channel > 0) -> float32 (B, s1, s2, 8).
    """
def stroke_grid_cuda(strokes: typing.SupportsInt | typing.SupportsIndex, is_float: bool, occupancy: typing.SupportsInt | typing.SupportsIndex, out: typing.SupportsInt | typing.SupportsIndex, labels: typing.SupportsInt | typing.SupportsIndex, boxes: typing.SupportsInt | typing.SupportsIndex, b: typing.SupportsInt | typing.SupportsIndex, h: typing.SupportsInt | typing.SupportsIndex, w: typing.SupportsInt | typing.SupportsIndex, s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Queue the stroke-grid kernels on `stream`. Device pointers: strokes (B, H, W, 3) uint8/float32, occupancy (B, H, W) bytes or 0, out (B, s1, s2, 8) float32, labels (B * H * W int32) and boxes (4 * B * s1 * s2 int32) workspaces.
    """
def stroke_grid_from_image_cpu(images: numpy.ndarray[typing.Any, numpy.dtype[typing.Any]], s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex, dropped: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex) -> numpy.typing.NDArray[numpy.float32]:
    """
    Training synthesis from C-contiguous (B, H, W, 3) uint8/float32 images with `dropped` cells zeroed per image -> float32 (B, s1, s2, 8).
    """
def stroke_grid_from_image_cuda(images: typing.SupportsInt | typing.SupportsIndex, is_float: bool, out: typing.SupportsInt | typing.SupportsIndex, perm: typing.SupportsInt | typing.SupportsIndex, b: typing.SupportsInt | typing.SupportsIndex, h: typing.SupportsInt | typing.SupportsIndex, w: typing.SupportsInt | typing.SupportsIndex, s1: typing.SupportsInt | typing.SupportsIndex, s2: typing.SupportsInt | typing.SupportsIndex, dropped: typing.SupportsInt | typing.SupportsIndex, seed: typing.SupportsInt | typing.SupportsIndex, device: typing.SupportsInt | typing.SupportsIndex, stream: typing.SupportsInt | typing.SupportsIndex) -> None:
    """
    Queue the training synthesis on `stream`. Device pointers: images (B, H, W, 3) uint8/float32, out (B, s1, s2, 8) float32, perm (B * s1 * s2 int32) workspace.
    """
