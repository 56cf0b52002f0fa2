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


# ---- cases found by mutation testing (tools/mutation.py tasks) -----------------------------------
def test_task_engines_default_to_latency_and_dynamic_shapes_and_pass_options_on() -> None:
    from pyfill.tasks import colorize_engine, generate_engine, restore_engine

    for make in (colorize_engine, restore_engine):
        plain = make(backend="openvino").backend.describe()
        assert plain["static_shapes"] is False and plain["throughput"] is False
        stream = make(backend="openvino", static_shapes=True, throughput=True).backend
        assert stream.throughput is True and stream.describe()["static_shapes"] is True
    assert restore_engine(tile=0).tile == 0 and restore_engine(tile=128).tile == 128 and restore_engine().tile is None
    for make in (colorize_engine, restore_engine, generate_engine):
        assert make(backend="onnxruntime").backend.name == "onnxruntime"
    assert generate_engine().path.name == "generate.onnx"


@pytest.mark.parametrize("make,message", [
    ("colorize_engine", "restore.onnx is a restore model; colorize takes a model for colorize or image-to-image"),
    ("generate_engine", "restore.onnx is a restore model; generate takes a model for generate"),
    ("restore_engine", "generate.onnx is a generate model; restore takes a model for restore or image-to-image"),
])
def test_task_engines_name_the_task_when_the_model_is_for_another(make, message) -> None:
    import pyfill.tasks as T

    with pytest.raises(ValueError, match="^" + message.replace(".", r"\.") + "$"):
        getattr(T, make)("generate" if make == "restore_engine" else "restore")


def test_restore_passes_tile_and_backend_to_its_engine() -> None:
    from pyfill.tasks import restore_engine

    img = (np.random.default_rng(0).random((200, 260, 3)) * 255).astype(np.uint8)
    engine = restore_engine(tile=96)
    seen: list[int] = []
    engine.on_tile = lambda done, total: seen.append(total)
    try:
        pyfill.restore(img, tile=96)
    finally:
        engine.on_tile = None
    assert seen, "restore(tile=96) did not run the tiled engine"
    ort_engine = restore_engine(backend="onnxruntime", tile=0)
    calls: list[int] = []
    run = ort_engine.backend.run
    ort_engine.backend.run = lambda feeds: calls.append(1) or run(feeds)
    try:
        ort = pyfill.restore(img, backend="onnxruntime", tile=0)
    finally:
        del ort_engine.backend.run
    assert calls, "restore(backend='onnxruntime') did not run the ONNX Runtime engine"
    np.testing.assert_array_equal(ort, Engine("restore", backend="onnxruntime", tile=0)(img))


def test_face_inputs_that_are_not_arrays_are_named() -> None:
    with pytest.raises(TypeError, match="^src: expected a NumPy array or a PIL image, got list$"):
        C.face_rgb([[1]], "src", "swap")


def test_generate_names_its_bad_arguments() -> None:
    lab = np.zeros((32, 32), np.uint8)
    with pytest.raises(TypeError, match="^labels: expected a NumPy array or a PIL image, got list$"):
        pyfill.generate([[0]])
    with pytest.raises(TypeError, match="^strokes: expected a NumPy array or a PIL image, got list$"):
        pyfill.generate(lab, [[0]])
    with pytest.raises(ValueError, match=r"^labels: label images are 8-bit \(class indices or legend colours\), got uint16$"):
        pyfill.generate(lab.astype(np.uint16))
    with pytest.raises(TypeError, match="^occupancy goes with strokes$"):
        pyfill.generate(lab, occupancy=np.ones((32, 32), bool))


def test_generate_takes_index_maps_four_pixels_wide_and_its_backend() -> None:
    lab = np.zeros((64, 4), np.uint8)
    lab[32:] = 3
    out = pyfill.generate(lab)
    assert out.shape == (64, 4, 3)
    np.testing.assert_array_equal(out, Engine("generate")(labels=lab))
    ort = pyfill.generate(np.kron(lab, np.ones((1, 16), np.uint8)), backend="onnxruntime")
    np.testing.assert_array_equal(ort, Engine("generate", backend="onnxruntime")(labels=np.kron(lab, np.ones((1, 16), np.uint8))))


def test_generate_brings_a_float_output_to_uint8() -> None:
    class FloatEngine(Engine):
        def __call__(self, *args, **kwargs):  # the same model, answering in float with overshoots
            out = super().__call__(*args, **kwargs).astype(np.float32) / 255.0
            out[0, 0] = (-0.2, 1.3, 0.5)
            return out

    base = Engine("generate")
    engine = FloatEngine.__new__(FloatEngine)
    engine.__dict__.update(base.__dict__)
    lab = np.zeros((64, 64), np.uint8)
    lab[20:] = 2
    want = base(labels=lab).astype(np.float32) / 255.0
    want[0, 0] = (-0.2, 1.3, 0.5)
    out = pyfill.generate(lab, model=engine)
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, np.rint(np.clip(want, 0, 1) * 255).astype(np.uint8))
    assert out[0, 0].tolist() == [0, 255, 128]


def test_legend_names_unnamed_classes_by_number(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(0)
    palette = [[i * 30, 255 - i * 30, (i * 77) % 256] for i in range(8)]
    cfg = {"size": 32, "base": 8, "palette": palette}
    ckpt = save_checkpoint(build_model("spade", cfg), make_manifest("spade", cfg, task="generate"), tmp_path / "g")
    entries = legend(Engine(export_onnx(ckpt, tmp_path / "g.onnx")))
    assert [(e.index, e.name, list(e.colour)) for e in entries] == [(i, f"class {i}", c) for i, c in enumerate(palette)]
