"""The Engine's pre- and post-processing (pyfill.engine.processing) against independent
references: Pillow's own conversions, OpenCV's resizes and borders, NumPy closed forms."""

from __future__ import annotations

import cv2
import numpy as np
import pytest
from PIL import Image

from pyfill.engine import processing as P
from pyfill.manifest import TensorSpec

RNG = np.random.default_rng(11)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape).astype(np.uint8)


# ---- image_to_float ------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,scale", [(np.uint8, 255.0), (np.uint16, 65535.0)])
@pytest.mark.parametrize("shape,layout", [((5, 7), "HW"), ((5, 7, 1), "HWC"), ((5, 7, 3), "HWC"), ((5, 7, 4), "HWC")])
def test_integer_images_are_scaled_to_unit_range(dtype, scale, shape, layout) -> None:
    a = RNG.integers(0, np.iinfo(dtype).max + 1, shape).astype(dtype)
    x, kind = P.image_to_float(a, "img")
    assert x.dtype == np.float32 and x.shape == (5, 7, shape[2] if len(shape) == 3 else 1)
    np.testing.assert_allclose(x.reshape(a.shape), a.astype(np.float64) / scale, rtol=1e-6)
    assert kind == P.ImageKind("numpy", np.dtype(dtype).name, layout)


@pytest.mark.parametrize("dtype", [np.float16, np.float32, np.float64])
def test_float_images_keep_their_values(dtype) -> None:
    a = RNG.random((4, 6, 3)).astype(dtype)
    x, kind = P.image_to_float(a, "img")
    assert x.dtype == np.float32 and kind.dtype == np.dtype(dtype).name
    np.testing.assert_array_equal(x, a.astype(np.float32))


@pytest.mark.parametrize("lo,hi", [(-0.0009, 1.0), (0.0, 1.0009)])
def test_float_images_may_overshoot_the_range_by_rounding(lo, hi) -> None:
    a = np.array([[[lo], [hi]]], np.float32)
    x, _ = P.image_to_float(a, "img")
    np.testing.assert_array_equal(x, a)


@pytest.mark.parametrize("value", [-0.0011, 1.0011, 2.0, -1.0])
def test_float_images_out_of_range_are_refused(value) -> None:
    a = np.full((3, 3, 3), 0.5, np.float32)
    a[1, 2, 0] = value
    with pytest.raises(ValueError, match=r"^img: float images must be in \[0, 1\], got values in"):
        P.image_to_float(a, "img")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_float_images_with_nan_or_inf_are_refused(bad) -> None:
    a = np.full((3, 3), 0.5, np.float64)
    a[0, 0] = bad
    with pytest.raises(ValueError, match="^img: image contains NaN or infinite values"):
        P.image_to_float(a, "img")


@pytest.mark.parametrize("array,error,match", [
    (np.zeros((2, 2), bool), TypeError, "^x: boolean arrays are not images"),
    (np.zeros((2, 2), np.int32), TypeError, "^x: unsupported dtype int32"),
    (np.zeros((2, 2, 2, 2), np.uint8), ValueError, r"^x: expected an \(H, W\) or \(H, W, C\) image, got shape"),
    (np.zeros(5, np.uint8), ValueError, r"^x: expected an \(H, W\)"),
    (np.zeros((0, 4, 3), np.uint8), ValueError, "^x: empty image of shape"),
    (np.zeros((4, 0), np.uint8), ValueError, "^x: empty image"),
    (np.zeros((4, 4, 2), np.uint8), ValueError, "^x: 2-channel images are ambiguous"),
    (np.zeros((4, 4, 5), np.uint8), ValueError, r"^x: expected 1 \(gray\), 3 \(RGB\) or 4 \(RGBA\) channels, got 5"),
    ([[0, 1]], TypeError, "^x: expected a NumPy array, PIL image or torch tensor, got list"),
])
def test_bad_arrays_are_refused_clearly(array, error, match) -> None:
    with pytest.raises(error, match=match):
        P.image_to_float(array, "x")


@pytest.mark.parametrize("mode", ["L", "RGB", "RGBA", "P", "LA", "CMYK", "I;16", "I"])
def test_pil_images_decode_like_pillow(mode) -> None:
    if mode in ("I;16", "I"):
        raw = RNG.integers(0, 65536, (6, 9)).astype(np.uint16 if mode == "I;16" else np.int32)
        im = Image.fromarray(raw)
        assert im.mode == mode
        expected = np.asarray(im).astype(np.float64)[..., None] / 65535.0
        want = P.ImageKind("pil", "uint16", "HW")
    else:
        im = Image.fromarray(_u8(6, 9, 3)).convert(mode)
        ref = im if mode in ("L", "RGB", "RGBA") else im.convert("RGBA" if "A" in mode or mode == "P" else "RGB")
        expected = np.asarray(ref).astype(np.float64) / 255.0
        expected = expected if expected.ndim == 3 else expected[..., None]
        want = P.ImageKind("pil", "uint8", "HW" if mode == "L" else "HWC")
    x, kind = P.image_to_float(im, "img")
    assert kind == want and x.dtype == np.float32
    np.testing.assert_allclose(x, expected, rtol=1e-6, atol=1e-7)


def test_torch_images_are_chw_and_stay_torch() -> None:
    torch = pytest.importorskip("torch")
    a = _u8(3, 5, 4)
    x, kind = P.image_to_float(torch.from_numpy(a), "img")
    assert isinstance(x, torch.Tensor) and x.dtype == torch.float32 and tuple(x.shape) == (5, 4, 3)
    np.testing.assert_allclose(x.numpy(), a.transpose(1, 2, 0) / 255.0, rtol=1e-6)
    assert kind == P.ImageKind("torch", "uint8", "CHW", "cpu")
    f = torch.rand(1, 4, 4, dtype=torch.float64)
    x, kind = P.image_to_float(f, "img")
    assert x.dtype == torch.float32 and kind.dtype == "float64"
    np.testing.assert_allclose(x.numpy()[..., 0], f[0].numpy(), rtol=1e-6)


def test_bad_torch_images_are_refused() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"^t: a torch image must be \(C, H, W\), got shape \(4, 4\)"):
        P.image_to_float(torch.zeros(4, 4), "t")
    with pytest.raises(TypeError, match="^t: torch images must be float in \\[0, 1\\] or uint8, got torch.int32"):
        P.image_to_float(torch.zeros(3, 4, 4, dtype=torch.int32), "t")
    nan = torch.full((3, 2, 2), 0.5)
    nan[0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="^t: image contains NaN or infinite values"):
        P.image_to_float(nan, "t")
    with pytest.raises(ValueError, match=r"^t: float images must be in \[0, 1\], got values in \[0.5, 1.5\]"):
        P.image_to_float(torch.tensor([[[0.5, 1.5]]]), "t")


# ---- channels and ranges -------------------------------------------------------------------------
def test_channels_adapt_like_the_luma_formula() -> None:
    rgb = RNG.random((4, 5, 3)).astype(np.float32)
    gray = P.adapt_channels(rgb, 1, "gray")
    np.testing.assert_allclose(gray[..., 0], 0.299 * rgb[..., 0] + 0.587 * rgb[..., 1] + 0.114 * rgb[..., 2], rtol=1e-6)
    rgba = np.concatenate([rgb, np.ones((4, 5, 1), np.float32)], axis=-1)
    np.testing.assert_array_equal(P.adapt_channels(rgba, 3, "rgb"), rgb)
    np.testing.assert_allclose(P.adapt_channels(rgba, 1, "gray"), gray, rtol=1e-6)
    one = rgb[..., :1]
    np.testing.assert_array_equal(P.adapt_channels(one, 3, "rgb"), np.concatenate([one] * 3, axis=-1))
    assert P.adapt_channels(rgb, 3, "rgb") is rgb
    with pytest.raises(ValueError, match=r"^cannot feed a 3-channel image to a 2-channel \(lab\) input"):
        P.adapt_channels(rgb, 2, "lab")


def test_torch_channels_adapt_the_same_way() -> None:
    torch = pytest.importorskip("torch")
    one = torch.rand(4, 5, 1)
    out = P.adapt_channels(one, 3, "rgb")
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), np.repeat(one.numpy(), 3, axis=-1))


def test_value_ranges_map_linearly_both_ways() -> None:
    x = np.array([0.0, 0.25, 1.0], np.float32)
    np.testing.assert_allclose(P.to_range(x, (-1.0, 1.0)), [-1.0, -0.5, 1.0])
    np.testing.assert_allclose(P.to_range(x, (0.0, 255.0)), [0.0, 63.75, 255.0])
    np.testing.assert_allclose(P.from_range(np.array([-1.0, 0.0, 3.0]), (-1.0, 3.0)), [0.0, 0.25, 1.0])
    assert P.to_range(x, (0.0, 1.0)) is x and P.from_range(x, (0.0, 1.0)) is x


# ---- float_to_output -----------------------------------------------------------------------------
def test_outputs_round_and_clip_into_the_input_dtype() -> None:
    x = np.array([[[-0.2], [0.3 / 255], [1.49 / 255], [0.999], [1.3]]], np.float32)
    u8 = P.float_to_output(x, P.ImageKind("numpy", "uint8", "HWC"))
    assert u8.dtype == np.uint8 and u8[0, :, 0].tolist() == [0, 0, 1, 255, 255]
    u16 = P.float_to_output(x, P.ImageKind("numpy", "uint16", "HW"))
    assert u16.dtype == np.uint16 and u16.shape == (1, 5)
    assert u16[0].tolist() == np.rint(np.clip(x[0, :, 0], 0, 1).astype(np.float64) * 65535).astype(int).tolist()
    for name in ("float16", "float32", "float64"):
        f = P.float_to_output(x, P.ImageKind("numpy", name, "HWC"))
        assert f.dtype == np.dtype(name) and f.shape == (1, 5, 1)
        np.testing.assert_allclose(f[0, :, 0], np.clip(x[0, :, 0], 0, 1), atol=1e-3)


def test_gray_outputs_drop_the_channel_axis_only_for_hw_inputs() -> None:
    x = RNG.random((3, 4, 1)).astype(np.float32)
    assert P.float_to_output(x, P.ImageKind("numpy", "uint8", "HW")).shape == (3, 4)
    assert P.float_to_output(x, P.ImageKind("numpy", "uint8", "HWC")).shape == (3, 4, 1)
    assert P.float_to_output(RNG.random((3, 4, 3)), P.ImageKind("numpy", "uint8", "HW")).shape == (3, 4, 3)


@pytest.mark.parametrize("channels,layout,mode", [(3, "HWC", "RGB"), (1, "HW", "L"), (1, "HWC", "L"), (4, "HWC", "RGBA")])
def test_pil_outputs_are_pil_images_of_the_right_mode(channels, layout, mode) -> None:
    x = RNG.random((3, 4, channels)).astype(np.float32)
    im = P.float_to_output(x, P.ImageKind("pil", "uint8", layout))
    assert isinstance(im, Image.Image) and im.mode == mode and im.size == (4, 3)
    np.testing.assert_array_equal(np.asarray(im).reshape(3, 4, channels), np.rint(x * 255).astype(np.uint8))


def test_sixteen_bit_pil_outputs() -> None:
    x = RNG.random((3, 4, 1)).astype(np.float32)
    im = P.float_to_output(x, P.ImageKind("pil", "uint16", "HW"))
    assert isinstance(im, Image.Image) and im.mode.startswith("I;16")
    np.testing.assert_array_equal(np.asarray(im), np.rint(x[..., 0] * 65535).astype(np.uint16))
    im = P.float_to_output(x, P.ImageKind("pil", "uint16", "HWC"))
    np.testing.assert_array_equal(np.asarray(im), np.rint(x[..., 0] * 65535).astype(np.uint16))


def test_torch_outputs_go_back_to_chw() -> None:
    torch = pytest.importorskip("torch")
    x = torch.tensor([[[-0.5, 0.2], [0.6, 1.5]]]).permute(1, 2, 0)  # (H=2, W=2... ) as HWC with C=1
    x = torch.rand(2, 3, 3) * 1.4 - 0.2
    u8 = P.float_to_output(x, P.ImageKind("torch", "uint8", "CHW"))
    assert u8.dtype == torch.uint8 and tuple(u8.shape) == (3, 2, 3)
    np.testing.assert_array_equal(u8.numpy(), np.rint(np.clip(x.numpy(), 0, 1) * 255).astype(np.uint8).transpose(2, 0, 1))
    f = P.float_to_output(x, P.ImageKind("torch", "float32", "CHW"))
    assert f.is_contiguous() and tuple(f.shape) == (3, 2, 3)
    np.testing.assert_allclose(f.numpy(), np.clip(x.numpy(), 0, 1).transpose(2, 0, 1))


# ---- labels --------------------------------------------------------------------------------------
PALETTE = [[0, 0, 0], [255, 0, 0], [0, 128, 255], [10, 20, 30]]
SPEC = TensorSpec("labels", kind="labels", classes=4, class_names=["sky", "red", "blue", "dark"], palette=PALETTE)


def test_index_maps_pass_in_every_container() -> None:
    idx = RNG.integers(0, 4, (5, 6)).astype(np.uint8)
    for given in (idx, idx.astype(np.int32), Image.fromarray(idx, "L"), Image.fromarray(idx, "P")):
        out = P.labels_to_index(given, SPEC, "labels")
        assert out.dtype == np.int64
        np.testing.assert_array_equal(out, idx)
    torch = pytest.importorskip("torch")
    np.testing.assert_array_equal(P.labels_to_index(torch.from_numpy(idx.astype(np.int64)), SPEC, "labels"), idx)


def test_colour_coded_labels_match_the_legend() -> None:
    idx = RNG.integers(0, 4, (5, 6))
    colours = np.asarray(PALETTE, np.uint8)[idx]
    np.testing.assert_array_equal(P.labels_to_index(colours, SPEC, "labels"), idx)
    rgba = np.concatenate([colours, _u8(5, 6, 1)], axis=-1)  # alpha ignored
    np.testing.assert_array_equal(P.labels_to_index(rgba, SPEC, "labels"), idx)
    np.testing.assert_array_equal(P.labels_to_index(Image.fromarray(colours), SPEC, "labels"), idx)
    np.testing.assert_array_equal(P.colours_to_index(colours, SPEC, "labels"), idx)


def test_colours_outside_the_legend_are_reported_with_their_place() -> None:
    colours = np.zeros((4, 5, 3), np.uint8)
    colours[2, 3] = (1, 2, 3)
    colours[3, 4] = (255, 0, 1)
    with pytest.raises(ValueError, match=r"^lab: 2 pixels have colours outside the legend, e\.g\. \(1, 2, 3\) at "
                                         r"\(row 2, column 3\); legend: sky=\(0, 0, 0\), red=\(255, 0, 0\), "
                                         r"blue=\(0, 128, 255\), dark=\(10, 20, 30\)$"):
        P.colours_to_index(colours, SPEC, "lab")
    unnamed = TensorSpec("labels", kind="labels", classes=2, palette=[[0, 0, 0], [9, 9, 9]])
    with pytest.raises(ValueError, match=r"legend: 0=\(0, 0, 0\), 1=\(9, 9, 9\)$"):
        P.colours_to_index(np.full((2, 2, 3), 200, np.uint8), unnamed, "lab")


def test_colour_lookup_of_colours_above_every_legend_entry() -> None:
    # a colour code larger than every legend code must be refused, not clipped onto the last entry
    spec = TensorSpec("labels", kind="labels", classes=2, palette=[[0, 0, 0], [0, 0, 5]])
    with pytest.raises(ValueError, match=r"1 pixels have colours outside the legend, e\.g\. \(0, 0, 6\)"):
        P.colours_to_index(np.array([[[0, 0, 5], [0, 0, 6]]], np.uint8), spec, "l")


@pytest.mark.parametrize("labels,error,match", [
    (np.zeros((2, 2), np.float32), TypeError, "^l: label maps must hold integer class indices, got float32"),
    (np.zeros((0, 3), np.int64), ValueError, "^l: empty label map"),
    (np.array([[0, 4]]), ValueError, r"^l: class indices must be in \[0, 3\], got \[0, 4\]"),
    (np.array([[-1, 2]]), ValueError, r"^l: class indices must be in \[0, 3\], got \[-1, 2\]"),
    (np.zeros((2, 2, 2), np.int64), ValueError, r"^l: expected an \(H, W\) label map of class indices or an \(H, W, 3\)"),
    (np.zeros(4, np.int64), ValueError, r"^l: expected an \(H, W\) label map"),
    ("labels", TypeError, r"^l: expected an \(H, W\) integer label map, got str"),
    (np.zeros((2, 2, 3), np.float32), TypeError, "^l: colour-coded label images must be uint8, got float32"),
    (np.zeros((0, 2, 3), np.uint8), ValueError, "^l: empty label image"),
])
def test_bad_label_maps_are_refused_clearly(labels, error, match) -> None:
    with pytest.raises(error, match=match):
        P.labels_to_index(labels, SPEC, "l")


def test_colour_labels_need_a_legend() -> None:
    spec = TensorSpec("labels", kind="labels", classes=3)
    with pytest.raises(ValueError, match=r"^l: this model's labels have no legend colours; pass an \(H, W\) index map"):
        P.labels_to_index(np.zeros((2, 2, 3), np.uint8), spec, "l")
    np.testing.assert_array_equal(P.labels_to_index(np.array([[0, 2]]), spec, "l"), [[0, 2]])
    with pytest.raises(ValueError, match=r"\[0, 2\], got \[0, 3\]"):
        P.labels_to_index(np.array([[0, 3]]), spec, "l")


def test_one_hot_equals_the_identity_rows() -> None:
    idx = RNG.integers(0, 5, (2, 3, 4))
    out = P.one_hot(idx, 5)
    assert out.dtype == np.float32 and out.shape == (2, 5, 3, 4)
    np.testing.assert_array_equal(out, np.eye(5, dtype=np.float32)[idx].transpose(0, 3, 1, 2))


# ---- stroke-grid vectors -------------------------------------------------------------------------
STROKE_SPEC = TensorSpec("style", kind="vector", length=648,
                         derive={"op": "stroke_grid", "from": "strokes", "grid": [9, 9]})


def test_derived_stroke_vector_equals_the_ops_run_directly() -> None:
    from pyfill.ops import stroke_grid, stroke_grid_latent

    strokes = np.zeros((36, 45, 3), np.uint8)
    strokes[5:12, 3:30] = (200, 40, 10)
    strokes[20:30, 20:44] = (0, 90, 250)
    vec = P.derive_vector(STROKE_SPEC, strokes, {}, (36, 45), "strokes")
    assert vec.dtype == np.float32 and vec.shape == (648,)
    np.testing.assert_array_equal(vec, stroke_grid_latent(stroke_grid(strokes, None, (9, 9))).astype(np.float32))
    occupancy = np.zeros((36, 45), bool)
    occupancy[5:12, 3:30] = True
    with_mask = P.derive_vector(STROKE_SPEC, strokes, {"occupancy": occupancy}, None, "strokes")
    np.testing.assert_array_equal(with_mask, stroke_grid_latent(stroke_grid(strokes, occupancy, (9, 9))).astype(np.float32))
    rgba = np.concatenate([strokes, (occupancy * 255).astype(np.uint8)[..., None]], axis=-1)
    np.testing.assert_array_equal(P.derive_vector(STROKE_SPEC, rgba, {}, None, "strokes"), with_mask)
    np.testing.assert_array_equal(P.derive_vector(STROKE_SPEC, Image.fromarray(rgba), {}, None, "strokes"), with_mask)
    np.testing.assert_array_equal(P.derive_vector(STROKE_SPEC, Image.fromarray(strokes), {}, None, "strokes"), vec)


def test_bad_stroke_images_are_refused_clearly() -> None:
    with pytest.raises(TypeError, match=r"^s: expected an \(H, W, 3\) RGB stroke image, got list"):
        P.derive_vector(STROKE_SPEC, [[0]], {}, None, "s")
    with pytest.raises(ValueError, match=r"^s: expected an \(H, W, 3\) RGB stroke image \(or RGBA\), got shape \(4, 4\)"):
        P.derive_vector(STROKE_SPEC, np.zeros((4, 4), np.uint8), {}, None, "s")
    with pytest.raises(ValueError, match=r"^s: stroke image size \(9, 9\) differs from the labels' \(9, 8\)"):
        P.derive_vector(STROKE_SPEC, np.zeros((9, 9, 3), np.uint8), {}, (9, 8), "s")
    short = TensorSpec("style", kind="vector", length=10, derive={"op": "stroke_grid", "from": "strokes", "grid": [9, 9]})
    with pytest.raises(ValueError, match=r"^s: the stroke grid \[9, 9\] gives 648 values, the model takes 10"):
        P.derive_vector(short, np.zeros((18, 18, 3), np.uint8), {}, None, "s")
    torch = pytest.importorskip("torch")
    with pytest.raises(TypeError, match="^s: pass the stroke image as a NumPy"):
        P.derive_vector(STROKE_SPEC, torch.zeros(9, 9, 3), {}, None, "s")


# ---- resizes and padding -------------------------------------------------------------------------
@pytest.mark.parametrize("src,dst", [((8, 12), (16, 24)), ((16, 24), (8, 12)), ((7, 5), (21, 15)), ((9, 9), (3, 3)),
                                     ((10, 6), (10, 6)), ((1, 1), (4, 3))])
def test_nearest_resize_equals_opencv(src, dst) -> None:
    x = RNG.integers(0, 7, src).astype(np.uint8)
    ours = P.resize_nearest(x[None, None], dst)[0, 0]
    np.testing.assert_array_equal(ours, cv2.resize(x, (dst[1], dst[0]), interpolation=cv2.INTER_NEAREST))


@pytest.mark.parametrize("src,dst", [((8, 12), (16, 24)), ((16, 24), (8, 12)), ((7, 5), (20, 13)), ((12, 12), (6, 9)),
                                     ((1, 4), (3, 8)), ((5, 5), (5, 5))])
def test_bilinear_resize_equals_opencv(src, dst) -> None:
    x = RNG.random(src).astype(np.float32)
    ours = P.resize_bilinear(x[None, None], dst)[0, 0]
    np.testing.assert_allclose(ours, cv2.resize(x, (dst[1], dst[0]), interpolation=cv2.INTER_LINEAR), atol=2e-6)


@pytest.mark.parametrize("h,w,m,minimum,expected", [(5, 7, 8, 1, (8, 8)), (16, 17, 8, 1, (16, 24)), (3, 3, 4, 16, (16, 16)),
                                                    (20, 30, 1, 1, (20, 30)), (20, 5, 3, 9, (21, 9))])
def test_padded_size_closed_form(h, w, m, minimum, expected) -> None:
    assert P.padded_size(h, w, m, minimum) == expected


@pytest.mark.parametrize("shape,ph,pw", [((2, 6, 7), 3, 2), ((1, 1, 5, 4), 4, 3), ((3, 3), 2, 2), ((4, 4), 5, 1),
                                         ((1, 3, 2), 1, 1), ((5, 5), 0, 3)])
def test_padding_reflects_like_opencv_or_replicates_edges(shape, ph, pw) -> None:
    x = RNG.random(shape).astype(np.float32)
    out = P.pad_bottom_right(x, ph, pw)
    h, w = shape[-2:]
    border = cv2.BORDER_REFLECT_101 if ph < h and pw < w else cv2.BORDER_REPLICATE
    flat = x.reshape(-1, h, w)
    ref = np.stack([cv2.copyMakeBorder(p, 0, ph, 0, pw, border) for p in flat]).reshape(*shape[:-2], h + ph, w + pw)
    np.testing.assert_array_equal(out, ref)
    assert P.pad_bottom_right(x, 0, 0) is x


@pytest.mark.parametrize("ph,pw", [(3, 2), (6, 1), (0, 2)])
def test_torch_padding_equals_numpy(ph, pw) -> None:
    torch = pytest.importorskip("torch")
    x = RNG.random((1, 2, 5, 4)).astype(np.float32)
    out = P.pad_bottom_right(torch.from_numpy(x), ph, pw)
    assert isinstance(out, torch.Tensor)
    np.testing.assert_array_equal(out.numpy(), P.pad_bottom_right(x, ph, pw))


# ---- cases found by mutation testing (tools/mutation.py processing) ------------------------------
@pytest.mark.parametrize("mode,dtype", [("I;16B", ">u2"), ("I;16L", "<u2")])
def test_sixteen_bit_pil_images_of_either_byte_order(mode, dtype) -> None:
    raw = RNG.integers(0, 65536, (3, 4)).astype(dtype)
    im = Image.frombuffer(mode, (4, 3), raw.tobytes(), "raw", mode, 0, 1)
    x, kind = P.image_to_float(im, "img")
    assert kind == P.ImageKind("pil", "uint16", "HW")
    np.testing.assert_allclose(x[..., 0], raw.astype(np.float64) / 65535.0, rtol=1e-6)


def test_empty_pil_images_are_refused_by_name() -> None:
    with pytest.raises(ValueError, match="^photo: empty image of shape"):
        P.image_to_float(Image.new("RGB", (0, 5)), "photo")


def test_gray_from_rgb_has_one_channel() -> None:
    rgb = RNG.random((4, 5, 3)).astype(np.float32)
    assert P.adapt_channels(rgb, 1, "gray").shape == (4, 5, 1)
    assert P.adapt_channels(np.concatenate([rgb, rgb[..., :1]], axis=-1), 1, "gray").shape == (4, 5, 1)


def test_two_channels_never_become_three() -> None:
    with pytest.raises(ValueError, match=r"^cannot feed a 2-channel image to a 3-channel \(rgb\) input"):
        P.adapt_channels(np.zeros((2, 2, 2), np.float32), 3, "rgb")


def test_other_pil_label_modes_are_read_as_colour_images() -> None:
    idx = np.array([[0, 1], [2, 3]], np.int32)
    with pytest.raises(ValueError, match="colours outside the legend"):  # (1, 1, 1) etc. are not legend colours
        P.labels_to_index(Image.fromarray(idx), SPEC, "l")


def test_colour_labels_of_any_width_give_int64_indices() -> None:
    idx = np.array([[1], [2], [0]])
    out = P.labels_to_index(np.asarray(PALETTE, np.uint8)[idx], SPEC, "l")
    assert out.dtype == np.int64 and out.tolist() == idx.tolist()
    with pytest.raises(ValueError, match="^l: empty label image"):
        P.colours_to_index(np.zeros((2, 0, 3), np.uint8), SPEC, "l")


def test_stroke_vectors_from_gray_pil_images_and_faint_alpha() -> None:
    strokes = np.zeros((18, 18, 3), np.uint8)
    strokes[2:9, 2:12] = 150
    gray = Image.fromarray(strokes[..., 0], "L")
    np.testing.assert_array_equal(P.derive_vector(STROKE_SPEC, gray, {}, None, "s"),
                                  P.derive_vector(STROKE_SPEC, strokes, {}, None, "s"))
    rgba = np.concatenate([strokes, np.zeros((18, 18, 1), np.uint8)], axis=-1)
    rgba[2:9, 2:12, 3] = 1  # the faintest alpha still marks a stroke pixel
    mask = rgba[..., 3] > 0
    np.testing.assert_array_equal(P.derive_vector(STROKE_SPEC, rgba, {}, None, "s"),
                                  P.derive_vector(STROKE_SPEC, strokes, {"occupancy": mask}, None, "s"))


def test_stroke_vector_uses_the_manifest_grid() -> None:
    from pyfill.ops import stroke_grid, stroke_grid_latent

    spec = TensorSpec("style", kind="vector", length=128, derive={"op": "stroke_grid", "from": "strokes", "grid": [4, 4]})
    strokes = np.zeros((16, 16, 3), np.uint8)
    strokes[1:5, 1:9] = (9, 200, 40)
    vec = P.derive_vector(spec, strokes, {}, None, "s")
    np.testing.assert_array_equal(vec, stroke_grid_latent(stroke_grid(strokes, None, (4, 4))).astype(np.float32))


def test_bilinear_resize_of_any_rank_keeps_float32() -> None:
    x = RNG.random((3, 8, 12)).astype(np.float32)
    out = P.resize_bilinear(x, (5, 7))
    assert out.dtype == np.float32 and out.shape == (3, 5, 7)
    for c in range(3):
        np.testing.assert_allclose(out[c], cv2.resize(x[c], (7, 5), interpolation=cv2.INTER_LINEAR), atol=2e-6)
    np.testing.assert_allclose(P.resize_bilinear(x[0], (16, 24)), cv2.resize(x[0], (24, 16), interpolation=cv2.INTER_LINEAR),
                               atol=2e-6)


@pytest.mark.parametrize("shape,ph,pw", [((4, 4), 4, 1), ((4, 4), 1, 4)])
def test_padding_as_large_as_the_image_replicates_edges(shape, ph, pw) -> None:
    x = RNG.random(shape).astype(np.float32)
    ref = cv2.copyMakeBorder(x, 0, ph, 0, pw, cv2.BORDER_REPLICATE)
    np.testing.assert_array_equal(P.pad_bottom_right(x, ph, pw), ref)
