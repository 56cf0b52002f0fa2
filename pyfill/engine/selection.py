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
PrecisionName = Literal["auto", "fp32", "fp16", "bf16"]
BACKENDS: tuple[str, ...] = ("auto", "tensorrt", "torch", "openvino", "onnxruntime")
DEVICES: tuple[str, ...] = ("auto", "cpu", "cuda")
PRECISIONS: tuple[str, ...] = ("auto", "fp32", "fp16", "bf16")
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Environment:
    """What this machine offers for running models."""

    cuda_kernels_gpu: bool = False  # a CUDA device visible to pyfill's own kernels
    torch: bool = False
    torch_cuda: bool = False
    tensorrt: bool = False  # TensorRT usable: it and cuda-python import and cuda-python sees a GPU
    tensorrt_reason: str = "tensorrt is not installed"
    openvino: bool = False
    onnxruntime_cuda: bool = False
    cpu_bf16: bool = False  # the CPU computes bf16 natively (AMX or AVX512-BF16)


@dataclass(frozen=True)
class ModelForm:
    """Which forms of the model exist."""

    onnx: bool
    checkpoint: bool
    tensorrt_engine: bool
    foreign: bool
    fp16: bool
    bf16: bool = True
    torch_only: str = ""  # why the model has no ONNX form (another project's checkpoint that did not export)


@dataclass(frozen=True)
class Choice:
    """``guard``: the precision was picked by ``auto`` and must be checked against fp32 on a
    probe input before it is used (bf16 on the CPU)."""

    backend: str
    device: str
    precision: str
    reason: str
    precision_reason: str = ""
    guard: bool = False


def cpu_has_bf16() -> bool:
    """Whether the CPU computes bf16 natively: AMX-BF16 or AVX512-BF16 in /proc/cpuinfo (Linux),
    else OpenVINO's report of the CPU's capabilities."""
    try:
        with open("/proc/cpuinfo") as f:
            flags = next((line for line in f if line.startswith("flags")), "").split()
        return any(flag in flags for flag in CPU_BF16_FLAGS)
    except OSError:
        pass
    if importlib.util.find_spec("openvino") is None:
        return False
    import openvino as ov

    return "BF16" in ov.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def probe_environment(device: str = "auto") -> Environment:
    """Probe runtimes and devices now (never at import). ``device="cpu"`` skips CUDA probes."""
    from pyfill._core import _C

    has = importlib.util.find_spec
    torch_present = has("torch") is not None
    bf16 = cpu_has_bf16()
    if device == "cpu":
        return Environment(torch=torch_present, openvino=has("openvino") is not None, cpu_bf16=bf16)
    gpu = bool(_C.cuda_devices()[0])
    torch_cuda = False
    if torch_present:
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    from pyfill.engine.backends import tensorrt_usable

    trt_ok, trt_reason = tensorrt_usable()
    ort_cuda = False
    if has("onnxruntime") is not None:
        import onnxruntime as ort

        ort_cuda = "CUDAExecutionProvider" in ort.get_available_providers()
    return Environment(gpu, torch_present, torch_cuda, trt_ok, trt_reason, has("openvino") is not None, ort_cuda,
                       bf16)


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
    cuda_visible = env.cuda_kernels_gpu or env.torch_cuda or env.tensorrt
    if device == "cuda" and not cuda_visible:
        raise RuntimeError("device='cuda' but no CUDA device is visible")
    if model.tensorrt_engine and backend not in ("auto", "tensorrt"):
        raise ValueError(f"a TensorRT engine runs only on the tensorrt backend, not {backend}")
    if backend == "auto":
        backend, why = _auto(device, model, env)
    else:
        why = "asked for"
        if backend != "torch" and model.torch_only:
            raise ValueError(f"the model runs only on the torch backend ({model.torch_only})")
        if backend == "torch" and not model.checkpoint:
            raise ValueError("the torch backend runs pyfill checkpoints (.safetensors + .json), not ONNX files")
        if backend == "tensorrt" and not model.tensorrt_engine and not env.tensorrt:
            raise RuntimeError(f"the tensorrt backend cannot run here: {env.tensorrt_reason}")
    if device == "auto":
        device = "cuda" if backend == "tensorrt" or (backend == "torch" and env.torch_cuda) else "cpu"
    precision, precision_why, guard = _precision(precision, backend, device, model, env)
    return Choice(backend, device, precision, why, precision_why, guard)


def _precision(precision: str, backend: str, device: str, model: ModelForm, env: Environment) -> tuple[str, str, bool]:
    cpu_bf16_backend = device == "cpu" and backend in ("openvino", "torch")
    if precision == "auto":
        if device == "cuda" and model.fp16 and backend in ("torch", "tensorrt"):
            return "fp16", "auto: fp16 on CUDA (the manifest allows it)", False
        if cpu_bf16_backend and model.bf16 and env.cpu_bf16:
            return "bf16", "auto: this CPU has native bf16 (AMX or AVX512-BF16)", True
        if cpu_bf16_backend and not env.cpu_bf16:
            return "fp32", "auto: fp32 (this CPU has no native bf16)", False
        return "fp32", "auto: fp32" + ("" if model.bf16 else " (the manifest says the model does not support bf16)"), False
    if precision == "fp16" and not model.fp16:
        raise ValueError("the model's manifest says it does not support fp16")
    if precision == "bf16":
        if not cpu_bf16_backend:
            raise ValueError(f"bf16 runs on the CPU with the openvino or torch backend, not {backend} on {device}")
        if not env.cpu_bf16:
            raise ValueError("precision='bf16' needs a CPU with AMX or AVX512-BF16; this one has neither")
        if not model.bf16:
            raise ValueError("the model's manifest says it does not support bf16")
    return precision, "asked for", False


def _auto(device: str, model: ModelForm, env: Environment) -> tuple[str, str]:
    if model.torch_only:
        if not env.torch:
            raise RuntimeError(f"this model runs only on the torch backend ({model.torch_only}), and torch is not "
                               "installed")
        return "torch", f"the model has no ONNX form ({model.torch_only})"
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
