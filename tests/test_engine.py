"""pyfill.Engine on the test architectures: backend equality, sizes, tiling, batches, input
types, manifests, threads and bad input. The reference is the PyTorch module itself."""

from __future__ import annotations

import importlib.util
import json
import threading
import warnings
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pyfill  # noqa: E402
from pyfill.engine import Engine, Manifest, ManifestError  # noqa: E402
from pyfill.manifest import FORMAT_VERSION, read_onnx_manifest  # noqa: E402
from pyfill.export import (  # noqa: E402
    ONNX_OP_ALLOWLIST,
    ExportError,
    export_onnx,
    load_checkpoint,
    onnx_operators,
    save_checkpoint,
)

CPU_BACKENDS = ["torch", "onnxruntime", "openvino"]


def _engine(files: tuple[Path, Path], backend: str, **kw) -> Engine:
    """An fp32 engine (these tests compare backends with a 1e-4 tolerance; bf16 is tested in
    test_precision.py)."""
    ckpt, onnx = files
    kw.setdefault("precision", "fp32")
    return Engine(ckpt if backend == "torch" else onnx, backend=backend, **kw)


def _rel_err(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.max(np.abs(a.astype(np.float64) - b)) / max(1e-12, np.max(np.abs(b))))


def _image(h: int, w: int, seed: int = 0, c: int = 3) -> np.ndarray:
    rng = np.random.default_rng(seed)
    # smooth content plus noise, like a photo
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([np.sin(xx / 17.0 + k) * np.cos(yy / 23.0 - k) for k in range(c)], axis=-1)
    return np.clip(0.5 + 0.35 * base + 0.1 * rng.standard_normal((h, w, c)), 0, 1).astype(np.float32)


def _torch_reference(ckpt: Path, x01: np.ndarray) -> np.ndarray:
    """The module run directly on a reflect-padded image, cropped back, mapped to [0, 1]."""
    module, manifest = load_checkpoint(ckpt)
    m = manifest.size.multiple_of
    h, w = x01.shape[:2]
    ph, pw = (-h) % m, (-w) % m
    x = np.pad(x01 * 2 - 1, ((0, ph), (0, pw), (0, 0)), mode="reflect").transpose(2, 0, 1)[None]
    with torch.no_grad():
        y = module(torch.from_numpy(np.ascontiguousarray(x))).numpy()[0, :, :h, :w]
    return np.clip((y.transpose(1, 2, 0) + 1) / 2, 0, 1)


# ---- backends agree with PyTorch -----------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
@pytest.mark.parametrize("size", [(64, 64), (61, 97), (130, 72)])
def test_unet_backends_match_torch_reference(unet_files, backend, size) -> None:
    x = _image(*size, seed=size[0])
    out = _engine(unet_files, backend)(x)
    assert out.shape == x.shape and out.dtype == np.float32
    assert _rel_err(out, _torch_reference(unet_files[0], x)) < 1e-4


@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_spade_two_inputs_match_across_backends(spade_files, backend) -> None:
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 8, (32, 32))
    latent = rng.random(648).astype(np.float32)
    module, _ = load_checkpoint(spade_files[0])
    onehot = np.eye(8, dtype=np.float32)[labels].transpose(2, 0, 1)[None]
    with torch.no_grad():
        ref = module(torch.from_numpy(onehot.copy()), torch.from_numpy(latent[None])).numpy()[0]
    ref = np.clip((ref.transpose(1, 2, 0) + 1) / 2, 0, 1)
    engine = _engine(spade_files, backend)
    out = engine(labels=labels, latent=latent)
    assert out.dtype == np.uint8 and out.shape == (32, 32, 3)
    assert np.abs(out.astype(int) - np.rint(ref * 255)).max() <= 1
    # a missing optional latent is fed as zeros
    zero = engine(labels)
    with torch.no_grad():
        ref0 = module(torch.from_numpy(onehot.copy()), torch.zeros(1, 648)).numpy()[0]
    assert np.abs(zero.astype(int) - np.rint(np.clip((ref0.transpose(1, 2, 0) + 1) / 2, 0, 1) * 255)).max() <= 1


def test_spade_resizes_labels_to_its_fixed_size_and_back(spade_files) -> None:
    labels = np.repeat(np.repeat(np.arange(8).reshape(2, 4), 24, axis=0), 20, axis=1)  # 48 x 80
    out = _engine(spade_files, "onnxruntime")(labels)
    assert out.shape == (48, 80, 3)


# ---- sizes, tiling, batches ----------------------------------------------------------------
@pytest.mark.parametrize("tile,overlap", [(64, 16), (128, 32), (200, 48)])
def test_tiling_is_seamless(unet_files, tile, overlap) -> None:
    x = (_image(333, 401, seed=7) * 255).astype(np.uint8)
    whole = _engine(unet_files, "onnxruntime", tile=0)(x)
    tiled = _engine(unet_files, "onnxruntime", tile=tile, tile_overlap=overlap)(x)
    assert tiled.shape == whole.shape
    assert np.abs(whole.astype(int) - tiled.astype(int)).max() <= 1


def test_auto_tiling_kicks_in_above_twice_the_advised_tile(unet_files, monkeypatch) -> None:
    engine = _engine(unet_files, "onnxruntime")
    shapes: list[tuple[int, ...]] = []
    run = engine.backend.run
    monkeypatch.setattr(engine.backend, "run", lambda feeds: shapes.append(feeds["image"].shape) or run(feeds))
    engine(_image(600, 120))
    assert len(shapes) > 1 and all(s[2] <= 256 + 2 * 32 + 8 for s in shapes)  # + start alignment
    shapes.clear()
    engine(_image(500, 120))
    assert len(shapes) == 1


def test_tile_layout_covers_evenly() -> None:
    from pyfill.engine.tiling import tile_layout

    for length, tile, overlap in [(1024, 512, 32), (333, 64, 16), (401, 200, 48), (100, 256, 32), (257, 256, 32)]:
        starts, size = tile_layout(length, tile, overlap)
        assert size <= tile and starts[0] == 0 and starts[-1] + size == length
        gaps = [a + size - b for a, b in zip(starts, starts[1:])]
        assert all(g >= overlap for g in gaps)
        assert max(gaps, default=0) - min(gaps, default=0) <= 1


def test_batch_equals_single_calls_with_mixed_sizes(unet_files) -> None:
    engine = _engine(unet_files, "onnxruntime")
    images = [_image(48, 64, 1), _image(48, 64, 2), _image(40, 56, 3), _image(48, 64, 4)]
    batch = engine(images)
    assert isinstance(batch, list) and len(batch) == 4
    for img, out in zip(images, batch):
        np.testing.assert_allclose(out, engine(img), rtol=0, atol=1e-5)


# ---- input and output types ----------------------------------------------------------------
def test_input_types_round_trip(unet_files) -> None:
    from PIL import Image

    engine = _engine(unet_files, "onnxruntime")
    f = _image(40, 48)
    u8 = np.rint(f * 255).astype(np.uint8)
    u16 = (u8.astype(np.uint16) * 257)
    out8, out16, outf = engine(u8), engine(u16), engine(u8.astype(np.float32) / 255)
    assert out8.dtype == np.uint8 and out16.dtype == np.uint16 and outf.dtype == np.float32
    assert np.abs(out8.astype(int) - np.rint(outf * 255)).max() <= 1
    assert np.abs(out16.astype(int) - np.rint(outf * 65535)).max() <= 2
    pil = engine(Image.fromarray(u8))
    assert isinstance(pil, Image.Image) and pil.mode == "RGB" and pil.size == (48, 40)
    np.testing.assert_array_equal(np.asarray(pil), out8)
    t = engine(torch.from_numpy((u8.astype(np.float32) / 255).transpose(2, 0, 1).copy()))
    assert isinstance(t, torch.Tensor) and t.shape == (3, 40, 48) and t.dtype == torch.float32
    np.testing.assert_allclose(t.numpy().transpose(1, 2, 0), outf, atol=1e-6)
    rgba = np.concatenate([u8, np.full((40, 48, 1), 255, np.uint8)], axis=-1)
    np.testing.assert_array_equal(engine(rgba), out8)
    gray = engine(u8[..., 0])  # gray in: replicated to RGB
    np.testing.assert_array_equal(gray, engine(np.repeat(u8[..., :1], 3, axis=-1)))


def test_torch_backend_keeps_torch_tensors(unet_files) -> None:
    engine = _engine(unet_files, "torch")
    x = torch.from_numpy(_image(32, 40).transpose(2, 0, 1).copy())
    out = engine(x)
    assert isinstance(out, torch.Tensor) and out.device == x.device and out.shape == x.shape


# ---- manifests -----------------------------------------------------------------------------
def test_manifest_round_trips_through_checkpoint_and_onnx(unet_files, spade_files) -> None:
    for ckpt, onnx in (unet_files, spade_files):
        from_ckpt = Manifest.load(ckpt.with_suffix(".json"))
        from_onnx = read_onnx_manifest(onnx)
        assert from_onnx is not None and from_onnx.to_dict() == from_ckpt.to_dict()
        assert Manifest.from_json(from_ckpt.to_json()).to_dict() == from_ckpt.to_dict()
        assert Engine(onnx).manifest.to_dict() == Engine(ckpt, backend="torch").manifest.to_dict()
    assert from_ckpt.pyfill_version == pyfill.__version__


def test_manifest_from_a_newer_pyfill_is_refused(tmp_path, unet_files) -> None:
    d = Manifest.load(unet_files[0].with_suffix(".json")).to_dict()
    d["format_version"] = FORMAT_VERSION + 1
    with pytest.raises(ManifestError, match="newer pyfill"):
        Manifest.from_dict(d)
    weights = tmp_path / "m.safetensors"
    weights.write_bytes(unet_files[0].read_bytes())
    (tmp_path / "m.json").write_text(json.dumps(d))
    with pytest.raises(ManifestError, match="upgrade pyfill"):
        Engine(weights)


def test_exported_graph_uses_only_allowed_operators(unet_files, spade_files) -> None:
    for _, onnx in (unet_files, spade_files):
        ops = onnx_operators(onnx)
        assert ops and ops <= ONNX_OP_ALLOWLIST


def test_export_refuses_operators_outside_the_allowlist(tmp_path) -> None:
    from pyfill.models import make_manifest

    class CumsumNet(torch.nn.Module):
        def forward(self, x):
            return torch.cumsum(x, dim=3)

    with pytest.raises(ExportError, match="CumSum"):
        export_onnx(CumsumNet(), tmp_path / "c.onnx", manifest=make_manifest("unet", {"depth": 1}))
    assert not (tmp_path / "c.onnx").exists()


def test_checkpoint_round_trip_and_mismatch(tmp_path, unet_files) -> None:
    module, manifest = load_checkpoint(unet_files[0])
    again = save_checkpoint(module, manifest, tmp_path / "copy")
    module2, _ = load_checkpoint(again)
    for (k, a), (_, b) in zip(module.state_dict().items(), module2.state_dict().items()):
        assert torch.equal(a, b), k
    d = manifest.to_dict()
    d["config"]["base"] = 8
    (tmp_path / "copy.json").write_text(json.dumps(d))
    with pytest.raises(ValueError, match="do not match"):
        load_checkpoint(again)


# ---- models from elsewhere -----------------------------------------------------------------
def _foreign_onnx(tmp_path: Path, module: torch.nn.Module, name: str, nhwc: bool = False) -> Path:
    path = tmp_path / name
    x = torch.rand(1, 3, 16, 16)
    wrapped = module
    if nhwc:
        class NHWC(torch.nn.Module):
            def forward(self, t):
                return module(t.permute(0, 3, 1, 2)).permute(0, 2, 3, 1)

        wrapped, x = NHWC(), x.permute(0, 2, 3, 1)
    axes = {0: "n", 1: "h", 2: "w"} if nhwc else {0: "n", 2: "h", 3: "w"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(wrapped, (x,), str(path), input_names=["in"], output_names=["out"],
                          dynamic_axes={"in": axes, "out": axes}, opset_version=17, dynamo=False)
    return path


class _Upscale2x(torch.nn.Module):
    def forward(self, x):
        scale = torch.tensor([0.5, 1.0, 1.0]).view(1, 3, 1, 1)
        return torch.nn.functional.interpolate(x * scale, scale_factor=2.0, mode="nearest")


def test_foreign_onnx_default_conventions_and_probed_scale(tmp_path) -> None:
    engine = Engine(_foreign_onnx(tmp_path, _Upscale2x(), "up.onnx"), backend="onnxruntime")
    assert engine.foreign and engine.info["output_scale"] == 2
    x = _image(21, 30)
    out = engine(x)
    assert out.shape == (42, 60, 3)
    want = np.repeat(np.repeat(x * np.array([0.5, 1, 1], np.float32), 2, axis=0), 2, axis=1)
    np.testing.assert_allclose(out, want, atol=1e-6)


def test_foreign_onnx_overrides_layout_and_channel_order(tmp_path) -> None:
    path = _foreign_onnx(tmp_path, _Upscale2x(), "up_nhwc.onnx", nhwc=True)
    engine = Engine(path, backend="onnxruntime", layout="NHWC", channel_order="bgr", scale=2)
    x = _image(10, 12)
    out = engine(x)
    # BGR order: the model's first channel (halved) is the caller's blue channel
    want = np.repeat(np.repeat(x * np.array([1, 1, 0.5], np.float32), 2, axis=0), 2, axis=1)
    np.testing.assert_allclose(out, want, atol=1e-6)


# ---- concurrency ---------------------------------------------------------------------------
@pytest.mark.parametrize("backend", CPU_BACKENDS)
def test_concurrent_calls_match_sequential(unet_files, backend) -> None:
    engine = _engine(unet_files, backend)
    images = [_image(32 + 8 * (i % 3), 40, seed=i) for i in range(12)]
    expected = [engine(img) for img in images]
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
    for i, want in enumerate(expected):
        np.testing.assert_allclose(results[i], want, atol=1e-6)


# ---- selection and information ---------------------------------------------------------------
def test_auto_picks_the_fastest_cpu_runtime_and_says_why(unet_files) -> None:
    from pyfill.engine.selection import cpu_has_bf16

    engine = Engine(unet_files[1])
    info = engine.info
    assert info["backend"] == "openvino" and info["device"] == "cpu"
    assert info["precision"] == ("bf16" if cpu_has_bf16() else "fp32"), info["precision_because"]
    assert "OpenVINO" in info["selected_because"]
    assert info["manifest"]["family"] == "unet"
    ort_info = Engine(unet_files[1], backend="onnxruntime").info
    assert ort_info["providers"] == ["CPUExecutionProvider"]


def test_checkpoint_runs_on_onnx_runtimes_through_a_cached_export(unet_files, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path))
    x = _image(40, 40)
    out = Engine(unet_files[0], backend="onnxruntime")(x)
    assert len(list((tmp_path / "onnx").glob("*.onnx"))) == 1
    np.testing.assert_allclose(out, Engine(unet_files[1], backend="onnxruntime")(x), atol=1e-6)


# ---- bad input -----------------------------------------------------------------------------
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
def test_bad_images_raise_clear_errors(unet_files, bad, exc, match) -> None:
    with pytest.raises(exc, match=match):
        _engine(unet_files, "onnxruntime")(bad)


def test_the_latent_derives_from_strokes_and_their_occupancy(spade_files) -> None:
    """``strokes`` (+ ``occupancy``) stand for the latent: the result equals passing the latent the
    stroke-grid ops compute; ``occupancy`` alone, or strokes of another size, are refused with
    the argument named."""
    from pyfill.ops import stroke_grid, stroke_grid_latent

    engine = _engine(spade_files, "onnxruntime")
    grid = tuple(next(s for s in engine.manifest.inputs if s.derive).derive["grid"])
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 8, (32, 32))
    strokes = np.zeros((32, 32, 3), np.uint8)
    strokes[4:12, 6:20] = (200, 40, 10)
    strokes[20:28, 2:9] = (10, 120, 230)
    occupancy = np.zeros((32, 32), bool)
    occupancy[4:12, 6:20] = True  # the second stroke does not count
    for occ in (None, occupancy):
        latent = stroke_grid_latent(stroke_grid(strokes, occ, grid)).astype(np.float32)
        np.testing.assert_allclose(engine(labels, strokes=strokes, occupancy=occ), engine(labels, latent=latent),
                                   atol=1e-6)
    assert np.abs(engine(labels, strokes=strokes) - engine(labels, strokes=strokes, occupancy=occupancy)).max() > 1e-3
    with pytest.raises(TypeError, match=r"^\['occupancy'\] go with 'strokes'$"):
        engine(labels, occupancy=occupancy)
    with pytest.raises(ValueError, match=r"^strokes\[1\]: stroke image size \(16, 16\) differs from the labels' "
                                         r"\(32, 32\)$"):
        engine([labels, labels], strokes=[strokes, strokes[:16, :16]])


def test_bad_conditions_raise_clear_errors(spade_files) -> None:
    engine = _engine(spade_files, "onnxruntime")
    labels = np.zeros((32, 32), np.int64)
    with pytest.raises(ValueError, match="missing input 'labels'"):
        engine(latent=np.zeros(648))
    with pytest.raises(TypeError, match="unknown inputs"):
        engine(labels, brush=np.zeros((32, 32, 3)))  # (strokes is accepted: the latent derives from it)
    with pytest.raises(ValueError, match="class indices"):
        engine(labels + 9)
    with pytest.raises(ValueError, match="length 648"):
        engine(labels, latent=np.zeros(10))
    with pytest.raises(ValueError, match="NaN"):
        engine(labels, latent=np.full(648, np.nan))
    with pytest.raises(TypeError, match="integer"):
        engine(labels.astype(np.float32))


def test_bad_model_files_raise_clear_errors(tmp_path) -> None:
    with pytest.raises(FileNotFoundError, match="model file not found: .*missing.onnx"):
        Engine(tmp_path / "missing.onnx")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"this is not a model")
    with pytest.raises(ValueError, match="not a readable ONNX model"):
        Engine(junk)
    other = tmp_path / "model.pt"
    other.write_bytes(b"\x80\x02pickle")
    with pytest.raises(ValueError, match=r"model\.pt: refused: the file holds Python objects other than tensors"):
        Engine(other)
    lonely = tmp_path / "w.safetensors"
    lonely.write_bytes(b"{}")
    with pytest.raises(ValueError, match=r"w\.json is missing"):
        Engine(lonely)
    keras = tmp_path / "m.h5"
    keras.write_bytes(b"x")
    with pytest.raises(ValueError, match="not a model file pyfill knows"):
        Engine(keras)


def test_bad_engine_options(unet_files) -> None:
    with pytest.raises(ValueError, match="backend"):
        Engine(unet_files[1], backend="tflite")
    with pytest.raises(ValueError, match="fp16"):
        Engine(unet_files[1], backend="onnxruntime", precision="fp16")
    with pytest.raises(ValueError, match="torch backend runs pyfill checkpoints"):
        Engine(unet_files[1], backend="torch")
    with pytest.raises(ValueError, match="tile"):
        Engine(unet_files[1], tile=-1)


# ---- command line --------------------------------------------------------------------------
def test_cli_export_and_info(unet_files, tmp_path, capsys) -> None:
    from pyfill.cli import main

    out = tmp_path / "cli.onnx"
    assert main(["export", str(unet_files[0]), "-o", str(out)]) == 0
    assert read_onnx_manifest(out).to_dict() == Manifest.load(unet_files[0].with_suffix(".json")).to_dict()
    assert main(["info", str(out), "--json"]) == 0
    info = json.loads(capsys.readouterr().out.split("\n", 1)[1])
    assert info["manifest"]["family"] == "unet"
    assert main(["info", str(tmp_path / "nope.onnx")]) == 1
    assert "not found" in capsys.readouterr().err


def test_cuda_graphs_reach_the_torch_backend(unet_files) -> None:
    """The option is handed to the backend: on the CPU it is refused there, and off it is
    reported as off."""
    with pytest.raises(ValueError, match=r"^cuda_graphs=True needs device='cuda'$"):
        Engine(unet_files[0], backend="torch", device="cpu", cuda_graphs=True)
    assert Engine(unet_files[0], backend="torch", device="cpu").info["cuda_graphs"] is False


# ---- GPU paths (skip without them) ---------------------------------------------------------
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs torch with a CUDA device")
def test_torch_cuda_fp16_and_cuda_graphs_match_fp32(unet_files) -> None:
    cpu = _engine(unet_files, "torch", device="cpu")
    fp16 = Engine(unet_files[0], backend="torch", device="cuda", precision="fp16")
    graphs = Engine(unet_files[0], backend="torch", device="cuda", precision="fp16", cuda_graphs=True)
    assert fp16.info["precision"] == "fp16"
    # Each graph is replayed on new content: a replay of stale inputs would return the previous
    # image's result; sizes alternate so that graphs are reused, not only captured.
    for i, (h, w) in enumerate([(128, 160), (96, 64), (128, 160), (96, 64), (128, 160)]):
        x = _image(h, w, seed=10 + i)
        ref = cpu(x)
        for engine in (fp16, graphs):
            assert np.abs(engine(x) - ref).max() < 2e-2
    assert len(graphs.backend.graph_shapes) == 2
    xt = torch.from_numpy(_image(128, 160, seed=99).transpose(2, 0, 1).copy()).cuda()
    out = graphs(xt)
    assert out.is_cuda and out.shape == xt.shape
    ref = cpu(xt.cpu())  # a CPU tensor of the same layout
    assert torch.abs(out.cpu() - ref).max() < 2e-2
