"""Degradation ops against OpenCV, Pillow and the NumPy references; noise statistics; errors."""

from __future__ import annotations

import io
import re

import cv2
import numpy as np
import pytest
from helpers import requires_cuda

from pyfill import ops
from pyfill.ops.reference import degrade as ref

INTERP_CV2 = {"nearest": cv2.INTER_NEAREST, "bilinear": cv2.INTER_LINEAR, "bicubic": cv2.INTER_CUBIC, "area": cv2.INTER_AREA}


def photo_like(seed: int, h: int = 96, w: int = 80) -> np.ndarray:
    """A smooth uint8 RGB image with edges and texture, closer to a photo than white noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([xx / w * 200 + 20, yy / h * 180 + 40, (xx + yy) / (h + w) * 150 + 60], -1)
    texture = cv2.GaussianBlur(rng.normal(0, 40, (h, w, 3)).astype(np.float32), (0, 0), 1.5)
    img = base + texture
    img[h // 3 : h // 2, w // 4 : w // 2] = (230, 40, 30)  # a hard-edged patch
    return np.clip(img, 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def batch() -> np.ndarray:
    return np.stack([photo_like(s) for s in range(3)])


def max_diff(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(np.float64) - b.astype(np.float64)).max())


# ---- blur ----------------------------------------------------------------------------------------


@pytest.mark.parametrize("ksize", [1, 3, 5, 7, 9, 13])
@pytest.mark.parametrize("sigma", [0.0, 0.7, 2.5])
def test_gaussian_blur_matches_opencv(batch: np.ndarray, ksize: int, sigma: float) -> None:
    out = ops.gaussian_blur(batch, ksize, sigma)
    expected = np.stack([cv2.GaussianBlur(im, (ksize, ksize), sigma) for im in batch])
    assert out.dtype == np.uint8 and out.shape == batch.shape
    assert max_diff(out, expected) <= 1
    # exact for the installed OpenCV; 3e-3 covers OpenCV 4, which has no fixed 9-tap table
    np.testing.assert_allclose(ops.gaussian_kernel(ksize, sigma), cv2.getGaussianKernel(ksize, sigma).ravel(), atol=3e-3)


def test_gaussian_blur_float32(batch: np.ndarray) -> None:
    x = batch.astype(np.float32) / 255
    out = ops.gaussian_blur(x, 7, 1.3)
    expected = np.stack([cv2.GaussianBlur(im, (7, 7), 1.3) for im in x])
    assert out.dtype == np.float32
    assert max_diff(out, expected) < 1e-5


def test_filter2d_matches_opencv_and_reference(batch: np.ndarray) -> None:
    rng = np.random.default_rng(3)
    kernel = rng.random((5, 5)).astype(np.float32)
    kernel /= kernel.sum()
    out = ops.filter2d(batch, kernel)
    expected = np.stack([cv2.filter2D(im, -1, kernel, borderType=cv2.BORDER_REFLECT_101) for im in batch])
    assert max_diff(out, expected) <= 1
    own = np.clip(np.floor(ref.correlate2d(batch[0].astype(np.float64), kernel) + 0.5), 0, 255)
    assert max_diff(out[0], own) <= 1


def test_filter2d_is_correlation_not_convolution() -> None:
    img = np.zeros((9, 9, 3), np.uint8)
    img[4, 4] = 200
    kernel = np.zeros((3, 3), np.float32)
    kernel[1, 2] = 1.0  # out(x) = in(x + 1): the impulse moves left
    out = ops.filter2d(img, kernel)
    assert out[4, 3, 0] == 200 and out[4, 4, 0] == 0


@pytest.mark.parametrize("length,angle", [(0.5, 10.0), (3.0, 0.0), (7.5, 45.0), (12.0, 90.0), (5.2, 17.0)])
def test_motion_blur(batch: np.ndarray, length: float, angle: float) -> None:
    kernel = ops.motion_kernel(length, angle)
    assert kernel.shape[0] % 2 == 1 and abs(float(kernel.sum()) - 1) < 1e-5
    out = ops.motion_blur(batch, length, angle)
    if length < 1:
        np.testing.assert_array_equal(out, batch)
        return
    expected = np.stack([cv2.filter2D(im, -1, kernel, borderType=cv2.BORDER_REFLECT_101) for im in batch])
    assert max_diff(out, expected) <= 1
    # the PSF is a line through the centre along the requested direction
    ys, xs = np.nonzero(kernel > 1e-3)
    c = kernel.shape[0] // 2
    vec = np.stack([xs - c, c - ys], 1).astype(np.float64)
    direction = np.array([np.cos(np.radians(angle)), np.sin(np.radians(angle))])
    assert np.abs(vec @ np.array([-direction[1], direction[0]])).max() < 1.0 + 1e-6


# ---- resize --------------------------------------------------------------------------------------


@pytest.mark.parametrize("interp", list(INTERP_CV2))
@pytest.mark.parametrize("size", [(48, 40), (31, 27), (24, 20), (200, 170), (37, 160), (96, 80)])
def test_resize_matches_opencv(batch: np.ndarray, interp: str, size: tuple[int, int]) -> None:
    out = ops.resize(batch, size, interp)
    expected = np.stack([cv2.resize(im, (size[1], size[0]), interpolation=INTERP_CV2[interp]) for im in batch])
    assert out.shape == (batch.shape[0], *size, 3)
    if interp == "nearest":
        np.testing.assert_array_equal(out, expected)
    else:
        assert max_diff(out, expected) <= 1
    own = np.clip(np.floor(ref.resize(batch[1].astype(np.float64), size, interp) + 0.5), 0, 255)
    assert max_diff(out[1], own) <= 1


@pytest.mark.parametrize("interp", list(INTERP_CV2))
def test_resize_float32(batch: np.ndarray, interp: str) -> None:
    x = batch.astype(np.float32) / 255
    out = ops.resize(x, (41, 29), interp)
    expected = np.clip(np.stack([cv2.resize(im, (29, 41), interpolation=INTERP_CV2[interp]) for im in x]), 0, 1)
    assert out.dtype == np.float32
    assert max_diff(out, expected) < 1e-4


# ---- JPEG ----------------------------------------------------------------------------------------


def pillow_jpeg(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(img).save(buf, "JPEG", quality=quality, subsampling={"4:4:4": 0, "4:2:0": 2}[subsampling])
    return np.asarray(Image.open(buf).convert("RGB"))


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255.0**2 / mse)


@pytest.mark.parametrize("subsampling", ["4:2:0", "4:4:4"])
# below 50 libjpeg scales its tables by 5000 / quality, from 50 up by 200 - 2 * quality
@pytest.mark.parametrize("quality", [5, 10, 25, 49, 50, 60, 75, 90, 95, 100])
def test_jpeg_matches_pillow(batch: np.ndarray, quality: int, subsampling: str) -> None:
    out = ops.jpeg(batch, quality, subsampling)
    values = [psnr(o, pillow_jpeg(im, quality, subsampling)) for o, im in zip(out, batch)]
    assert np.mean(values) >= 40.0, values
    # and it is a real degradation: lower quality, further from the source
    if quality <= 75:
        assert psnr(out[0], batch[0]) < 45


@pytest.mark.parametrize("shape", [(37, 53), (16, 16), (9, 130), (1, 1)])
def test_jpeg_odd_sizes_match_pillow_and_reference(shape: tuple[int, int]) -> None:
    # a little noise keeps DCT coefficients off exact quantisation ties, where float rounding
    # in the reference and in the kernels may legitimately go either way
    noise = np.random.default_rng(1).integers(-3, 4, (*shape, 3))
    img = np.clip(photo_like(7, *shape) + noise, 0, 255).astype(np.uint8)
    for subsampling in ("4:2:0", "4:4:4"):
        out = ops.jpeg(img, 80, subsampling)
        assert out.shape == img.shape
        assert psnr(out, pillow_jpeg(img, 80, subsampling)) >= 40.0
        assert max_diff(out, ref.jpeg(img, 80, subsampling)) <= 3


def test_jpeg_float32_equals_uint8_path(batch: np.ndarray) -> None:
    out8 = ops.jpeg(batch, 70)
    outf = ops.jpeg(batch.astype(np.float32) / 255, 70)
    assert outf.dtype == np.float32
    np.testing.assert_array_equal(np.round(outf * 255).astype(np.uint8), out8)


# ---- noise ---------------------------------------------------------------------------------------


def flat(value: int, h: int = 128, w: int = 128, b: int | None = None) -> np.ndarray:
    shape = (h, w, 3) if b is None else (b, h, w, 3)
    return np.full(shape, value, np.uint8)


@pytest.mark.parametrize("gray", [False, True])
def test_gaussian_noise_statistics(gray: bool) -> None:
    out = ops.add_gaussian_noise(flat(128), sigma=12.0, mean=3.0, gray=gray, seed=11).astype(np.float64)
    assert abs(out.mean() - 131.0) < 0.5
    assert abs(out.std() - 12.0) < 0.5
    if gray:
        assert (out[..., 0] == out[..., 1]).all() and (out[..., 1] == out[..., 2]).all()
    else:
        assert (out[..., 0] != out[..., 1]).mean() > 0.9


def test_gaussian_noise_matches_reference_and_clips() -> None:
    img = photo_like(2)
    out = ops.add_gaussian_noise(img, 20.0, seed=5)
    expected = np.clip(np.floor(ref.gaussian_noise(img.astype(np.float64), 20.0, 0.0, False, 5) + 0.5), 0, 255)
    assert max_diff(out, expected) <= 1
    assert (out != expected).mean() < 1e-3
    assert ops.add_gaussian_noise(flat(250), 30.0, seed=1).max() == 255


def test_gaussian_noise_float32() -> None:
    x = np.full((64, 64, 3), 0.5, np.float32)
    out = ops.add_gaussian_noise(x, sigma=25.5, seed=3)
    assert out.dtype == np.float32
    assert abs(float(out.std()) - 0.1) < 0.005 and abs(float(out.mean()) - 0.5) < 0.005
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("level,scale", [(100, 1.0), (5, 1.0), (60, 2.0), (200, 0.5)])
def test_poisson_noise_statistics(level: int, scale: float) -> None:
    out = ops.add_poisson_noise(flat(level), scale=scale, seed=4).astype(np.float64)
    assert abs(out.mean() - level) < 0.1 * np.sqrt(level) * scale + 0.05
    assert abs(out.std() - scale * np.sqrt(level)) < 0.05 * scale * np.sqrt(level) + 0.05


def test_poisson_noise_gray_shares_channels_and_zero_stays_zero() -> None:
    out = ops.add_poisson_noise(flat(90), scale=1.0, gray=True, seed=2)
    assert (out[..., 0] == out[..., 2]).all()
    assert (ops.add_poisson_noise(flat(0), 3.0, seed=1) == 0).all()


@pytest.mark.parametrize("amount", [0.0, 0.02, 0.3, 1.0])
def test_salt_pepper_fraction(amount: float) -> None:
    out = ops.add_salt_pepper(flat(128), amount, seed=9)
    changed = (out != 128).any(-1)
    assert abs(changed.mean() - amount) < 0.01
    values = out[changed]
    assert np.isin(values, [0, 255]).all()
    if amount >= 0.3:
        assert abs((values[:, 0] == 255).mean() - 0.5) < 0.03
    replaced, _ = ref.salt_pepper_mask((128, 128), amount, 9)
    np.testing.assert_array_equal(changed, replaced)


NOISE_OPS = {
    "gaussian": lambda x, seed: ops.add_gaussian_noise(x, 10.0, seed=seed),
    "poisson": lambda x, seed: ops.add_poisson_noise(x, 1.0, seed=seed),
    "salt_pepper": lambda x, seed: ops.add_salt_pepper(x, 0.1, seed=seed),
}


@pytest.mark.parametrize("name", list(NOISE_OPS))
def test_noise_determinism_and_streams(name: str) -> None:
    op = NOISE_OPS[name]
    x = flat(120, 32, 32, b=3)
    a, b, c = op(x, 1), op(x, 1), op(x, 2)
    np.testing.assert_array_equal(a, b)
    assert (a != c).any()
    assert (a[0] != a[1]).any() and (a[1] != a[2]).any()  # each image its own stream
    np.testing.assert_array_equal(op(x[0], 1), a[0])  # a lone image is stream 0


# ---- torch, layouts, errors ----------------------------------------------------------------------


def test_torch_cpu_tensors_round_trip(batch: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(batch.copy())
    cases = [
        (ops.gaussian_blur(t, 5), ops.gaussian_blur(batch, 5)),
        (ops.resize(t, (20, 30), "bicubic"), ops.resize(batch, (20, 30), "bicubic")),
        (ops.add_salt_pepper(t, 0.1, seed=3), ops.add_salt_pepper(batch, 0.1, seed=3)),
        (ops.jpeg(t[0], 60), ops.jpeg(batch[0], 60)),
    ]
    for got, expected in cases:
        assert isinstance(got, torch.Tensor)
        np.testing.assert_array_equal(got.numpy(), expected)


def test_non_contiguous_input(batch: np.ndarray) -> None:
    view = batch[:, ::2, ::2]
    np.testing.assert_array_equal(ops.gaussian_blur(view, 3), ops.gaussian_blur(view.copy(), 3))


@pytest.mark.parametrize(
    "call,error,message",
    [
        (lambda x: ops.gaussian_blur(x, 4), ValueError, "ksize must be odd, got 4"),
        (lambda x: ops.gaussian_blur(x, 0), ValueError, "ksize must be >= 1, got 0"),
        (lambda x: ops.gaussian_blur(x, 3.0), TypeError, "ksize must be an integer, got float"),
        (lambda x: ops.gaussian_blur(x, 3, -1.0), ValueError, r"sigma must be >= 0.0, got -1.0"),
        (lambda x: ops.filter2d(x, np.ones((2, 2))), ValueError, r"square with an odd size, got shape \(2, 2\)"),
        (lambda x: ops.filter2d(x, np.ones((3, 5))), ValueError, r"square with an odd size, got shape \(3, 5\)"),
        (lambda x: ops.filter2d(x, np.full((3, 3), np.nan)), ValueError, "kernel must be finite"),
        (lambda x: ops.motion_blur(x, -1.0, 0.0), ValueError, r"length must be >= 0.0, got -1.0"),
        (lambda x: ops.resize(x, (0, 5)), ValueError, "height must be >= 1, got 0"),
        (lambda x: ops.resize(x, (5, 5), "lanczos"), ValueError, "interpolation must be one of .* got 'lanczos'"),
        (lambda x: ops.resize(x, 5), TypeError, r"size must be a \(height, width\) pair, got 5"),
        (lambda x: ops.add_gaussian_noise(x, -1.0), ValueError, r"sigma must be >= 0.0, got -1.0"),
        (lambda x: ops.add_gaussian_noise(x, 1.0, seed=-1), ValueError, "seed must be >= 0, got -1"),
        (lambda x: ops.add_poisson_noise(x, -0.5), ValueError, r"scale must be >= 0.0, got -0.5"),
        (lambda x: ops.add_salt_pepper(x, 1.5), ValueError, r"amount must be <= 1.0, got 1.5"),
        (lambda x: ops.jpeg(x, 0), ValueError, "quality must be >= 1, got 0"),
        (lambda x: ops.jpeg(x, 101), ValueError, "quality must be <= 100, got 101"),
        (lambda x: ops.jpeg(x, 50, "4:2:2"), ValueError, "subsampling must be '4:2:0' or '4:4:4', got '4:2:2'"),
        (lambda x: ops.jpeg(x, float("nan")), TypeError, "quality must be an integer, got float"),
    ],
)
def test_bad_parameters(call, error, message) -> None:
    with pytest.raises(error, match=message):
        call(flat(100, 16, 16))


@pytest.mark.parametrize(
    "img,error,message",
    [
        (np.zeros((16, 16), np.uint8), ValueError, r"expected RGB images of shape \(H, W, 3\) or \(B, H, W, 3\), got \(16, 16\)"),
        (np.zeros((16, 16, 4), np.uint8), ValueError, r"expected RGB images .* got \(16, 16, 4\)"),
        (np.zeros((1, 1, 16, 16, 3), np.uint8), ValueError, r"expected RGB images .* got \(1, 1, 16, 16, 3\)"),
        (np.zeros((0, 16, 3), np.uint8), ValueError, r"empty image batch of shape \(0, 16, 3\)"),
        (np.zeros((0, 16, 16, 3), np.uint8), ValueError, r"empty image batch of shape \(0, 16, 16, 3\)"),
        (np.zeros((16, 16, 3), np.float64), TypeError, "images must be uint8 or float32, got float64"),
        (np.zeros((16, 16, 3), np.int32), TypeError, "images must be uint8 or float32, got int32"),
        (np.full((16, 16, 3), np.nan, np.float32), ValueError, "float input contains NaN"),
        ("not an image", TypeError, "images must be uint8 or float32"),
    ],
)
@pytest.mark.parametrize("op", [lambda x: ops.gaussian_blur(x, 3), lambda x: ops.resize(x, (8, 8)), lambda x: ops.jpeg(x, 80),
                                lambda x: ops.add_salt_pepper(x, 0.1)])
def test_bad_images(img, error, message, op) -> None:
    with pytest.raises(error, match=message):
        op(img)


def test_compiled_kernels_reject_bad_arrays_without_crashing() -> None:
    from pyfill._core import _C

    with pytest.raises(ValueError, match="sep_filter: empty image"):
        _C.degrade_sep_filter(np.zeros((1, 0, 4, 3), np.uint8), np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match=r"sep_filter: expected a \(B, H, W, C\) array"):
        _C.degrade_sep_filter(np.zeros((4, 4, 3), np.uint8), np.ones(3, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="kx must be a 1-D kernel of odd length"):
        _C.degrade_sep_filter(np.zeros((1, 4, 4, 3), np.uint8), np.ones(2, np.float32), np.ones(3, np.float32))
    with pytest.raises(ValueError, match="resize: unknown interpolation"):
        _C.degrade_resize(np.zeros((1, 4, 4, 3), np.uint8), 4, 4, 9)
    with pytest.raises(ValueError, match="jpeg: dtype must be uint8 or float32"):
        _C.degrade_jpeg(np.zeros((1, 4, 4, 3), np.int16), 50, True)
    with pytest.raises(ValueError, match="salt_pepper: seeds and streams need one entry per image"):
        _C.degrade_salt_pepper(np.zeros((2, 4, 4, 3), np.uint8), 0.1, np.zeros(1, np.uint64), np.zeros(1, np.uint32))


# ---- CUDA vs CPU ---------------------------------------------------------------------------------


CUDA_CASES = {
    "gaussian_blur": lambda x: ops.gaussian_blur(x, 7, 1.5),
    "motion_blur": lambda x: ops.motion_blur(x, 9.0, 30.0),
    "filter2d": lambda x: ops.filter2d(x, np.array([[0, -1, 0], [-1, 5, -1], [0, -1, 0]], np.float32)),
    "resize_nearest": lambda x: ops.resize(x, (41, 37), "nearest"),
    "resize_bilinear": lambda x: ops.resize(x, (150, 120), "bilinear"),
    "resize_bicubic": lambda x: ops.resize(x, (41, 37), "bicubic"),
    "resize_area": lambda x: ops.resize(x, (35, 27), "area"),
    "gaussian_noise": lambda x: ops.add_gaussian_noise(x, 15.0, mean=2.0, seed=7),
    "gaussian_noise_gray": lambda x: ops.add_gaussian_noise(x, 15.0, gray=True, seed=7),
    "poisson_noise": lambda x: ops.add_poisson_noise(x, 1.5, seed=7),
    "salt_pepper": lambda x: ops.add_salt_pepper(x, 0.05, seed=7),
    "jpeg_420": lambda x: ops.jpeg(x, 65, "4:2:0"),
    "jpeg_444": lambda x: ops.jpeg(x, 90, "4:4:4"),
}


@requires_cuda
@pytest.mark.parametrize("name", list(CUDA_CASES))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cuda_matches_cpu(batch: np.ndarray, name: str, dtype) -> None:
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA")
    host = batch if dtype == np.uint8 else batch.astype(np.float32) / 255
    op = CUDA_CASES[name]
    expected = op(host)
    got = op(torch.from_numpy(host).cuda())
    assert got.is_cuda and got.dtype == torch.from_numpy(host).dtype
    got = got.cpu().numpy()
    # Both builds round every product and sum alike (no FMA contraction, shared polynomials for
    # exp/log/sin/cos), so the results are the same bits, not merely close.
    assert max_diff(got, expected) == 0


@requires_cuda
def test_cuda_runs_on_the_device_of_its_input_and_uses_per_image_streams(batch: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    if torch.cuda.device_count() < 1:
        pytest.skip("torch has no CUDA")
    device = torch.device("cuda", torch.cuda.device_count() - 1)  # the last GPU: cuda:1 on two-GPU machines
    expected = ops.add_gaussian_noise(batch, 9.0, seed=5)
    with torch.cuda.device(0):  # another device is current; the op must follow its input
        got = ops.add_gaussian_noise(torch.from_numpy(batch).to(device), 9.0, seed=5)
    assert got.device == device
    np.testing.assert_array_equal(got.cpu().numpy(), expected)
    # image b of a batch draws from stream b, so images differ although they share the seed
    same = np.stack([batch[0]] * 3)
    noisy = ops.add_gaussian_noise(torch.from_numpy(same).to(device), 9.0, seed=5).cpu().numpy()
    assert not np.array_equal(noisy[0], noisy[1]) and np.array_equal(noisy[0], expected[0])


@requires_cuda
def test_cuda_refuses_nan_unless_the_caller_vouches(batch: np.ndarray) -> None:
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(batch.astype(np.float32) / 255).cuda()
    x[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="contains NaN"):
        ops.gaussian_blur(x, 3)
    with ops.assume_finite():
        ops.gaussian_blur(x, 3)  # no check, so no host synchronisation


def test_assume_finite_is_scoped_and_never_skips_the_host_check(batch: np.ndarray) -> None:
    from pyfill.ops import degrade as degrade_ops

    x = batch.astype(np.float32) / 255
    x[1, 2, 3, 0] = np.nan
    assert degrade_ops.has_nan(x) and not degrade_ops.has_nan(batch)
    with pytest.raises(ValueError, match="contains NaN"), ops.assume_finite():
        ops.gaussian_blur(x, 3)  # host arrays are always checked: it costs no synchronisation
    with pytest.raises(RuntimeError, match="inside"), ops.assume_finite():
        assert degrade_ops._ASSUME_FINITE.get()
        raise RuntimeError("inside")
    assert not degrade_ops._ASSUME_FINITE.get()


# ---- found by mutation testing (tools/mutation.py degrade) ---------------------------------------
def test_motion_kernels_of_length_4_and_1_equal_their_hand_computed_weights() -> None:
    """Length 4 at 0 degrees: 17 samples 0.25 px apart from x = 0 to 4, each split bilinearly
    between its two pixels, give the middle row [2.5, 4, 4, 4, 2.5] / 17 of a 5 x 5 kernel;
    at 90 degrees the same column. Length 1: 5 samples from 0.5 to 1.5 give [0.75, 3.5, 0.75] / 5."""
    row = np.array([2.5, 4, 4, 4, 2.5]) / 17
    want = np.zeros((5, 5))
    want[2] = row
    for angle, expected in ((0.0, want), (180.0, want), (90.0, want.T), (-90.0, want.T)):
        k = ops.motion_kernel(4.0, angle)
        assert k.dtype == np.float32 and k.shape == (5, 5)
        np.testing.assert_allclose(k, expected, atol=1e-6, err_msg=str(angle))
    one = np.zeros((3, 3))
    one[1] = [0.15, 0.7, 0.15]
    np.testing.assert_allclose(ops.motion_kernel(1.0, 0.0), one, atol=1e-6)
    np.testing.assert_array_equal(ops.motion_kernel(0.999, 30.0), np.ones((1, 1), np.float32))


def test_gaussian_kernels_are_float32_opencvs_and_bounded() -> None:
    for ksize in (1, 5, 11):
        k = ops.gaussian_kernel(ksize)
        assert k.dtype == np.float32
        np.testing.assert_allclose(k, cv2.getGaussianKernel(ksize, 0).ravel(), atol=1e-6)
    with pytest.raises(ValueError, match="ksize"):
        ops.gaussian_kernel(ops.degrade.MAX_KSIZE + 2)


def test_seeds_take_the_whole_unsigned_64_bit_range() -> None:
    img = np.full((4, 4, 3), 128, np.uint8)
    top = ops.add_salt_pepper(img, 0.5, seed=2**64 - 1)
    assert top.shape == img.shape
    np.testing.assert_array_equal(ops.add_salt_pepper(img, 0.5), ops.add_salt_pepper(img, 0.5, seed=0))
    for bad in (2**64, -1):
        with pytest.raises(ValueError, match="seed"):
            ops.add_salt_pepper(img, 0.5, seed=bad)


def test_torch_images_are_checked_for_nan() -> None:
    torch = pytest.importorskip("torch")
    x = torch.zeros(4, 4, 3)
    assert ops.degrade.has_nan(x) is False
    x[1, 2, 0] = float("nan")
    assert ops.degrade.has_nan(x) is True


@pytest.mark.parametrize("op, call", [("gaussian_blur", lambda x: ops.gaussian_blur(x, 3)),
                                      ("add_poisson_noise", lambda x: ops.add_poisson_noise(x, 10.0))])
def test_errors_name_the_operation(op, call) -> None:
    with pytest.raises(TypeError, match=rf"^{op}: images must be uint8 or float32, got float64$"):
        call(np.zeros((4, 4, 3)))


def test_numbers_and_sizes_are_checked_with_their_names() -> None:
    for bad, kind in ((True, "bool"), ("3", "str"), (None, "NoneType")):
        with pytest.raises(TypeError, match=rf"^length must be a number, got {kind}$"):
            ops.motion_kernel(bad, 0.0)
    img = np.zeros((4, 4, 3), np.uint8)
    for size, message in (((4, 0), "width must be >= 1, got 0"), ((0, 4), "height must be >= 1, got 0"),
                          ((4, -2), "width must be >= 1, got -2")):
        with pytest.raises(ValueError, match=f"^{re.escape(message)}$"):
            ops.resize(img, size)
    assert ops.resize(img, (1, 1)).shape == (1, 1, 3)
