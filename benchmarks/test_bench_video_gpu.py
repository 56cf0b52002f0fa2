"""Video on a GPU: 720p restoration frames per second through the GPU path of the video
pipeline (pinned buffers, copy and compute streams, two batches in flight: pyfill.video.cuda)
against the loop a user would write around the same Engine (one host frame per call). The model
is the shipped restoration model's architecture (its manifest config) as a torch checkpoint on
CUDA; speed does not depend on the weights. Skips without CUDA. Run:
    pytest benchmarks/test_bench_video_gpu.py --benchmark-only
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA")

import pyfill  # noqa: E402

FRAMES, H, W = 48, 720, 1280


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> pyfill.Engine:
    from pyfill.export import save_checkpoint
    from pyfill.models import build_model, make_manifest

    shipped = pyfill.Engine("restore", backend="onnxruntime").manifest
    cfg = dict(shipped.config)
    torch.manual_seed(0)
    path = save_checkpoint(build_model("restore", cfg), make_manifest("restore", cfg),
                           Path(tmp_path_factory.mktemp("ckpt")) / "restore")
    return pyfill.Engine(path, backend="torch", device="cuda", static_shapes=True)


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    base = rng.integers(0, 256, (H, W, 3), dtype=np.uint8)
    return [np.roll(base, 7 * i, axis=1) for i in range(FRAMES)]


@pytest.mark.parametrize("method", ["engine per frame", "pyfill gpu path b4"])
def test_restore_720p_fps(benchmark, ratios, engine, frames, method) -> None:
    from pyfill.video.cuda import CudaFrames
    from pyfill.video.pipeline import stream

    if method == "engine per frame":
        def run() -> list[np.ndarray]:
            return [np.asarray(engine(f)) for f in frames]
    else:
        path = CudaFrames(engine)

        def run() -> list[np.ndarray]:
            return list(stream(path, frames, batch=4))
    out = benchmark.pedantic(run, rounds=3, warmup_rounds=1)
    assert len(out) == FRAMES and out[0].shape == (H, W, 3)
    benchmark.extra_info["fps"] = FRAMES / benchmark.stats.stats.mean
    ratios.record(benchmark, f"restore 720p {FRAMES} frames (shipped architecture, torch CUDA, precision auto)", method,
                  "engine per frame")
