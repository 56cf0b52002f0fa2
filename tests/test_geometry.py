"""How inputs reach a fixed-size model and come back (pyfill.engine.geometry.Placement), against
closed forms and OpenCV's resizes and borders."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pyfill.engine.geometry import Placement

RNG = np.random.default_rng(5)


def _cv_resize(x: np.ndarray, size: tuple[int, int], nearest: bool = False) -> np.ndarray:
    """(N, C, h, w) resized plane by plane with OpenCV."""
    mode = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return np.stack([np.stack([cv2.resize(p, (size[1], size[0]), interpolation=mode) for p in item]) for item in x])


@pytest.mark.parametrize("h,w,fixed,expected", [
    ((100, 200), None, (64, 64), (16, 0, 32, 64)),
    ((200, 100), None, (64, 64), (0, 16, 64, 32)),
    ((30, 40), None, (60, 100), (0, 10, 60, 80)),
    ((1000, 1), None, (64, 64), (0, 31, 64, 1)),        # a side that would round to 0 keeps 1 pixel
    ((33, 65), None, (16, 16), (4, 0, 8, 16)),          # s = 16/65: 33 * s = 8.12 -> 8, offset (16 - 8) // 2
    ((64, 64), None, (64, 64), (0, 0, 64, 64)),
])
def test_letterbox_placement_closed_form(h, w, fixed, expected) -> None:
    h, w = h
    p = Placement.for_size(h, w, fixed, "letterbox")
    s = min(fixed[0] / h, fixed[1] / w)
    nh, nw = max(1, min(fixed[0], round(h * s))), max(1, min(fixed[1], round(w * s)))
    assert (p.oy, p.ox, p.nh, p.nw) == expected == ((fixed[0] - nh) // 2, (fixed[1] - nw) // 2, nh, nw)
    assert (p.h, p.w, p.fh, p.fw) == (h, w, *fixed)


def test_stretch_and_pad_placements() -> None:
    assert Placement.for_size(10, 30, (16, 16), "stretch") == Placement(10, 30, 16, 16, 0, 0, 16, 16)
    assert Placement.for_size(10, 12, (16, 16), "pad") == Placement(10, 12, 16, 16, 0, 0, 10, 12)
    assert Placement.for_size(16, 16, (16, 16), "pad").identity
    with pytest.raises(ValueError, match=r"^the model runs at 16 x 20 \(H x W\) and pads smaller inputs; this input is 17 x 20$"):
        Placement.for_size(17, 20, (16, 20), "pad")
    with pytest.raises(ValueError, match="this input is 16 x 21"):
        Placement.for_size(16, 21, (16, 20), "pad")


def test_identity_only_when_the_input_is_the_frame() -> None:
    assert Placement.for_size(16, 24, (16, 24), "stretch").identity
    assert Placement.for_size(16, 24, (16, 24), "letterbox").identity
    assert not Placement.for_size(16, 23, (16, 24), "stretch").identity
    assert not Placement.for_size(8, 12, (16, 24), "pad").identity
    assert not Placement(16, 24, 16, 24, 1, 0, 16, 24).identity
    assert not Placement(16, 24, 16, 24, 0, 1, 16, 24).identity
    x = RNG.random((1, 3, 16, 24)).astype(np.float32)
    p = Placement.for_size(16, 24, (16, 24), "stretch")
    assert p.image_in(x) is x and p.image_out(x) is x


@pytest.mark.parametrize("nearest", [False, True])
def test_stretch_resizes_like_opencv(nearest) -> None:
    x = RNG.random((2, 3, 10, 30)).astype(np.float32)
    p = Placement.for_size(10, 30, (16, 16), "stretch")
    out = p.image_in(x, nearest=nearest)
    assert out.shape == (2, 3, 16, 16) and out.flags.c_contiguous
    np.testing.assert_allclose(out, _cv_resize(x, (16, 16), nearest), atol=2e-6)


@pytest.mark.parametrize("nearest", [False, True])
def test_letterbox_resizes_into_the_rectangle_with_zeros_around(nearest) -> None:
    x = RNG.random((1, 2, 100, 200)).astype(np.float32) + 0.5   # no zeros inside
    p = Placement.for_size(100, 200, (64, 64), "letterbox")
    out = p.image_in(x, nearest=nearest)
    assert out.shape == (1, 2, 64, 64) and out.dtype == np.float32
    np.testing.assert_allclose(out[..., 16:48, :], _cv_resize(x, (32, 64), nearest), atol=2e-6)
    assert not out[..., :16, :].any() and not out[..., 48:, :].any()
    tall = Placement.for_size(200, 100, (64, 64), "letterbox").image_in(np.transpose(x, (0, 1, 3, 2)).copy(), nearest)
    np.testing.assert_allclose(tall[..., :, 16:48], _cv_resize(np.transpose(x, (0, 1, 3, 2)), (64, 32), nearest), atol=2e-6)
    assert not tall[..., :, :16].any() and not tall[..., :, 48:].any()


def test_letterbox_of_an_unscaled_input_is_centred() -> None:
    x = RNG.random((1, 1, 8, 8)).astype(np.float32) + 0.5
    p = Placement(8, 8, 12, 16, 2, 4, 8, 8)
    out = p.image_in(x)
    assert out.shape == (1, 1, 12, 16)
    np.testing.assert_array_equal(out[..., 2:10, 4:12], x)
    assert out.sum() == pytest.approx(x.sum(), rel=1e-6)


def test_pad_reflects_at_the_bottom_right_like_opencv() -> None:
    x = RNG.random((1, 3, 10, 12)).astype(np.float32)
    p = Placement.for_size(10, 12, (16, 16), "pad")
    out = p.image_in(x)
    ref = np.stack([cv2.copyMakeBorder(c, 0, 6, 0, 4, cv2.BORDER_REFLECT_101) for c in x[0]])[None]
    np.testing.assert_array_equal(out, ref)
    back = p.image_out(out)
    np.testing.assert_array_equal(back, x)


@pytest.mark.parametrize("scale", [1, 2])
def test_outputs_come_back_to_the_input_frame(scale) -> None:
    p = Placement.for_size(100, 200, (64, 64), "letterbox")
    y = RNG.random((1, 3, 64 * scale, 64 * scale)).astype(np.float32)
    out = p.image_out(y, scale)
    assert out.shape == (1, 3, 100 * scale, 200 * scale)
    inner = y[..., 16 * scale:48 * scale, :]
    np.testing.assert_allclose(out, _cv_resize(np.ascontiguousarray(inner), (100 * scale, 200 * scale)), atol=2e-6)
    pad = Placement.for_size(10, 12, (16, 16), "pad")
    y = RNG.random((1, 3, 16 * scale, 16 * scale)).astype(np.float32)
    np.testing.assert_array_equal(pad.image_out(y, scale), y[..., :10 * scale, :12 * scale])


def test_points_map_into_the_frame_and_back() -> None:
    p = Placement.for_size(100, 200, (64, 64), "letterbox")       # s = 0.32, rectangle at row 16
    pts = np.array([[0.0, 0.0, 200.0, 100.0, 50.0, 25.0]], np.float64)
    inside = p.points_in(pts)
    assert inside.dtype == np.float32
    np.testing.assert_allclose(inside, [[0.0, 16.0, 64.0, 48.0, 16.0, 24.0]], rtol=1e-6)
    np.testing.assert_allclose(p.points_out(inside), pts, rtol=1e-6)
    assert pts[0, 0] == 0.0 and pts[0, 1] == 0.0  # the caller's array is not modified
    tall = Placement.for_size(200, 100, (64, 64), "letterbox")
    np.testing.assert_allclose(tall.points_in(np.array([10.0, 20.0])), [16 + 3.2, 6.4], rtol=1e-6)
    np.testing.assert_allclose(tall.points_out(np.array([16 + 3.2, 6.4])), [10.0, 20.0], rtol=1e-5)
    stretch = Placement.for_size(10, 40, (20, 20), "stretch")     # x * 0.5, y * 2
    np.testing.assert_allclose(stretch.points_in(np.array([[4.0, 3.0], [40.0, 10.0]])), [[2.0, 6.0], [20.0, 20.0]])
    np.testing.assert_allclose(stretch.points_out(np.array([2.0, 6.0])), [4.0, 3.0])


# ---- cases found by mutation testing (tools/mutation.py geometry) --------------------------------
def test_a_height_that_would_round_to_zero_keeps_one_row() -> None:
    p = Placement.for_size(1, 1000, (64, 64), "letterbox")
    assert (p.oy, p.ox, p.nh, p.nw) == (31, 0, 1, 64)


def test_images_are_resized_bilinearly_unless_nearest_is_asked() -> None:
    x = RNG.random((1, 1, 10, 30)).astype(np.float32)
    p = Placement.for_size(10, 30, (16, 16), "stretch")
    np.testing.assert_allclose(p.image_in(x), _cv_resize(x, (16, 16)), atol=2e-6)


def test_points_out_returns_a_float32_copy() -> None:
    p = Placement.for_size(100, 200, (64, 64), "letterbox")
    inside = np.array([[16.0, 24.0]], np.float32)
    out = p.points_out(inside)
    assert out.dtype == np.float32 and inside.tolist() == [[16.0, 24.0]]
    assert p.points_out(np.array([16.0, 24.0])).dtype == np.float32
    back = p.points_in(out)
    assert back.dtype == np.float32 and out.tolist() == [[50.0, 25.0]]
