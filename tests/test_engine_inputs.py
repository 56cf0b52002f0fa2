"""The Engine's per-item converters for non-image inputs (``pyfill.engine.inputs``) and its point
mapping, against hand-computed values: dtypes, shapes, the messages of refusals (each names the
input), and how landmarks and boxes reach a coordinate mapping."""

from __future__ import annotations

import numpy as np
import pytest

from pyfill.engine import inputs as I
from pyfill.engine.engine import Engine
from pyfill.manifest import TensorSpec
from references import save_graph


def spec(kind: str, **kw) -> TensorSpec:
    return TensorSpec("x", kind=kind, **kw)


def test_numbers_of_any_integer_or_float_dtype_are_taken_and_others_refused() -> None:
    for dtype in (np.uint8, np.int16, np.int64, np.float16, np.float64):
        got = I.tensor(spec("tensor", shape=[2, 3]), np.ones((2, 3), dtype), "latent")
        assert got.dtype == np.float32 and np.array_equal(got, np.ones((2, 3), np.float32))
    for bad, dtype in ((np.ones((2, 3), bool), "bool"), (np.ones((2, 3), complex), "complex128"),
                       (np.array([["a"] * 3] * 2), "<U1"), (np.array([[None] * 3] * 2), "object")):
        with pytest.raises(TypeError, match=rf"^latent: expected numbers, got dtype {dtype}$"):
            I.tensor(spec("tensor", shape=[2, 3]), bad, "latent")


def test_torch_tensors_are_read_on_the_cpu() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(6, dtype=torch.float64, requires_grad=True).reshape(2, 3)
    got = I.tensor(spec("tensor", shape=[2, None]), t, "latent")
    assert got.dtype == np.float32 and np.array_equal(got, np.arange(6, dtype=np.float32).reshape(2, 3))
    assert np.array_equal(I.points(spec("landmarks"), torch.ones(5, 2), "lm"), np.ones((5, 2), np.float32))


def test_tensors_keep_their_declared_shape_and_values() -> None:
    x = np.random.default_rng(0).normal(size=(14, 512))
    got = I.tensor(spec("tensor", shape=[None, 512]), x, "w_plus")
    assert got.dtype == np.float32 and np.array_equal(got, x.astype(np.float32))
    with pytest.raises(ValueError, match=r"^w_plus: expected shape \(any, 512\), got \(14, 511\)$"):
        I.tensor(spec("tensor", shape=[None, 512]), x[:, :511], "w_plus")
    with pytest.raises(ValueError, match=r"^w_plus: contains NaN or infinite values$"):
        I.tensor(spec("tensor", shape=[None, 512]), np.where(x > 2, np.inf, x), "w_plus")


def test_landmarks_are_k_by_2_and_boxes_4_or_5_wide() -> None:
    lm = np.arange(10, dtype=np.int32).reshape(5, 2)
    got = I.points(spec("landmarks"), lm, "landmarks")
    assert got.dtype == np.float32 and np.array_equal(got, lm.astype(np.float32))
    with pytest.raises(ValueError, match=r"^landmarks: expected shape \(any, 2\), got \(5, 3\)$"):
        I.points(spec("landmarks"), np.zeros((5, 3)), "landmarks")
    with pytest.raises(ValueError, match=r"^landmarks: expected shape \(68, 2\), got \(67, 2\)$"):
        I.points(spec("landmarks", shape=[68, 2]), np.zeros((67, 2)), "landmarks")
    for width in (4, 5):
        boxes = np.arange(3 * width, dtype=np.float64).reshape(3, width)
        assert np.array_equal(I.points(spec("boxes"), boxes, "boxes"), boxes.astype(np.float32))
    with pytest.raises(ValueError, match=r"^boxes: expected shape \(any, 4\), got \(3, 6\)$"):
        I.points(spec("boxes"), np.zeros((3, 6)), "boxes")
    with pytest.raises(ValueError, match=r"^boxes: expected shape \(any, 4\), got \(4,\)$"):
        I.points(spec("boxes"), np.zeros(4), "boxes")
    with pytest.raises(ValueError, match=r"^boxes: expected shape \(any, 4\), got \(1, 3, 4\)$"):
        I.points(spec("boxes"), np.zeros((1, 3, 4)), "boxes")
    with pytest.raises(ValueError, match=r"^boxes: contains NaN or infinite values$"):
        I.points(spec("boxes"), np.array([[0, 0, np.nan, 1]]), "boxes")
    with pytest.raises(ValueError, match=r"^boxes: empty input of shape \(0, 4\)$"):
        I.points(spec("boxes"), np.zeros((0, 4)), "boxes")


def test_points_reach_the_mapping_as_coordinate_rows_and_scores_stay() -> None:
    seen: list[tuple[int, ...]] = []

    def shift(a: np.ndarray) -> np.ndarray:  # adds the column index: shows which column went where
        seen.append(a.shape)
        return a + np.arange(a.shape[-1], dtype=a.dtype)

    lm = np.zeros((2, 3, 2), np.float32)  # (batch, K, 2)
    got = Engine._map_points(spec("landmarks"), lm, shift)
    assert seen[-1] == (2, 6) and np.array_equal(got, np.broadcast_to(np.arange(6).reshape(3, 2), (2, 3, 2)))
    boxes = np.zeros((2, 3, 5), np.float32)
    boxes[..., 4] = 0.75  # scores
    got = Engine._map_points(spec("boxes"), boxes, shift)
    assert seen[-1] == (2, 3, 4)
    assert np.array_equal(got[..., :4], np.broadcast_to(np.arange(4), (2, 3, 4))) and np.all(got[..., 4] == 0.75)
    four = np.zeros((2, 3, 4), np.float32)
    got = Engine._map_points(spec("boxes"), four, shift)
    assert seen[-1] == (2, 3, 4) and np.array_equal(got, np.broadcast_to(np.arange(4), (2, 3, 4)))
    # a landmarks input whose last axis happens to be 5 wide is still mapped whole
    five = np.zeros((1, 5, 2), np.float32)
    assert np.array_equal(Engine._map_points(spec("landmarks"), five, shift)[0], np.arange(10).reshape(5, 2))


def test_vectors_tokens_and_omitted_inputs() -> None:
    v = I.vector(spec("embedding", length=4), [[1, 2], [3, 4]], "identity")
    assert v.dtype == np.float32 and v.tolist() == [1, 2, 3, 4]
    with pytest.raises(ValueError, match=r"^identity: expected a embedding of length 4, got 3 values$"):
        I.vector(spec("embedding", length=4), [1, 2, 3], "identity")
    t = I.tokens(spec("tokens", shape=[None]), np.array([3, 1, 2], np.int32), "text")
    assert t.dtype == np.int64 and t.tolist() == [3, 1, 2]
    with pytest.raises(TypeError, match=r"^text: token ids are integers, got float64$"):
        I.tokens(spec("tokens", shape=[None]), np.array([1.0]), "text")
    assert I.zeros(spec("tokens", shape=[None])).dtype == np.int64
    assert I.zeros(spec("tensor", shape=[None, 3])).shape == (1, 3)
    assert I.zeros(spec("tensor", shape=[None, 3])).dtype == np.float32
    assert I.zeros(spec("vector", length=5)).tolist() == [0.0] * 5 and I.zeros(spec("vector", length=5)).dtype == np.float32
    with pytest.raises(ValueError, match=r"^photo: image inputs are spatial$"):
        I.convert(spec("image"), np.zeros((4, 4, 3)), "photo")
    assert I.convert(spec("boxes"), np.ones((1, 4)), "b").shape == (1, 4)
    # convert sends each kind to its converter, with the label
    assert I.convert(spec("vector", length=2), [1, 2], "v").tolist() == [1.0, 2.0]
    assert I.convert(spec("embedding", length=2), [3, 4], "e").tolist() == [3.0, 4.0]
    assert I.convert(spec("tokens", shape=[None]), [5, 6], "t").dtype == np.int64
    for kind, bad, message in (("vector", [1, 2, 3], r"^v: expected a vector of length 2, got 3 values$"),
                               ("embedding", [1.0], r"^v: expected a embedding of length 2, got 1 values$")):
        with pytest.raises(ValueError, match=message):
            I.convert(spec(kind, length=2), bad, "v")
    with pytest.raises(TypeError, match=r"^t: token ids are integers, got float64$"):
        I.convert(spec("tokens", shape=[None]), [1.5], "t")
    with pytest.raises(ValueError, match=r"^b: expected shape \(any, 4\), got \(1, 6\)$"):
        I.convert(spec("boxes"), np.ones((1, 6)), "b")
    with pytest.raises(TypeError, match=r"^b: expected numbers, got dtype bool$"):
        I.convert(spec("boxes"), np.ones((1, 4), bool), "b")


def test_call_arguments_are_checked_by_name(tmp_path) -> None:
    pytest.importorskip("onnx")
    from test_engine_default_install import conv_manifest, conv_model

    engine = Engine(conv_model(tmp_path / "conv.onnx", conv_manifest()), backend="onnxruntime")
    x = np.zeros((8, 8, 3), np.uint8)
    with pytest.raises(TypeError, match=r"^input 'image' given both positionally and by name$"):
        engine(x, image=x)
    with pytest.raises(TypeError, match=r"^unknown inputs \['bogus', 'extra'\]; this model takes \['image'\]$"):
        engine(x, extra=1, bogus=2)
    with pytest.raises(TypeError, match=r"^no inputs given; this model takes \['image'\]$"):
        engine()
    with pytest.raises(ValueError, match=r"^image: empty batch$"):
        engine([])
    assert engine(image=x).shape == (8, 8, 3) and len(engine([x, x])) == 2


def shifted_model(path):
    """image (N, 3, H, W) + shift (N, 3) per channel, with a pyfill manifest."""
    from onnx import TensorProto, helper

    from pyfill.manifest import Manifest

    manifest = Manifest(task="restore", family="shifted", config={},
                        inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0)),
                                TensorSpec("shift", "vector", length=3)],
                        outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 1.0))])
    return save_graph(path, [helper.make_node("Unsqueeze", ["shift", "axes"], ["s4"]),
                             helper.make_node("Add", ["image", "s4"], ["out"])],
                      [("image", ["n", 3, "h", "w"]), ("shift", ["n", 3])], [("out", ["n", 3, "h", "w"])],
                      [helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])], manifest)


def test_a_batch_is_led_by_the_image_and_other_inputs_broadcast_or_match(tmp_path) -> None:
    pytest.importorskip("onnx")
    engine = Engine(shifted_model(tmp_path / "shifted.onnx"), backend="onnxruntime")
    x = np.full((4, 4, 3), 0.25, np.float32)
    up, down = np.array([0.5, 0.5, 0.5], np.float32), np.array([-0.25, -0.25, -0.25], np.float32)
    # the shift is given first, the image batch second: the image leads, the one shift goes to every item
    both = engine(shift=up, image=[x, x])
    assert len(both) == 2 and all(np.allclose(r, 0.75) for r in both)
    pairs = engine(image=[x, x], shift=[up, down])
    assert np.allclose(pairs[0], 0.75) and np.allclose(pairs[1], 0.0)
    with pytest.raises(ValueError, match=r"^shift: batch of 1 does not match image's 2$"):
        engine(image=[x, x], shift=[up])
    # without the image, the first input given leads the batch and the missing image is named
    with pytest.raises(ValueError, match=r"missing input 'image'"):
        engine(shift=[up, down])
    # non-image inputs go through their converters, whose messages name them
    with pytest.raises(ValueError, match=r"^shift\[0\]: expected a vector of length 3, got 2 values$"):
        engine(x, shift=up[:2])


def test_the_precision_probe_makes_a_plausible_input_for_every_required_input() -> None:
    from types import SimpleNamespace

    from pyfill.manifest import Manifest, SizeRequirements

    m = Manifest(task="generate", family="probe", config={}, inputs=[
        TensorSpec("hint", kind="vector", length=3, optional=True),  # optional: left out
        TensorSpec("image"),
        TensorSpec("labels", kind="labels", classes=2, colour_space="none"),
        TensorSpec("text", kind="tokens", shape=[None]),
        TensorSpec("marks", kind="landmarks", shape=[None, 2]),
        TensorSpec("five", kind="landmarks", shape=[5, 2]),
        TensorSpec("boxes", kind="boxes"),
        TensorSpec("latent", kind="tensor", shape=[None, 6]),
        TensorSpec("grid", kind="vector", length=4, derive={"op": "stroke_grid", "from": "image", "grid": [2, 2]}),
    ], outputs=[TensorSpec("out")], size=SizeRequirements(multiple_of=24, min_size=50))
    fake = SimpleNamespace(manifest=m)
    item = Engine._probe_item(fake)  # type: ignore[arg-type]
    assert list(item) == ["image", "labels", "text", "marks", "five", "boxes", "latent"]
    image = item["image"]
    assert image.dtype == np.uint8 and image.shape == (72, 72, 3)  # 64 rounded up to a multiple of 24
    steps = np.abs(np.diff(image.astype(np.int16), axis=0)).max(), np.abs(np.diff(image.astype(np.int16), axis=1)).max()
    assert max(steps) <= 40 and int(image.max()) - int(image.min()) >= 100  # smooth, but not flat
    labels = item["labels"]
    assert labels.shape == (72, 72) and set(np.unique(labels)) == {0, 1}
    assert item["text"].dtype == np.int64 and item["text"].tolist() == [1] * 8
    assert item["marks"].shape == (5, 2) and item["five"].shape == (5, 2) and item["boxes"].shape == (5, 4)
    for key in ("marks", "five", "boxes"):
        assert item[key].dtype == np.float32 and item[key].min() >= 0 and item[key].max() <= 71
    boxes = item["boxes"]
    assert np.all(boxes[:, 0] <= boxes[:, 2]) and np.all(boxes[:, 1] <= boxes[:, 3])  # corners in order
    scored = SimpleNamespace(manifest=Manifest(task="detect", family="p", config={},
                                               inputs=[TensorSpec("image"), TensorSpec("b", kind="boxes", shape=[3, 5])],
                                               outputs=[TensorSpec("out")]))
    b5 = Engine._probe_item(scored)["b"]  # type: ignore[arg-type]
    assert b5.shape == (3, 5) and np.all(b5[:, 4] == 1.0)
    assert item["latent"].shape == (4, 6) and item["latent"].dtype == np.float32 and item["latent"].std() > 0.1
    again = Engine._probe_item(fake)  # type: ignore[arg-type]
    assert all(np.array_equal(item[k], again[k]) for k in item)  # the same probe every time
    assert Engine._probe_item(fake, (20, 30))["image"].shape == (20, 30, 3)  # type: ignore[arg-type]
    small = SimpleNamespace(manifest=Manifest(task="restore", family="p", config={}, inputs=[TensorSpec("image")],
                                              outputs=[TensorSpec("out")]))
    assert Engine._probe_item(small)["image"].shape == (64, 64, 3)  # type: ignore[arg-type]


# --- images: the uint8 fast path and the general path ------------------------------------------

def _reference_chw(rgb_float01: np.ndarray, value_range: tuple[float, float], bgr: bool) -> np.ndarray:
    """An (H, W, 3) image in [0, 1] -> (3, H, W) float32 in ``value_range``, by NumPy alone."""
    lo, hi = value_range
    x = rgb_float01[..., ::-1] if bgr else rgb_float01
    return (np.transpose(x, (2, 0, 1)) * (hi - lo) + lo).astype(np.float32)


@pytest.mark.parametrize("value_range", [(0.0, 1.0), (-1.0, 1.0)])
@pytest.mark.parametrize("bgr", [False, True])
@pytest.mark.parametrize("form", ["HW", "HW1", "HWC", "HWA"])
def test_uint8_images_take_the_fast_path_and_equal_the_numpy_reference(monkeypatch, form, bgr, value_range) -> None:
    rng = np.random.default_rng(3)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    value = {"HW": gray, "HW1": gray[..., None], "HWC": rgb,
             "HWA": np.concatenate([rgb, rng.integers(0, 256, (5, 7, 1), dtype=np.uint8)], -1)}[form]
    seen = rgb if form in ("HWC", "HWA") else np.repeat(gray[..., None], 3, -1)
    s = TensorSpec("image", kind="image", channels=3, value_range=value_range)

    fast = I._uint8_for(s, value)
    assert fast is not None
    src, layout = fast
    assert src.dtype == np.uint8 and np.array_equal(src, seen)
    assert layout == ("HW" if form == "HW" else "HWC")

    # the general path must not be taken for a uint8 NumPy image of 1, 3 or 4 channels
    def general(*_a, **_k):
        raise AssertionError("the general path ran")
    monkeypatch.setattr(I.P, "image_to_float", general)
    got, kind = I.image(s, value, "image", bgr, keep_torch=False)
    assert kind.container == "numpy" and kind.dtype == "uint8" and kind.layout == layout
    np.testing.assert_allclose(got, _reference_chw(seen / 255.0, value_range, bgr), atol=1e-6)


def test_one_channel_models_take_gray_uint8_images_without_repeating_them() -> None:
    gray = np.arange(12, dtype=np.uint8).reshape(3, 4) * 20
    s = TensorSpec("image", kind="image", channels=1, value_range=(0.0, 1.0))
    src, layout = I._uint8_for(s, gray)
    assert src.shape == (3, 4, 1) and np.array_equal(src[..., 0], gray) and layout == "HW"
    got, kind = I.image(s, gray, "image", False, keep_torch=False)
    assert got.shape == (1, 3, 4) and kind.layout == "HW"
    np.testing.assert_allclose(got[0], gray / 255.0, atol=1e-6)


def test_images_the_fast_path_cannot_take_go_the_general_way() -> None:
    s = TensorSpec("image", kind="image", channels=3, value_range=(0.0, 1.0))
    rgb = np.random.default_rng(4).integers(0, 256, (4, 6, 3), dtype=np.uint8)
    assert I._uint8_for(s, rgb.astype(np.uint16) * 257) is None        # not uint8
    assert I._uint8_for(s, rgb.astype(np.float32) / 255) is None        # float
    assert I._uint8_for(s, rgb[None]) is None                           # 4 axes
    assert I._uint8_for(s, rgb[..., :2]) is None                        # 2 channels: not 1, 3 or 4
    assert I._uint8_for(s, np.zeros((0, 4, 3), np.uint8)) is None       # empty
    assert I._uint8_for(s, rgb.tolist()) is None                        # not an ndarray
    # one channel per model channel only: a 3-channel model does not take 2-channel images,
    # and a 1-channel model takes no RGB image on the fast path
    assert I._uint8_for(TensorSpec("image", kind="image", channels=1), rgb) is None
    # the general path gives the same numbers for float input, and keeps its own kind
    got, kind = I.image(s, rgb.astype(np.float32) / 255, "image", False, keep_torch=False)
    assert kind.dtype == "float32" and kind.layout == "HWC"
    np.testing.assert_allclose(got, _reference_chw(rgb / 255.0, (0.0, 1.0), False), atol=1e-6)
    with pytest.raises(ValueError, match="empty"):
        I.image(s, np.zeros((0, 4, 3), np.uint8), "image", False, keep_torch=False)


def test_the_general_path_reverses_channels_for_bgr_models_and_names_the_input() -> None:
    s = TensorSpec("image", kind="image", channels=3, value_range=(-1.0, 1.0))
    rgb = np.random.default_rng(5).uniform(0, 1, (4, 6, 3)).astype(np.float32)
    for bgr in (False, True):
        got, kind = I.image(s, rgb, "image", bgr, keep_torch=False)
        assert isinstance(got, np.ndarray) and got.flags.c_contiguous and kind.dtype == "float32"
        np.testing.assert_allclose(got, _reference_chw(rgb, (-1.0, 1.0), bgr), atol=1e-6)
    with pytest.raises(ValueError, match=r"^photo\[2\]: "):
        I.image(s, np.full((4, 6, 3), 3.0, np.float32), "photo[2]", False, keep_torch=False)
    two = TensorSpec("image", kind="image", channels=2, colour_space="none", value_range=(0.0, 1.0))
    with pytest.raises(ValueError, match=r"^cannot feed a 3-channel image to a 2-channel \(none\) input$"):
        I.image(two, rgb, "image", False, keep_torch=False)


def test_torch_images_stay_torch_where_the_backend_takes_them() -> None:
    torch = pytest.importorskip("torch")
    s = TensorSpec("image", kind="image", channels=3, value_range=(-1.0, 1.0))
    chw = torch.rand(3, 5, 7)
    want = _reference_chw(chw.permute(1, 2, 0).numpy(), (-1.0, 1.0), True)
    kept, kind = I.image(s, chw, "image", True, keep_torch=True)
    assert isinstance(kept, torch.Tensor) and kind.container == "torch" and kind.layout == "CHW"
    np.testing.assert_allclose(kept.numpy(), want, atol=1e-6)
    got, _ = I.image(s, chw, "image", True, keep_torch=False)
    assert isinstance(got, np.ndarray) and got.shape == (3, 5, 7)
    np.testing.assert_allclose(got, want, atol=1e-6)


def test_a_bgr_model_takes_torch_images_as_it_takes_numpy(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from test_engine_default_install import conv_model

    engine = Engine(conv_model(tmp_path / "foreign.onnx"), backend="onnxruntime", channel_order="bgr")
    x = np.random.default_rng(6).uniform(0, 1, (16, 20, 3)).astype(np.float32)
    got = engine(torch.from_numpy(x).permute(2, 0, 1).contiguous())
    assert isinstance(got, torch.Tensor) and tuple(got.shape) == (3, 16, 20)
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), engine(x), atol=1e-6)
