"""The compiled layout conversions against their NumPy references."""

from __future__ import annotations

import numpy as np
import pytest

from pyfill.ops import chw_to_image, image_to_chw
from pyfill.ops.reference import convert as ref


@pytest.mark.parametrize("shape", [(1, 1, 1), (7, 5, 3), (64, 97, 4), (300, 200, 1)])
@pytest.mark.parametrize(("scale", "offset"), [(1 / 255, 0.0), (2 / 255, -1.0), (1.0, 0.0)])
def test_image_to_chw_equals_numpy(shape, scale, offset) -> None:
    img = np.random.default_rng(sum(shape)).integers(0, 256, shape, dtype=np.uint8)
    got = image_to_chw(img, scale, offset)
    assert got.dtype == np.float32 and got.shape == (shape[2], shape[0], shape[1])
    np.testing.assert_array_equal(got, ref.image_to_chw(img, scale, offset))


def test_image_to_chw_takes_strided_views() -> None:
    img = np.random.default_rng(0).integers(0, 256, (40, 60, 3), dtype=np.uint8)
    view = img[::2, ::-1]
    np.testing.assert_array_equal(image_to_chw(view), ref.image_to_chw(view, 1 / 255, 0.0))


@pytest.mark.parametrize(("scale", "offset"), [(255.0, 0.0), (127.5, 127.5)])
def test_chw_to_image_rounds_half_to_even_clamps_and_zeroes_nan(scale, offset) -> None:
    rng = np.random.default_rng(1)
    x = rng.uniform(-1.5, 1.5, (3, 50, 70)).astype(np.float32)
    x[0, 0, :6] = [np.nan, np.inf, -np.inf, 0.5 / 255, 1.5 / 255, 2.5 / 255]
    got = chw_to_image(x, scale, offset)
    assert got.dtype == np.uint8 and got.shape == (50, 70, 3)
    np.testing.assert_array_equal(got, ref.chw_to_image(x, scale, offset))
    if offset == 0:
        assert list(got[0, :6, 0]) == [0, 255, 0, 0, 2, 2]  # NaN -> 0, +-inf clamped, half to even


def test_conversions_refuse_other_types() -> None:
    with pytest.raises(TypeError, match="takes a uint8 \\(H, W, C\\) NumPy array, got ndarray float32"):
        image_to_chw(np.zeros((4, 4, 3), np.float32))
    with pytest.raises(TypeError, match="takes a float32 \\(C, H, W\\)"):
        chw_to_image(np.zeros((4, 4), np.float32))
    with pytest.raises(ValueError, match="empty image"):
        image_to_chw(np.zeros((0, 4, 3), np.uint8))


def test_defaults_are_the_8_bit_scale() -> None:
    img = np.random.default_rng(2).integers(0, 256, (5, 6, 3), dtype=np.uint8)
    np.testing.assert_array_equal(image_to_chw(img), ref.image_to_chw(img, 1 / 255, 0.0))
    x = np.random.default_rng(3).uniform(0, 1, (3, 5, 6)).astype(np.float32)
    np.testing.assert_array_equal(chw_to_image(x), ref.chw_to_image(x, 255.0, 0.0))


def test_refusals_name_the_type_dtype_and_shape() -> None:
    with pytest.raises(TypeError, match=r"^image_to_chw takes a uint8 \(H, W, C\) NumPy array, got ndarray uint8 \(4, 4\)$"):
        image_to_chw(np.zeros((4, 4), np.uint8))
    with pytest.raises(TypeError, match=r"^image_to_chw takes a uint8 \(H, W, C\) NumPy array, got list  $"):
        image_to_chw([1, 2])
    with pytest.raises(TypeError, match=r"^chw_to_image takes a float32 \(C, H, W\) NumPy array, got ndarray float64 \(3, 4, 4\)$"):
        chw_to_image(np.zeros((3, 4, 4)))
    with pytest.raises(TypeError, match=r"^chw_to_image takes a float32 \(C, H, W\) NumPy array, got str  $"):
        chw_to_image("x")
    with pytest.raises(ValueError, match=r"^image_to_chw: empty image of shape \(0, 4, 3\)$"):
        image_to_chw(np.zeros((0, 4, 3), np.uint8))
    with pytest.raises(ValueError, match=r"^chw_to_image: empty array of shape \(3, 0, 4\)$"):
        chw_to_image(np.zeros((3, 0, 4), np.float32))


def test_doctor_reports_the_instruction_set_the_hot_loops_run() -> None:
    import platform

    import pyfill

    dispatch = pyfill.runtime_info()["core"]["simd_dispatch"]
    if platform.machine() != "x86_64":
        assert dispatch == "none"
        return
    flags = next(line for line in open("/proc/cpuinfo") if line.startswith("flags")).split()
    assert dispatch == ("avx512f" if "avx512f" in flags else "avx2" if "avx2" in flags else "baseline")
