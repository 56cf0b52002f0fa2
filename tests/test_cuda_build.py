"""Which CUDA architectures a build compiles for (cmake/PyfillCudaArchs.cmake), checked by
running the CMake script with stand-ins for nvidia-smi and nvcc, and the build's record of it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pyfill._core import _C

SCRIPT = Path(__file__).resolve().parents[1] / "cmake" / "PyfillCudaArchs.cmake"
NVCC_ARCHS = "compute_75 compute_80 compute_86 compute_89 compute_90 compute_100 compute_120"

pytestmark = pytest.mark.skipif(shutil.which("cmake") is None, reason="cmake is not installed")


def tool(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text("#!/bin/sh\n" + body + "\n")
    path.chmod(0o755)
    return path


def decide(tmp_path: Path, mode: str, smi_body: str | None, requested: str = "") -> tuple[str, str]:
    nvcc = tool(tmp_path, "nvcc", f'[ "$1" = --list-gpu-arch ] && printf "%s\\n" {NVCC_ARCHS}')
    smi = tool(tmp_path, "nvidia-smi", smi_body) if smi_body is not None else tmp_path / "absent"
    args = ["cmake", f"-DMODE={mode}", f"-DNVCC={nvcc}", f"-DREQUESTED={requested}"]
    args += [f"-DNVIDIA_SMI={smi}" if smi_body is not None else "-DNVIDIA_SMI="]
    done = subprocess.run([*args, "-P", str(SCRIPT)], capture_output=True, text=True, timeout=60, check=True)
    lines = dict(line.split("=", 1) for line in done.stderr.strip().splitlines() if "=" in line)
    return lines["archs"], lines["reason"]


def test_auto_builds_only_for_the_gpu_present(tmp_path) -> None:
    assert decide(tmp_path, "auto", 'echo "9.0"') == ("90-real", "nvidia-smi reports sm_90")
    archs, _ = decide(tmp_path, "auto", 'printf "8.6\\n9.0\\n8.6\\n"')
    assert archs == "86-real;90-real"


def test_auto_without_a_usable_gpu_builds_no_cuda_and_says_why(tmp_path) -> None:
    archs, why = decide(tmp_path, "auto", None)
    assert archs == "" and "nvidia-smi not found" in why
    archs, why = decide(tmp_path, "auto", 'echo "Failed to initialize NVML: Driver/library version mismatch" >&2; exit 18')
    assert archs == "" and "Driver/library version mismatch" in why


def test_a_gpu_newer_than_nvcc_gets_the_newest_ptx(tmp_path) -> None:
    assert decide(tmp_path, "auto", 'echo "13.0"')[0] == "120"


def test_on_keeps_the_portable_set_and_an_explicit_list_wins(tmp_path) -> None:
    assert decide(tmp_path, "on", 'echo "9.0"')[0] == "75-real;80-real;86-real;89-real;90"
    assert decide(tmp_path, "on", None, requested="90")[0] == "90"
    assert decide(tmp_path, "auto", 'echo "9.0"', requested="80-real")[0] == "80-real"


def test_build_config_reports_the_architectures_compiled() -> None:
    build = _C.build_config()
    if build["cuda"]:
        assert build["cuda_archs"] and all(a.split("-")[0].isdigit() for a in build["cuda_archs"].split(","))
    else:
        assert build["cuda_archs"] == ""
