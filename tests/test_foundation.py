"""The installed package: compiled core, runtime report, command line, light import."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from helpers import requires_cuda

import pyfill
from pyfill._core import MissingExtraError, _C, require


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    # Run outside the source tree so that the installed package, not ./pyfill, is imported.
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir()
    )


def test_import_is_light() -> None:
    heavy = ["torch", "tensorrt", "av", "cv2", "PIL", "openvino", "onnx", "scipy"]
    code = f"import sys, pyfill; print([m for m in {heavy!r} if m in sys.modules])"
    out = _run("-c", code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


def test_version_matches_metadata() -> None:
    from importlib.metadata import version

    assert pyfill.__version__ == version("pyfill")
    assert _C.build_config()["version"] == pyfill.__version__


def test_thread_control_round_trip() -> None:
    default = _C.get_num_threads()
    assert default == _C.hardware_threads()
    try:
        _C.set_num_threads(3)
        assert _C.get_num_threads() == 3
        assert pyfill.runtime_info()["core"]["threads"] == 3
    finally:
        _C.set_num_threads(0)
    assert _C.get_num_threads() == default


def test_hardware_threads_match_os() -> None:
    assert len(os.sched_getaffinity(0)) <= _C.hardware_threads() <= (os.cpu_count() or 1)


def test_runtime_info_reports_what_is_installed() -> None:
    import onnxruntime as ort

    info = pyfill.runtime_info()
    json.dumps(info)  # serialisable
    assert info["pyfill"] == pyfill.__version__
    assert info["onnxruntime"]["version"] == ort.__version__
    assert info["onnxruntime"]["providers"] == ort.get_available_providers()
    assert info["core"]["simd_cpu"] in {"avx512f", "avx2", "avx", "sse4.2", "sse2", "neon", "unknown"}
    assert info["cuda_kernels"]["compiled"] is bool(_C.build_config()["cuda"])
    if not info["cuda_devices"]:
        assert info["cuda_reason"]
    try:
        import torch
    except ImportError:
        assert info["torch"] is None
    else:
        assert info["torch"]["version"] == torch.__version__
        assert info["torch"]["cuda"] == torch.cuda.is_available()


def test_cuda_build_imports_without_a_device() -> None:
    # Importing must never probe devices; probing without a driver returns a reason, not a crash.
    devices, reason = _C.cuda_devices()
    assert isinstance(devices, list)
    if not devices:
        assert isinstance(reason, str) and reason
    if _C.build_config()["cuda"]:
        assert _C.build_config()["cuda_archs"]
        assert hasattr(_C, "cuda_smoke_saxpy")
    else:
        assert not hasattr(_C, "cuda_smoke_saxpy")


@requires_cuda
def test_cuda_smoke_kernel_matches_numpy() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal(100_003).astype(np.float32)
    y = rng.standard_normal(100_003).astype(np.float32)
    out = _C.cuda_smoke_saxpy(2.5, x, y)
    np.testing.assert_allclose(out, np.float32(2.5) * x + y, rtol=1e-6, atol=1e-6)


def test_require_names_the_extra() -> None:
    assert require("json", "core") is json
    with pytest.raises(MissingExtraError, match=r"pip install 'pyfill\[video\]'"):
        require("pyfill_no_such_module", "video")


def test_cli_version_and_help() -> None:
    out = _run("-m", "pyfill", "--version")
    assert out.returncode == 0 and out.stdout.strip() == f"pyfill {pyfill.__version__}"
    out = _run("-m", "pyfill", "--help")
    assert out.returncode == 0 and "doctor" in out.stdout


def test_cli_doctor_table_and_json() -> None:
    table = _run("-m", "pyfill", "doctor")
    assert table.returncode == 0, table.stderr
    for row in ("C++ core", "CUDA kernels", "CUDA devices", "onnxruntime", "torch", "tensorrt", "PyAV"):
        assert row in table.stdout
    as_json = _run("-m", "pyfill", "doctor", "--json")
    assert as_json.returncode == 0
    info = json.loads(as_json.stdout)
    assert info["onnxruntime"]["providers"] == pyfill.runtime_info()["onnxruntime"]["providers"]


def test_console_script_is_installed() -> None:
    import shutil

    exe = shutil.which("pyfill", path=os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", ""))
    assert exe, "the pyfill console script is not on PATH"
    out = subprocess.run([exe, "--version"], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0 and pyfill.__version__ in out.stdout
