"""The GPU path of the video pipeline (pyfill.video.cuda): its steps run here with
``device="cpu"`` (no streams, no pinned memory) and must give the Engine's own frames; on a
machine with CUDA the same path runs on the GPU (and is compared with the host path)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import pyfill  # noqa: E402
from pyfill.video.cuda import CudaFrames, engine_on_cuda, gpu_frames  # noqa: E402

HAS_CUDA = torch.cuda.is_available()


def _frames(n: int, h: int = 48, w: int = 64, seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (h, w, 3), dtype=np.uint8) for _ in range(n)]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small restoration model as a pyfill checkpoint (the torch backend's form)."""
    from pyfill.export import save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(0)
    cfg = {"base": 8, "depth": 2}
    module = build_model("restore", cfg)
    return save_checkpoint(module, make_manifest("restore", cfg), tmp_path_factory.mktemp("ckpt") / "restore")


@pytest.mark.parametrize("backend", ["onnxruntime", "torch"])
def test_the_gpu_path_gives_the_engines_frames(checkpoint: Path, backend: str) -> None:
    engine = pyfill.Engine(checkpoint if backend == "torch" else "restore", backend=backend, device="cpu")
    frames = _frames(5)
    path = CudaFrames(engine, depth=2, device="cpu")
    # two batches in flight, collected in order; a last, shorter batch reuses the buffers
    first, second = path.submit(frames[:2]), path.submit(frames[2:4])
    got = path.collect(first) + path.collect(second) + path(frames[4:])
    want = [np.asarray(x) for x in engine(frames)]
    for g, w in zip(got, want, strict=True):
        assert g.dtype == np.uint8 and g.shape == w.shape
        assert int(np.abs(g.astype(int) - w.astype(int)).max()) <= 1
    assert not engine_on_cuda(engine) and gpu_frames(engine) is None  # the host path off CUDA


def test_the_gpu_path_checks_its_input(checkpoint: Path) -> None:
    engine = pyfill.Engine(checkpoint, backend="torch", device="cpu")
    path = CudaFrames(engine, depth=1, device="cpu")
    with pytest.raises(ValueError, match=r"RGB uint8 \(48, 64, 3\) frames"):
        path([*_frames(1), np.zeros((48, 64), np.uint8)])
    with pytest.raises(ValueError, match="empty batch"):
        path.submit([])
    path.submit(_frames(1))
    with pytest.raises(RuntimeError, match="more than 1 batches submitted"):
        path.submit(_frames(1))
    with pytest.raises(ValueError, match="depth must be >= 1"):
        CudaFrames(engine, depth=0, device="cpu")
    if not HAS_CUDA:
        with pytest.raises(RuntimeError, match="torch sees no CUDA device"):
            CudaFrames(engine)


def test_the_pipeline_keeps_order_with_batches_in_flight(checkpoint: Path) -> None:
    from pyfill.video.pipeline import stream

    engine = pyfill.Engine(checkpoint, backend="torch", device="cpu")
    frames = _frames(11, seed=1)
    got = list(stream(CudaFrames(engine, device="cpu"), frames, batch=3))
    want = [np.asarray(x) for x in engine(frames)]
    assert len(got) == 11
    for g, w in zip(got, want, strict=True):
        assert int(np.abs(g.astype(int) - w.astype(int)).max()) <= 1


@pytest.mark.skipif(not HAS_CUDA, reason="needs a CUDA device")
def test_the_gpu_path_on_cuda_matches_the_host_path(checkpoint: Path) -> None:
    engine = pyfill.Engine(checkpoint, backend="torch", device="cuda", precision="fp32")
    assert engine_on_cuda(engine)
    frames = _frames(9, 360, 640)
    path = CudaFrames(engine)
    handles = [path.submit(frames[i:i + 3]) for i in (0, 3)]
    got = path.collect(handles[0]) + path.collect(handles[1]) + path(frames[6:])
    want = [np.asarray(x) for x in engine(frames)]
    for g, w in zip(got, want, strict=True):
        assert int(np.abs(g.astype(int) - w.astype(int)).max()) <= 1
