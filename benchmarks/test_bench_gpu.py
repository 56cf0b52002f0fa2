"""GPU suites that need nothing beyond torch with CUDA (and TensorRT for its case): pyfill's CUDA
degradation kernels against what a user would run instead on the CPU (OpenCV per image, and
pyfill's own compiled CPU pipeline), and the U-Net through TensorRT and torch CUDA graphs against
torch eager fp32. Everything skips without a CUDA device. Run:
    pytest benchmarks/test_bench_gpu.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_cuda

from pyfill import ops
from pyfill.degrade import Pipeline

torch = pytest.importorskip("torch")
cv2 = pytest.importorskip("cv2")

pytestmark = [requires_cuda, pytest.mark.skipif(not torch.cuda.is_available(), reason="torch has no CUDA")]

BATCH, SIZE = 16, 512


@pytest.fixture(scope="module")
def photos() -> np.ndarray:
    """(16, 512, 512, 3) uint8: smooth gradients with texture, like photos."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:SIZE, 0:SIZE].astype(np.float32)
    base = np.stack([xx / SIZE * 200 + 20, yy / SIZE * 180 + 40, (xx + yy) / (2 * SIZE) * 150 + 60], -1)
    noise = rng.normal(0, 25, (BATCH, SIZE, SIZE, 3)).astype(np.float32)
    return np.clip(base[None] + noise, 0, 255).astype(np.uint8)


def _synced(fn):
    def run():
        out = fn()
        torch.cuda.synchronize()
        return out
    return run


@pytest.mark.parametrize("method", ["opencv cpu", "pyfill cuda"])
def test_gaussian_blur(benchmark, ratios, photos, method) -> None:
    if method == "opencv cpu":
        fn = lambda: [cv2.GaussianBlur(img, (21, 21), 3.0) for img in photos]  # noqa: E731
    else:
        gpu = torch.from_numpy(photos).cuda()
        fn = _synced(lambda: ops.gaussian_blur(gpu, 21, 3.0))
    benchmark.pedantic(fn, rounds=10, warmup_rounds=2)
    ratios.record(benchmark, f"gaussian blur 21x21 b{BATCH} {SIZE}", method, "opencv cpu")


@pytest.mark.parametrize("method", ["opencv cpu encode+decode", "pyfill cuda"])
def test_jpeg(benchmark, ratios, photos, method) -> None:
    if method.startswith("opencv"):
        def fn():
            return [cv2.imdecode(cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, 60])[1], cv2.IMREAD_COLOR)
                    for img in photos]
    else:
        gpu = torch.from_numpy(photos).cuda()
        fn = _synced(lambda: ops.jpeg(gpu, 60))
    benchmark.pedantic(fn, rounds=10, warmup_rounds=2)
    ratios.record(benchmark, f"jpeg q60 b{BATCH} {SIZE}", method, "opencv cpu encode+decode")


@pytest.mark.parametrize("method", ["pyfill cpu (all cores)", "pyfill cuda"])
def test_realesrgan_pipeline(benchmark, ratios, photos, method) -> None:
    pipeline = Pipeline("realesrgan", seed=0)
    records = pipeline.sample(BATCH, (SIZE, SIZE))
    if method.startswith("pyfill cpu"):
        fn = lambda: pipeline.apply(photos, records)  # noqa: E731
    else:
        gpu = torch.from_numpy(photos).cuda()
        fn = _synced(lambda: pipeline.apply(gpu, records))
    benchmark.pedantic(fn, rounds=5, warmup_rounds=1)
    ratios.record(benchmark, f"realesrgan pipeline b{BATCH} {SIZE}", method, "pyfill cpu (all cores)")


@pytest.fixture(scope="module")
def unet(tmp_path_factory):
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("gpu-unet")
    ckpt = save_checkpoint(build_model("unet"), make_manifest("unet"), folder / "unet")
    return ckpt, export_onnx(ckpt, folder / "unet.onnx")


@pytest.mark.parametrize("method", ["torch eager fp32", "pyfill torch fp16 + CUDA graphs", "pyfill tensorrt fp16"])
def test_unet_b8_512(benchmark, ratios, unet, tmp_path, monkeypatch, method) -> None:
    from pyfill.engine import Engine
    from pyfill.engine.backends import tensorrt_usable
    from pyfill.export import load_checkpoint

    ckpt, onnx = unet
    x = np.random.default_rng(1).uniform(0, 1, (8, 3, SIZE, SIZE)).astype(np.float32)
    xt = torch.from_numpy(x).cuda()
    if method == "torch eager fp32":
        module = load_checkpoint(ckpt)[0].cuda()

        def fn():
            with torch.inference_mode():
                return module(xt * 2 - 1)
    elif method.startswith("pyfill torch"):
        engine = Engine(ckpt, backend="torch", device="cuda", precision="fp16", cuda_graphs=True)
        frames = list(xt)
        fn = lambda: engine(frames)  # noqa: E731
    else:
        ok, why = tensorrt_usable()
        if not ok:
            pytest.skip(why)
        monkeypatch.setenv("PYFILL_CACHE", str(tmp_path))
        engine = Engine(onnx, backend="tensorrt", precision="fp16")
        frames = list(xt)
        fn = lambda: engine(frames)  # noqa: E731
    benchmark.pedantic(_synced(fn), rounds=10, warmup_rounds=3)
    ratios.record(benchmark, f"cuda unet b8 {SIZE}x{SIZE}", method, "torch eager fp32")
