"""Building an Engine's view of the machine and of the model files, with no torch:
``probe_environment`` against what each runtime reports (stand-ins for CUDA), ``cpu_has_bf16``
against /proc/cpuinfo read here, and ``onnx_for_runtime``'s refusals and cache key against
hashlib."""

from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path
from types import SimpleNamespace

import pytest

from pyfill import export
from pyfill.engine import backends, files, selection

spec = importlib.util.find_spec  # the real one, kept before tests replace it


def _cpuinfo_bf16() -> bool:
    text = Path("/proc/cpuinfo").read_text()
    flags = next(line for line in text.splitlines() if line.startswith("flags")).split(":", 1)[1].split()
    return "amx_bf16" in flags or "avx512_bf16" in flags


@pytest.mark.skipif(not Path("/proc/cpuinfo").is_file(), reason="needs /proc/cpuinfo (Linux)")
def test_cpu_bf16_is_read_from_the_cpu_flags() -> None:
    assert selection.cpu_has_bf16() is _cpuinfo_bf16()


def test_cpu_bf16_falls_back_to_openvino_without_proc(monkeypatch) -> None:
    import builtins

    real_open = builtins.open

    def no_proc(path, *a, **k):
        if str(path) == "/proc/cpuinfo":
            raise FileNotFoundError(path)
        return real_open(path, *a, **k)

    monkeypatch.setattr(builtins, "open", no_proc)
    if importlib.util.find_spec("openvino") is None:
        assert selection.cpu_has_bf16() is False
        return
    import openvino as ov

    caps = ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    assert selection.cpu_has_bf16() is ("BF16" in caps)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else spec(name))
    assert selection.cpu_has_bf16() is False



def _forbid_cuda_probes(monkeypatch) -> None:
    from pyfill._core import _C

    def probed(*_a, **_k):
        raise AssertionError("a CUDA probe ran for device='cpu'")
    monkeypatch.setattr(_C, "cuda_devices", probed)
    monkeypatch.setattr(backends, "tensorrt_usable", probed)


def test_a_cpu_probe_reports_the_runtimes_present_and_probes_no_cuda(monkeypatch) -> None:
    _forbid_cuda_probes(monkeypatch)
    env = selection.probe_environment("cpu")
    assert env.torch is (spec("torch") is not None)
    assert env.openvino is (spec("openvino") is not None)
    assert env.cpu_bf16 is selection.cpu_has_bf16()
    assert (env.cuda_kernels_gpu, env.torch_cuda, env.tensorrt, env.onnxruntime_cuda) == (False,) * 4


def test_an_auto_probe_asks_every_cuda_runtime(monkeypatch) -> None:
    import onnxruntime as ort

    from pyfill._core import _C

    monkeypatch.setattr(_C, "cuda_devices", lambda: ([{"name": "stand-in"}], ""))
    monkeypatch.setattr(backends, "tensorrt_usable", lambda: (True, "stand-in TensorRT"))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CUDAExecutionProvider", "CPUExecutionProvider"])
    if spec("torch") is not None:
        import torch

        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    env = selection.probe_environment("auto")
    assert env.cuda_kernels_gpu is True and env.tensorrt is True and env.tensorrt_reason == "stand-in TensorRT"
    assert env.onnxruntime_cuda is True
    assert env.torch_cuda is (spec("torch") is not None) and env.torch is (spec("torch") is not None)
    assert env.openvino is (spec("openvino") is not None) and env.cpu_bf16 is selection.cpu_has_bf16()

    # and each one's "no" is heard
    monkeypatch.setattr(_C, "cuda_devices", lambda: ([], "no CUDA driver"))
    monkeypatch.setattr(backends, "tensorrt_usable", lambda: (False, "tensorrt is not installed"))
    monkeypatch.setattr(ort, "get_available_providers", lambda: ["CPUExecutionProvider"])
    if spec("torch") is not None:
        monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    env = selection.probe_environment("cuda")
    assert (env.cuda_kernels_gpu, env.torch_cuda, env.tensorrt, env.onnxruntime_cuda) == (False,) * 4
    assert env.tensorrt_reason == "tensorrt is not installed"


def test_torch_absent_is_reported_and_not_imported(monkeypatch) -> None:
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "torch" else spec(name))
    _forbid_cuda_probes(monkeypatch)
    assert selection.probe_environment("cpu").torch is False


def test_an_engine_file_has_no_onnx_form() -> None:
    with pytest.raises(ValueError, match=r"^a TensorRT engine has no ONNX form; it runs only on the tensorrt backend$"):
        files.onnx_for_runtime(files.ModelFiles(tensorrt_engine=Path("m.engine")))


def test_a_foreign_checkpoint_that_did_not_export_says_why() -> None:
    m = SimpleNamespace(provenance={"onnx_export": "aten::foo is not exportable"})  # what is read of a Manifest
    with pytest.raises(ValueError, match=r"^net\.pth has no ONNX form \(aten::foo is not exportable\); "
                                         r"run it with backend='torch'$"):
        files.onnx_for_runtime(files.ModelFiles(checkpoint=Path("net.pth"), manifest=m))


def test_an_onnx_file_is_used_as_it_is() -> None:
    assert files.onnx_for_runtime(files.ModelFiles(onnx=Path("given.onnx"))) == Path("given.onnx")


def test_a_checkpoint_is_exported_once_under_its_contents_hash(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache"))
    ckpt = tmp_path / "m.safetensors"
    ckpt.write_bytes(b"weights")
    ckpt.with_suffix(".json").write_bytes(b'{"manifest": 1}')
    calls = []

    def fake_export(checkpoint, target):
        calls.append((checkpoint, target))
        Path(target).parent.mkdir(parents=True, exist_ok=True)
        Path(target).write_bytes(b"onnx")
    monkeypatch.setattr(export, "export_onnx", fake_export)
    key = hashlib.sha256(b"weights" + b'{"manifest": 1}').hexdigest()[:32]
    want = tmp_path / "cache" / "onnx" / f"{key}.onnx"
    assert files.onnx_for_runtime(files.ModelFiles(checkpoint=ckpt)) == want
    assert files.onnx_for_runtime(files.ModelFiles(checkpoint=ckpt)) == want
    assert calls == [(ckpt, want)]  # the second call finds the cached file
    ckpt.with_suffix(".json").write_bytes(b'{"manifest": 2}')  # a changed manifest is another model
    other = files.onnx_for_runtime(files.ModelFiles(checkpoint=ckpt))
    assert other != want and len(calls) == 2
    assert other.name == hashlib.sha256(b"weights" + b'{"manifest": 2}').hexdigest()[:32] + ".onnx"


@pytest.mark.parametrize("provenance, why", [({"onnx_export": "aten::foo is not exportable"}, "aten::foo is not exportable"),
                                             ({}, "it does not export to ONNX")])
def test_a_checkpoint_without_an_onnx_form_is_refused_off_the_torch_backend(tmp_path, monkeypatch, provenance,
                                                                             why) -> None:
    from pyfill.engine import Engine
    from pyfill.manifest import Manifest, TensorSpec

    derived = Manifest(task="image-to-image", family="foreign", config={},
                       inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
                       outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 1.0))], provenance=provenance)
    ckpt = tmp_path / "net.pth"
    ckpt.write_bytes(b"weights")
    monkeypatch.setattr(files, "locate", lambda path: files.ModelFiles(checkpoint=path, manifest=derived))
    with pytest.raises(ValueError, match=rf"^the model runs only on the torch backend \({why}\)$"):
        Engine(ckpt, backend="onnxruntime")


def test_locate_names_the_missing_half_of_a_checkpoint_or_engine(tmp_path) -> None:
    # (a .safetensors file without its .json is another project's checkpoint: see below)
    (tmp_path / "a.safetensors").write_bytes(b"w")
    (tmp_path / "b.json").write_text("{}")
    (tmp_path / "c.engine").write_bytes(b"e")
    with pytest.raises(FileNotFoundError, match=r"missing .*/b\.safetensors$"):
        files.locate(tmp_path / "b.json")
    with pytest.raises(FileNotFoundError, match=r"^a TensorRT engine needs its manifest beside it: .*/c\.json$"):
        files.locate(tmp_path / "c.engine")
    (tmp_path / "c.json").write_text("{}")
    assert files.locate(tmp_path / "c.engine") == files.ModelFiles(tensorrt_engine=tmp_path / "c.engine")
    (tmp_path / "a.json").write_text("{}")
    assert files.locate(tmp_path / "a.json") == files.ModelFiles(checkpoint=tmp_path / "a.safetensors")


def test_another_projects_checkpoint_is_its_onnx_export_or_a_torch_only_model(tmp_path, monkeypatch) -> None:
    """``foreign.prepare`` (spandrel, tested in its own venv) stood in for: an exported ONNX file
    is the model; where the export failed, the checkpoint with its derived manifest is."""
    from pyfill import foreign

    ckpt, onnx_file = tmp_path / "net.pth", tmp_path / "net.onnx"
    ckpt.write_bytes(b"weights")
    derived = SimpleNamespace(provenance={"onnx_export": "failed"})
    monkeypatch.setattr(foreign, "is_foreign_file", lambda path: path == ckpt)
    monkeypatch.setattr(foreign, "prepare", lambda path: (onnx_file, None, {}))
    assert files.locate(ckpt) == files.ModelFiles(onnx=onnx_file)
    monkeypatch.setattr(foreign, "prepare", lambda path: (None, derived, {}))
    assert files.locate(ckpt) == files.ModelFiles(checkpoint=ckpt, manifest=derived)
