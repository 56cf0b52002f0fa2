"""The ops' array plumbing (pyfill.ops._arrays): seed checks, host conversion, and the CUDA array
description read from ``__cuda_array_interface__`` (tested with plain objects carrying that
interface, so no GPU is needed: the view is only read, never dereferenced)."""

from __future__ import annotations

import numpy as np
import pytest

from pyfill._core import _C
from pyfill.ops._arrays import CudaView, check_seed, cuda_empty, cuda_view, is_cuda_array, require_cuda_kernels, to_host


class FakeCuda:
    """An object exposing ``__cuda_array_interface__`` (version 3) like CuPy or Numba arrays."""

    def __init__(self, shape, typestr="|u1", strides=None, ptr=0x7F0000001000, stream=None, device=None):
        self.__cuda_array_interface__ = {"shape": shape, "typestr": typestr, "data": (ptr, False),
                                         "strides": strides, "version": 3}
        if stream is not None:
            self.__cuda_array_interface__["stream"] = stream
        if device is not None:
            self.device = type("Device", (), {"id": device})()


@pytest.mark.parametrize("seed", [0, 1, 2**64 - 1, np.uint64(2**64 - 1), np.int32(5)])
def test_seed_accepts_ints_in_range(seed) -> None:
    value = check_seed(seed)
    assert value == int(seed) and type(value) is int


@pytest.mark.parametrize("seed,error,match", [
    (True, TypeError, "seed: expected an int, got bool"),
    (1.0, TypeError, "expected an int, got float"),
    ("3", TypeError, "got str"),
    (-1, ValueError, r"in \[0, 2\*\*64\), got -1"),
    (2**64, ValueError, "got 18446744073709551616"),
])
def test_seed_refuses_other_types_and_ranges(seed, error, match) -> None:
    with pytest.raises(error, match=match):
        check_seed(seed)


def test_seed_error_names_the_parameter() -> None:
    with pytest.raises(ValueError, match="^rng: "):
        check_seed(-5, "rng")
    with pytest.raises(TypeError, match="^rng: "):
        check_seed(None, "rng")


def test_cuda_detection() -> None:
    assert is_cuda_array(FakeCuda((2, 3)))
    assert not is_cuda_array(np.zeros(3))
    assert not is_cuda_array([1, 2])


def test_to_host_passes_numpy_through_and_converts_sequences() -> None:
    a = np.arange(6, dtype=np.uint8).reshape(2, 3)
    arr, back = to_host(a, "x")
    assert arr is a and back(a) is a
    arr, back = to_host([[1, 2], [3, 4]], "x")
    assert isinstance(arr, np.ndarray) and arr.tolist() == [[1, 2], [3, 4]]
    assert back(arr) is arr


def test_to_host_refuses_objects() -> None:
    with pytest.raises(TypeError, match="x: expected a numeric array, got list"):
        to_host([object(), 1], "x")

    class Hostile:
        def __array__(self, *a, **k):
            raise RuntimeError("no")

    with pytest.raises(TypeError, match="img: expected a NumPy array or torch tensor, got Hostile"):
        to_host(Hostile(), "img")


def test_to_host_round_trips_cpu_torch_tensors() -> None:
    torch = pytest.importorskip("torch")
    t = torch.arange(12, dtype=torch.float32).reshape(3, 4).t()  # not contiguous
    arr, back = to_host(t, "x")
    assert isinstance(arr, np.ndarray) and arr.flags.c_contiguous
    np.testing.assert_array_equal(arr, t.numpy())
    out = back(arr * 2)
    assert isinstance(out, torch.Tensor) and torch.equal(out, t * 2)
    assert not is_cuda_array(t)


def test_cuda_view_reads_the_interface() -> None:
    x = FakeCuda((2, 3, 4), "<f4", ptr=4096, device=1, stream=77)
    view = cuda_view(x, "x")
    assert view == CudaView(4096, (2, 3, 4), np.dtype(np.float32), 1, 77, x)


def test_cuda_view_accepts_c_contiguous_strides_and_defaults() -> None:
    x = FakeCuda((2, 3, 4), "|u1", strides=(12, 4, 1))
    view = cuda_view(x, "x")
    assert (view.shape, view.dtype, view.device, view.stream) == ((2, 3, 4), np.dtype(np.uint8), 0, 0)
    assert cuda_view(FakeCuda((5, 2), "<u2", strides=(4, 2)), "x").dtype == np.dtype(np.uint16)


@pytest.mark.parametrize("strides", [(1, 2), (8, 2), (4, 1), (4, 2, 1)])
def test_cuda_view_refuses_other_strides(strides) -> None:
    with pytest.raises(ValueError, match="^img: CUDA array must be C-contiguous"):
        cuda_view(FakeCuda((5, 2), "<u2", strides=strides), "img")


@pytest.mark.parametrize("stream,expected", [(None, 0), (1, 0), (2, 0), (3, 3), (123456, 123456)])
def test_cuda_view_maps_the_default_streams_to_zero(stream, expected) -> None:
    assert cuda_view(FakeCuda((4,), stream=stream), "x").stream == expected


def test_cuda_empty_refuses_libraries_it_cannot_allocate_for() -> None:
    view = cuda_view(FakeCuda((4,)), "x")
    with pytest.raises(TypeError, match="cannot allocate a CUDA result like FakeCuda: pass a torch or CuPy array"):
        cuda_empty(view, (2,), np.uint8)


def test_cuda_kernels_requirement_follows_the_build() -> None:
    if _C.build_config()["cuda"]:
        require_cuda_kernels("op")  # a CUDA build has them
    else:
        with pytest.raises(RuntimeError, match="^resize: got a CUDA array but this pyfill was built without CUDA"):
            require_cuda_kernels("resize")


# ---- cases found by mutation testing (tools/mutation.py arrays) ----------------------------------
def test_tensors_off_the_cpu_are_refused_by_to_host() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match="^img: expected a CPU tensor here, got one on meta$"):
        to_host(torch.empty(2, 2, device="meta"), "img")


def test_non_contiguous_tensors_are_refused_before_any_cuda_call() -> None:
    torch = pytest.importorskip("torch")
    with pytest.raises(ValueError, match=r"^img: CUDA tensor must be contiguous \(call \.contiguous\(\)\)$"):
        cuda_view(torch.zeros(4, 6).t(), "img")


def test_results_like_a_torch_tensor_are_torch_tensors_on_its_device() -> None:
    torch = pytest.importorskip("torch")
    owner = torch.empty(3, device="meta")
    out = cuda_empty(CudaView(0, (3,), np.dtype(np.float32), 0, 0, owner), (2, 5), np.uint16)
    assert isinstance(out, torch.Tensor) and tuple(out.shape) == (2, 5)
    assert out.dtype == torch.uint16 and out.device.type == "meta"
    assert cuda_empty(CudaView(0, (3,), np.dtype(np.float32), 0, 0, owner), (4,), "float32").dtype == torch.float32


def test_results_like_a_cupy_array_are_made_by_cupy_on_its_device(monkeypatch) -> None:
    import sys
    import types

    made = []

    class Device:
        def __init__(self, index):
            self.index = index

        def __enter__(self):
            made.append(("device", self.index))

        def __exit__(self, *exc):
            made.append(("left", self.index))

    class ndarray:  # noqa: N801 - CuPy's name
        pass

    cupy = types.ModuleType("cupy")
    cupy.ndarray = ndarray
    cupy.cuda = types.SimpleNamespace(Device=Device)
    cupy.empty = lambda shape, dtype: made.append(("empty", shape, dtype)) or "array"
    monkeypatch.setitem(sys.modules, "cupy", cupy)
    view = CudaView(0, (3,), np.dtype(np.uint8), 2, 0, ndarray())
    assert cuda_empty(view, (4, 5), np.float32) == "array"
    assert made == [("device", 2), ("empty", (4, 5), np.dtype(np.float32)), ("left", 2)]


def test_the_missing_kernels_message_says_how_to_get_them() -> None:
    if _C.build_config()["cuda"]:
        pytest.skip("this build has the CUDA kernels")
    with pytest.raises(RuntimeError, match=r"^blur: got a CUDA array but this pyfill was built without CUDA kernels; "
                                           r"rebuild with PYFILL_CUDA=on or pass a host \(NumPy/CPU\) array$"):
        require_cuda_kernels("blur")
