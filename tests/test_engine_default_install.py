"""pyfill.Engine on the default install (no torch): ONNX models built with ``onnx``'s helper,
with known weights, checked against OpenCV and NumPy; manifests inside ONNX files; foreign
models; batches, input types, threads, tiling and bad input. CI runs this file in a venv
without torch, where it must not skip."""

from __future__ import annotations

import dataclasses
import math
import re
import threading
from pathlib import Path

import numpy as np
import pytest

from pyfill.engine import Engine
from pyfill.manifest import FORMAT_VERSION, ONNX_METADATA_KEY, Manifest, ManifestError, SizeRequirements, TensorSpec, Tiling
from pyfill.manifest import read_onnx_manifest
from references import engine_backends, save_graph

cv2 = pytest.importorskip("cv2")
onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402

BACKENDS = engine_backends(torch_too=False)
# A 3 x 3 filter per output channel mixing all input channels: (out, in, 3, 3), seeded.
WEIGHTS = np.random.default_rng(7).uniform(-0.3, 0.5, (3, 3, 3, 3)).astype(np.float32)
BIAS = np.array([0.05, -0.02, 0.1], np.float32)


def conv_manifest(**size: object) -> Manifest:
    return Manifest(task="restore", family="conv3", config={},
                    inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
                    outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 1.0))],
                    size=SizeRequirements(**{"multiple_of": 4, "min_size": 4, **size}),  # type: ignore[arg-type]
                    tiling=Tiling(supported=True, tile=32, overlap=8))


def conv_model(path: Path, manifest: Manifest | None = None, manifest_text: str | None = None) -> Path:
    """A Conv 3x3 (zero padding 1) ONNX model with WEIGHTS and BIAS; the pyfill manifest goes
    into the file's metadata unless both are None (a foreign model)."""
    graph = helper.make_graph(
        [helper.make_node("Conv", ["image", "w", "b"], ["out"], pads=[1, 1, 1, 1], kernel_shape=[3, 3])], "conv3",
        [helper.make_tensor_value_info("image", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [numpy_helper.from_array(WEIGHTS, "w"), numpy_helper.from_array(BIAS, "b")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    text = manifest_text if manifest_text is not None else (manifest.to_json() if manifest is not None else None)
    if text is not None:
        helper.set_model_props(model, {ONNX_METADATA_KEY: text})
    onnx.save(model, str(path))
    return path


def conv_reference(image: np.ndarray, multiple_of: int = 4) -> np.ndarray:
    """float32 (H, W, 3): the image reflect-padded bottom-right to a multiple of
    ``multiple_of`` (NumPy), filtered with zero borders (OpenCV), cropped back."""
    h, w = image.shape[:2]
    x = np.pad(image, ((0, -h % multiple_of), (0, -w % multiple_of), (0, 0)), mode="reflect")
    out = np.zeros_like(x)
    for o in range(3):
        for i in range(3):
            out[..., o] += cv2.filter2D(x[..., i], -1, WEIGHTS[o, i], borderType=cv2.BORDER_CONSTANT)
        out[..., o] += BIAS[o]
    return np.clip(out[:h, :w], 0.0, 1.0)


def image(h: int, w: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 7.0 + k) * np.cos(yy / 9.0 - k) for k in range(3)], axis=-1)
    return np.clip(0.5 + 0.35 * base + 0.1 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


@pytest.fixture(scope="module")
def conv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return conv_model(tmp_path_factory.mktemp("conv") / "conv3.onnx", conv_manifest())


def test_torch_is_absent_where_ci_says_so() -> None:
    """In CI's default-install job (PYFILL_EXPECT_NO_TORCH=1) torch must not be importable, so
    these tests prove the Engine works without it."""
    import importlib.util
    import os

    if os.environ.get("PYFILL_EXPECT_NO_TORCH") != "1":
        pytest.skip("only checked in the default-install job")
    assert importlib.util.find_spec("torch") is None


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("size", [(64, 64), (61, 97), (9, 5)])
def test_backends_match_opencv(conv_path: Path, backend: str, size: tuple[int, int]) -> None:
    out = Engine(conv_path, backend=backend, precision="fp32", tile=0)(image(*size))
    assert out.shape == (*size, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, conv_reference(image(*size)), atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_tiles_of_a_local_model_equal_the_whole_image(conv_path: Path, backend: str) -> None:
    x = image(100, 140, seed=2)
    whole = Engine(conv_path, backend=backend, precision="fp32", tile=0)(x)
    tiled = Engine(conv_path, backend=backend, precision="fp32", tile=32, tile_overlap=8)(x)
    np.testing.assert_allclose(whole, conv_reference(x), atol=1e-5)
    np.testing.assert_allclose(tiled, whole, atol=1e-5)


@pytest.mark.parametrize("backend", BACKENDS)
def test_max_size_tiles_inputs_above_it_and_refuses_them_where_the_model_does_not_tile(tmp_path: Path,
                                                                                         backend: str) -> None:
    """Advised tile 64 (tiling starts above 2 x 64 = 128 px) and max_size 96: a 112 x 80 input
    is tiled because of max_size alone; a 90 x 90 one runs whole; without tiling 112 is refused."""
    m = conv_manifest(max_size=96)
    m = dataclasses.replace(m, tiling=Tiling(supported=True, tile=64, overlap=8))
    engine = Engine(conv_model(tmp_path / "capped.onnx", m), backend=backend, precision="fp32")
    tiles: list[int] = []
    engine.on_tile = lambda done, total: tiles.append(total)
    for h, w, tiled in ((90, 90, False), (112, 80, True)):
        tiles.clear()
        x = image(h, w, seed=h)
        np.testing.assert_allclose(engine(x), conv_reference(x), atol=1e-5)
        assert bool(tiles) is tiled, (h, w, tiles)
    untiled = dataclasses.replace(m, tiling=Tiling(supported=False))
    engine = Engine(conv_model(tmp_path / "capped-whole.onnx", untiled), backend=backend, precision="fp32")
    np.testing.assert_allclose(engine(image(90, 90)), conv_reference(image(90, 90)), atol=1e-5)
    with pytest.raises(ValueError, match=r"^capped-whole\.onnx: the model takes at most 96 px per side and does "
                                         r"not tile; this input is 112 x 80$"):
        engine(image(112, 80))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fixed_size_model_tiles_larger_inputs_in_windows_that_fit_it(tmp_path: Path, backend: str) -> None:
    """A 64 x 64 static model that tiles: a 152 x 92 input runs in tiles whose windows (tile +
    2 x overlap, overlap capped at 64 / 4 = 16, + 4 px alignment) fit 64: 28 px tiles with the
    default overlap (32, capped to 16), the asked-for tile where it fits (24 with overlap 8, not
    the 44 that would fit: 54 tiles, not 12). Each window is padded to 64 x 64."""
    fixed = conv_model(tmp_path / "fixed.onnx", conv_manifest(fixed=(64, 64), resize="pad"))
    x = image(152, 92, seed=5)

    def tiles(tile: int, overlap: int) -> int:  # the fewest tiles per axis (overlap at most half a tile)
        overlap = min(overlap, tile // 2)
        return math.ceil((152 - overlap) / (tile - overlap)) * math.ceil((92 - overlap) / (tile - overlap))

    for kw, want in (({}, tiles(28, 16)), ({"tile": 24, "tile_overlap": 8}, tiles(24, 8))):
        engine = Engine(fixed, backend=backend, precision="fp32", **kw)
        totals: list[int] = []
        shapes: set[tuple[int, ...]] = set()
        engine.on_tile = lambda done, total: totals.append(total)
        run_backend = engine.backend.run
        engine.backend.run = lambda feeds: shapes.add(feeds["image"].shape[-2:]) or run_backend(feeds)
        out = engine(x)
        assert totals and totals[-1] == want, (kw, totals[-1:], want)
        assert shapes == {(64, 64)}
        # a 3 x 3 filter: exact away from the last row and column (the windows there are padded)
        np.testing.assert_allclose(out[:-1, :-1], conv_reference(x)[:-1, :-1], atol=1e-5)


def test_batch_equals_single_calls_with_mixed_sizes(conv_path: Path) -> None:
    engine = Engine(conv_path, backend="onnxruntime")
    images = [image(48, 64, 1), image(48, 64, 2), image(40, 56, 3), image(48, 64, 4)]
    batch = engine(images)
    assert isinstance(batch, list) and len(batch) == 4
    for img, out in zip(images, batch):
        np.testing.assert_allclose(out, conv_reference(img), atol=1e-5)


def test_input_types_round_trip(conv_path: Path) -> None:
    from PIL import Image

    engine = Engine(conv_path, backend="onnxruntime")
    u8 = np.rint(image(40, 48) * 255).astype(np.uint8)
    want = conv_reference(u8.astype(np.float32) / 255)
    out8, out16 = engine(u8), engine(u8.astype(np.uint16) * 257)
    assert out8.dtype == np.uint8 and out16.dtype == np.uint16
    assert np.abs(out8.astype(int) - np.rint(want * 255)).max() <= 1
    assert np.abs(out16.astype(int) - np.rint(want * 65535)).max() <= 2
    pil = engine(Image.fromarray(u8))
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (48, 40)
    np.testing.assert_array_equal(np.asarray(pil), out8)
    rgba = np.concatenate([u8, np.full((40, 48, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(engine(rgba), out8)
    np.testing.assert_array_equal(engine(u8[..., 0]), engine(np.repeat(u8[..., :1], 3, axis=-1)))


@pytest.mark.parametrize("backend", BACKENDS)
def test_concurrent_calls_match_sequential(conv_path: Path, backend: str) -> None:
    engine = Engine(conv_path, backend=backend, precision="fp32")
    images = [image(32 + 8 * (i % 3), 40, seed=i) for i in range(12)]
    results: dict[int, np.ndarray] = {}
    errors: list[BaseException] = []

    def worker(ids: list[int]) -> None:
        try:
            for i in ids:
                results[i] = engine(images[i])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(list(range(k, 12, 4)),)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for i, img in enumerate(images):
        np.testing.assert_allclose(results[i], conv_reference(img), atol=1e-5)


# ---- manifests inside ONNX files ---------------------------------------------------------------
def test_manifest_round_trips_through_the_onnx_metadata(conv_path: Path) -> None:
    got = read_onnx_manifest(conv_path)
    assert got is not None and got.to_dict() == conv_manifest().to_dict()
    assert Engine(conv_path).manifest.to_dict() == conv_manifest().to_dict()


def test_a_newer_manifest_inside_an_onnx_file_is_refused(tmp_path: Path) -> None:
    d = conv_manifest().to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    d["pyfill_version"] = "99.0"
    import json

    path = conv_model(tmp_path / "newer.onnx", manifest_text=json.dumps(d))
    with pytest.raises(ManifestError, match=rf"manifest format {FORMAT_VERSION + 1} comes from a newer pyfill "
                                            r"\(written by pyfill 99.0\).*upgrade pyfill"):
        read_onnx_manifest(path)
    with pytest.raises(ManifestError, match="upgrade pyfill"):
        Engine(path)
    d["format_version"] = FORMAT_VERSION  # the same file at this pyfill's format loads
    assert Engine(conv_model(tmp_path / "same.onnx", manifest_text=json.dumps(d))).manifest.family == "conv3"


def test_a_broken_manifest_inside_an_onnx_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ManifestError, match="manifest"):
        Engine(conv_model(tmp_path / "broken.onnx", manifest_text='{"task": "restore"}'))


# ---- foreign models ------------------------------------------------------------------------------
def test_a_foreign_onnx_model_runs_with_default_conventions_and_a_probed_scale(tmp_path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")], "up2",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "h2", "w2"])],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.save(model, str(tmp_path / "up.onnx"))
    engine = Engine(tmp_path / "up.onnx", backend="onnxruntime")
    assert engine.foreign and engine.info["output_scale"] == 2
    x = image(21, 30)
    np.testing.assert_allclose(engine(x), np.repeat(np.repeat(x, 2, axis=0), 2, axis=1), atol=1e-6)
    plain = conv_model(tmp_path / "foreign_conv.onnx")
    assert read_onnx_manifest(plain) is None
    np.testing.assert_allclose(Engine(plain, backend="onnxruntime")(image(16, 16)),
                               conv_reference(image(16, 16), multiple_of=1), atol=1e-5)


# ---- selection and bad input -------------------------------------------------------------------
def test_auto_says_which_backend_and_why(conv_path: Path) -> None:
    info = Engine(conv_path).info
    assert info["backend"] in BACKENDS and info["selected_because"]
    assert Engine(conv_path, backend="onnxruntime").info["providers"] == ["CPUExecutionProvider"]


@pytest.mark.parametrize(
    "bad,exc,match",
    [
        (np.zeros((8, 8, 2), np.uint8), ValueError, "2-channel"),
        (np.zeros((8, 8, 5), np.uint8), ValueError, "channels"),
        (np.zeros((8, 8, 3), np.int32), TypeError, "dtype"),
        (np.zeros((0, 8, 3), np.uint8), ValueError, "empty"),
        (np.full((8, 8, 3), np.nan, np.float32), ValueError, "NaN"),
        (np.full((8, 8, 3), 3.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.zeros((2, 8, 8, 3), np.uint8), ValueError, "shape"),
        ("image.png", TypeError, "NumPy array"),
    ],
)
def test_bad_images_raise_clear_errors(conv_path: Path, bad: object, exc: type, match: str) -> None:
    with pytest.raises(exc, match=match):
        Engine(conv_path, backend="onnxruntime")(bad)


def test_bad_model_files_and_options_raise_clear_errors(tmp_path: Path, conv_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found: .*missing.onnx"):
        Engine(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        Engine(junk)
    with pytest.raises(ValueError, match="backend must be one of"):
        Engine(conv_path, backend="tflite")
    with pytest.raises(ValueError, match="fp16"):
        Engine(conv_path, backend="onnxruntime", precision="fp16")
    with pytest.raises(ValueError, match="torch backend runs pyfill checkpoints"):
        Engine(conv_path, backend="torch")
    with pytest.raises(ValueError, match="tile"):
        Engine(conv_path, tile=-1)


# ---- shipped models, run by ONNX Runtime directly ---------------------------------------------
@pytest.mark.parametrize("backend", BACKENDS)
def test_shipped_restore_model_equals_onnx_runtime_on_the_padded_image(backend: str) -> None:
    import onnxruntime as ort

    from pyfill.store import resolve_model

    path = resolve_model("restore")
    manifest = read_onnx_manifest(path)
    assert manifest is not None
    x = image(45, 61, seed=5)
    m = manifest.size.multiple_of
    padded = np.pad(x, ((0, -45 % m), (0, -61 % m), (0, 0)), mode="reflect").transpose(2, 0, 1)[None]
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    want = np.clip(session.run(None, {manifest.inputs[0].name: padded})[0][0].transpose(1, 2, 0)[:45, :61], 0, 1)
    got = Engine(path, backend=backend, precision="fp32", tile=0)(x)
    np.testing.assert_allclose(got, want, atol=2e-4)


# ---- outputs: the form they come back in --------------------------------------------------------

@pytest.mark.parametrize("backend", BACKENDS)
def test_a_gray_model_gives_gray_images_back_in_their_own_form(tmp_path: Path, backend: str) -> None:
    """A one-channel model (out = 1 - image): (H, W) uint8 in, (H, W) uint8 out; (H, W, 1) in,
    (H, W, 1) out; float in, float out."""
    m = Manifest(task="restore", family="invert", config={},
                 inputs=[TensorSpec("image", "image", 1, "gray", (0.0, 1.0))],
                 outputs=[TensorSpec("out", "image", 1, "gray", (0.0, 1.0))], size=SizeRequirements(multiple_of=1))
    one = numpy_helper.from_array(np.array(1.0, np.float32), "one")
    path = save_graph(tmp_path / "invert.onnx", [helper.make_node("Sub", ["one", "image"], ["out"])],
                      [("image", ["n", 1, "h", "w"])], [("out", ["n", 1, "h", "w"])], [one], m)
    engine = Engine(path, backend=backend, precision="fp32")
    gray = np.random.default_rng(0).integers(0, 256, (13, 17), dtype=np.uint8)
    out = engine(gray)
    assert out.shape == (13, 17) and out.dtype == np.uint8
    assert np.abs(out.astype(int) - (255 - gray.astype(int))).max() <= 1
    out = engine(gray[..., None])
    assert out.shape == (13, 17, 1) and np.abs(out[..., 0].astype(int) - (255 - gray.astype(int))).max() <= 1
    f = gray.astype(np.float32) / 255
    np.testing.assert_allclose(engine(f), 1 - f, atol=1e-6)


@pytest.mark.parametrize("backend", BACKENDS)
def test_uint8_outputs_use_the_compiled_conversion(tmp_path: Path, backend: str, monkeypatch) -> None:
    """uint8 NumPy in: the output is made by the compiled CHW float -> HWC uint8 pass, once per
    image; float in: it is not used."""
    import pyfill.engine.engine as E

    calls = []
    real = E.chw_to_image
    monkeypatch.setattr(E, "chw_to_image", lambda *a, **k: calls.append(1) or real(*a, **k))
    engine = Engine(conv_model(tmp_path / "conv.onnx", conv_manifest()), backend=backend, precision="fp32")
    x = image(24, 32)
    u8 = np.rint(x * 255).astype(np.uint8)
    out = engine([u8, u8])
    assert len(calls) == 2 and out[0].dtype == np.uint8
    assert np.abs(out[0].astype(int) - np.rint(conv_reference(u8 / np.float32(255)) * 255).astype(int)).max() <= 1
    calls.clear()
    engine(x)
    assert calls == []


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_fixed_size_upscaler_is_brought_back_to_its_scale_of_the_input(tmp_path: Path, backend: str) -> None:
    """A 32 x 32 x2 upscaler (nearest) that stretches inputs: a 40 x 48 input comes back
    80 x 96, close to the input upscaled by OpenCV (the smooth image changes little when it
    is squeezed to 32 x 32 and stretched back)."""
    m = Manifest(task="restore", family="up2", config={},
                 inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
                 outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 1.0))],
                 size=SizeRequirements(fixed=(32, 32), resize="stretch", scale=2, multiple_of=1))
    scales = numpy_helper.from_array(np.array([1, 1, 2, 2], np.float32), "scales")
    node = helper.make_node("Resize", ["image", "", "scales"], ["out"], mode="nearest")
    path = save_graph(tmp_path / "up2.onnx", [node], [("image", ["n", 3, "h", "w"])], [("out", ["n", 3, "H", "W"])],
                      [scales], m)
    engine = Engine(path, backend=backend, precision="fp32")
    x = image(40, 48, seed=3)
    out = engine(x)
    assert out.shape == (80, 96, 3)
    want = cv2.resize(x, (96, 80), interpolation=cv2.INTER_LINEAR)
    assert np.abs(out - want).mean() < 0.03


@pytest.mark.parametrize("backend", BACKENDS)
def test_info_names_the_backend_device_and_precision_that_run(conv_path: Path, backend: str) -> None:
    info = Engine(conv_path, backend=backend, precision="fp32").info
    assert (info["backend"], info["device"], info["precision"]) == (backend, "cpu", "fp32")


# ---- tiling probes, several outputs, NHWC ---------------------------------------------------------

def test_the_tiling_probe_is_not_tried_on_a_fixed_size_model(tmp_path: Path) -> None:
    engine = Engine(conv_model(tmp_path / "fixed.onnx", conv_manifest(fixed=(64, 64), resize="pad")),
                    backend="onnxruntime", tiling="probe")
    assert engine.info["tiling"] == ("probe: not tried (tiling needs a spatial model with one image output and no "
                                     "fixed size)")


def test_the_tiling_probe_takes_odd_tiles(conv_path: Path) -> None:
    """A probe image of (2 x tile) x (2 x tile + tile // 2) px: the local filter agrees tiled."""
    engine = Engine(conv_path, backend="onnxruntime", precision="fp32", tiling="probe", tile=41, tile_overlap=8)
    assert engine.info["tiling"] == "probe: tiles of 41 px vs whole image, max difference 0.00 grey levels, agree: tiling on"


def _two_output_model(path: Path, nhwc: bool) -> Path:
    """out = 2 * image, score = mean(image) per item, shape (N, 1); NCHW or NHWC."""
    dims = ["n", "h", "w", 3] if nhwc else ["n", 3, "h", "w"]
    return save_graph(path, [helper.make_node("Mul", ["image", "two"], ["out"]),
                             helper.make_node("ReduceMean", ["image"], ["m"], axes=[1, 2, 3], keepdims=1),
                             helper.make_node("Flatten", ["m"], ["score"], axis=1)],
                      [("image", dims)], [("out", dims), ("score", ["n", 1])],
                      [numpy_helper.from_array(np.array(2.0, np.float32), "two")])


TWO_OUTPUTS = Manifest(task="image-to-image", family="two-outputs", config={},
                       inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
                       outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 2.0)), TensorSpec("score", "vector", length=1)],
                       size=SizeRequirements(multiple_of=1), tiling=Tiling(supported=False))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_foreign_model_with_an_image_and_a_vector_output_in_either_layout(tmp_path: Path, layout: str) -> None:
    path = _two_output_model(tmp_path / f"{layout}.onnx", nhwc=layout == "NHWC")
    engine = Engine(path, backend="onnxruntime", layout=layout, manifest=TWO_OUTPUTS)
    x = image(20, 28)
    r = engine.run(x)
    np.testing.assert_allclose(r["out"], x, atol=1e-6)  # 2x in a (0, 2) range is x in (0, 1)
    assert r["score"].shape == (1,)
    np.testing.assert_allclose(r["score"], [x.mean()], rtol=1e-5)
    with pytest.raises(ValueError, match=r"^tiling runs models with one image output$"):
        Engine(path, backend="onnxruntime", layout=layout, manifest=TWO_OUTPUTS, tile=16, tile_overlap=4)(image(40, 40))


# ---- construction: arguments and the manifest= option ---------------------------------------------

@pytest.mark.parametrize("kw, exc, message", [
    ({"tile": 1.5}, ValueError, "tile must be None, 0 or a positive int, got 1.5"),
    ({"tile": True}, ValueError, "tile must be None, 0 or a positive int, got True"),
    ({"tile": "32"}, ValueError, "tile must be None, 0 or a positive int, got '32'"),
    ({"tiling": "auto"}, ValueError, "tiling must be 'manifest' or 'probe', got 'auto'"),
    ({"manifest": {"task": "restore"}}, TypeError, "manifest must be a pyfill.manifest.Manifest, got dict"),
    ({"manifest": TWO_OUTPUTS}, ValueError,
     "manifest= describes another project's ONNX file; this model has its own manifest"),
])
def test_bad_construction_arguments_are_refused_with_their_message(conv_path: Path, kw, exc, message) -> None:
    with pytest.raises(exc, match="^" + re.escape(message) + "$"):
        Engine(conv_path, backend="onnxruntime", **kw)


def test_manifest_is_refused_for_a_checkpoint(tmp_path: Path) -> None:
    """A checkpoint has its manifest beside it (refused before anything is read)."""
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights")
    ckpt.with_suffix(".json").write_text("{}")
    with pytest.raises(ValueError, match="^manifest= describes another project's ONNX file; this model has its own "
                                         "manifest$"):
        Engine(ckpt, manifest=TWO_OUTPUTS)


def test_a_foreign_models_conventions_reach_its_derived_manifest(tmp_path: Path) -> None:
    path = conv_model(tmp_path / "foreign.onnx")  # no manifest
    for order in ("rgb", "bgr"):
        engine = Engine(path, backend="onnxruntime", channel_order=order, input_range=(-1.0, 1.0))
        assert engine.foreign and engine.manifest.config["channel_order"] == order
        assert engine.manifest.inputs[0].value_range == (-1.0, 1.0)


@pytest.mark.parametrize("step, verdict", [(0, "0.00 grey levels, agree: tiling on"),
                                           (1, "1.00 grey levels, agree: tiling on"),
                                           (2, "2.00 grey levels, differ: tiling off")])
def test_the_tiling_probe_allows_one_grey_level(conv_path: Path, monkeypatch, step: int, verdict: str) -> None:
    """The probe compares uint8 outputs: tiled results `step` grey levels below the whole
    image's (somewhere) give a difference of `step` levels, and one level is allowed."""
    from pyfill.engine.engine import Result

    def run_items(self, items, force_tile=None):
        whole = np.full((8, 8, 3), 100, np.uint8)
        out = whole.copy()
        if force_tile:
            out[3, 4] -= step
        return [Result({"out": out}, image_names=("out",))]

    monkeypatch.setattr(Engine, "_run_items", run_items)
    engine = Engine(conv_path, backend="onnxruntime", tiling="probe", tile=32, tile_overlap=8)
    assert engine.info["tiling"] == f"probe: tiles of 32 px vs whole image, max difference {verdict}"
