"""The CPU backends (ONNX Runtime, OpenVINO, torch) on their own, against NumPy and the
runtimes' own reports: outputs, precision casts, batch limits, thread counts, performance
hints and per-thread requests."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest
from references import save_graph
from test_tensorrt import _stand_in_onnx


def test_the_torch_backend_returns_every_output_of_a_module(tmp_path) -> None:
    torch = pytest.importorskip("torch")
    from pyfill.engine.backends import TorchBackend

    class TwoOutputs(torch.nn.Module):
        def forward(self, image):
            return image * 2, image.mean(dim=(1, 2, 3))

    x = np.random.default_rng(0).uniform(0, 1, (2, 3, 8, 8)).astype(np.float32)
    out = TorchBackend(TwoOutputs(), ["image"], "cpu", "fp32").run({"image": x})
    assert len(out) == 2
    np.testing.assert_allclose(np.asarray(out[0]), 2 * x, atol=1e-6)
    np.testing.assert_allclose(np.asarray(out[1]), x.mean(axis=(1, 2, 3)), atol=1e-6)


def test_the_torch_backend_runs_any_float_module_and_input_in_the_precision_asked() -> None:
    """A float64 module and float64 inputs run in fp32 (both are cast), and CUDA is refused
    where torch sees none."""
    torch = pytest.importorskip("torch")
    from pyfill.engine.backends import TorchBackend

    conv = torch.nn.Conv2d(3, 3, 3, padding=1).double()
    x = np.random.default_rng(1).uniform(0, 1, (1, 3, 8, 8))
    want = conv(torch.from_numpy(x)).detach().numpy()
    backend = TorchBackend(conv, ["image"], "cpu", "fp32")
    (got,) = backend.run({"image": x})
    assert got.dtype == torch.float32 and next(backend.module.parameters()).dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match=r"^device='cuda' but torch sees no CUDA device$"):
            TorchBackend(conv, ["image"], "cuda", "fp16")


def test_onnxruntime_backend_defaults_and_its_cuda_refusal(tmp_path) -> None:
    import onnxruntime as ort

    from pyfill.engine.backends import OnnxRuntimeBackend

    path = _stand_in_onnx(tmp_path / "m.onnx", with_manifest=True)
    d = OnnxRuntimeBackend(path).describe()
    assert (d["backend"], d["device"], d["precision"], d["providers"]) == ("onnxruntime", "cpu", "fp32",
                                                                            ["CPUExecutionProvider"])
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        with pytest.raises(RuntimeError, match=r"^onnxruntime has no CUDA provider here \(providers: .*\); "
                                               r"install onnxruntime-gpu$"):
            OnnxRuntimeBackend(path, device="cuda")


def _fixed_batch_conv(path: Path, batch: int | str) -> Path:
    pytest.importorskip("onnx")
    from onnx import helper, numpy_helper

    w = numpy_helper.from_array(np.ones((3, 3, 1, 1), np.float32) / 3, "w")
    dims = [batch, 3, "h", "w"]
    return save_graph(path, [helper.make_node("Conv", ["image", "w"], ["out"])], [("image", dims)], [("out", dims)], [w])


def test_cpu_backends_read_a_fixed_batch_and_take_their_thread_count(tmp_path) -> None:
    from pyfill.engine.backends import OnnxRuntimeBackend, OpenVINOBackend

    fixed, dynamic = _fixed_batch_conv(tmp_path / "b2.onnx", 2), _fixed_batch_conv(tmp_path / "bn.onnx", "n")
    assert OnnxRuntimeBackend(fixed).max_batch == 2 and OnnxRuntimeBackend(dynamic).max_batch is None
    ort_backend = OnnxRuntimeBackend(dynamic, threads=1)
    assert ort_backend.session.get_session_options().intra_op_num_threads == 1
    pytest.importorskip("openvino")
    assert OpenVINOBackend(fixed).max_batch == 2 and OpenVINOBackend(dynamic).max_batch is None
    ov_backend = OpenVINOBackend(dynamic)
    d = ov_backend.describe()
    import openvino as ov

    assert (d["openvino"], d["static_shapes"], d["throughput"]) == (ov.get_version(), False, False)
    assert str(ov_backend.compiled.get_property("PERFORMANCE_HINT")) == "LATENCY"
    busy = OpenVINOBackend(dynamic, throughput=True)
    assert str(busy.compiled.get_property("PERFORMANCE_HINT")) == "THROUGHPUT"


def test_openvino_keeps_one_infer_request_per_thread() -> None:
    pytest.importorskip("openvino")
    from pyfill.engine.backends import OpenVINOBackend

    made = []
    backend = OpenVINOBackend.__new__(OpenVINOBackend)
    backend._local = threading.local()
    compiled = object()
    make = lambda c: made.append(c) or object()  # noqa: E731
    first = backend._per_thread("request", compiled, make)
    assert backend._per_thread("request", compiled, make) is first and made == [compiled]
    other = []
    t = threading.Thread(target=lambda: other.append(backend._per_thread("request", compiled, make)))
    t.start()
    t.join()
    assert other[0] is not first and len(made) == 2


def test_a_model_with_a_scalar_first_input_has_no_batch_limit(tmp_path) -> None:
    pytest.importorskip("onnx")
    from onnx import helper

    from pyfill.engine.backends import OnnxRuntimeBackend

    path = save_graph(tmp_path / "scalar.onnx", [helper.make_node("Identity", ["x"], ["y"])], [("x", [])], [("y", [])])
    assert OnnxRuntimeBackend(path).max_batch is None


def test_openvino_missing_is_a_broken_install(tmp_path, monkeypatch) -> None:
    """OpenVINO is a core dependency: without it the error says to reinstall pyfill."""
    import sys

    from pyfill._core import MissingExtraError
    from pyfill.engine.backends import OpenVINOBackend

    monkeypatch.setitem(sys.modules, "openvino", None)
    with pytest.raises(MissingExtraError, match=r"^the Python package 'openvino' is a dependency of pyfill but cannot "
                                                r"be imported .*reinstall pyfill"):
        OpenVINOBackend(_stand_in_onnx(tmp_path / "m.onnx", with_manifest=True))
