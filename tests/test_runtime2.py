"""Runtime 2: the typed manifest and its schema, the model store, backend choice, models that
are not image-to-image (decoders, several outputs, coordinates), foreign models tiled on the
caller's word or after a probe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from pyfill.engine.geometry import Placement
from pyfill.engine.selection import Environment, ModelForm, choose_backend
from pyfill.manifest import FORMAT_VERSION, Manifest, ManifestError, SizeRequirements, TensorSpec

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from pyfill.engine import Engine, Result  # noqa: E402
from pyfill.export import export_onnx  # noqa: E402


def _v1_dict() -> dict:
    """A format-1 manifest as the first shipped models wrote it."""
    return {
        "task": "generate", "family": "spade", "config": {}, "format_version": 1, "fp16": True,
        "inputs": [{"name": "labels", "kind": "labels", "channels": 4, "colour_space": "none",
                    "value_range": [0, 1], "classes": 4}],
        "outputs": [{"name": "image", "kind": "image", "channels": 3, "colour_space": "rgb", "value_range": [-1, 1]}],
        "size": {"multiple_of": 32, "min_size": 32, "fixed": [32, 32]},
        "tiling": {"supported": False, "tile": 32, "overlap": 0},
    }


# ---- manifest ----------------------------------------------------------------------------------
def test_format1_manifest_reads_with_stretch_for_fixed_sizes() -> None:
    m = Manifest.from_dict(_v1_dict())
    assert m.size == SizeRequirements(multiple_of=32, min_size=32, fixed=(32, 32), resize="stretch")
    assert not m.tiling.supported and m.format_version == FORMAT_VERSION
    assert Manifest.from_json(m.to_json()) == m


@pytest.mark.parametrize(
    ("edit", "field"),
    [
        (lambda d: d["inputs"][0].update(kind="pixels"), "inputs/0/kind"),
        (lambda d: d["size"].update(multiple_of=0), "size/multiple_of"),
        (lambda d: d["size"].update(resize="crop"), "size/resize"),
        (lambda d: d["outputs"][0].update(value_range=[0]), "outputs/0/value_range"),
        (lambda d: d["tiling"].update(supported="yes"), "tiling/supported"),
        (lambda d: d["inputs"][0].update(palette=[[0, 0, 9], [0, 0, 300], [1, 1, 1], [2, 2, 2]]), "inputs/0/palette/1/2"),
        (lambda d: d.pop("outputs"), "outputs"),
        (lambda d: d["inputs"][0].pop("name"), "inputs/0/name"),
        (lambda d: d.update(inputs=[]), "inputs"),
    ],
)
def test_schema_refuses_malformed_manifests_naming_the_field(edit, field) -> None:
    d = _v1_dict()
    edit(d)
    with pytest.raises(ManifestError, match=f"manifest field '{field}'"):
        Manifest.from_dict(d)


def test_newer_format_is_refused_with_upgrade_advice() -> None:
    d = {**_v1_dict(), "format_version": FORMAT_VERSION + 1, "pyfill_version": "9.0"}
    with pytest.raises(ManifestError, match=r"comes from a newer pyfill \(written by pyfill 9.0\).*upgrade"):
        Manifest.from_dict(d)


def test_tensor_kinds_check_their_shapes() -> None:
    assert TensorSpec("w", "tensor", shape=[14, 512]).shape == [14, 512]
    assert TensorSpec("id", "embedding", length=128).shape == [128]
    assert TensorSpec("ids", "tokens", shape=[None]).dtype == "int64"
    with pytest.raises(ManifestError, match="a tensor needs its shape"):
        TensorSpec("w", "tensor")
    with pytest.raises(ManifestError, match=r"landmarks have shape \[K, 2\]"):
        TensorSpec("p", "landmarks", shape=[5, 3])
    with pytest.raises(ManifestError, match="only vector inputs can be derived"):
        TensorSpec("e", "embedding", length=648, derive={"op": "stroke_grid", "from": "s", "grid": [9, 9]})


# ---- backend choice (pure) ---------------------------------------------------------------------
_ONNX = ModelForm(onnx=True, checkpoint=False, tensorrt_engine=False, foreign=False, fp16=True)
_CKPT = ModelForm(onnx=False, checkpoint=True, tensorrt_engine=False, foreign=False, fp16=True)


def test_choice_prefers_openvino_on_a_cpu_machine_and_says_why() -> None:
    c = choose_backend("auto", "auto", "auto", _ONNX, Environment(openvino=True))
    assert (c.backend, c.device, c.precision) == ("openvino", "cpu", "fp32") and "OpenVINO" in c.reason
    c = choose_backend("auto", "auto", "auto", _ONNX, Environment())
    assert c.backend == "onnxruntime" and "not installed" in c.reason


def test_choice_falls_back_when_tensorrt_is_not_usable() -> None:
    gpu_no_trt = Environment(cuda_kernels_gpu=True, torch=True, torch_cuda=True, openvino=True,
                             tensorrt=False, tensorrt_reason="tensorrt is installed but cuda-python is not")
    c = choose_backend("auto", "auto", "auto", _CKPT, gpu_no_trt)
    assert (c.backend, c.device, c.precision) == ("torch", "cuda", "fp16")
    with pytest.raises(RuntimeError, match="cuda-python is not"):
        choose_backend("tensorrt", "auto", "auto", _ONNX, gpu_no_trt)
    trt = Environment(cuda_kernels_gpu=True, tensorrt=True, tensorrt_reason="TensorRT present")
    assert choose_backend("auto", "auto", "auto", _CKPT, trt).backend == "tensorrt"


def test_choice_runs_torch_only_models_on_torch() -> None:
    form = ModelForm(onnx=False, checkpoint=True, tensorrt_engine=False, foreign=True, fp16=False,
                     torch_only="failed: the batch size is frozen in the graph")
    c = choose_backend("auto", "auto", "auto", form, Environment(torch=True, openvino=True))
    assert c.backend == "torch" and "batch size is frozen" in c.reason
    with pytest.raises(ValueError, match="runs only on the torch backend"):
        choose_backend("openvino", "auto", "auto", form, Environment(torch=True, openvino=True))
    with pytest.raises(RuntimeError, match="torch is not installed"):
        choose_backend("auto", "auto", "auto", form, Environment(openvino=True))


def test_choice_refuses_what_cannot_run() -> None:
    with pytest.raises(ValueError, match="runs pyfill checkpoints"):
        choose_backend("torch", "cpu", "auto", _ONNX, Environment(torch=True))
    with pytest.raises(RuntimeError, match="no CUDA device is visible"):
        choose_backend("auto", "cuda", "auto", _ONNX, Environment())
    no_fp16 = ModelForm(onnx=True, checkpoint=False, tensorrt_engine=False, foreign=False, fp16=False)
    with pytest.raises(ValueError, match="does not support fp16"):
        choose_backend("auto", "auto", "fp16", no_fp16, Environment())
    with pytest.raises(ValueError, match="backend must be one of"):
        choose_backend("tflite", "auto", "auto", _ONNX, Environment())


# ---- geometry ----------------------------------------------------------------------------------
def test_letterbox_placement_matches_the_closed_form() -> None:
    p = Placement.for_size(50, 100, (64, 64), "letterbox")
    assert (p.nh, p.nw, p.oy, p.ox) == (32, 64, 16, 0)
    pts = np.array([[0.0, 0.0, 100.0, 50.0]], np.float32)
    np.testing.assert_allclose(p.points_in(pts), [[0.0, 16.0, 64.0, 48.0]])
    np.testing.assert_allclose(p.points_out(p.points_in(pts)), pts, atol=1e-5)
    with pytest.raises(ValueError, match="pads smaller inputs"):
        Placement.for_size(70, 10, (64, 64), "pad")


def test_static_export_pads_small_inputs_and_tiles_large_ones(unet_files, tmp_path: Path) -> None:
    static = Engine(export_onnx(unet_files[0], tmp_path / "static.onnx", dynamic=False, static_size=(64, 64)),
                    backend="onnxruntime")
    dynamic = Engine(unet_files[1], backend="onnxruntime")
    assert static.manifest.size.fixed == (64, 64) and static.manifest.size.resize == "pad"
    shapes = []
    run = static.backend.run
    static.backend.run = lambda feeds: shapes.append(feeds["image"].shape) or run(feeds)
    # Padded, not resampled: away from the padded bottom and right borders (the net's reach, 16 px)
    # the static file computes what the dynamic one does.
    small = np.random.default_rng(8).integers(0, 256, (40, 56, 3), dtype=np.uint8)
    a, b = static(small), dynamic(small)
    assert a.shape == small.shape and np.abs(a[:-16, :-16].astype(int) - b[:-16, :-16].astype(int)).max() <= 1
    # Larger than the fixed size: tiled, every window padded to 64 x 64.
    big = np.random.default_rng(9).integers(0, 256, (150, 90, 3), dtype=np.uint8)
    out = static(big)
    assert out.shape == big.shape and all(s[-2:] == (64, 64) for s in shapes) and len(shapes) > 2
    assert np.abs(out[:-16, :-16].astype(int) - dynamic(big)[:-16, :-16].astype(int)).mean() < 2


# ---- models that are not image-to-image --------------------------------------------------------
class _Decoder(nn.Module):
    """A W+ latent (N, 4, 8) -> (N, 3, 16, 16) image in [-1, 1]."""

    def __init__(self) -> None:
        super().__init__()
        self.fc = nn.Linear(32, 3 * 16 * 16)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.fc(w.flatten(1))).view(-1, 3, 16, 16)


def test_latent_to_image_decoder_runs_through_the_engine(tmp_path: Path) -> None:
    torch.manual_seed(0)
    module = _Decoder().eval()
    manifest = Manifest(task="decode", family="test-decoder", config={},
                        inputs=[TensorSpec("w", "tensor", shape=[4, 8])],
                        outputs=[TensorSpec("image", "image", 3, "rgb", (-1.0, 1.0))],
                        size=SizeRequirements(fixed=(16, 16)))
    engine = Engine(export_onnx(module, tmp_path / "dec.onnx", manifest))
    w = np.random.default_rng(1).standard_normal((4, 8)).astype(np.float32)
    out = engine(w=w)
    with torch.no_grad():
        ref = (module(torch.from_numpy(w)[None])[0].permute(1, 2, 0).numpy() + 1) / 2
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    assert np.abs(out.astype(np.float32) - np.rint(ref * 255)).max() <= 1
    batch = engine(w=[w, -w])
    assert len(batch) == 2 and np.array_equal(batch[0], out)
    with pytest.raises(ValueError, match=r"w\[0\]: expected shape \(4, 8\), got \(8, 4\)"):
        engine(w=w.T)
    with pytest.raises(TypeError, match="no inputs given"):
        engine()


class _TwoHeads(nn.Module):
    """image -> (image * 0.5, per-channel mean)."""

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * 0.5, x.mean(dim=(2, 3))


def test_two_output_model_returns_a_result_whatever_the_call(tmp_path: Path) -> None:
    manifest = Manifest(task="analyse", family="test-two", config={},
                        inputs=[TensorSpec("image", "image", 3)],
                        outputs=[TensorSpec("half", "image", 3), TensorSpec("mean", "vector", length=3)])
    engine = Engine(export_onnx(_TwoHeads(), tmp_path / "two.onnx", manifest))
    x = np.random.default_rng(2).integers(0, 256, (20, 24, 3), dtype=np.uint8)
    r = engine(x)
    assert isinstance(r, Result) and set(r) == {"half", "mean"}
    assert np.abs(r.image.astype(int) - np.rint(x / 2).astype(int)).max() <= 1
    np.testing.assert_allclose(r["mean"], (x / 255.0).mean(axis=(0, 1)), atol=1e-5)
    single = engine.run(x)
    assert isinstance(single, Result) and np.array_equal(single["half"], r["half"])


class _PointsEcho(nn.Module):
    """(image, landmarks) -> (image, landmarks): both unchanged, so what comes back shows the
    mapping into the model's frame and out of it."""

    def forward(self, x: torch.Tensor, pts: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x, pts


def test_letterboxed_model_maps_images_and_landmarks_back(tmp_path: Path) -> None:
    manifest = Manifest(task="align", family="test-points", config={},
                        inputs=[TensorSpec("image", "image", 3), TensorSpec("pts", "landmarks", shape=[5, 2])],
                        outputs=[TensorSpec("out", "image", 3), TensorSpec("pts_out", "landmarks", shape=[5, 2])],
                        size=SizeRequirements(fixed=(32, 32), resize="letterbox"))
    engine = Engine(export_onnx(_PointsEcho(), tmp_path / "pts.onnx", manifest))
    x = np.random.default_rng(3).integers(0, 256, (16, 32, 3), dtype=np.uint8)
    pts = np.array([[1, 2], [30, 15], [16, 8], [0, 0], [31.5, 15.5]], np.float32)
    seen = []
    run = engine.backend.run
    engine.backend.run = lambda feeds: seen.append({k: v.copy() for k, v in feeds.items()}) or run(feeds)
    r = engine(x, pts=pts)
    # 16 x 32 fits 32 x 32 at scale 1: the image sits in rows 8..24, the points move down 8 rows.
    assert seen[0]["image"].shape == (1, 3, 32, 32) and np.all(seen[0]["image"][0, :, :8] == 0)
    np.testing.assert_allclose(seen[0]["pts"][0], pts + [0, 8])
    assert np.array_equal(r["out"], x)
    np.testing.assert_allclose(r["pts_out"], pts, atol=1e-5)


# ---- foreign models: tiling on the caller's word or after a probe ------------------------------
class _Upscaler(nn.Module):
    """A small fully convolutional x2 upscaler (conv -> pixel shuffle), like Real-ESRGAN's
    compact models."""

    def __init__(self) -> None:
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.PReLU(16), nn.Conv2d(16, 16, 3, padding=1),
                                  nn.PReLU(16), nn.Conv2d(16, 12, 3, padding=1), nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(self.body(x) + nn.functional.interpolate(x, scale_factor=2, mode="nearest"), 0, 1)


class _GlobalTint(nn.Module):
    """Adds the image's global mean: no tile sees what the whole image sees."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.clamp(x * 0.5 + x.mean(dim=(2, 3), keepdim=True), 0, 1)


def _plain_onnx(module: nn.Module, path: Path) -> Path:
    """Export without a pyfill manifest, as another project would."""
    torch.onnx.export(module.eval(), (torch.rand(1, 3, 32, 32),), str(path), input_names=["input"],
                      output_names=["output"], dynamic_axes={"input": {0: "n", 2: "h", 3: "w"},
                                                             "output": {0: "n", 2: "h", 3: "w"}},
                      opset_version=17, dynamo=False)
    return path


@pytest.fixture(scope="module")
def upscaler(tmp_path_factory: pytest.TempPathFactory) -> Path:
    torch.manual_seed(4)
    return _plain_onnx(_Upscaler(), tmp_path_factory.mktemp("foreign") / "upscaler.onnx")


def test_foreign_upscaler_tiles_on_request_and_matches_the_whole_image(upscaler: Path) -> None:
    x = np.random.default_rng(5).integers(0, 256, (150, 190, 3), dtype=np.uint8)
    whole = Engine(upscaler, tile=0)
    tiled = Engine(upscaler, tile=64, tile_overlap=16)
    assert whole.info["output_scale"] == 2 and "the caller vouches" in tiled.info["tiling"]
    calls = []
    run = tiled.backend.run
    tiled.backend.run = lambda feeds: calls.append(feeds["input"].shape) or run(feeds)
    a, b = whole(x), tiled(x)
    assert sum(c[0] for c in calls) > 4 and a.shape == (300, 380, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1


def test_tiling_probe_turns_tiling_on_only_where_tiles_agree(upscaler: Path, tmp_path: Path) -> None:
    ok = Engine(upscaler, tiling="probe", tile=64, tile_overlap=16)
    assert "agree: tiling on" in ok.info["tiling"]
    tint = Engine(_plain_onnx(_GlobalTint(), tmp_path / "tint.onnx"), tiling="probe", tile=64, tile_overlap=16)
    assert "differ: tiling off" in tint.info["tiling"]
    x = np.random.default_rng(6).integers(0, 256, (200, 200, 3), dtype=np.uint8)
    whole = Engine(tmp_path / "tint.onnx", tile=0)
    assert np.array_equal(tint(x), whole(x))  # tiling stayed off: the result is the whole-image one


def test_explicit_tile_on_a_model_whose_manifest_forbids_it_is_refused() -> None:
    with pytest.raises(ValueError, match="its manifest says tiling is not supported"):
        Engine("colorize", tile=128)
    with pytest.raises(ValueError, match=r"tile \(40\) must be larger than twice the overlap \(32\)"):
        Engine("restore", tile=40)


# ---- model store and name resolution ----------------------------------------------------------
def test_model_store_add_find_and_remove(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, upscaler: Path) -> None:
    from pyfill import store
    from pyfill.cli import main

    monkeypatch.setenv("PYFILL_HOME", str(tmp_path / "home"))
    assert main(["models", "add", str(upscaler), "--name", "my-x2"]) == 0
    assert (tmp_path / "home" / "models" / "my-x2.onnx").read_bytes() == upscaler.read_bytes()
    assert store.available_models()["my-x2"][1] == "store"
    assert store.available_models()["restore"][1] == "package"
    assert Engine.from_pretrained("my-x2").info["output_scale"] == 2
    with pytest.raises(FileExistsError, match="already has a model named 'my-x2'"):
        store.add_model(upscaler, "my-x2")
    assert main(["models", "remove", "my-x2"]) == 0
    with pytest.raises(FileNotFoundError, match=r"no model file or model named 'my-x2'; available models: "
                                                r"colorize, (edit_\w+, )*face_id, generate, restore, swap"):
        Engine.from_pretrained("my-x2")
    with pytest.raises(FileNotFoundError, match="ships in the package and cannot be removed"):
        store.remove_model("restore")
    with pytest.raises(ValueError, match="use letters, digits"):
        store.add_model(upscaler, "../evil")


def test_checkpoint_added_to_the_store_brings_its_manifest(unet_files, tmp_path: Path,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from pyfill import store

    monkeypatch.setenv("PYFILL_HOME", str(tmp_path / "home"))
    stored = store.add_model(unet_files[0], "unet-test")
    assert stored.with_suffix(".json").is_file()
    assert json.loads(stored.with_suffix(".json").read_text())["family"] == "unet"
    assert Engine("unet-test", backend="torch").manifest.family == "unet"


@pytest.mark.parametrize("name", ["colorize", "generate", "restore"])
def test_pyfill_info_takes_each_shipped_model_by_name(name: str, capsys: pytest.CaptureFixture[str]) -> None:
    from pyfill.cli import main
    from pyfill.store import shipped_models

    assert main(["info", name]) == 0
    out = capsys.readouterr().out
    assert f"model      {shipped_models()[name]}" in out and f"task       {name}" in out
    assert main(["info", name, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["manifest"]["task"] == name


def test_tiles_run_as_batches_equal_tiles_run_one_by_one(upscaler: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import functools

    import pyfill.engine.engine as engine_module

    x = np.random.default_rng(7).integers(0, 256, (230, 170, 3), dtype=np.uint8)
    engine = Engine(upscaler, tile=64, tile_overlap=16)
    batches, progress = [], []
    run = engine.backend.run
    engine.backend.run = lambda feeds: batches.append(feeds["input"].shape[0]) or run(feeds)
    engine.on_tile = lambda done, total: progress.append((done, total))
    batched = engine(x)
    n_tiles = progress[-1][1]
    assert progress[-1] == (n_tiles, n_tiles) and sum(batches) == n_tiles and len(batches) < n_tiles

    batches.clear()
    monkeypatch.setattr(engine_module, "run_tiled", functools.partial(engine_module.run_tiled, max_batch=1))
    single = engine(x)
    assert batches == [1] * n_tiles
    assert np.abs(batched.astype(int) - single.astype(int)).max() <= 1
