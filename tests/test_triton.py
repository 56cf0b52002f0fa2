"""Triton model repositories: ``config.pbtxt`` parses with Triton's own ``ModelConfig`` protobuf
(tritonclient), declares what the manifest and the ONNX graph say, and the model in the
repository runs at the declared dims with the batch sizes dynamic batching forms."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

from pyfill.manifest import read_onnx_manifest
from pyfill.store import resolve_model
from pyfill.triton import write_triton_repository

model_config_pb2 = pytest.importorskip("tritonclient.grpc.model_config_pb2")
from google.protobuf import text_format  # noqa: E402

NP_TYPES = {model_config_pb2.TYPE_FP32: np.float32, model_config_pb2.TYPE_INT64: np.int64}


def _parse(entry: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse((entry / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())


def _run_at_config(entry: Path, config: model_config_pb2.ModelConfig, batch: int, multiple_of: int = 8) -> None:
    """Feed the repository's model a batch at the config's dims (free axes 48, rounded up to
    the model's size rule ``multiple_of``) and check every output against the config's data
    type and dims."""
    sess = ort.InferenceSession(str(entry / "1" / "model.onnx"), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(0)
    free = -(-48 // multiple_of) * multiple_of
    feeds = {t.name: rng.random((batch, *[free if d == -1 else d for d in t.dims])).astype(NP_TYPES[t.data_type])
             for t in config.input}
    outs = sess.run([t.name for t in config.output], feeds)
    for spec, out in zip(config.output, outs):
        assert out.dtype == NP_TYPES[spec.data_type]
        assert out.shape[0] == batch and len(out.shape) == len(spec.dims) + 1
        assert all(d == -1 or d == o for d, o in zip(spec.dims, out.shape[1:])), (spec.name, out.shape)


@pytest.mark.parametrize("name", ["restore", "colorize", "generate"])
def test_shipped_models_make_valid_repositories(name: str, tmp_path: Path) -> None:
    entry = write_triton_repository(name, tmp_path / "repo", max_batch=4, preferred_batch_sizes=[2, 4])
    config = _parse(entry)
    manifest = read_onnx_manifest(resolve_model(name))
    assert config.name == name and config.platform == "onnxruntime_onnx" and config.max_batch_size == 4
    assert list(config.dynamic_batching.preferred_batch_size) == [2, 4]
    assert [t.name for t in config.input] == [s.name for s in manifest.inputs]
    assert [t.name for t in config.output] == [s.name for s in manifest.outputs]
    assert json.loads(config.parameters["pyfill.manifest"].string_value) == manifest.to_dict()
    assert (entry / "1" / "model.onnx").read_bytes() == resolve_model(name).read_bytes()
    for batch in (1, 3):
        _run_at_config(entry, config, batch, manifest.size.multiple_of)


def test_dims_follow_the_manifest_kinds(tmp_path: Path) -> None:
    colorize = _parse(write_triton_repository("colorize", tmp_path))
    assert [list(t.dims) for t in colorize.output] == [[3, -1, -1], [1]]
    generate = _parse(write_triton_repository("generate", tmp_path, instance_kind="cpu", instances=2))
    assert [list(t.dims) for t in generate.input] == [[8, 256, 256], [648]]  # one-hot labels, stroke latent
    assert list(generate.output[0].dims) == [3, 256, 256]
    assert generate.instance_group[0].kind == model_config_pb2.ModelInstanceGroup.KIND_CPU
    assert generate.instance_group[0].count == 2


def test_checkpoint_is_exported_and_static_batch_is_refused(unet_files, tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ckpt, dynamic_onnx = unet_files
    entry = write_triton_repository(ckpt, tmp_path / "repo", name="unet")
    config = _parse(entry)
    assert config.name == "unet" and [list(t.dims) for t in config.input] == [[3, -1, -1]]
    _run_at_config(entry, config, 2)
    graph = onnx.load(str(dynamic_onnx))
    graph.graph.input[0].type.tensor_type.shape.dim[0].dim_value = 1
    static = tmp_path / "static.onnx"
    onnx.save(graph, str(static))
    with pytest.raises(ValueError, match="the batch axis is fixed at 1"):
        write_triton_repository(static, tmp_path / "repo")


def test_bad_arguments(tmp_path: Path) -> None:
    write_triton_repository("restore", tmp_path)
    with pytest.raises(FileExistsError, match="pass overwrite=True"):
        write_triton_repository("restore", tmp_path)
    assert write_triton_repository("restore", tmp_path, overwrite=True).is_dir()
    with pytest.raises(ValueError, match="max_batch must be >= 1"):
        write_triton_repository("restore", tmp_path, max_batch=0)
    with pytest.raises(FileNotFoundError, match="no-such-model"):
        write_triton_repository("no-such-model", tmp_path)


def test_cli_form_writes_the_repository(tmp_path: Path, capsys) -> None:
    import argparse

    from pyfill.triton import run_cli_export

    args = argparse.Namespace(model="colorize", triton_repo=str(tmp_path / "repo"), max_batch=2, tensorrt=False,
                              precision="fp16", force=False)
    assert run_cli_export(args) == 0
    assert f"{tmp_path / 'repo' / 'colorize'}" in capsys.readouterr().out
    assert _parse(tmp_path / "repo" / "colorize").max_batch_size == 2
