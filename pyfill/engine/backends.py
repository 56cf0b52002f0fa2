"""Runtimes behind the Engine. Each backend runs a model on prepared float32 tensors:
``run(feeds: {name: (N, ...) array}) -> [outputs]``. Host backends take and return NumPy arrays;
the torch backend takes and returns torch tensors on its device.

Concurrency: ONNX Runtime sessions and torch modules (without CUDA graphs) run calls from several
threads concurrently; OpenVINO gets one infer request per thread; CUDA-graph replays and
TensorRT execution contexts are serialised with a lock.

:func:`tensorrt_usable` says, without side effects, whether the TensorRT backend can run here
(TensorRT and cuda-python import, and cuda-python sees a GPU); it does not need pyfill's own CUDA
kernels, so a CPU-only build of pyfill runs TensorRT engines too.
"""

from __future__ import annotations

import collections
import ctypes
import sys
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require


STATIC_SHAPES_KEPT = 4  # OpenVINO: static compilations kept per engine (LRU)


class Backend:
    name = "base"
    device = "cpu"
    precision = "fp32"
    _max_batch: int | None = None

    @property
    def max_batch(self) -> int | None:
        """The largest batch one run takes (a model exported with a fixed batch), None: any."""
        return self._max_batch

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
        batch = self.session.get_inputs()[0].shape[0] if self.session.get_inputs()[0].shape else None
        self._max_batch = batch if isinstance(batch, int) and batch > 0 else None

    def run(self, feeds: dict[str, Any]) -> list[Any]:
        return self.session.run(None, {k: feeds[k] for k in self.input_names})

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "providers": self.providers}


class OpenVINOBackend(Backend):
    name = "openvino"

    def __init__(self, onnx_path: str | Path, device: str = "cpu", precision: str = "fp32",
                 threads: int = 0, static_shapes: bool = False, throughput: bool = False) -> None:
        ov = require("openvino", "core")
        if device != "cpu":
            raise ValueError("the openvino backend runs on the CPU here; use device='cpu'")
        if precision not in ("fp32", "bf16"):
            raise ValueError(f"the openvino backend runs fp32 or bf16 on the CPU, not {precision}")
        core = ov.Core()
        hint = {"fp32": "f32", "bf16": "bf16"}[precision]
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": hint,
                                  "PERFORMANCE_HINT": "THROUGHPUT" if throughput else "LATENCY"}
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
        first = self.model.inputs[0].get_partial_shape()
        self._max_batch = first[0].get_length() if first.rank.is_static and first[0].is_static else None
        self.static_shapes = static_shapes and self._dynamic
        self._static: OrderedDict[tuple, Any] = OrderedDict()  # input shapes -> compiled static model
        self._compile_lock = threading.Lock()
        self._local = threading.local()
        self.version = ov.get_version()
        self.precision = precision
        self.throughput = throughput
        self._ov = ov

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
        n = arrays[0].shape[0] if arrays and arrays[0].ndim else 0
        if self.throughput and n > 1 and all(a.ndim and a.shape[0] == n for a in arrays):
            return self._run_concurrent(arrays, n)
        compiled = self._compiled_for(tuple(a.shape for a in arrays))
        request = self._per_thread("requests", compiled, lambda c: c.create_infer_request())
        result = request.infer(dict(zip(self.input_names, arrays)))
        return [np.array(result[out]) for out in compiled.outputs]

    def _per_thread(self, kind: str, compiled: Any, make: Any) -> Any:
        """This thread's ``kind`` object (infer request, async queue) for ``compiled``, made
        once per thread and compiled model."""
        cache = self._local.__dict__.setdefault(kind, {})
        entry = cache.get(id(compiled))
        if entry is None or entry[0] is not compiled:
            entry = cache[id(compiled)] = (compiled, make(compiled))
        return entry[1]

    def _run_concurrent(self, arrays: list[np.ndarray], n: int) -> list[Any]:
        """A batch as ``n`` one-item requests in flight at once (throughput mode: OpenVINO runs
        each stream on its own cores), the outputs stacked back in order."""
        compiled = self._compiled_for(tuple((1, *a.shape[1:]) for a in arrays))
        queue = self._per_thread("queues", compiled, self._ov.AsyncInferQueue)
        results: list[list[np.ndarray] | None] = [None] * n
        count = len(compiled.outputs)

        def done(request: Any, index: int) -> None:
            results[index] = [np.array(request.get_output_tensor(k).data) for k in range(count)]

        queue.set_callback(done)
        for i in range(n):
            queue.start_async({name: a[i:i + 1] for name, a in zip(self.input_names, arrays)}, i)
        queue.wait_all()
        if any(r is None for r in results):
            raise RuntimeError("OpenVINO finished a batch without the outputs of every request")
        return [np.concatenate([r[k] for r in results], axis=0) for k in range(count)]  # type: ignore[index]

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "openvino": self.version, "static_shapes": self.static_shapes,
                "throughput": self.throughput}


class TorchBackend(Backend):
    """A PyTorch module on the CPU or a CUDA device; fp16 and channels-last on CUDA; optional
    CUDA graphs: one graph per input shape, replayed for repeated shapes such as video frames,
    the :attr:`MAX_GRAPHS` most recently used kept (each holds its own memory pool, so a stream
    of ever-new sizes must not keep them all)."""

    name = "torch"
    MAX_GRAPHS = 4

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
        self._graphs: collections.OrderedDict[tuple, tuple[Any, list[Any], list[Any]]] = collections.OrderedDict()
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
            key = tuple((tuple(a.shape), a.dtype) for a in args)
            with self._lock:
                graph, static_in, static_out = self._graph(key, args)
                for dst, src in zip(static_in, args):
                    dst.copy_(src)
                graph.replay()
                return [o.float().clone() for o in static_out]

    def _graph(self, key: tuple, args: list[Any]) -> tuple[Any, list[Any], list[Any]]:
        """The graph for ``key``, captured now if new; evicts the least recently used beyond
        :attr:`MAX_GRAPHS` (its memory pool is released)."""
        if key in self._graphs:
            self._graphs.move_to_end(key)
            return self._graphs[key]
        while len(self._graphs) >= self.MAX_GRAPHS:
            _, (old, _, _) = self._graphs.popitem(last=False)
            old.reset()
        entry = self._capture(args)
        self._graphs[key] = entry
        return entry

    @property
    def graph_shapes(self) -> list[tuple]:
        """Input shapes (and dtypes) of the graphs kept now, least recently used first."""
        return list(self._graphs)

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
        # thread_local: other threads may use CUDA (another engine, a data loader) while this one
        # captures; the default "global" mode would make their calls fail the capture.
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._forward(static_in)
        return graph, static_in, static_out

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "torch": self.torch.__version__, "cuda_graphs": self.cuda_graphs}


# ---- TensorRT --------------------------------------------------------------------------------


def _cudart() -> Any:
    """cuda-python's runtime API module (``cuda.bindings.runtime``; ``cuda.cudart`` before 12.6)."""
    try:
        from cuda.bindings import runtime as cudart
    except ImportError:
        cudart = require("cuda.cudart", "tensorrt")
    return cudart


def load_tensorrt() -> Any:
    """The ``tensorrt`` module, or MissingExtraError naming the extra to install."""
    return require("tensorrt", "tensorrt")


def _cuda_ok(err: Any, what: str) -> None:
    if int(err) != 0:
        raise RuntimeError(f"{what} failed with CUDA error {int(err)} ({getattr(err, 'name', err)})")


def _decode(name: Any) -> str:
    return name.decode(errors="replace").rstrip("\x00") if isinstance(name, bytes) else str(name)


def current_gpu() -> dict[str, Any]:
    """The CUDA device current in this thread, through cuda-python: ``{"index", "name",
    "compute_capability": (major, minor)}``. Raises RuntimeError when there is none."""
    cudart = _cudart()
    err, index = cudart.cudaGetDevice()
    _cuda_ok(err, "cudaGetDevice")
    err, prop = cudart.cudaGetDeviceProperties(index)
    _cuda_ok(err, "cudaGetDeviceProperties")
    return {"index": int(index), "name": _decode(prop.name), "compute_capability": (int(prop.major), int(prop.minor))}


def tensorrt_usable() -> tuple[bool, str]:
    """Whether the TensorRT backend can run here, and why (or why not).

    True only when ``tensorrt`` and cuda-python import and cuda-python sees at least one usable
    CUDA device (a driver new enough for its CUDA version). Never raises and starts nothing
    beyond the CUDA driver. pyfill's own CUDA kernels are not needed.
    """
    try:
        load_tensorrt()
    except ImportError:
        return False, "TensorRT is not installed (pip install 'pyfill[tensorrt]')"
    except Exception as exc:  # a broken install is reported, never raised from a probe
        return False, f"TensorRT does not import ({exc})"
    try:
        cudart = _cudart()
    except ImportError:
        return False, "cuda-python is not installed (pip install 'pyfill[tensorrt]')"
    except Exception as exc:
        return False, f"cuda-python does not import ({exc})"
    try:
        err, count = cudart.cudaGetDeviceCount()
    except Exception as exc:
        return False, f"cuda-python cannot query devices ({exc})"
    if int(err) != 0:
        return False, f"no usable CUDA device (cuda-python: {getattr(err, 'name', err)})"
    if int(count) < 1:
        return False, "no CUDA device found"
    return True, f"TensorRT and cuda-python see {int(count)} CUDA device(s)"


class ProfileError(ValueError):
    """An input's shape lies outside what the TensorRT engine's optimisation profile accepts
    and cannot be brought inside it (a batch is chunked and a small image padded; a large image
    is not cut up here)."""


def _nptype(trt: Any, dtype: Any) -> np.dtype:
    return np.dtype(trt.nptype(dtype))


class _HostBuffer:
    """Page-locked host memory (cudaMallocHost) viewed as a NumPy array; grows on demand."""

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0

    def view(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        need = max(1, int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
        if need > self.nbytes:
            self.free()
            err, ptr = self.cudart.cudaMallocHost(need)
            _cuda_ok(err, "cudaMallocHost")
            self.ptr, self.nbytes = int(ptr), need
        raw = (ctypes.c_ubyte * self.nbytes).from_address(self.ptr)
        count = int(np.prod(shape, dtype=np.int64))
        return np.frombuffer(raw, dtype=dtype, count=count).reshape(shape)  # type: ignore[call-overload]

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFreeHost(self.ptr)
            self.ptr, self.nbytes = 0, 0


class _DeviceBuffer:
    """Device memory (cudaMalloc) that grows on demand; at least one byte, so that a zero-size
    tensor still gets a valid address."""

    def __init__(self, cudart: Any) -> None:
        self.cudart, self.ptr, self.nbytes = cudart, 0, 0

    def at_least(self, nbytes: int) -> int:
        need = max(1, int(nbytes))
        if need > self.nbytes:
            self.free()
            err, ptr = self.cudart.cudaMalloc(need)
            _cuda_ok(err, "cudaMalloc")
            self.ptr, self.nbytes = int(ptr), need
        return self.ptr

    def free(self) -> None:
        if self.ptr:
            self.cudart.cudaFree(self.ptr)
            self.ptr, self.nbytes = 0, 0


class TensorRTBackend(Backend):
    """A serialised TensorRT engine (TensorRT 10 or 11: named I/O tensors, ``execute_async_v3``)
    on the CUDA device current when it is loaded, with device memory through cuda-python.

    Shapes are fitted to the engine's optimisation profile (profile 0) before every run: a batch
    above the profile's maximum runs in chunks, a batch below its minimum is padded with copies
    of its last item, and spatial sizes below the minimum are padded bottom-right (edge values)
    and the outputs cropped back by the model's scale; a spatial size above the maximum raises
    :class:`ProfileError` (the caller tiles or resizes; :attr:`max_spatial` says the limit).
    Every shape is set and checked before execution, so a run never uses a stale shape.

    Host arrays travel through page-locked staging buffers; torch CUDA tensors on the engine's
    device stay there (the engine reads them and writes torch CUDA outputs, on torch's current
    stream). Outputs are float32.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, precision: str = "fp16") -> None:
        trt = load_tensorrt()
        cudart = _cudart()
        ok, reason = tensorrt_usable()
        if not ok:
            raise RuntimeError(f"the tensorrt backend cannot run here: {reason}")
        self.trt, self.cudart = trt, cudart
        self.gpu = current_gpu()
        logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(logger)
        self.engine = self.runtime.deserialize_cuda_engine(Path(engine_path).read_bytes())
        if self.engine is None:
            raise ValueError(f"{engine_path}: not a TensorRT engine for this GPU/TensorRT version")
        self.context = self.engine.create_execution_context()
        if self.context is None:
            raise RuntimeError(f"{engine_path}: TensorRT could not create an execution context (out of GPU memory?)")
        names = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)]
        self.input_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT]
        self.output_names = [n for n in names if self.engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT]
        self.profile = {
            n: tuple(tuple(int(v) for v in shape) for shape in self.engine.get_tensor_profile_shape(n, 0))
            for n in self.input_names
        }
        err, self.stream = cudart.cudaStreamCreate()
        _cuda_ok(err, "cudaStreamCreate")
        self.device = "cuda"
        self.precision = precision
        self._device_buffers = {n: _DeviceBuffer(cudart) for n in names}
        self._host_buffers = {n: _HostBuffer(cudart) for n in names}
        self._lock = threading.Lock()

    # ---- the profile -------------------------------------------------------------------------
    @property
    def max_batch(self) -> int:
        """The largest batch one execution takes (larger batches are chunked)."""
        return min(p[2][0] for p in self.profile.values())

    @property
    def max_spatial(self) -> tuple[int, int] | None:
        """(height, width) the 4-D inputs may reach, or None without 4-D inputs."""
        shapes = [p[2] for p in self.profile.values() if len(p[2]) == 4]
        if not shapes:
            return None
        return min(s[2] for s in shapes), min(s[3] for s in shapes)

    def _fit_spatial(self, feeds: dict[str, Any]) -> tuple[dict[str, Any], tuple[int, int] | None]:
        """Pad 4-D inputs below the profile's minimum (bottom-right, edge values); return the
        padded feeds and the original (height, width) to crop back to (None when unpadded)."""
        out, original = dict(feeds), None
        for name in self.input_names:
            x = feeds[name]
            lo, _, hi = self.profile[name]
            if x.ndim != 4:
                continue
            h, w = int(x.shape[2]), int(x.shape[3])
            if h > hi[2] or w > hi[3]:
                raise ProfileError(
                    f"input '{name}' is {h} x {w}, above the TensorRT engine's profile maximum {hi[2]} x {hi[3]}: "
                    "tile the image (Engine(tile=...)), resize it, or build the engine with a larger profile"
                )
            ph, pw = max(h, lo[2]), max(w, lo[3])
            if (ph, pw) != (h, w):
                original = (h, w)
                out[name] = _pad_edge(x, ph - h, pw - w)
        return out, original

    # ---- running -----------------------------------------------------------------------------
    def run(self, feeds: dict[str, Any]) -> list[Any]:
        missing = [n for n in self.input_names if n not in feeds]
        if missing:
            raise ValueError(f"missing TensorRT inputs {missing}; the engine takes {self.input_names}")
        for name in self.input_names:
            rank = len(self.profile[name][0])
            if len(feeds[name].shape) != rank:
                raise ValueError(f"input '{name}' has shape {tuple(feeds[name].shape)}; the engine expects {rank} dimensions")
        batches = {int(feeds[n].shape[0]) for n in self.input_names}
        if len(batches) != 1:
            raise ValueError(f"inputs have different batch sizes {sorted(batches)}")
        n = batches.pop()
        fitted, original = self._fit_spatial(feeds)
        min_batch = max(p[0][0] for p in self.profile.values())
        step = self.max_batch
        outs: list[list[Any]] = []
        with self._lock:
            for start in range(0, max(n, 1), step):
                count = min(step, n - start)
                chunk = {k: v[start:start + count] for k, v in fitted.items()}
                if count < min_batch:
                    chunk = {k: _pad_batch(v, min_batch) for k, v in chunk.items()}
                result = self._execute(chunk)
                outs.append([o[:count] for o in result])
        merged = [_concat([o[i] for o in outs]) for i in range(len(self.output_names))]
        if original is not None:
            merged = [self._crop(o, fitted, original) for o in merged]
        return merged

    def _crop(self, out: Any, fitted: dict[str, Any], original: tuple[int, int]) -> Any:
        if out.ndim != 4:
            return out
        padded_h = max(int(v.shape[2]) for k, v in fitted.items() if v.ndim == 4)
        scale = out.shape[2] // padded_h
        return out[..., : original[0] * scale, : original[1] * scale]

    def _torch_cuda(self, x: Any) -> bool:
        torch = sys.modules.get("torch")
        return torch is not None and isinstance(x, torch.Tensor) and x.is_cuda

    def _execute(self, feeds: dict[str, Any]) -> list[Any]:
        """One execution of the engine on feeds that lie inside the profile."""
        trt, cudart, ctx = self.trt, self.cudart, self.context
        on_device = any(self._torch_cuda(feeds[n]) for n in self.input_names)
        torch = sys.modules.get("torch") if on_device else None
        device = f"cuda:{self.gpu['index']}"
        stream = torch.cuda.current_stream(device).cuda_stream if torch is not None else self.stream
        keep: list[Any] = []  # device tensors that must outlive the execution
        for name in self.input_names:
            dtype = _nptype(trt, self.engine.get_tensor_dtype(name))
            x = feeds[name]
            shape = tuple(int(v) for v in x.shape)
            if not ctx.set_input_shape(name, shape):
                lo, _, hi = self.profile[name]
                raise ProfileError(f"TensorRT refused shape {shape} for input '{name}' (profile {lo} .. {hi})")
            if torch is not None:  # device tensors in and out; host inputs copied by torch
                t = x if isinstance(x, torch.Tensor) else torch.as_tensor(np.asarray(x))
                t = t.to(device=device, dtype=getattr(torch, dtype.name)).contiguous()
                keep.append(t)
                ptr = t.data_ptr() if t.numel() else self._device_buffers[name].at_least(0)
            else:
                host = self._host_buffers[name].view(shape, dtype)
                np.copyto(host, x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x), casting="unsafe")
                ptr = self._device_buffers[name].at_least(host.nbytes)
                _cuda_ok(cudart.cudaMemcpyAsync(ptr, self._host_buffers[name].ptr, host.nbytes,
                                                cudart.cudaMemcpyKind.cudaMemcpyHostToDevice, stream)[0],
                         "cudaMemcpyAsync")
            ctx.set_tensor_address(name, ptr)
        unresolved = ctx.infer_shapes()
        if unresolved:
            raise ProfileError(f"TensorRT could not infer the shapes of {list(unresolved)} from the inputs")
        outs: list[Any] = []
        for name in self.output_names:
            shape = tuple(int(v) for v in ctx.get_tensor_shape(name))
            if any(v < 0 for v in shape):
                raise ProfileError(f"TensorRT left output '{name}' with an unresolved shape {shape}")
            dtype = _nptype(trt, self.engine.get_tensor_dtype(name))
            if torch is not None:
                t = torch.empty(shape, dtype=getattr(torch, dtype.name), device=device)
                keep.append(t)
                ptr = t.data_ptr() if t.numel() else self._device_buffers[name].at_least(0)
                outs.append(t)
            else:
                nbytes = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
                ptr = self._device_buffers[name].at_least(nbytes)
                outs.append((shape, dtype))
            ctx.set_tensor_address(name, ptr)
        if not ctx.execute_async_v3(int(stream)):
            raise RuntimeError("TensorRT execution failed (see the TensorRT log above)")
        if torch is not None:
            return [o.float() for o in outs]
        results = []
        for name, (shape, dtype) in zip(self.output_names, outs):
            host = self._host_buffers[name].view(shape, dtype)
            _cuda_ok(cudart.cudaMemcpyAsync(self._host_buffers[name].ptr, self._device_buffers[name].ptr, host.nbytes,
                                            cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost, stream)[0], "cudaMemcpyAsync")
            results.append(host)
        _cuda_ok(cudart.cudaStreamSynchronize(stream)[0], "cudaStreamSynchronize")
        return [np.array(h, dtype=np.float32) for h in results]  # copies out of the staging buffers

    def close(self) -> None:
        """Release the device and page-locked buffers and the stream (also done when collected)."""
        cudart = getattr(self, "cudart", None)
        if cudart is None:
            return
        for buf in (*getattr(self, "_device_buffers", {}).values(), *getattr(self, "_host_buffers", {}).values()):
            buf.free()
        stream = getattr(self, "stream", None)
        if stream is not None:
            cudart.cudaStreamDestroy(stream)
            self.stream = None

    def __del__(self) -> None:
        self.close()

    def describe(self) -> dict[str, Any]:
        return {**super().describe(), "tensorrt": self.trt.__version__, "gpu": self.gpu["name"],
                "profile": {k: [list(s) for s in v] for k, v in self.profile.items()}}


def _pad_edge(x: Any, ph: int, pw: int) -> Any:
    """Pad a (N, C, H, W) array or tensor bottom-right by repeating its last row and column."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        return torch.nn.functional.pad(x, (0, pw, 0, ph), mode="replicate")
    return np.pad(x, ((0, 0), (0, 0), (0, ph), (0, pw)), mode="edge")


def _pad_batch(x: Any, n: int) -> Any:
    """Bring a batch up to ``n`` items with copies of its last item (zeros for an empty batch)."""
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(x, torch.Tensor):
        fill = x[-1:] if len(x) else torch.zeros((1, *x.shape[1:]), dtype=x.dtype, device=x.device)
        return torch.cat([x, fill.expand(n - len(x), *x.shape[1:])])
    fill = x[-1:] if len(x) else np.zeros((1, *x.shape[1:]), dtype=x.dtype)
    return np.concatenate([x, np.repeat(fill, n - len(x), axis=0)])


def _concat(parts: list[Any]) -> Any:
    if len(parts) == 1:
        return parts[0]
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(parts[0], torch.Tensor):
        return torch.cat(parts)
    return np.concatenate(parts)
