"""Runtimes behind the Engine. Each backend runs a model on prepared float32 tensors:
``run(feeds: {name: (N, ...) array}) -> [outputs]``. Host backends take and return NumPy arrays;
the torch backend takes and returns torch tensors on its device.

Concurrency: ONNX Runtime sessions and torch modules (without CUDA graphs) run calls from several
threads concurrently; OpenVINO gets one infer request per thread; CUDA-graph replays and
TensorRT execution contexts are serialised with a lock.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import _C, require


STATIC_SHAPES_KEPT = 4  # OpenVINO: static compilations kept per engine (LRU)


class Backend:
    name = "base"
    device = "cpu"
    precision = "fp32"

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        raise NotImplementedError

    def describe(self) -> dict[str, Any]:
        return {"backend": self.name, "device": self.device, "precision": self.precision}


class OnnxRuntimeBackend(Backend):
    name = "onnxruntime"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0) -> None:
        import onnxruntime as ort

        if precision != "fp32":
            raise ValueError("the onnxruntime backend runs fp32 models; use the torch or tensorrt backend for fp16")
        available = ort.get_available_providers()
        if device == "cuda":
            if "CUDAExecutionProvider" not in available:
                raise RuntimeError(
                    f"onnxruntime has no CUDA provider here (providers: {available}); install onnxruntime-gpu"
                )
            providers = ["CUDAExecutionProvider", "CPUExecutionProvider"]
        else:
            providers = ["CPUExecutionProvider"]
        opts = ort.SessionOptions()
        opts.log_severity_level = 3
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=providers)
        except Exception as exc:
            raise ValueError(f"{onnx_path}: ONNX Runtime cannot load it as a model ({exc})") from exc
        self.device = device
        self.providers = self.session.get_providers()
        self.input_names = [i.name for i in self.session.get_inputs()]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers}


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, static_shapes: bool = False) -> None:
        ov = require("openvino", "core")
        if device != "cpu":
            raise ValueError("the openvino backend runs on the CPU here; use device='cpu'")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"the openvino backend runs fp32 or bf16 on the CPU, not {precision}")
        core = ov.Core()
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint, "PERFORMANCE_HINT": "LATENCY"}
        if threads:
            config["INFERENCE_NUM_THREADS"] = int(threads)
        try:
            self.model = core.read_model(str(onnx_path))
            self.compiled = core.compile_model(self.model, "CPU", config)
        except Exception as exc:
            raise ValueError(f"{onnx_path}: OpenVINO cannot load it as a model ({exc})") from exc
        self.input_names = [p.get_any_name() for p in self.compiled.inputs]
        self._core, self._config = core, config
        self._dynamic = any(p.get_partial_shape().is_dynamic for p in self.model.inputs)
        self.static_shapes = static_shapes and self._dynamic
        self._static: OrderedDict[tuple, Any] = OrderedDict()  # input shapes -> compiled static model
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        self.version = ov.get_version()
        self.precision = precision

    def _compiled_for(self, shapes: tuple) -> Any:
        """The dynamic model, or with ``static_shapes`` (streams of same-size frames) a copy
        reshaped to these input shapes and compiled once (the last few are kept)."""
        if not self.static_shapes:
            return self.compiled
        with self._compile_lock:
            if shapes in self._static:
                self._static.move_to_end(shapes)
                return self._static[shapes]
            model = self.model.clone()
            model.reshape({name: list(shape) for name, shape in zip(self.input_names, shapes)})
            self._static[shapes] = self._core.compile_model(model, "CPU", self._config)
            if len(self._static) > STATIC_SHAPES_KEPT:
                self._static.popitem(last=False)
            return self._static[shapes]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        arrays = [np.ascontiguousarray(feeds[k]) for k in self.input_names]
        compiled = self._compiled_for(tuple(a.shape for a in arrays))
        requests = getattr(self._local, "requests", None)
        if requests is None:
            requests = self._local.requests = {}
        request = requests.get(id(compiled))
        if request is None or request[0] is not compiled:
            request = requests[id(compiled)] = (compiled, compiled.create_infer_request())
        result = request[1].infer(dict(zip(self.input_names, arrays)))
        return [np.array(result[out]) for out in compiled.outputs]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "openvino": self.version, "static_shapes": self.static_shapes}


class TorchBackend(Backend):
    """A PyTorch module on the CPU or a CUDA device; fp16 and channels-last on CUDA; optional
    CUDA graphs (one graph per input shape, replayed for repeated shapes such as video frames)."""

    name = "torch"

    def __init__(self, module: Any, input_names: list[str], device: str = "cpu",
                 precision: str = "fp32", cuda_graphs: bool = False) -> None:
        torch = require("torch", "train")
        if device == "cuda" and not torch.cuda.is_available():
            raise RuntimeError("device='cuda' but torch sees no CUDA device")
        if precision == "fp16" and device != "cuda":
            raise ValueError("fp16 runs on CUDA only; use precision='fp32' or 'bf16' on the CPU")
        if precision == "bf16" and device != "cpu":
            raise ValueError("bf16 runs on the CPU here; use fp16 on CUDA")
        if cuda_graphs and device != "cuda":
            raise ValueError("cuda_graphs=True needs device='cuda'")
        self.torch = torch
        self.device = device
        self.precision = precision
        self.dtype = torch.float16 if precision == "fp16" else torch.float32
        module = module.eval().to(device=device, dtype=self.dtype)
        if device == "cuda":
            module = module.to(memory_format=torch.channels_last)
        self.module = module
        self.input_names = input_names
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple, tuple[Any, list[Any], list[Any]]] = {}
        self._lock = threading.Lock()

    def _prepare(self, x: Any) -> Any:
        torch = self.torch
        t = torch.as_tensor(x) if not isinstance(x, torch.Tensor) else x
        t = t.to(device=self.device, dtype=self.dtype, non_blocking=True)
        if self.device == "cuda" and t.ndim == 4:
            t = t.contiguous(memory_format=torch.channels_last)
        return t

    def _forward(self, args: list[Any]) -> list[Any]:
        out = self.module(*args)
        return list(out) if isinstance(out, (tuple, list)) else [out]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        torch = self.torch
        args = [self._prepare(feeds[k]) for k in self.input_names]
        with torch.inference_mode():
            if self.precision == "bf16":  # weights stay fp32; autocast runs matmuls/convs in bf16
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    return [o.float() for o in self._forward(args)]
            if not self.cuda_graphs:
                return [o.float() for o in self._forward(args)]
            key = tuple(tuple(a.shape) for a in args)
            with self._lock:
                if key not in self._graphs:
                    self._graphs[key] = self._capture(args)
                graph, static_in, static_out = self._graphs[key]
                for dst, src in zip(static_in, args):
                    dst.copy_(src)
                graph.replay()
                return [o.float().clone() for o in static_out]

    def _capture(self, args: list[Any]) -> tuple[Any, list[Any], list[Any]]:
        torch = self.torch
        static_in = [a.clone() for a in args]
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream):
            for _ in range(3):  # warm up kernels and the allocator outside the graph
                self._forward(static_in)
        torch.cuda.current_stream().wait_stream(stream)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "torch": self.torch.__version__, "cuda_graphs": self.cuda_graphs}


class TensorRTBackend(Backend):
    """A serialised TensorRT engine run with the TensorRT 10 tensor API (named I/O tensors,
    ``execute_async_v3``) on a CUDA stream; device buffers through cuda-python's runtime API."""

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, precision: str = "fp16") -> None:
        trt = require("tensorrt", "tensorrt")
        cudart = _cudart()
        devices, reason = _C.cuda_devices()
        if not devices:
            raise RuntimeError(f"the tensorrt backend needs a CUDA GPU: {reason}")
        self.trt, self.cudart = trt, cudart
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{engine_path}: not a TensorRT engine for this GPU/TensorRT version")
        self.context = self.engine.create_execution_context()
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        err, self.stream = cudart.cudaStreamCreate()
        _cuda_ok(err, "cudaStreamCreate")
        self.device = "cuda"
        self.precision = precision
        self._buffers: dict[str, tuple[int, int]] = {}  # name -> (pointer, bytes)
        self._lock = threading.Lock()

    def _buffer(self, name: str, nbytes: int) -> int:
        ptr, size = self._buffers.get(name, (0, 0))
        if size < nbytes:
            if ptr:
                _cuda_ok(self.cudart.cudaFree(ptr)[0], "cudaFree")
            err, ptr = self.cudart.cudaMalloc(nbytes)
            _cuda_ok(err, "cudaMalloc")
            self._buffers[name] = (ptr, nbytes)
        return self._buffers[name][0]

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        trt, cudart = self.trt, self.cudart
        h2d, d2h = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        with self._lock:
            for name in self.input_names:
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                arr = np.ascontiguousarray(feeds[name], dtype=dtype)
                self.context.set_input_shape(name, arr.shape)
                ptr = self._buffer(name, arr.nbytes)
                _cuda_ok(cudart.cudaMemcpyAsync(ptr, arr.ctypes.data, arr.nbytes, h2d, self.stream)[0], "cudaMemcpyAsync")
                self.context.set_tensor_address(name, ptr)
            outs = []
            for name in self.output_names:
                shape = tuple(self.context.get_tensor_shape(name))
                dtype = np.dtype(trt.nptype(self.engine.get_tensor_dtype(name)))
                host = np.empty(shape, dtype=dtype)
                self.context.set_tensor_address(name, self._buffer(name, host.nbytes))
                outs.append(host)
            if not self.context.execute_async_v3(int(self.stream)):
                raise RuntimeError("TensorRT execution failed")
            for name, host in zip(self.output_names, outs):
                ptr = self._buffers[name][0]
                _cuda_ok(cudart.cudaMemcpyAsync(host.ctypes.data, ptr, host.nbytes, d2h, self.stream)[0], "cudaMemcpyAsync")
            _cuda_ok(cudart.cudaStreamSynchronize(self.stream)[0], "cudaStreamSynchronize")
        return [o.astype(np.float32) for o in outs]

    def __del__(self) -> None:
        cudart = getattr(self, "cudart", None)
        if cudart is None:
            return
        for ptr, _ in getattr(self, "_buffers", {}).values():
            cudart.cudaFree(ptr)

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tensorrt": self.trt.__version__}


def _cudart() -> Any:
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = require("cuda.cudart", "tensorrt")
    return cudart


def _cuda_ok(err: Any, what: str) -> None:
    if int(err) != 0:
        raise RuntimeError(f"{what} failed with CUDA error {int(err)}")
