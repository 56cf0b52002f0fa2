"""Hostile model files: ONNX external data that leads out of the model's folder or past the end
of a file, absurd declared sizes, malformed or too-new manifests (beside a checkpoint and inside
an ONNX file), truncated safetensors, and pickles posing as checkpoints. Each is refused with a
clear error before any runtime opens it; nothing outside the folder is read, nothing executed."""

from __future__ import annotations

import json
import os
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
from onnx import TensorProto, helper  # noqa: E402

from pyfill import Engine  # noqa: E402
from pyfill.manifest import ONNX_METADATA_KEY, Manifest, ManifestError  # noqa: E402
from pyfill.onnx_guard import MAX_MODEL_BYTES_ENV, UnsafeModelError, check_onnx_file  # noqa: E402


def _add_model(initializer: TensorProto | None = None, shape: list[int] | None = None,
               metadata: str | None = None) -> onnx.ModelProto:
    """y = x + w (w an initializer of 4 floats unless given) on a float input of ``shape``."""
    if initializer is None:
        initializer = helper.make_tensor("w", TensorProto.FLOAT, [4], np.ones(4, np.float32))
    shape = shape or [4]
    graph = helper.make_graph([helper.make_node("Add", ["x", "w"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, shape)],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, shape)], [initializer])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if metadata is not None:
        helper.set_model_props(model, {ONNX_METADATA_KEY: metadata})
    return model


def _external(location: str, dims: list[int] | None = None, **extra: str) -> TensorProto:
    t = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=dims or [4], data_location=TensorProto.EXTERNAL)
    for key, value in {"location": location, **extra}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, value
    return t


@pytest.fixture()
def runtimes_must_not_open(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fail the test if ONNX Runtime or OpenVINO are asked to open a model."""
    import onnxruntime as ort

    def refuse(*args, **kwargs):
        raise AssertionError(f"a runtime opened the model: {args[:1]}")

    monkeypatch.setattr(ort, "InferenceSession", refuse)
    try:
        import openvino as ov

        monkeypatch.setattr(ov.Core, "read_model", refuse)
    except ImportError:
        pass


@pytest.fixture()
def secret(tmp_path: Path) -> Path:
    """A file outside the model's folder that a hostile model points at."""
    path = tmp_path / "secret.bin"
    path.write_bytes(np.arange(4, dtype=np.float32).tobytes())
    return path


def _save(model: onnx.ModelProto, folder: Path, name: str = "m.onnx") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    onnx.save(model, folder / name)
    return folder / name


@pytest.mark.parametrize("location,message", [
    ("../secret.bin", "leads out of the model's folder"),
    ("sub/../../secret.bin", "leads out of the model's folder"),
    ("..\\secret.bin", "leads out of the model's folder|resolves to"),
    ("/etc/passwd", "is absolute"),
    ("C:/Windows/win.ini", "is absolute"),
])
def test_external_data_outside_the_folder(tmp_path: Path, secret: Path, runtimes_must_not_open: None,
                                          location: str, message: str) -> None:
    path = _save(_add_model(_external(location)), tmp_path / "model")
    with pytest.raises(UnsafeModelError, match=message):
        Engine(path)


def test_external_data_link_leading_out(tmp_path: Path, secret: Path, runtimes_must_not_open: None) -> None:
    folder = tmp_path / "model"
    path = _save(_add_model(_external("w.bin")), folder)
    (folder / "w.bin").symlink_to(secret)
    with pytest.raises(UnsafeModelError, match=r"'w\.bin' resolves to .*secret\.bin, outside the model's folder"):
        Engine(path)
    (folder / "w.bin").unlink()
    (folder / "w.bin").symlink_to("/dev/zero")
    with pytest.raises(UnsafeModelError, match="outside the model's folder"):
        check_onnx_file(path)


def test_external_data_not_a_regular_file(tmp_path: Path, runtimes_must_not_open: None) -> None:
    folder = tmp_path / "model"
    path = _save(_add_model(_external("pipe")), folder)
    os.mkfifo(folder / "pipe")  # opening it would block: the check must not open it
    with pytest.raises(UnsafeModelError, match="'pipe' is not a regular file"):
        Engine(path)


def test_external_data_length_and_size(tmp_path: Path, runtimes_must_not_open: None) -> None:
    folder = tmp_path / "model"
    (folder).mkdir()
    (folder / "w.bin").write_bytes(b"\0" * 16)
    for extra, message in [({"offset": "8"}, r"needs bytes 8..24 but the file has 16"),
                           ({"length": "1000000"}, "length 1,000,000 differs from the 16 bytes"),
                           ({"offset": "-4"}, "negative external data offset"),
                           ({"offset": "eight"}, "not integers")]:
        path = _save(_add_model(_external("w.bin", **extra)), folder)
        with pytest.raises(UnsafeModelError, match=message):
            Engine(path)
    path = _save(_add_model(_external("missing.bin")), folder)
    with pytest.raises(UnsafeModelError, match="'missing.bin' not found beside the model"):
        Engine(path)


def test_external_data_inside_the_folder_runs(tmp_path: Path) -> None:
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "w.bin").write_bytes(np.full(4, 2.5, np.float32).tobytes())
    path = _save(_add_model(_external("w.bin"), shape=[1, 1, 2, 2]), folder)
    # The initializer of dims [4] does not broadcast to (1, 1, 2, 2) as an image: check the guard alone.
    summary = check_onnx_file(path)
    assert summary.external_files == [(folder / "w.bin").resolve()]
    assert summary.declared_bytes == 16
    import onnxruntime as ort

    path = _save(_add_model(_external("w.bin")), folder, "flat.onnx")
    check_onnx_file(path)
    out = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": np.ones(4, np.float32)})
    assert np.array_equal(out[0], np.full(4, 3.5, np.float32))


def test_absurd_tensor_dimensions(tmp_path: Path, runtimes_must_not_open: None,
                                  monkeypatch: pytest.MonkeyPatch) -> None:
    huge = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1 << 20, 1 << 20, 1 << 10], raw_data=b"\0" * 16)
    path = _save(_add_model(huge), tmp_path / "a")
    with pytest.raises(UnsafeModelError, match=r"declares dimensions \[1048576, 1048576, 1024\] .* over the limit"):
        Engine(path)
    lying = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[1000, 1000], raw_data=b"\0" * 16)
    path = _save(_add_model(lying), tmp_path / "b")
    with pytest.raises(UnsafeModelError, match=r"declares dimensions \[1000, 1000\] \(4,000,000 bytes\) but holds 16"):
        Engine(path)
    monkeypatch.setenv(MAX_MODEL_BYTES_ENV, "1000")
    with pytest.raises(UnsafeModelError, match="over the limit of 1,000 bytes"):
        check_onnx_file(path)


def test_absurd_declared_input_size(tmp_path: Path) -> None:
    """A model without a manifest declaring a 100,000 x 100,000 input would make the Engine
    resize every image to it: refused when the model is opened."""
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 100_000, 100_000])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 100_000, 100_000])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    path = _save(model, tmp_path)
    with pytest.raises(ManifestError, match=r"exceed the limit of 65536 pixels a side"):
        Engine(path)


def _good_manifest() -> dict:
    return Manifest(task="restore", family="unet", config={},
                    inputs=[{"name": "x", "kind": "tensor", "shape": [4]}],
                    outputs=[{"name": "y", "kind": "tensor", "shape": [4]}]).to_dict()


@pytest.mark.parametrize("edit,message", [
    (lambda d: d.update(format_version=99), "manifest format 99 comes from a newer pyfill"),
    (lambda d: d.update(format_version="2"), "manifest field 'format_version'"),
    (lambda d: d["inputs"][0].update(channels="three"), "manifest field 'inputs/0/channels'"),
    (lambda d: d["inputs"][0].update(channels=10**9), "manifest field 'inputs/0/channels'"),
    (lambda d: d["size"].update(fixed=[10**6, 10**6]), "manifest field 'size/fixed"),
    (lambda d: d["tiling"].update(tile=-5), "manifest field 'tiling/tile'"),
    (lambda d: d.update(inputs={"name": "x"}), "manifest field 'inputs'"),
    (lambda d: d["outputs"][0].update(shape=[10**9, 10**9]), r"manifest field 'outputs/0/shape/[01]'"),
    (lambda d: d.pop("task"), "manifest field 'task': required"),
])
def test_bad_manifest_in_onnx_metadata_and_beside_a_checkpoint(tmp_path: Path, edit, message: str) -> None:
    d = _good_manifest()
    edit(d)
    text = json.dumps(d)
    path = _save(_add_model(metadata=text), tmp_path)
    with pytest.raises(ManifestError, match=message):
        Engine(path)
    (tmp_path / "ck.safetensors").write_bytes(b"\0" * 8)
    (tmp_path / "ck.json").write_text(text)
    with pytest.raises(ManifestError, match=message):
        Engine(tmp_path / "ck.safetensors")


def test_manifest_not_json(tmp_path: Path) -> None:
    for content, message in [("[" * 100_000 + "]" * 100_000, "nested too deeply|manifest must be a JSON object"),
                             ("{\"task\": ", "not valid JSON"),
                             (pickle.dumps({"task": "x"}), "not text|not valid JSON")]:
        path = tmp_path / "ck.json"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content)
        with pytest.raises(ManifestError, match=message):
            Manifest.load(path)


class _Payload:
    """Unpickling this creates a file: proof that a pickle ran."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_pickle_posing_as_a_checkpoint_is_not_run(tmp_path: Path) -> None:
    torch = pytest.importorskip("torch")
    marker = tmp_path / "pwned"
    # The payload works: unpickling it creates the marker.
    pickle.loads(pickle.dumps(_Payload(marker)))
    assert marker.exists()
    marker.unlink()
    raw = tmp_path / "raw.pth"
    raw.write_bytes(pickle.dumps({"weight": _Payload(marker)}))
    zipped = tmp_path / "zipped.pt"
    torch.save({"weight": _Payload(marker)}, zipped)
    for path in (raw, zipped):
        with pytest.raises(ValueError, match="refused: the file holds Python objects other than tensors"):
            Engine(path)
        assert not marker.exists()
    # A pyfill checkpoint whose .safetensors is really a pickle.
    ck = tmp_path / "ck.safetensors"
    shutil.copyfile(zipped, ck)
    (tmp_path / "ck.json").write_text(json.dumps(_good_manifest()))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Engine(ck, backend="onnxruntime")
    assert not marker.exists()


def test_truncated_safetensors_checkpoint(unet_files, tmp_path: Path) -> None:
    ckpt, _ = unet_files
    data = ckpt.read_bytes()
    for cut in (len(data) - 100, len(data) // 2, 20, 5):
        target = tmp_path / f"cut{cut}.safetensors"
        target.write_bytes(data[:cut])
        shutil.copyfile(ckpt.with_suffix(".json"), target.with_suffix(".json"))
        with pytest.raises(ValueError, match="not a readable safetensors file"):
            Engine(target, backend="onnxruntime")
    # A header announcing far more than the file holds.
    bad = tmp_path / "hdr.safetensors"
    bad.write_bytes((10**12).to_bytes(8, "little") + b"{}")
    shutil.copyfile(ckpt.with_suffix(".json"), bad.with_suffix(".json"))
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        Engine(bad, backend="onnxruntime")


@pytest.mark.parametrize("config,message", [
    ({"base": 10**6}, r"describes [\d,]+ bytes of weights but the file holds [\d,]+"),
    ({"depth": 40, "base": 4096}, r"describes [\d,]+ bytes of weights but the file holds"),
    ({"base": -3}, "does not build a 'unet' model"),
])
def test_checkpoint_config_larger_than_its_weights(unet_files, tmp_path: Path, config: dict, message: str) -> None:
    """A config describing terabytes of weights is refused before anything is allocated."""
    import resource

    ckpt, _ = unet_files
    target = tmp_path / "big.safetensors"
    shutil.copyfile(ckpt, target)
    manifest = json.loads(ckpt.with_suffix(".json").read_text())
    manifest["config"].update(config)
    target.with_suffix(".json").write_text(json.dumps(manifest))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(ValueError, match=message):
        Engine(target, backend="onnxruntime")
    assert (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before) / 1024 < 256
