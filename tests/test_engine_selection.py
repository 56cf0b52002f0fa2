"""Backend, device and precision selection (``pyfill.engine.selection``) as a table: each row is
a model form and a machine, and the choice and the sentence ``Engine.info`` shows for it, written
out from the rules in ``docs/engine.md``. Also ``outputs_agree``, the check behind the bf16
guard, on hand-made outputs at its limits."""

from __future__ import annotations

import numpy as np
import pytest

from pyfill.engine.engine import Result, outputs_agree
from pyfill.engine.selection import Environment, ModelForm, choose_backend

ONNX = ModelForm(onnx=True, checkpoint=False, tensorrt_engine=False, foreign=False, fp16=True)
CKPT = ModelForm(onnx=False, checkpoint=True, tensorrt_engine=False, foreign=False, fp16=True)
FOREIGN = ModelForm(onnx=True, checkpoint=False, tensorrt_engine=False, foreign=True, fp16=False)
ENGINE = ModelForm(onnx=False, checkpoint=False, tensorrt_engine=True, foreign=False, fp16=True)
TORCH_ONLY = ModelForm(onnx=False, checkpoint=True, tensorrt_engine=False, foreign=True, fp16=False,
                       torch_only="HAT does not export")

CPU = Environment()
CPU_OV = Environment(openvino=True)
GPU_ALL = Environment(cuda_kernels_gpu=True, torch=True, torch_cuda=True, tensorrt=True,
                      tensorrt_reason="TensorRT and cuda-python see 1 CUDA device(s)", openvino=True,
                      onnxruntime_cuda=True)
GPU_TORCH = Environment(cuda_kernels_gpu=True, torch=True, torch_cuda=True, openvino=True)
GPU_ORT = Environment(cuda_kernels_gpu=True, onnxruntime_cuda=True)

AUTO = [  # device, model, machine -> backend, device, reason
    ("auto", ONNX, CPU, "onnxruntime", "cpu", "no CUDA backend applies and OpenVINO is not installed"),
    ("auto", ONNX, CPU_OV, "openvino", "cpu", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"),
    ("cpu", ONNX, GPU_ALL, "openvino", "cpu", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"),
    ("cpu", CKPT, GPU_TORCH, "openvino", "cpu", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"),
    ("auto", ONNX, GPU_ALL, "tensorrt", "cuda", "TensorRT and cuda-python see 1 CUDA device(s)"),
    ("auto", FOREIGN, GPU_ALL, "openvino", "cpu", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"),
    ("cuda", FOREIGN, GPU_ORT, "onnxruntime", "cuda", "CUDA was asked for; ONNX Runtime's CUDA provider"),
    ("auto", CKPT, GPU_TORCH, "torch", "cuda", "torch with CUDA is present and the model is a checkpoint"),
    ("auto", ONNX, GPU_TORCH, "openvino", "cpu", "no CUDA backend applies; OpenVINO is the fastest CPU runtime installed"),
    ("cuda", ONNX, GPU_TORCH, "onnxruntime", "cuda", "CUDA was asked for; ONNX Runtime's CUDA provider"),
    ("auto", ENGINE, GPU_ALL, "tensorrt", "cuda", "the model is a TensorRT engine"),
    ("auto", ENGINE, CPU, "tensorrt", "cuda", "the model is a TensorRT engine"),
    ("auto", TORCH_ONLY, GPU_TORCH, "torch", "cuda", "the model has no ONNX form (HAT does not export)"),
]


@pytest.mark.parametrize("device,model,env,backend,chosen_device,reason", AUTO)
def test_auto_picks_the_backend_the_rules_name_and_says_why(device, model, env, backend, chosen_device,
                                                            reason) -> None:
    choice = choose_backend("auto", device, "fp32", model, env)
    assert (choice.backend, choice.device, choice.reason) == (backend, chosen_device, reason)


def test_torch_only_models_need_torch() -> None:
    with pytest.raises(RuntimeError, match=r"^this model runs only on the torch backend \(HAT does not export\), and "
                                           r"torch is not installed$"):
        choose_backend("auto", "auto", "auto", TORCH_ONLY, CPU)


def test_outputs_agree_within_two_grey_levels_and_a_relative_one_percent() -> None:
    ref = np.full((4, 4, 3), 100, np.uint8)
    for delta, ok in ((2, True), (3, False), (-2, True), (-3, False)):
        got = (ref.astype(np.int16) + delta).astype(np.uint8)
        assert outputs_agree(Result(out=got), Result(out=ref)) == (ok, f"out: {abs(delta)} grey levels")
    # uint8 differences must not wrap around: 0 against 255 is 255 levels
    assert outputs_agree(Result(out=np.zeros(3, np.uint8)), Result(out=np.full(3, 255, np.uint8)))[0] is False
    vec = np.array([10.0, -20.0, 5.0])
    for err, ok in ((0.2, True), (0.21, False)):  # relative to the largest magnitude, 20
        got = vec + np.array([0.0, err, 0.0])
        agree, text = outputs_agree(Result(v=got), Result(v=vec))
        assert agree is ok and text == f"v: relative {err / 20:.2e}"
    # an all-zero reference compares absolutely (a floor of 1e-6 on the scale)
    assert outputs_agree(Result(v=np.full(3, 5e-9)), Result(v=np.zeros(3)))[0] is True
    assert outputs_agree(Result(v=np.full(3, 5e-8)), Result(v=np.zeros(3)))[0] is False
    # every output must agree, whichever comes first
    both = outputs_agree(Result(out=ref, v=vec + 1.0), Result(out=ref, v=vec))
    assert both == (False, "out: 0 grey levels, v: relative 5.00e-02")
    assert outputs_agree(Result(v=vec + 1.0, out=ref), Result(v=vec + 1.0, out=ref + 3))[0] is False


def test_outputs_agree_needs_every_output_in_any_order_and_includes_its_limit() -> None:
    ref = np.full((2, 2, 3), 100, np.uint8)
    off = ref + 3
    vec = np.array([1.0, 2.0])
    # a failing output is not forgiven by a passing one after it, in either branch
    assert outputs_agree(Result(out=off, v=vec), Result(out=ref, v=vec))[0] is False
    assert outputs_agree(Result(v=vec * 2, out=ref), Result(v=vec, out=ref))[0] is False
    # exactly one percent of the largest magnitude still agrees
    assert outputs_agree(Result(v=np.array([101.0])), Result(v=np.array([100.0]))) == (True, "v: relative 1.00e-02")


BF16_CPU = Environment(openvino=True, torch=True, cpu_bf16=True)
NO_BF16 = ModelForm(onnx=True, checkpoint=True, tensorrt_engine=False, foreign=False, fp16=False, bf16=False)

PRECISION = [  # backend, device, precision asked, model, machine -> precision, why, guarded
    ("openvino", "cpu", "auto", ONNX, BF16_CPU, "bf16", "auto: this CPU has native bf16 (AMX or AVX512-BF16)", True),
    ("torch", "cpu", "auto", CKPT, BF16_CPU, "bf16", "auto: this CPU has native bf16 (AMX or AVX512-BF16)", True),
    ("openvino", "cpu", "auto", ONNX, CPU_OV, "fp32", "auto: fp32 (this CPU has no native bf16)", False),
    ("onnxruntime", "cpu", "auto", ONNX, BF16_CPU, "fp32", "auto: fp32", False),
    ("openvino", "cpu", "auto", NO_BF16, BF16_CPU, "fp32",
     "auto: fp32 (the manifest says the model does not support bf16)", False),
    ("tensorrt", "cuda", "auto", ONNX, GPU_ALL, "fp16", "auto: fp16 on CUDA (the manifest allows it)", False),
    ("torch", "cuda", "auto", CKPT, GPU_TORCH, "fp16", "auto: fp16 on CUDA (the manifest allows it)", False),
    ("onnxruntime", "cuda", "auto", ONNX, GPU_ORT, "fp32", "auto: fp32", False),
    ("tensorrt", "cuda", "auto", NO_BF16, GPU_ALL, "fp32",
     "auto: fp32 (the manifest says the model does not support bf16)", False),
    ("openvino", "cpu", "bf16", ONNX, BF16_CPU, "bf16", "asked for", False),
    ("onnxruntime", "cpu", "fp32", ONNX, CPU, "fp32", "asked for", False),
    ("tensorrt", "cuda", "fp16", ONNX, GPU_ALL, "fp16", "asked for", False),
]


@pytest.mark.parametrize("backend,device,asked,model,env,precision,why,guard", PRECISION)
def test_precision_follows_the_device_the_cpu_and_the_manifest(backend, device, asked, model, env, precision, why,
                                                               guard) -> None:
    choice = choose_backend(backend, device, asked, model, env)
    assert (choice.backend, choice.device, choice.precision, choice.precision_reason, choice.guard) == (
        backend, device, precision, why, guard)
    assert choice.reason == "asked for"


REFUSED = [  # backend, device, precision, model, machine -> exception, message
    ("auto", "cuda", "auto", ONNX, CPU, RuntimeError, r"^device='cuda' but no CUDA device is visible$"),
    ("onnxruntime", "auto", "auto", ENGINE, GPU_ALL, ValueError,
     r"^a TensorRT engine runs only on the tensorrt backend, not onnxruntime$"),
    ("openvino", "auto", "auto", TORCH_ONLY, GPU_TORCH, ValueError,
     r"^the model runs only on the torch backend \(HAT does not export\)$"),
    ("torch", "auto", "auto", ONNX, GPU_TORCH, ValueError,
     r"^the torch backend runs pyfill checkpoints \(\.safetensors \+ \.json\), not ONNX files$"),
    ("tensorrt", "auto", "auto", ONNX, CPU, RuntimeError, r"^the tensorrt backend cannot run here: tensorrt is not installed$"),
    ("onnxruntime", "cpu", "fp16", NO_BF16, CPU, ValueError, r"^the model's manifest says it does not support fp16$"),
    ("onnxruntime", "cpu", "bf16", ONNX, BF16_CPU, ValueError,
     r"^bf16 runs on the CPU with the openvino or torch backend, not onnxruntime on cpu$"),
    ("torch", "cuda", "bf16", CKPT, GPU_TORCH, ValueError,
     r"^bf16 runs on the CPU with the openvino or torch backend, not torch on cuda$"),
    ("openvino", "cpu", "bf16", ONNX, CPU_OV, ValueError,
     r"^precision='bf16' needs a CPU with AMX or AVX512-BF16; this one has neither$"),
    ("openvino", "cpu", "bf16", NO_BF16, BF16_CPU, ValueError, r"^the model's manifest says it does not support bf16$"),
    ("tflite", "cpu", "auto", ONNX, CPU, ValueError, r"^backend must be one of \("),
    ("auto", "tpu", "auto", ONNX, CPU, ValueError, r"^device must be one of \("),
    ("auto", "cpu", "int4", ONNX, CPU, ValueError, r"^precision must be one of \("),
]


@pytest.mark.parametrize("backend,device,precision,model,env,exc,message", REFUSED)
def test_combinations_that_cannot_run_are_refused_with_the_reason(backend, device, precision, model, env, exc,
                                                                  message) -> None:
    with pytest.raises(exc, match=message):
        choose_backend(backend, device, precision, model, env)


def test_auto_devices_follow_the_backend() -> None:
    assert choose_backend("torch", "auto", "fp32", CKPT, GPU_TORCH).device == "cuda"
    assert choose_backend("torch", "auto", "fp32", CKPT, BF16_CPU).device == "cpu"
    assert choose_backend("tensorrt", "auto", "fp32", ENGINE, CPU).device == "cuda"
    assert choose_backend("openvino", "auto", "fp32", ONNX, GPU_ALL).device == "cpu"
    assert choose_backend("tensorrt", "auto", "fp32", ONNX, GPU_ALL).device == "cuda"


def test_cuda_is_visible_through_any_one_of_torch_tensorrt_or_the_kernels() -> None:
    for env in (Environment(torch=True, torch_cuda=True), Environment(tensorrt=True),
                Environment(cuda_kernels_gpu=True, onnxruntime_cuda=True)):
        assert choose_backend("onnxruntime", "cuda", "fp32", ONNX, env).device == "cuda"
    # a torch-only model runs when torch is asked for by name
    choice = choose_backend("torch", "auto", "auto", TORCH_ONLY, GPU_TORCH)
    assert (choice.backend, choice.device, choice.reason) == ("torch", "cuda", "asked for")


def test_a_result_is_a_dict_of_outputs_built_like_one() -> None:
    r = Result({"restored": 1, "mask": 2}, image_names=("restored",))
    assert dict(r) == {"restored": 1, "mask": 2} and r.image == 1
    assert Result([("a", 3)], b=4, image_names=("b",)) == {"a": 3, "b": 4}
    with pytest.raises(AttributeError, match="^this model has no image output$"):
        _ = Result({"mask": 2}).image
