"""The task layer's shared pieces (pyfill.tasks._common, finish_* of each task, the legend and
generate's argument checks) against closed forms and the Engine run directly."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

import pyfill
from pyfill.engine import Engine, Result
from pyfill.tasks import _common as C
from pyfill.tasks import legend
from pyfill.tasks.colorize import Colorized, finish_colorized
from pyfill.tasks.generate import _labels_spec
from pyfill.tasks.restore import finish_restored

RNG = np.random.default_rng(3)


def _u8(*shape: int) -> np.ndarray:
    return RNG.integers(0, 256, shape).astype(np.uint8)


# ---- _common -------------------------------------------------------------------------------------
def test_engines_are_cached_per_model_and_options() -> None:
    a = C.get_engine("restore", ("restore",), "restore", tile=0)
    assert C.get_engine("restore", ("restore",), "restore", tile=0) is a
    assert C.get_engine("restore", ("restore",), "restore", tile=128) is not a
    given = Engine("restore")
    assert C.get_engine(given, ("restore", "image-to-image"), "restore") is given


def test_a_model_for_another_task_is_refused_by_name() -> None:
    with pytest.raises(ValueError, match="^colorize.onnx is a colorize model; pyfill restore takes a model for restore or "
                                         "image-to-image$"):
        C.get_engine("colorize", ("restore", "image-to-image"), "pyfill restore")
    with pytest.raises(ValueError, match="^restore.onnx is a restore model; gen takes a model for generate$"):
        C.check_task(Engine("restore"), ("generate",), "gen")


def test_to_array_takes_numpy_and_decodes_pil() -> None:
    a = _u8(4, 5, 3)
    assert C.to_array(a) is a
    np.testing.assert_array_equal(C.to_array(Image.fromarray(a)), a)
    with pytest.raises(TypeError, match="^photo: expected a NumPy array or a PIL image, got list$"):
        C.to_array([[1]], "photo")
    with pytest.raises(TypeError, match="^image: expected"):
        C.to_array(3)


def test_alpha_is_split_and_joined_back() -> None:
    rgba = _u8(4, 5, 4)
    colour, alpha = C.split_alpha(rgba)
    np.testing.assert_array_equal(colour, rgba[..., :3])
    np.testing.assert_array_equal(alpha, rgba[..., 3:])
    np.testing.assert_array_equal(C.join_alpha(colour, alpha), rgba)
    for other in (_u8(4, 5), _u8(4, 5, 3), _u8(4, 5, 1)):
        same, none = C.split_alpha(other)
        assert same is other and none is None
    assert C.join_alpha(colour, None) is colour
    with pytest.raises(TypeError, match="^alpha dtype uint16 differs from the image's uint8$"):
        C.join_alpha(colour, alpha.astype(np.uint16))


@pytest.mark.parametrize("shape", [(6, 7), (6, 7, 1), (6, 7, 3), (6, 7, 4)])
def test_face_tasks_see_rgb_and_get_their_form_back(shape) -> None:
    given = _u8(*shape)
    arr, rgb, alpha = C.face_rgb(given, "img", "swap")
    assert arr is given and rgb.shape == (6, 7, 3) and rgb.dtype == np.uint8 and rgb.flags.c_contiguous
    gray = given.ndim == 2 or given.shape[-1] == 1
    if gray:
        np.testing.assert_array_equal(rgb, np.repeat(given.reshape(6, 7, 1), 3, axis=-1))
    else:
        np.testing.assert_array_equal(rgb, given[..., :3])
    assert (alpha is None) == (shape[-1] != 4)
    result = _u8(6, 7, 3)
    back = C.back_to_form(given, result, alpha)
    assert back.shape == given.shape and back.dtype == np.uint8
    if gray:
        np.testing.assert_array_equal(back.reshape(6, 7), np.rint(result.mean(axis=-1)).astype(np.uint8))
    else:
        np.testing.assert_array_equal(back[..., :3], result)
    if alpha is not None:
        np.testing.assert_array_equal(back[..., 3], given[..., 3])


def test_face_tasks_refuse_other_dtypes_and_shapes() -> None:
    with pytest.raises(TypeError, match="^src: edit takes uint8 images, got uint16$"):
        C.face_rgb(np.zeros((4, 4, 3), np.uint16), "src", "edit")
    with pytest.raises(ValueError, match=r"^src: expected an \(H, W\) gray, \(H, W, 3\) RGB or \(H, W, 4\) RGBA image, got "
                                         r"shape \(4, 4, 2\)$"):
        C.face_rgb(np.zeros((4, 4, 2), np.uint8), "src", "swap")
    with pytest.raises(ValueError, match=r"got shape \(4,\)"):
        C.face_rgb(np.zeros(4, np.uint8), "src", "swap")


# ---- restore / colorize results ------------------------------------------------------------------
def test_restored_gray_is_the_rounded_channel_mean() -> None:
    restored = _u8(4, 5, 3)
    out = finish_restored(_u8(4, 5), restored)
    np.testing.assert_array_equal(out, np.rint(restored.astype(np.float64).mean(axis=-1)).astype(np.uint8))
    f = RNG.random((4, 5, 3)).astype(np.float32)
    out = finish_restored(RNG.random((4, 5)).astype(np.float32), f)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, f.astype(np.float64).mean(axis=-1), rtol=1e-6)
    deep = (restored.astype(np.uint16) * 257)
    out = finish_restored(_u8(4, 5).astype(np.uint16), deep)
    assert out.dtype == np.uint16
    np.testing.assert_array_equal(out, np.rint(deep.astype(np.float64).mean(axis=-1)).astype(np.uint16))
    same = _u8(4, 5, 3)
    assert finish_restored(_u8(4, 5, 3), same) is same


def test_restored_alpha_follows_an_upscaler_by_nearest_neighbours() -> None:
    src = _u8(3, 4, 4)
    restored = _u8(6, 8, 3)
    out = finish_restored(src, restored)
    assert out.shape == (6, 8, 4)
    np.testing.assert_array_equal(out[..., :3], restored)
    expected = np.asarray(Image.fromarray(src[..., 3]).resize((8, 6), Image.NEAREST))
    np.testing.assert_array_equal(out[..., 3], expected)
    wide = finish_restored(_u8(2, 2, 4), _u8(2, 6, 3))  # different factors per axis
    assert wide.shape == (2, 6, 4)
    same_size = finish_restored(src, _u8(3, 4, 3))
    np.testing.assert_array_equal(same_size[..., 3], src[..., 3])


def test_colorized_result_keeps_alpha_and_reads_the_score() -> None:
    fill = _u8(4, 5, 3)
    src = _u8(4, 5, 4)
    c = finish_colorized(src, Result({"fill": fill, "realness": np.array([[0.25]], np.float32)}, image_names=("fill",)))
    assert isinstance(c, Colorized) and c.realness == 0.25 and isinstance(c.realness, float)
    np.testing.assert_array_equal(c.image, np.dstack([fill, src[..., 3]]))
    c = finish_colorized(_u8(4, 5), Result({"fill": fill}, image_names=("fill",)))
    assert c.realness is None and c.image is fill


# ---- generate ------------------------------------------------------------------------------------
def test_legend_lists_the_manifest_classes_and_colours() -> None:
    spec = _labels_spec(Engine("generate"))
    entries = legend()
    assert [e.index for e in entries] == list(range(spec.classes))
    assert [e.name for e in entries] == spec.class_names
    assert [list(e.colour) for e in entries] == [list(c) for c in spec.palette]
    assert all(type(v) is int for e in entries for v in e.colour)


def test_generate_needs_a_labels_model() -> None:
    with pytest.raises(ValueError, match="^restore.onnx: a generation model takes a label map$"):
        _labels_spec(Engine("restore"))


def test_generate_takes_rgba_legend_images_and_checks_strokes() -> None:
    lab = np.zeros((64, 64), np.uint8)
    lab[32:] = 3
    colours = np.array([e.colour for e in legend()], np.uint8)[lab]
    rgba = np.dstack([colours, _u8(64, 64)])
    out = pyfill.generate(lab)
    assert out.dtype == np.uint8 and out.shape == (64, 64, 3)
    np.testing.assert_array_equal(pyfill.generate(rgba), out)
    np.testing.assert_array_equal(pyfill.generate(Image.fromarray(colours)), out)
    with pytest.raises(ValueError, match="^strokes: stroke images are 8-bit RGB or RGBA, got float32$"):
        pyfill.generate(lab, np.zeros((64, 64, 3), np.float32))
    strokes = np.zeros((64, 64, 3), np.uint8)
    strokes[5:15, 5:40] = (240, 30, 30)
    mask = strokes.any(axis=-1)
    a = pyfill.generate(lab, strokes, occupancy=mask)
    np.testing.assert_array_equal(a, pyfill.generate(lab, strokes))  # default occupancy: non-zero pixels
    engine = Engine("generate")
    np.testing.assert_array_equal(a, engine(labels=lab, strokes=strokes, occupancy=mask))
