"""Backend choice: a pure function of what was asked, what the model file is, and what this
machine has, returning the choice and the reason for it (``engine.info["selected_because"]``).

:func:`probe_environment` gathers the facts (imports and device probes, at run time only);
:func:`choose_backend` decides from them and does nothing else, so every rule is testable
without the hardware.
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from typing import Literal

BackendName = Literal["auto", "tensorrt", "torch", "openvino", "onnxruntime"]
DeviceName = Literal["auto", "cpu", "cuda"]
PrecisionName = Literal["auto", "fp32", "fp16"]
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "torch", "openvino", "onnxruntime")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16")


@dataclass(frozen=True)
class Environment:
    """What this machine offers for running models."""

    cuda_kernels_gpu: bool = False  # a CUDA device visible to pyfill's own kernels
    torch: bool = False
    torch_cuda: bool = False
    tensorrt: bool = False  # TensorRT usable: it imports, cuda-python imports and a GPU is visible
    tensorrt_reason: str = "tensorrt is not installed"
    openvino: bool = False
    onnxruntime_cuda: bool = False


@dataclass(frozen=True)
class ModelForm:
    """Which forms of the model exist."""

    onnx: bool
    checkpoint: bool
    tensorrt_engine: bool
    foreign: bool
    fp16: bool


@dataclass(frozen=True)
class Choice:
    backend: str
    device: str
    precision: str
    reason: str


def probe_environment(device: str = "auto") -> Environment:
    """Probe runtimes and devices now (never at import). ``device="cpu"`` skips CUDA probes."""
    from pyfill._core import _C

    has = importlib.util.find_spec
    torch_present = has("torch") is not None
    if device == "cpu":
        return Environment(torch=torch_present, openvino=has("openvino") is not None)
    gpu = bool(_C.cuda_devices()[0])
    torch_cuda = False
    if torch_present:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    trt_ok, trt_reason = _tensorrt_usable(gpu or torch_cuda)
    ort_cuda = False
    if has("onnxruntime") is not None:
        import onnxruntime as ort

        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    return Environment(gpu, torch_present, torch_cuda, trt_ok, trt_reason, has("openvino") is not None, ort_cuda)


def _tensorrt_usable(gpu: bool) -> tuple[bool, str]:
    if importlib.util.find_spec("tensorrt") is None:
        return False, "tensorrt is not installed"
    if importlib.util.find_spec("cuda") is None:
        return False, "tensorrt is installed but cuda-python is not (pip install 'pyfill[tensorrt]')"
    if not gpu:
        return False, "tensorrt is installed but no CUDA GPU is visible"
    return True, "TensorRT, cuda-python and a CUDA GPU are present"


def check_options(backend: str, device: str, precision: str) -> None:
    if backend not in BACKENDS:
        raise ValueError(f"backend must be one of {BACKENDS}, got {backend!r}")
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {PRECISIONS}, got {precision!r}")


def choose_backend(backend: str, device: str, precision: str, model: ModelForm, env: Environment) -> Choice:
    """Pick backend, device and precision. ``auto`` prefers TensorRT > torch CUDA > ONNX Runtime
    CUDA (only when CUDA is asked for) > OpenVINO > ONNX Runtime. Raises ValueError/RuntimeError
    for a combination that cannot run."""
    check_options(backend, device, precision)
    cuda_visible = env.cuda_kernels_gpu or env.torch_cuda
    if device == "cuda" and not cuda_visible:
        raise RuntimeError("device='cuda' but no CUDA device is visible")
    if model.tensorrt_engine and backend not in ("auto", "tensorrt"):
        raise ValueError(f"a TensorRT engine runs only on the tensorrt backend, not {backend}")
    if backend == "auto":
        backend, why = _auto(device, model, env)
    else:
        why = "asked for"
        if backend == "torch" and not model.checkpoint:
            raise ValueError("the torch backend runs pyfill checkpoints (.safetensors + .json), not ONNX files")
        if backend == "tensorrt" and not model.tensorrt_engine and not env.tensorrt:
            raise RuntimeError(f"the tensorrt backend cannot run here: {env.tensorrt_reason}")
    if device == "auto":
        device = "cuda" if backend == "tensorrt" or (backend == "torch" and env.torch_cuda) else "cpu"
    if precision == "auto":
        precision = "fp16" if device == "cuda" and model.fp16 and backend in ("torch", "tensorrt") else "fp32"
    if precision == "fp16" and not model.fp16:
        raise ValueError("the model's manifest says it does not support fp16")
    return Choice(backend, device, precision, why)


def _auto(device: str, model: ModelForm, env: Environment) -> tuple[str, str]:
    if model.tensorrt_engine:
        return "tensorrt", "the model is a TensorRT engine"
    if device != "cpu":
        if env.tensorrt and not model.foreign:
            return "tensorrt", env.tensorrt_reason
        if env.torch_cuda and model.checkpoint:
            return "torch", "torch with CUDA is present and the model is a checkpoint"
        if device == "cuda":
            return "onnxruntime", "CUDA was asked for; ONNX Runtime's CUDA provider"
    if env.openvino:
        return "openvino", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"
    return "onnxruntime", "no CUDA backend applies and OpenVINO is not installed"
