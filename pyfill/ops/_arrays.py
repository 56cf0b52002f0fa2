"""Array plumbing shared by the ops: host/CUDA detection, conversion and output allocation.

NumPy arrays and CPU torch tensors run the C++ kernels; torch CUDA tensors and other objects that
expose ``__cuda_array_interface__`` (CuPy, Numba, ...) run the CUDA kernels and get results of
the same library back. torch is imported only when the caller passed a torch tensor.
"""

from __future__ import annotations

import operator
import sys
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from pyfill._core import _C


def check_seed(seed: Any, name: str = "seed") -> int:
    """A random seed as an int in [0, 2**64): bools, floats and other types raise TypeError,
    values out of range ValueError. The one seed check of the ops and the degradation pipeline."""
    if isinstance(seed, bool):
        raise TypeError(f"{name}: expected an int, got bool")
    try:
        value = operator.index(seed)
    except TypeError as exc:
        raise TypeError(f"{name}: expected an int, got {type(seed).__name__}") from exc
    if not 0 <= value < 2**64:
        raise ValueError(f"{name}: expected an int in [0, 2**64), got {value}")
    return value


def _is_torch_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def is_cuda_array(x: Any) -> bool:
    """True for torch CUDA tensors and any object exposing ``__cuda_array_interface__``."""
    if _is_torch_tensor(x):
        return x.device.type == "cuda"
    return hasattr(x, "__cuda_array_interface__")


def to_host(x: Any, name: str) -> tuple[np.ndarray, Callable[[np.ndarray], Any]]:
    """Convert a host array-like to a NumPy array; return it and a function that converts a
    NumPy result back to the caller's library (a CPU torch tensor for a torch input)."""
    if _is_torch_tensor(x):
        import torch

        if x.device.type != "cpu":
            raise ValueError(f"{name}: expected a CPU tensor here, got one on {x.device}")
        return x.detach().contiguous().numpy(), torch.from_numpy
    if isinstance(x, np.ndarray):
        return x, lambda r: r
    try:
        arr = np.asarray(x)
    except Exception as exc:
        raise TypeError(f"{name}: expected a NumPy array or torch tensor, got {type(x).__name__}") from exc
    if arr.dtype == object:
        raise TypeError(f"{name}: expected a numeric array, got {type(x).__name__}")
    return arr, lambda r: r


@dataclass(frozen=True)
class CudaView:
    """A raw view of a CUDA array: device pointer, shape, NumPy dtype, device index and stream."""

    ptr: int
    shape: tuple[int, ...]
    dtype: np.dtype
    device: int
    stream: int  # cudaStream_t as an integer; 0 = legacy default stream
    owner: Any  # the array the view belongs to (keeps it alive, decides the output library)


def cuda_view(x: Any, name: str) -> CudaView:
    """Describe a C-contiguous CUDA array; raise ValueError for strided arrays."""
    if _is_torch_tensor(x):
        import torch

        if not x.is_contiguous():
            raise ValueError(f"{name}: CUDA tensor must be contiguous (call .contiguous())")
        dtype = np.dtype(str(x.dtype).replace("torch.", ""))
        stream = torch.cuda.current_stream(x.device).cuda_stream
        return CudaView(x.data_ptr(), tuple(x.shape), dtype, x.device.index or 0, stream, x)
    cai = x.__cuda_array_interface__
    shape = tuple(int(s) for s in cai["shape"])
    dtype = np.dtype(cai["typestr"])
    strides = cai.get("strides")
    if strides is not None:
        expected = []
        step = dtype.itemsize
        for s in reversed(shape):
            expected.append(step)
            step *= s
        if tuple(reversed(expected)) != tuple(strides):
            raise ValueError(f"{name}: CUDA array must be C-contiguous")
    ptr = int(cai["data"][0])
    device = int(getattr(getattr(x, "device", None), "id", 0) or 0)
    stream = cai.get("stream") or 0
    stream = 0 if stream in (1, 2) else int(stream)  # 1/2 = legacy/per-thread default streams
    return CudaView(ptr, shape, dtype, device, stream, x)


def cuda_empty(like: CudaView, shape: tuple[int, ...], dtype: np.dtype | type) -> Any:
    """Allocate an uninitialised CUDA array of the same library and device as ``like``."""
    dtype = np.dtype(dtype)
    if _is_torch_tensor(like.owner):
        import torch

        return torch.empty(shape, dtype=getattr(torch, dtype.name), device=like.owner.device)
    cupy = sys.modules.get("cupy")
    if cupy is not None and isinstance(like.owner, cupy.ndarray):
        with cupy.cuda.Device(like.device):
            return cupy.empty(shape, dtype=dtype)
    raise TypeError(
        f"cannot allocate a CUDA result like {type(like.owner).__name__}: pass a torch or CuPy array"
    )


def require_cuda_kernels(op: str) -> None:
    """Raise a clear error when a CUDA input reaches a build without CUDA kernels."""
    if not _C.build_config()["cuda"]:
        raise RuntimeError(
            f"{op}: got a CUDA array but this pyfill was built without CUDA kernels; "
            "rebuild with PYFILL_CUDA=on or pass a host (NumPy/CPU) array"
        )
