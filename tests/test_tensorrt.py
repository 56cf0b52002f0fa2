"""The TensorRT backend and builder.

Most tests run everywhere: a small stand-in for TensorRT's engine, execution context and builder,
and for cuda-python's runtime (host memory playing device memory), drives the real backend and
builder code, so that profile handling, buffer handling, cache keys, typing modes and precision
rules are checked on the CPU. The stand-in's context refuses shapes outside its profile exactly
as TensorRT's ``set_input_shape`` does (it returns False), and its engine computes a known
function, so a run on a stale or refused shape gives wrong numbers or an error. The tests at the
end need TensorRT, cuda-python and a GPU, and skip cleanly without them.
"""

from __future__ import annotations

import ctypes
import sys
import threading
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from pyfill.engine import backends
from pyfill.engine.backends import ProfileError, TensorRTBackend, tensorrt_usable
from references import save_graph

SCALE = 2  # the stand-in model upsamples by 2


# ---- stand-ins for cuda-python and TensorRT ---------------------------------------------------


class FakeCudart:
    """cuda-python's runtime calls used by pyfill, on host memory."""

    class cudaMemcpyKind:
        cudaMemcpyHostToDevice = "h2d"
        cudaMemcpyDeviceToHost = "d2h"

    def __init__(self, devices: int = 1, count_error: int = 0) -> None:
        self.devices, self.count_error = devices, count_error
        self.device_mem: dict[int, ctypes.Array] = {}
        self.pinned_mem: dict[int, ctypes.Array] = {}
        self.copies: list[tuple[str, bool]] = []  # (kind, host side is page-locked)
        self.streams: set[int] = set()
        self.current = 0

    def cudaGetDeviceCount(self):
        return self.count_error, self.devices

    def cudaGetDevice(self):
        return 0, self.current

    def cudaGetDeviceProperties(self, index):
        names = {0: (b"Fake H100", 9, 0), 1: (b"Fake A100", 8, 0)}
        name, major, minor = names[index]
        return 0, SimpleNamespace(name=name, major=major, minor=minor)

    def cudaStreamCreate(self):
        handle = 1000 + len(self.streams) + 1
        self.streams.add(handle)
        return 0, handle

    def cudaStreamDestroy(self, stream):
        self.streams.discard(stream)
        return (0,)

    def _alloc(self, table: dict, n: int):
        buf = ctypes.create_string_buffer(n)
        table[ctypes.addressof(buf)] = buf
        return 0, ctypes.addressof(buf)

    def cudaMalloc(self, n):
        return self._alloc(self.device_mem, n)

    def cudaMallocHost(self, n):
        return self._alloc(self.pinned_mem, n)

    def cudaFree(self, ptr):
        del self.device_mem[ptr]
        return (0,)

    def cudaFreeHost(self, ptr):
        del self.pinned_mem[ptr]
        return (0,)

    def cudaMemcpyAsync(self, dst, src, n, kind, stream):
        assert stream in self.streams
        host = src if kind == "h2d" else dst
        self.copies.append((kind, host in self.pinned_mem))
        ctypes.memmove(dst, src, n)
        return (0,)

    def cudaStreamSynchronize(self, stream):
        return (0,)


class FakeEngine:
    """An engine computing out = upsample2(2 * image + mean(shift)) with a profile:
    image (N, 3, H, W): N 1..4 (opt 2), H, W 16..64 (opt 32); shift (N, 4): N 1..4."""

    PROFILE = {
        "image": [(1, 3, 16, 16), (2, 3, 32, 32), (4, 3, 64, 64)],
        "shift": [(1, 4), (2, 4), (4, 4)],
    }

    def __init__(self, trt) -> None:
        self.trt = trt
        self.names = ["image", "shift", "out"]
        self.contexts: list[FakeContext] = []

    @property
    def num_io_tensors(self):
        return len(self.names)

    def get_tensor_name(self, i):
        return self.names[i]

    def get_tensor_mode(self, name):
        return self.trt.TensorIOMode.OUTPUT if name == "out" else self.trt.TensorIOMode.INPUT

    def get_tensor_dtype(self, name):
        if name not in self.names:
            raise KeyError(f"no tensor named {name!r}")  # TensorRT reports an unknown name as an error
        return self.trt.DataType.FLOAT

    def get_tensor_profile_shape(self, name, profile_index):
        assert profile_index == 0
        return self.PROFILE[name]

    def create_execution_context(self):
        ctx = FakeContext(self)
        self.contexts.append(ctx)
        return ctx


class FakeContext:
    def __init__(self, engine: FakeEngine) -> None:
        self.engine = engine
        self.shapes: dict[str, tuple] = {}
        self.addresses: dict[str, int] = {}
        self.runs: list[dict[str, tuple]] = []

    def set_input_shape(self, name, shape):
        lo, _, hi = self.engine.PROFILE[name]
        shape = tuple(shape)
        if len(shape) != len(lo) or any(s < a or s > b for s, a, b in zip(shape, lo, hi)):
            return False  # TensorRT refuses; the previous shape stays set
        self.shapes[name] = shape
        return True

    def set_tensor_address(self, name, ptr):
        self.addresses[name] = int(ptr)
        return True

    def infer_shapes(self):
        return [n for n in ("image", "shift") if n not in self.shapes]

    def get_tensor_shape(self, name):
        if name == "out":
            n, c, h, w = self.shapes["image"]
            return (n, c, h * SCALE, w * SCALE)
        return self.shapes[name]

    def _array(self, name, shape):
        count = int(np.prod(shape))
        raw = (ctypes.c_float * max(count, 1)).from_address(self.addresses[name])
        return np.frombuffer(raw, dtype=np.float32, count=count).reshape(shape)

    def execute_async_v3(self, stream):
        image = self._array("image", self.shapes["image"])
        shift = self._array("shift", self.shapes["shift"])
        if image.shape[0] != shift.shape[0]:
            return False
        out = 2 * image + shift.mean(axis=1)[:, None, None, None]
        out = out.repeat(SCALE, axis=2).repeat(SCALE, axis=3)
        self._array("out", self.get_tensor_shape("out"))[...] = out
        self.runs.append(dict(self.shapes))
        return True


def fake_trt(version: str = "10.13.0", weak: bool = True) -> SimpleNamespace:
    """A stand-in ``tensorrt`` module: TensorRT 10 (``weak``: BuilderFlag.FP16 exists) or 11."""
    trt = SimpleNamespace(__version__=version)
    trt.TensorIOMode = SimpleNamespace(INPUT="input", OUTPUT="output")
    trt.DataType = SimpleNamespace(FLOAT="float", HALF="half")
    trt.nptype = lambda dtype: {"float": np.float32, "half": np.float16}[dtype]

    class Logger:
        WARNING = 2

        def __init__(self, level):
            self.level = level

    class Runtime:
        def __init__(self, logger):
            pass

        def deserialize_cuda_engine(self, blob):
            return FakeEngine(trt) if blob == b"fake-engine" else None

    trt.Logger, trt.Runtime = Logger, Runtime
    flags = {"TF32": 7}
    if weak:
        flags["FP16"] = 0
    trt.BuilderFlag = SimpleNamespace(**flags)
    trt.NetworkDefinitionCreationFlag = SimpleNamespace(STRONGLY_TYPED=1)
    trt.MemoryPoolType = SimpleNamespace(WORKSPACE="workspace")
    trt.builds = []  # what each build saw

    class Parser:
        def __init__(self, network, logger):
            self.network = network
            self.num_errors = 0
            network.parser_logger = logger

        def parse_from_file(self, path):
            import onnx

            model = onnx.load(path)
            elem = {t.data_type for t in model.graph.initializer}
            self.network.parsed = {"path": path, "initializer_types": elem}
            return True

    class Config:
        def __init__(self):
            self.flags, self.profiles, self.timing_in = [], [], None

        def set_memory_pool_limit(self, pool, size):
            self.pool, self.workspace = pool, size

        def set_flag(self, flag):
            self.flags.append(flag)

        def create_timing_cache(self, data):
            self.timing_in = data
            return SimpleNamespace(serialize=lambda: b"timings:" + data)

        def set_timing_cache(self, cache, ignore_mismatch):
            self.timing, self.ignore_mismatch = cache, ignore_mismatch

        def get_timing_cache(self):
            return self.timing

        def add_optimization_profile(self, profile):
            self.profiles.append(profile)

    class Profile:
        def __init__(self):
            self.shapes = {}

        def set_shape(self, name, lo, opt, hi):
            self.shapes[name] = (lo, opt, hi)

    class Builder:
        def __init__(self, logger):
            self.logger = logger

        def create_network(self, flags):
            return SimpleNamespace(flags=flags, parsed=None)

        def create_builder_config(self):
            return Config()

        def create_optimization_profile(self):
            return Profile()

        def build_serialized_network(self, network, config):
            trt.builds.append({"network": network, "config": config, "logger": self.logger})
            return b"fake-engine"

    trt.OnnxParser, trt.Builder = Parser, Builder
    return trt


@pytest.fixture
def fakes(monkeypatch):
    """The stand-ins installed where pyfill looks for TensorRT and cuda-python."""
    trt, cudart = fake_trt(), FakeCudart()
    monkeypatch.setattr(backends, "load_tensorrt", lambda: trt)
    monkeypatch.setattr(backends, "_cudart", lambda: cudart)
    return SimpleNamespace(trt=trt, cudart=cudart)


@pytest.fixture
def backend(fakes, tmp_path) -> TensorRTBackend:
    path = tmp_path / "model.engine"
    path.write_bytes(b"fake-engine")
    return TensorRTBackend(path, precision="fp32")


def expected(image: np.ndarray, shift: np.ndarray) -> np.ndarray:
    out = 2 * image + shift.mean(axis=1)[:, None, None, None]
    return out.repeat(SCALE, axis=2).repeat(SCALE, axis=3)


def feeds(n: int, h: int, w: int, seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    return {"image": rng.uniform(-1, 1, (n, 3, h, w)).astype(np.float32),
            "shift": rng.uniform(-1, 1, (n, 4)).astype(np.float32)}


# ---- tensorrt_usable -------------------------------------------------------------------------


def test_usable_needs_tensorrt_cuda_python_and_a_device(monkeypatch) -> None:
    from pyfill._core import MissingExtraError

    def missing(name):
        def fail():
            raise MissingExtraError(f"no {name}")
        return fail

    monkeypatch.setattr(backends, "load_tensorrt", missing("tensorrt"))
    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart())
    assert tensorrt_usable() == (False, "TensorRT is not installed (pip install 'pyfill[tensorrt]')")

    monkeypatch.setattr(backends, "load_tensorrt", lambda: fake_trt())
    monkeypatch.setattr(backends, "_cudart", missing("cuda-python"))
    ok, why = tensorrt_usable()
    assert not ok and "cuda-python is not installed" in why

    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart(count_error=35))  # insufficient driver
    ok, why = tensorrt_usable()
    assert not ok and "no usable CUDA device" in why

    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart(devices=0))
    assert tensorrt_usable() == (False, "no CUDA device found")

    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart(devices=2))
    ok, why = tensorrt_usable()
    assert ok and "2 CUDA device" in why


def test_backend_refuses_to_start_without_a_device(monkeypatch, tmp_path) -> None:
    monkeypatch.setattr(backends, "load_tensorrt", lambda: fake_trt())
    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart(devices=0))
    path = tmp_path / "m.engine"
    path.write_bytes(b"fake-engine")
    with pytest.raises(RuntimeError, match="cannot run here: no CUDA device found"):
        TensorRTBackend(path)


def test_real_probe_never_raises() -> None:
    ok, why = tensorrt_usable()
    assert isinstance(ok, bool) and why


# ---- profile handling ----------------------------------------------------------------------------


def test_inside_the_profile_runs_once_with_the_given_shapes(backend, fakes) -> None:
    f = feeds(3, 24, 40)
    (out,) = backend.run(f)
    np.testing.assert_allclose(out, expected(f["image"], f["shift"]), rtol=1e-6)
    ctx = backend.context
    assert [r["image"] for r in ctx.runs] == [(3, 3, 24, 40)]
    # host arrays went through page-locked staging buffers in both directions
    assert fakes.cudart.copies and all(pinned for _, pinned in fakes.cudart.copies)


def test_batches_above_the_profile_maximum_run_in_chunks(backend) -> None:
    f = feeds(10, 32, 32, seed=1)
    (out,) = backend.run(f)
    np.testing.assert_allclose(out, expected(f["image"], f["shift"]), rtol=1e-6)
    assert [r["image"][0] for r in backend.context.runs] == [4, 4, 2]


def test_images_below_the_profile_minimum_are_padded_and_cropped_back(backend) -> None:
    f = feeds(2, 9, 50, seed=2)
    (out,) = backend.run(f)
    assert out.shape == (2, 3, 9 * SCALE, 50 * SCALE)
    np.testing.assert_allclose(out, expected(f["image"], f["shift"]), rtol=1e-6)
    assert backend.context.runs[-1]["image"] == (2, 3, 16, 50)


def test_images_above_the_profile_maximum_raise_a_clear_error(backend) -> None:
    with pytest.raises(ProfileError, match=r"80 x 32, above the TensorRT engine's profile maximum 64 x 64"):
        backend.run(feeds(1, 80, 32))
    assert backend.context.runs == []
    assert backend.max_spatial == (64, 64) and backend.max_batch == 4


def test_a_refused_shape_never_runs_on_the_previous_one(backend) -> None:
    backend.run(feeds(2, 32, 32))
    bad = feeds(2, 32, 32)
    bad["shift"] = np.zeros((2, 5), np.float32)  # the profile fixes 4 values per item
    with pytest.raises(ProfileError, match=r"refused shape \(2, 5\) for input 'shift'"):
        backend.run(bad)
    assert len(backend.context.runs) == 1


def test_an_empty_batch_gives_empty_outputs(backend) -> None:
    (out,) = backend.run(feeds(0, 32, 32))
    assert out.shape == (0, 3, 64, 64) and out.dtype == np.float32


def test_mismatched_batches_and_missing_inputs_are_refused(backend) -> None:
    f = feeds(2, 32, 32)
    with pytest.raises(ValueError, match="different batch sizes"):
        backend.run({"image": f["image"], "shift": f["shift"][:1]})
    with pytest.raises(ValueError, match=r"missing TensorRT inputs \['shift'\]"):
        backend.run({"image": f["image"]})


def test_close_releases_the_stream_and_every_buffer(backend, fakes) -> None:
    backend.run(feeds(2, 32, 32))
    assert fakes.cudart.streams and fakes.cudart.device_mem and fakes.cudart.pinned_mem
    backend.close()
    assert not fakes.cudart.streams and not fakes.cudart.device_mem and not fakes.cudart.pinned_mem
    backend.close()  # twice is harmless


def test_concurrent_runs_match_sequential(backend) -> None:
    inputs = [feeds(1 + i % 4, 16 + 8 * (i % 3), 32, seed=i) for i in range(12)]
    results: list = [None] * len(inputs)

    def work(i: int) -> None:
        results[i] = backend.run(inputs[i])[0]

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(inputs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for f, got in zip(inputs, results):
        np.testing.assert_allclose(got, expected(f["image"], f["shift"]), rtol=1e-6)


# ---- the builder -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def onnx_models(tmp_path_factory) -> dict[str, Path]:
    """pyfill ONNX files whose manifests allow fp16 (U-Net) and refuse it (the same U-Net with
    fp16: false)."""
    pytest.importorskip("torch")
    from pyfill.export import export_onnx
    from pyfill.models import build_model, make_manifest

    folder = tmp_path_factory.mktemp("trt-onnx")
    module = build_model("unet")
    yes = make_manifest("unet")
    assert yes.fp16
    no = make_manifest("unet")
    no.fp16 = False
    return {"fp16": export_onnx(module, folder / "yes.onnx", manifest=yes),
            "no-fp16": export_onnx(module, folder / "no.onnx", manifest=no)}


def test_auto_precision_follows_the_manifest_and_fp16_is_refused_where_it_says_no(fakes, onnx_models, tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine
    from pyfill.manifest import Manifest

    build_tensorrt_engine(onnx_models["no-fp16"], out_dir=tmp_path)
    assert fakes.trt.builds[-1]["config"].flags == []  # fp32: no FP16 flag
    built = build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    assert fakes.trt.builds[-1]["config"].flags == [fakes.trt.BuilderFlag.FP16]
    assert Manifest.load(built.with_suffix(".json")).provenance["tensorrt"]["precision"] == "fp16"
    with pytest.raises(ValueError, match="does not support fp16"):
        build_tensorrt_engine(onnx_models["no-fp16"], precision="fp16", out_dir=tmp_path)


def test_tensorrt_11_builds_a_strongly_typed_network_from_an_fp16_onnx(monkeypatch, fakes, onnx_models, tmp_path) -> None:
    pytest.importorskip("onnxconverter_common")
    from pyfill.export import build_tensorrt_engine

    trt11 = fake_trt("11.4.0", weak=False)
    monkeypatch.setattr(backends, "load_tensorrt", lambda: trt11)
    build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    build = trt11.builds[-1]
    assert build["network"].flags == 1 << trt11.NetworkDefinitionCreationFlag.STRONGLY_TYPED
    assert build["config"].flags == []  # no weak-typing flag exists on 11
    assert 10 in build["network"].parsed["initializer_types"]  # FLOAT16 weights
    assert not list(tmp_path.glob("*.onnx*")), "the fp16 copy is removed after the build"
    build_tensorrt_engine(onnx_models["no-fp16"], out_dir=tmp_path)
    assert 10 not in trt11.builds[-1]["network"].parsed["initializer_types"]


def test_fp16_onnx_matches_fp32_on_onnxruntime(onnx_models, tmp_path) -> None:
    pytest.importorskip("onnxconverter_common")
    import onnxruntime as ort

    from pyfill.export import fp16_onnx

    half = fp16_onnx(onnx_models["fp16"], tmp_path / "half.onnx")
    x = np.random.default_rng(0).uniform(-1, 1, (2, 3, 64, 48)).astype(np.float32)
    ref = ort.InferenceSession(str(onnx_models["fp16"]), providers=["CPUExecutionProvider"]).run(None, {"image": x})[0]
    sess = ort.InferenceSession(str(half), providers=["CPUExecutionProvider"])
    assert sess.get_inputs()[0].type == "tensor(float)"
    got = sess.run(None, {"image": x})[0]
    assert got.dtype == np.float32 and 0 < np.abs(got - ref).max() < 2e-2


def test_cache_key_separates_gpus_typing_and_precision() -> None:
    from pyfill.export import tensorrt_cache_key

    h100 = {"name": "NVIDIA H100", "compute_capability": (9, 0)}
    mig = {"name": "NVIDIA H100", "compute_capability": (8, 0)}  # same name, other capability
    base = ("abc", h100, "10.13", "fp16", "weak", {"image": {"min": [1]}})
    key = tensorrt_cache_key(*base)
    assert key == tensorrt_cache_key(*base)
    assert key != tensorrt_cache_key("abc", mig, *base[2:])
    assert key != tensorrt_cache_key(*base[:4], "strong", base[5])
    assert key != tensorrt_cache_key(*base[:3], "fp32", *base[4:])


def test_the_engine_and_timing_cache_belong_to_the_current_gpu(fakes, onnx_models, tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine

    first = build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    fakes.cudart.current = 1  # another GPU becomes current in this thread
    second = build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    assert first != second
    timing = sorted(p.name for p in tmp_path.glob("timing-*.cache"))
    assert timing == ["timing-fake-a100-sm80-trt10-13-0.cache", "timing-fake-h100-sm90-trt10-13-0.cache"]
    fakes.cudart.current = 0
    assert build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path) == first  # from the cache
    assert len(fakes.trt.builds) == 2
    # a later build on the same GPU (another profile) starts from that GPU's timing cache
    profile = {"image": {"min": (1, 3, 64, 64), "opt": (1, 3, 64, 64), "max": (2, 3, 128, 128)}}
    build_tensorrt_engine(onnx_models["fp16"], profile=profile, out_dir=tmp_path)
    assert len(fakes.trt.builds) == 3
    assert fakes.trt.builds[-1]["config"].timing_in == b"timings:"  # what the first build wrote
    assert fakes.trt.builds[-1]["config"].profiles[0].shapes["image"][2] == (2, 3, 128, 128)


def test_concurrent_builds_never_share_a_temporary_file(fakes, onnx_models, tmp_path, monkeypatch) -> None:
    import pyfill.export as export

    names: list[Path] = []
    real = export._unique_temp

    def spy(target):
        path = real(target)
        names.append(path)
        return path

    monkeypatch.setattr(export, "_unique_temp", spy)
    errors: list[BaseException] = []

    def work():
        try:
            export.build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert len(names) == len(set(names)) >= 3
    assert not list(tmp_path.glob("*.tmp"))
    engines = list(tmp_path.glob("*.engine"))
    assert len(engines) == 1 and engines[0].read_bytes() == b"fake-engine"


def test_default_profile_reaches_further_for_models_that_cannot_tile() -> None:
    from pyfill.export import default_tensorrt_profile
    from pyfill.manifest import read_onnx_manifest
    from pyfill.store import PRETRAINED_DIR

    colorize = read_onnx_manifest(PRETRAINED_DIR / "colorize.onnx")
    restore = read_onnx_manifest(PRETRAINED_DIR / "restore.onnx")
    assert not colorize.tiling.supported and restore.tiling.supported
    assert default_tensorrt_profile(colorize)["image"]["max"][2:] == (2048, 2048)
    assert default_tensorrt_profile(restore)["image"]["max"][2:] == (1024, 1024)


def test_the_builder_gets_the_workspace_profile_and_timing_cache_and_records_them(fakes, onnx_models, tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine, default_tensorrt_profile
    from pyfill.manifest import Manifest, read_onnx_manifest

    source = read_onnx_manifest(onnx_models["fp16"])
    built = build_tensorrt_engine(onnx_models["fp16"], precision="fp32", out_dir=tmp_path, workspace_gib=0.5)
    build = fakes.trt.builds[-1]
    config, network = build["config"], build["network"]
    assert config.workspace == 512 * 1024 * 1024
    assert network.flags == 0  # TensorRT 10: weakly typed, no creation flag
    assert network.parsed["path"] == str(onnx_models["fp16"])  # fp32 parses the file itself
    assert len(config.profiles) == 1
    expected_profile = default_tensorrt_profile(source)
    assert config.profiles[0].shapes == {name: (p["min"], p["opt"], p["max"]) for name, p in expected_profile.items()}
    assert config.timing_in == b""  # no timing cache yet
    assert built.read_bytes() == b"fake-engine" and built.name == built.stem + ".engine" and len(built.stem) == 32
    timing = tmp_path / "timing-fake-h100-sm90-trt10-13-0.cache"
    assert timing.read_bytes() == b"timings:"
    written = Manifest.load(built.with_suffix(".json"))
    record = written.provenance.pop("tensorrt")
    assert record == {"precision": "fp32", "typing": "weak", "gpu": "Fake H100", "compute_capability": [9, 0],
                      "version": "10.13.0",
                      "profile": {n: {k: list(v) for k, v in p.items()} for n, p in expected_profile.items()}}
    assert written.to_dict() == source.to_dict()  # the rest of the ONNX file's manifest, unchanged

    # an engine without its manifest beside it is rebuilt, not served from the cache
    built.with_suffix(".json").unlink()
    assert build_tensorrt_engine(onnx_models["fp16"], precision="fp32", out_dir=tmp_path, workspace_gib=0.5) == built
    assert len(fakes.trt.builds) == 2 and built.with_suffix(".json").is_file()
    with pytest.raises(ValueError, match=r"^precision must be 'auto', 'fp32' or 'fp16', got 'int8'$"):
        build_tensorrt_engine(onnx_models["fp16"], precision="int8", out_dir=tmp_path)


def test_parse_and_build_failures_are_export_errors_and_leave_no_engine(fakes, onnx_models, tmp_path) -> None:
    from pyfill.export import ExportError, build_tensorrt_engine

    class Refusing:
        def __init__(self, network, logger):
            self.num_errors = 2

        def parse_from_file(self, path):
            return False

        def get_error(self, i):
            return f"error {i}"

    real = fakes.trt.OnnxParser
    fakes.trt.OnnxParser = Refusing
    with pytest.raises(ExportError, match=r"^TensorRT could not parse .*yes\.onnx: error 0; error 1$"):
        build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    fakes.trt.OnnxParser = real
    fakes.trt.Builder.build_serialized_network = lambda self, network, config: None
    with pytest.raises(ExportError, match=r"^TensorRT failed to build an engine for .*yes\.onnx$"):
        build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path)
    assert not list(tmp_path.glob("*.engine")) and not list(tmp_path.glob("*.json"))


def test_building_needs_a_manifest_in_the_onnx_file(fakes, tmp_path) -> None:
    from test_manifest import onnx_with

    from pyfill.export import build_tensorrt_engine

    plain = onnx_with(tmp_path / "plain.onnx", None)  # an Identity graph without a manifest
    with pytest.raises(ValueError, match=r"plain\.onnx: no pyfill manifest in the ONNX metadata; export it with "
                                         r"pyfill\.export$"):
        build_tensorrt_engine(plain, out_dir=tmp_path)


def test_building_without_a_device_is_a_clear_error(monkeypatch, fakes, onnx_models, tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine

    monkeypatch.setattr(backends, "_cudart", lambda: FakeCudart(devices=0))
    with pytest.raises(RuntimeError, match=r"^building a TensorRT engine needs TensorRT, cuda-python and a CUDA GPU: "
                                           r"no CUDA device"):
        build_tensorrt_engine(onnx_models["fp16"], out_dir=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # refused before anything was written


def test_precision_rules_and_typing_modes() -> None:
    from pyfill.export import tensorrt_precision, tensorrt_typing
    from pyfill.models import make_manifest

    yes, no = make_manifest("unet"), make_manifest("unet")
    no.fp16 = False
    assert [tensorrt_precision(yes, p) for p in ("auto", "fp32", "fp16")] == ["fp16", "fp32", "fp16"]
    assert [tensorrt_precision(no, p) for p in ("auto", "fp32")] == ["fp32", "fp32"]
    with pytest.raises(ValueError, match=r"^the manifest of unet says the model does not support fp16; use "
                                         r"precision='fp32'$"):
        tensorrt_precision(no, "fp16")
    with pytest.raises(ValueError, match=r"^precision must be 'auto', 'fp32' or 'fp16', got 'FP16'$"):
        tensorrt_precision(yes, "FP16")
    assert tensorrt_typing(fake_trt("10.13.0", weak=True)) == "weak"
    assert tensorrt_typing(fake_trt("11.4.0", weak=False)) == "strong"


def test_cache_key_is_a_32_digit_hash_of_every_part_and_ignores_profile_order() -> None:
    from pyfill.export import tensorrt_cache_key

    gpu = {"name": "NVIDIA H100", "compute_capability": (9, 0), "index": 3}
    profile = {"image": {"min": [1, 3, 64, 64], "max": [8, 3, 512, 512]}, "shift": {"min": [1, 4], "max": [8, 4]}}
    base = ("abc", gpu, "10.13", "fp16", "weak", profile)
    key = tensorrt_cache_key(*base)
    assert len(key) == 32 and int(key, 16) >= 0
    reordered = {"shift": {"max": [8, 4], "min": [1, 4]}, "image": {"max": [8, 3, 512, 512], "min": [1, 3, 64, 64]}}
    assert tensorrt_cache_key(*base[:5], reordered) == key
    assert tensorrt_cache_key("abc", {**gpu, "index": 0}, *base[2:]) == key  # the device index is not part of it
    others = [("abd", *base[1:]), ("abc", {**gpu, "name": "NVIDIA H200"}, *base[2:]), (*base[:2], "10.14", *base[3:]),
              (*base[:3], "fp32", *base[4:]), (*base[:4], "strong", base[5]),
              (*base[:5], {**profile, "image": {"min": [1, 3, 64, 64], "max": [8, 3, 1024, 1024]}})]
    keys = {tensorrt_cache_key(*o) for o in others}
    assert len(keys) == len(others) and key not in keys


def test_file_sha256_reads_files_larger_than_its_chunk(tmp_path) -> None:
    import hashlib

    from pyfill.export import file_sha256

    data = np.random.default_rng(0).integers(0, 256, (1 << 20) * 2 + 12345, dtype=np.uint8).tobytes()
    path = tmp_path / "blob"
    path.write_bytes(data)
    assert file_sha256(path) == hashlib.sha256(data).hexdigest()
    path.write_bytes(b"")
    assert file_sha256(path) == hashlib.sha256(b"").hexdigest()


def test_timing_cache_names_are_slugs_of_the_gpu_and_version(tmp_path) -> None:
    from pyfill.export import timing_cache_path

    gpu = {"name": "--NVIDIA  H100 80GB (SXM5)--", "compute_capability": (9, 0)}
    assert timing_cache_path(tmp_path, gpu, "10.13.0.post1").name == "timing-nvidia-h100-80gb-sxm5-sm90-trt10-13-0-post1.cache"
    assert timing_cache_path(tmp_path, {"name": "A", "compute_capability": (12, 1)}, "11").name == "timing-a-sm121-trt11.cache"


def test_the_builder_defaults_log_warnings_and_keep_engines_in_the_cache(monkeypatch, fakes, onnx_models,
                                                                          tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine

    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache" / "nested"))
    built = build_tensorrt_engine(onnx_models["fp16"])
    assert built.parent == tmp_path / "cache" / "nested" / "tensorrt"
    build = fakes.trt.builds[-1]
    config = build["config"]
    assert config.workspace == 4 << 30 and config.pool == fakes.trt.MemoryPoolType.WORKSPACE
    assert config.ignore_mismatch is True  # a timing cache from another build of this GPU still seeds this one
    assert build["logger"].level == fakes.trt.Logger.WARNING and build["network"].parser_logger is build["logger"]
    deep = tmp_path / "a" / "b" / "c"
    assert build_tensorrt_engine(onnx_models["fp16"], out_dir=deep).parent == deep


def test_the_cache_key_depends_on_model_version_precision_and_typing(monkeypatch, fakes, onnx_models,
                                                                      tmp_path) -> None:
    from pyfill.export import build_tensorrt_engine

    paths = {build_tensorrt_engine(onnx_models["fp16"], precision="fp32", out_dir=tmp_path),
             build_tensorrt_engine(onnx_models["no-fp16"], precision="fp32", out_dir=tmp_path),  # another model
             build_tensorrt_engine(onnx_models["fp16"], precision="fp16", out_dir=tmp_path)}  # another precision
    monkeypatch.setattr(backends, "load_tensorrt", lambda: fake_trt("10.14.0"))  # another TensorRT
    paths.add(build_tensorrt_engine(onnx_models["fp16"], precision="fp32", out_dir=tmp_path))
    monkeypatch.setattr(backends, "load_tensorrt", lambda: fake_trt("10.13.0", weak=False))  # strongly typed
    paths.add(build_tensorrt_engine(onnx_models["fp16"], precision="fp32", out_dir=tmp_path))
    assert len(paths) == 5 and len(list(tmp_path.glob("*.engine"))) == 5


def test_timing_cache_names_keep_letters_at_the_ends_of_gpu_names(tmp_path) -> None:
    from pyfill.export import timing_cache_path

    gpu = {"name": "NVIDIA GeForce RTX", "compute_capability": (8, 9)}
    assert timing_cache_path(tmp_path, gpu, "X10").name == "timing-nvidia-geforce-rtx-sm89-trtx10.cache"


# ---- on a GPU with TensorRT --------------------------------------------------------------------

_USABLE, _WHY = tensorrt_usable()
requires_tensorrt = pytest.mark.skipif(not _USABLE, reason=_WHY)


@requires_tensorrt
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_tensorrt_engine_matches_onnxruntime(unet_files, tmp_path, monkeypatch, precision) -> None:
    from pyfill.engine import Engine

    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path))
    engine = Engine(unet_files[1], backend="tensorrt", precision=precision)
    ref = Engine(unet_files[1], backend="onnxruntime")
    tol = 2e-3 if precision == "fp32" else 2e-2
    rng = np.random.default_rng(0)
    for h, w in [(64, 64), (200, 136), (37, 45)]:  # 37 x 45 lies below the profile's 64 minimum
        batch = [rng.uniform(0, 1, (h, w, 3)).astype(np.float32) for _ in range(3)]
        got, want = engine(batch), ref(batch)
        for g, r in zip(got, want):
            assert g.shape == r.shape and np.abs(g - r).max() < tol


# ---- torch CUDA graphs: a bounded cache --------------------------------------------------------


def test_cuda_graph_cache_keeps_the_most_recently_used(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from pyfill.engine.backends import TorchBackend

    backend = TorchBackend(torch.nn.Identity(), ["image"], device="cpu")
    captured, released = [], []

    class Graph:
        def __init__(self, key):
            self.key = key

        def reset(self):
            released.append(self.key)

    def capture(args):
        key = tuple(args[0].shape)
        captured.append(key)
        return Graph(key), [], []

    monkeypatch.setattr(backend, "_capture", capture)
    shapes = [(1, 3, s, s) for s in (8, 16, 24, 32, 8, 40, 16)]
    for shape in shapes:
        backend._graph(((shape, torch.float32),), [torch.zeros(shape)])
    assert captured == [(1, 3, s, s) for s in (8, 16, 24, 32, 40, 16)]  # 8 reused, 16 evicted then recaptured
    assert released == [(1, 3, 16, 16), (1, 3, 24, 24)]
    assert [k[0][0][2] for k in backend.graph_shapes] == [32, 8, 40, 16]


# ---- the Engine on the stand-in ----------------------------------------------------------------


def _stand_in_manifest():
    """The manifest of the stand-in engine's function: image in (-1, 1) and a 4-vector -> image x2."""
    from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling

    return Manifest(task="image-to-image", family="stand-in", config={},
                    inputs=[TensorSpec("image", "image", 3, "rgb", (-1.0, 1.0)), TensorSpec("shift", "vector", length=4)],
                    outputs=[TensorSpec("out", "image", 3, "rgb", (-1.0, 1.0))],
                    size=SizeRequirements(multiple_of=16, min_size=16, scale=SCALE), tiling=Tiling(supported=False),
                    fp16=False)


def _stand_in_engine_file(folder: Path) -> Path:
    path = folder / "model.engine"
    path.write_bytes(b"fake-engine")
    _stand_in_manifest().save(path.with_suffix(".json"))
    return path


def test_the_engine_runs_a_tensorrt_engine_file_on_the_tensorrt_backend(fakes, tmp_path) -> None:
    """An ``.engine`` file with its manifest beside it: the Engine hands that file to the
    TensorRT backend, and a call returns the stand-in's function of its inputs."""
    from pyfill.engine import Engine
    path = _stand_in_engine_file(tmp_path)
    engine = Engine(path, backend="tensorrt", precision="fp32")
    assert engine.info["backend"] == "tensorrt"
    x = np.random.default_rng(0).uniform(0, 1, (32, 48, 3)).astype(np.float32)
    shift = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    got = engine(x, shift=shift)
    # in the model's range: 2 * (2x - 1) + mean(shift), back to [0, 1], upsampled by 2
    want = np.clip((2 * (2 * x - 1) + shift.mean() + 1) / 2, 0, 1).repeat(SCALE, 0).repeat(SCALE, 1)
    np.testing.assert_allclose(got, want, atol=1e-5)


def _stand_in_onnx(path: Path, with_manifest: bool) -> Path:
    """The stand-in engine's function as an ONNX graph (ONNX Runtime computes it too), with the
    stand-in manifest in its metadata or none (a foreign model)."""
    pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    f = TensorProto.FLOAT
    return save_graph(
        path,
        [helper.make_node("Constant", [], ["two"], value=helper.make_tensor("two", f, [], [2.0])),
         helper.make_node("Mul", ["image", "two"], ["doubled"]),
         helper.make_node("ReduceMean", ["shift"], ["m"], axes=[1], keepdims=1),
         helper.make_node("Constant", [], ["axes"], value=helper.make_tensor("axes", TensorProto.INT64, [2], [2, 3])),
         helper.make_node("Unsqueeze", ["m", "axes"], ["m4"]),
         helper.make_node("Add", ["doubled", "m4"], ["shifted"]),
         helper.make_node("Constant", [], ["scales"], value=helper.make_tensor("scales", f, [4], [1, 1, SCALE, SCALE])),
         helper.make_node("Resize", ["shifted", "", "scales"], ["out"], mode="nearest")],
        [("image", ["n", 3, "h", "w"]), ("shift", ["n", 4])], [("out", ["n", 3, "H", "W"])],
        manifest=_stand_in_manifest() if with_manifest else None)


def test_the_engine_builds_an_onnx_file_for_the_tensorrt_backend(fakes, tmp_path, monkeypatch) -> None:
    """An ONNX file on the tensorrt backend is built into an engine first (the stand-in builder
    parses that very file); the engine's answers equal ONNX Runtime's on the same file."""
    from pyfill.engine import Engine

    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache"))
    path = _stand_in_onnx(tmp_path / "stand-in.onnx", with_manifest=True)

    engine = Engine(path, backend="tensorrt", precision="fp32")
    assert engine.info["backend"] == "tensorrt"
    assert [b["network"].parsed["path"] for b in fakes.trt.builds] == [str(path)]
    x = np.random.default_rng(1).uniform(0, 1, (32, 48, 3)).astype(np.float32)
    shift = np.array([0.4, -0.1, 0.2, 0.3], np.float32)
    want = Engine(path, backend="onnxruntime")(x, shift=shift)
    np.testing.assert_allclose(engine(x, shift=shift), want, atol=1e-5)


def test_a_tensorrt_engine_file_runs_only_on_the_tensorrt_backend(fakes, tmp_path) -> None:
    from pyfill.engine import Engine
    path = _stand_in_engine_file(tmp_path)
    assert Engine(path).info["backend"] == "tensorrt"  # auto
    with pytest.raises(ValueError, match="^a TensorRT engine runs only on the tensorrt backend, not onnxruntime$"):
        Engine(path, backend="onnxruntime")


@pytest.mark.parametrize("fp16", [True, False])
def test_auto_precision_on_tensorrt_follows_the_manifest(fakes, tmp_path, fp16) -> None:
    import dataclasses

    from pyfill.engine import Engine

    path = tmp_path / "model.engine"
    path.write_bytes(b"fake-engine")
    dataclasses.replace(_stand_in_manifest(), fp16=fp16).save(path.with_suffix(".json"))
    info = Engine(path).info
    assert (info["backend"], info["device"], info["precision"]) == ("tensorrt", "cuda", "fp16" if fp16 else "fp32")


def test_auto_does_not_build_foreign_models_with_tensorrt(fakes, tmp_path, monkeypatch) -> None:
    """Where TensorRT is usable, auto builds pyfill's ONNX files with it, but runs another
    project's ONNX file (no manifest) on a CPU runtime."""
    from pyfill.engine import Engine

    monkeypatch.setenv("PYFILL_CACHE", str(tmp_path / "cache"))
    ours = Engine(_stand_in_onnx(tmp_path / "ours.onnx", with_manifest=True), precision="fp32")
    assert ours.info["backend"] == "tensorrt"
    theirs = Engine(_stand_in_onnx(tmp_path / "theirs.onnx", with_manifest=False), precision="fp32",
                    manifest=_stand_in_manifest())
    assert theirs.foreign and theirs.info["backend"] in ("openvino", "onnxruntime")
    assert len(fakes.trt.builds) == 1


def test_torch_images_reach_the_tensorrt_backend_as_tensors(fakes, tmp_path, monkeypatch) -> None:
    """A torch image is handed to the TensorRT backend as a tensor (on a GPU it stays on the
    device; no copy through NumPy), and the answer equals the NumPy input's."""
    torch = pytest.importorskip("torch")
    from pyfill.engine import Engine

    engine = Engine(_stand_in_engine_file(tmp_path), backend="tensorrt", precision="fp32")
    seen = []
    run = engine.backend.run
    monkeypatch.setattr(engine.backend, "run", lambda feeds: seen.append(type(feeds["image"])) or run(feeds))
    x = np.random.default_rng(2).uniform(0, 1, (32, 48, 3)).astype(np.float32)
    shift = np.array([0.1, -0.2, 0.3, 0.0], np.float32)
    got = engine(torch.from_numpy(x).permute(2, 0, 1).contiguous(), shift=shift)
    assert seen == [torch.Tensor] and isinstance(got, torch.Tensor)
    np.testing.assert_allclose(got.permute(1, 2, 0).numpy(), engine(x, shift=shift), atol=1e-6)


# ---- found by mutation testing (tools/mutation.py backends) ---------------------------------------
def test_a_blob_that_is_not_an_engine_is_refused(fakes, tmp_path) -> None:
    path = tmp_path / "other.engine"
    path.write_bytes(b"an engine for another GPU")
    with pytest.raises(ValueError, match=r"other\.engine: not a TensorRT engine for this GPU/TensorRT version$"):
        TensorRTBackend(path, precision="fp32")


def test_inputs_of_the_wrong_rank_and_failed_executions_are_reported(backend) -> None:
    f = feeds(1, 32, 32)
    with pytest.raises(ValueError, match=r"^input 'image' has shape \(3, 32, 32\); the engine expects 4 dimensions$"):
        backend.run({"image": f["image"][0], "shift": f["shift"]})
    backend.context.execute_async_v3 = lambda stream: False
    with pytest.raises(RuntimeError, match=r"^TensorRT execution failed \(see the TensorRT log above\)$"):
        backend.run(f)


def test_the_profile_maximum_itself_is_taken_and_copies_go_both_ways(fakes, backend) -> None:
    f = feeds(1, 64, 64, seed=3)
    np.testing.assert_allclose(backend.run(f)[0], expected(f["image"], f["shift"]), atol=1e-6)
    assert [kind for kind, _ in fakes.cudart.copies] == ["h2d", "h2d", "d2h"]  # two inputs in, one output out
    with pytest.raises(ProfileError, match="above the TensorRT engine's profile maximum 64 x 64"):
        backend.run(feeds(1, 64, 65))


def test_cuda_errors_name_the_call_that_failed(fakes, monkeypatch) -> None:
    monkeypatch.setattr(fakes.cudart, "cudaGetDevice", lambda: (2, 0))
    with pytest.raises(RuntimeError, match=r"^cudaGetDevice failed with CUDA error 2 "):
        backends.current_gpu()
    monkeypatch.setattr(fakes.cudart, "cudaGetDevice", lambda: (0, 0))
    monkeypatch.setattr(fakes.cudart, "cudaGetDeviceProperties", lambda index: (100, None))
    with pytest.raises(RuntimeError, match=r"^cudaGetDeviceProperties failed with CUDA error 100 "):
        backends.current_gpu()
    buffer = backends._HostBuffer(fakes.cudart)
    monkeypatch.setattr(fakes.cudart, "cudaMallocHost", lambda n: (2, 0))
    with pytest.raises(RuntimeError, match=r"^cudaMallocHost failed with CUDA error 2 "):
        buffer.view((4, 4), np.dtype(np.float32))


def test_edge_padding_and_batch_filling_equal_numpys() -> None:
    x = np.arange(2 * 3 * 4 * 5, dtype=np.float32).reshape(2, 3, 4, 5)
    want = np.pad(x, ((0, 0), (0, 0), (0, 3), (0, 2)), mode="edge")
    np.testing.assert_array_equal(backends._pad_edge(x, 3, 2), want)
    filled = backends._pad_batch(x, 5)
    np.testing.assert_array_equal(filled, np.concatenate([x, x[1:2], x[1:2], x[1:2]]))
    np.testing.assert_array_equal(backends._pad_batch(x[:0], 3), np.zeros((3, 3, 4, 5), np.float32))
    torch = pytest.importorskip("torch")
    t = torch.from_numpy(x)
    got = backends._pad_edge(t, 3, 2)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), want)
    got = backends._pad_batch(t, 5)
    assert isinstance(got, torch.Tensor)
    np.testing.assert_array_equal(got.numpy(), filled)
    empty = backends._pad_batch(t[:0], 3)
    assert isinstance(empty, torch.Tensor) and empty.dtype == t.dtype
    np.testing.assert_array_equal(empty.numpy(), np.zeros((3, 3, 4, 5), np.float32))


def test_load_tensorrt_and_cuda_python_name_the_package_and_the_extra(monkeypatch) -> None:
    """Where TensorRT or cuda-python are missing, the error names the package and the extra,
    and the probe says which is missing; a TensorRT that fails to import otherwise is reported."""
    from pyfill._core import MissingExtraError

    for name in ("tensorrt", "cuda", "cuda.bindings", "cuda.cudart"):
        monkeypatch.setitem(sys.modules, name, None)
    with pytest.raises(MissingExtraError, match=r"^this feature needs the Python package 'tensorrt', which is not "
                                                r"installed; install it with: pip install 'pyfill\[tensorrt\]'$"):
        backends.load_tensorrt()
    with pytest.raises(MissingExtraError, match=r"'cuda\.cudart', which is not installed; .*pyfill\[tensorrt\]"):
        backends._cudart()
    assert tensorrt_usable() == (False, "TensorRT is not installed (pip install 'pyfill[tensorrt]')")
    monkeypatch.setattr(backends, "load_tensorrt", lambda: SimpleNamespace())
    assert tensorrt_usable() == (False, "cuda-python is not installed (pip install 'pyfill[tensorrt]')")

    def broken():
        raise RuntimeError("libnvinfer.so.10: cannot open shared object file")
    monkeypatch.setattr(backends, "load_tensorrt", broken)
    assert tensorrt_usable() == (False, "TensorRT does not import (libnvinfer.so.10: cannot open shared object file)")


def test_a_failed_copy_back_names_the_call(fakes, backend, monkeypatch) -> None:
    copy = fakes.cudart.cudaMemcpyAsync

    def failing_back(dst, src, n, kind, stream):
        return (700,) if kind == "d2h" else copy(dst, src, n, kind, stream)
    monkeypatch.setattr(fakes.cudart, "cudaMemcpyAsync", failing_back)
    with pytest.raises(RuntimeError, match=r"^cudaMemcpyAsync failed with CUDA error 700 "):
        backend.run(feeds(1, 32, 32))
