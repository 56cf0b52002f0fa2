"""Stroke-grid features: pyfill's C++ kernel against OpenCV connectedComponentsWithStats plus
vectorised NumPy per-cell reductions, on 32 stroke images of 512 x 512 with about 10 strokes each.

The speed-up is printed and stored in the pyfill benchmark's extra_info. Run:
    pytest benchmarks/test_bench_stroke_grid.py --benchmark-only
"""

from __future__ import annotations

import numpy as np
import pytest
from helpers import requires_cuda

from pyfill._core import _C
from pyfill.ops import stroke_grid

cv2 = pytest.importorskip("cv2")

BATCH, SIZE, STROKES, GRID = 32, 512, 10, (9, 9)
_medians: dict[str, float] = {}


def stroke_images(batch: int, size: int, strokes: int, seed: int = 0) -> np.ndarray:
    """(batch, size, size, 3) uint8: polyline brush strokes of random colour and width on black."""
    rng = np.random.default_rng(seed)
    images = np.zeros((batch, size, size, 3), np.uint8)
    for img in images:
        for _ in range(strokes):
            start = rng.integers(0, size, 2)
            points = start + np.cumsum(rng.integers(-size // 12, size // 12 + 1, (8, 2)), axis=0)
            colour = tuple(int(c) for c in rng.integers(1, 256, 3))
            cv2.polylines(img, [np.clip(points, 0, size - 1).astype(np.int32)], False, colour, int(rng.integers(2, 12)))
    return images


def opencv_numpy_stroke_grid(images: np.ndarray, grid: tuple[int, int] = GRID) -> np.ndarray:
    """What a user would write without pyfill: OpenCV labelling, NumPy reductions per cell."""
    batch, h, w, _ = images.shape
    s1, s2 = grid
    rows, cols = np.arange(s1 + 1) * h // s1, np.arange(s2 + 1) * w // s2
    row_cell, col_cell = np.repeat(np.arange(s1), np.diff(rows)), np.repeat(np.arange(s2), np.diff(cols))
    pixel_cell = (row_cell[:, None] * s2 + col_cell[None, :]).ravel()
    cells = s1 * s2
    out = np.zeros((batch, cells, 8), np.float64)
    for b in range(batch):
        img = images[b]
        occ = (img[..., 0] | img[..., 1] | img[..., 2]) != 0  # 20x faster than img.any(axis=2)
        _, _, stats, _ = cv2.connectedComponentsWithStats(occ.view(np.uint8), connectivity=8)
        flat_occ = occ.ravel()
        idx = pixel_cell[flat_occ]
        count = np.bincount(idx, minlength=cells)
        colours = img.reshape(-1, 3)[flat_occ].astype(np.float64)
        sums = np.stack([np.bincount(idx, weights=colours[:, k], minlength=cells) for k in range(3)], axis=1)
        x0, y0, bw, bh = (stats[1:, k] for k in range(4))
        corner = row_cell[y0] * s2 + col_cell[x0]
        box = np.stack([np.full(cells, w), np.full(cells, h), np.zeros(cells, int), np.zeros(cells, int)], axis=1)
        np.minimum.at(box[:, 0], corner, x0)
        np.minimum.at(box[:, 1], corner, y0)
        np.maximum.at(box[:, 2], corner, x0 + bw)
        np.maximum.at(box[:, 3], corner, y0 + bh)
        has_box = box[:, 2] > 0
        cx0, cy0 = np.tile(cols[:-1], s1), np.repeat(rows[:-1], s2)
        cw, ch = np.tile(np.diff(cols), s1), np.repeat(np.diff(rows), s2)
        rect = np.stack([(box[:, 0] - cx0) / cw, (box[:, 1] - cy0) / ch, (box[:, 2] - box[:, 0]) / w, (box[:, 3] - box[:, 1]) / h], axis=1)
        out[b, :, 0] = count > 0
        out[b, :, 1:5] = np.where(has_box[:, None], rect, 0.0)
        out[b, :, 5:8] = sums / np.maximum(count, 1)[:, None] / 255.0
    return out.reshape(batch, s1, s2, 8).astype(np.float32)


@pytest.fixture(scope="module")
def images() -> np.ndarray:
    return stroke_images(BATCH, SIZE, STROKES)


def _report(benchmark, capsys, name: str) -> None:
    _medians[name] = benchmark.stats.stats.median
    if "opencv_numpy" in _medians and "cpp" in _medians:
        ratio = _medians["opencv_numpy"] / _medians["cpp"]
        benchmark.extra_info["speedup_cpp_vs_opencv_numpy"] = ratio
        with capsys.disabled():
            print(
                f"\nstroke_grid, {BATCH} x {SIZE}x{SIZE}, {_C.get_num_threads()} threads: "
                f"OpenCV+NumPy {_medians['opencv_numpy'] * 1e3:.1f} ms/batch, "
                f"pyfill C++ {_medians['cpp'] * 1e3:.1f} ms/batch, speed-up {ratio:.1f}x"
            )


@pytest.mark.benchmark(group="stroke_grid 32x512x512")
def test_opencv_numpy(benchmark, images, capsys) -> None:
    expected = stroke_grid(images)
    out = benchmark(opencv_numpy_stroke_grid, images)
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=1e-7)  # the baseline computes the same thing
    _report(benchmark, capsys, "opencv_numpy")


@pytest.mark.benchmark(group="stroke_grid 32x512x512")
def test_pyfill_cpp(benchmark, images, capsys) -> None:
    benchmark(stroke_grid, images)
    _report(benchmark, capsys, "cpp")


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("size", [512, 1024])
@pytest.mark.benchmark(group="stroke_grid cuda")
def test_pyfill_cuda(benchmark, size: int, capsys) -> None:
    torch = pytest.importorskip("torch")
    batch = stroke_images(BATCH, size, STROKES, seed=1)
    on_gpu = torch.from_numpy(batch).cuda()

    def run():
        out = stroke_grid(on_gpu)
        torch.cuda.synchronize()
        return out

    out = benchmark(run)
    np.testing.assert_array_equal(out.cpu().numpy(), stroke_grid(batch))
    benchmark.extra_info["images_per_second"] = BATCH / benchmark.stats.stats.median
    with capsys.disabled():
        print(f"\nstroke_grid CUDA {size}x{size}: {BATCH / benchmark.stats.stats.median:.0f} images/s")
