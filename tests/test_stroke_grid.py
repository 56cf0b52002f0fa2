"""Stroke-grid features (SPEC S2): the C++ and CUDA kernels against the NumPy/SciPy reference."""

from __future__ import annotations

import subprocess
import sys
import tempfile

import numpy as np
import pytest
from helpers import requires_cuda

from pyfill._core import _C
from pyfill.ops import stroke_grid, stroke_grid_from_image, stroke_grid_latent
from pyfill.ops.reference import stroke_grid as ref


def random_strokes(rng: np.random.Generator, h: int, w: int, n: int = 6) -> np.ndarray:
    """(h, w, 3) uint8: n random-walk strokes of random colour and width, plus stray pixels."""
    img = np.zeros((h, w, 3), np.uint8)
    for _ in range(n):
        y, x = rng.integers(0, h), rng.integers(0, w)
        colour = rng.integers(1, 256, 3)
        r = int(rng.integers(0, 3))
        for _ in range(int(rng.integers(1, 3 * max(h, w)))):
            img[max(0, y - r): y + r + 1, max(0, x - r): x + r + 1] = colour
            y = int(np.clip(y + rng.integers(-1, 2), 0, h - 1))
            x = int(np.clip(x + rng.integers(-1, 2), 0, w - 1))
    stray = rng.random((h, w)) < 0.01
    img[stray] = rng.integers(0, 256, (int(stray.sum()), 3))
    return img


def reference_batch(images: np.ndarray, occupancy: np.ndarray | None = None, grid=(9, 9)) -> np.ndarray:
    return np.stack([ref.stroke_grid(im, None if occupancy is None else occupancy[b], grid) for b, im in enumerate(images)])


# ---- the C++ kernel against the reference ---------------------------------------------------


@pytest.mark.parametrize(
    ("h", "w", "grid"),
    [(64, 64, (9, 9)), (37, 53, (9, 9)), (53, 37, (5, 7)), (101, 29, (13, 3)), (9, 9, (9, 9)), (17, 1, (4, 1)), (1, 23, (1, 6))],
)
def test_random_strokes_match_reference(h: int, w: int, grid: tuple[int, int]) -> None:
    rng = np.random.default_rng(h * 1000 + w)
    images = np.stack([random_strokes(rng, h, w) for _ in range(3)])
    np.testing.assert_array_equal(stroke_grid(images, grid=grid), reference_batch(images, grid=grid))


@pytest.mark.parametrize("density", [0.05, 0.3, 0.5, 0.7])
def test_dense_noise_matches_reference(density: float) -> None:
    # Many components that merge through long union-find chains (U shapes, diagonals, spirals).
    rng = np.random.default_rng(int(density * 100))
    occ = rng.random((4, 47, 61)) < density
    images = (occ[..., None] * rng.integers(1, 256, (4, 47, 61, 3))).astype(np.uint8)
    np.testing.assert_array_equal(stroke_grid(images, grid=(7, 9)), reference_batch(images, grid=(7, 9)))


def square_spiral(size: int) -> np.ndarray:
    """(size, size) bool: one 1-pixel-wide square spiral from the top-left corner inwards, its
    turns one pixel apart, so that union-find must chain labels across every ring."""
    occ = np.zeros((size, size), bool)
    y, x, dy, dx = 0, 0, 0, 1
    occ[y, x] = True

    def free(y: int, x: int, dy: int, dx: int) -> bool:
        ahead, beyond = (y + dy, x + dx), (y + 2 * dy, x + 2 * dx)
        inside = all(0 <= c < size for c in ahead)
        blocked = all(0 <= c < size for c in beyond) and occ[beyond]
        return inside and not blocked

    while True:
        if not free(y, x, dy, dx):
            dy, dx = dx, -dy  # turn clockwise
            if not free(y, x, dy, dx):
                return occ
        y, x = y + dy, x + dx
        occ[y, x] = True


def test_spiral_is_one_stroke() -> None:
    occ = square_spiral(41)
    img = (occ[..., None] * np.uint8([200, 10, 10])).astype(np.uint8)
    out = stroke_grid(img, grid=(3, 3))
    np.testing.assert_array_equal(out, ref.stroke_grid(img, grid=(3, 3)))
    np.testing.assert_array_equal(out[0, 0, :5], np.float32([1, 0, 0, 1, 1]))
    np.testing.assert_array_equal(out[..., 3].ravel()[1:], 0)  # no other cell holds a corner


def test_float_input_matches_reference() -> None:
    rng = np.random.default_rng(7)
    images = np.stack([random_strokes(rng, 45, 71) for _ in range(2)]).astype(np.float32)
    images = images / 255.0 * rng.random((2, 45, 71, 1), dtype=np.float32)
    np.testing.assert_array_equal(stroke_grid(images), reference_batch(images))


def test_single_pixel_strokes_on_cell_borders() -> None:
    h, w, grid = 23, 31, (9, 9)
    rows, cols = ref.cell_edges(h, 9), ref.cell_edges(w, 9)
    img = np.zeros((h, w, 3), np.uint8)
    for y in (rows[3], rows[5] - 1, h - 1):
        for x in (cols[2], cols[4] - 1, w - 1):
            img[y, x] = (10, 20, 30)
    out = stroke_grid(img, grid=grid)
    np.testing.assert_array_equal(out, ref.stroke_grid(img, grid=grid))
    # First pixel of cell (3, 2): a 1 x 1 box at offset (0, 0).
    cell = out[3, 2]
    expected = [1, 0, 0, 1 / w, 1 / h, 10 / 255, 20 / 255, 30 / 255]
    np.testing.assert_array_equal(cell, np.float32(expected))
    # The last pixel of cell (4, 3) along both axes is still inside it (cell ends are exclusive).
    assert out[4, 3, 0] == 1 and out[4, 3, 1] == np.float32((cols[4] - 1 - cols[3]) / (cols[4] - cols[3]))
    assert out[4, 3, 2] == np.float32((rows[5] - 1 - rows[4]) / (rows[5] - rows[4]))
    assert out[:, :, 0].sum() == 9


def test_diagonal_stroke_corner_in_a_cell_without_pixels() -> None:
    img = np.zeros((20, 20, 3), np.uint8)
    for y in range(5, 15):
        img[y, 19 - y] = (255, 0, 0)  # anti-diagonal from (5, 14) to (14, 5)
    out = stroke_grid(img, grid=(2, 2))
    np.testing.assert_array_equal(out, ref.stroke_grid(img, grid=(2, 2)))
    # Corner (5, 5) lies in cell (0, 0), which holds no pixel of the stroke.
    np.testing.assert_array_equal(out[0, 0], np.float32([0, 0.5, 0.5, 0.5, 0.5, 0, 0, 0]))
    np.testing.assert_array_equal(out[0, 1], np.float32([1, 0, 0, 0, 0, 1, 0, 0]))
    np.testing.assert_array_equal(out[1, 0], np.float32([1, 0, 0, 0, 0, 1, 0, 0]))
    np.testing.assert_array_equal(out[1, 1], np.zeros(8, np.float32))


def test_two_strokes_in_one_cell_take_the_union_box() -> None:
    img = np.zeros((30, 30, 3), np.uint8)
    img[2:4, 2:20] = (100, 100, 100)  # corner (2, 2), reaches into cell (0, 1)
    img[6:25, 8] = (50, 50, 50)  # corner (8, 6), reaches into cell (1, 0)
    out = stroke_grid(img, grid=(2, 2))
    np.testing.assert_array_equal(out, ref.stroke_grid(img, grid=(2, 2)))
    np.testing.assert_array_equal(out[0, 0, 1:5], np.float32([2 / 15, 2 / 15, 18 / 30, 23 / 30]))


def test_black_strokes_need_an_occupancy_mask() -> None:
    rng = np.random.default_rng(3)
    occ = np.stack([random_strokes(rng, 40, 50).any(axis=2) for _ in range(2)])
    black = np.zeros((2, 40, 50, 3), np.uint8)
    out = stroke_grid(black, occupancy=occ)
    np.testing.assert_array_equal(out, reference_batch(black, occ))
    assert out[..., 0].sum() > 0 and out[..., 3].sum() > 0
    np.testing.assert_array_equal(out[..., 5:], 0)
    np.testing.assert_array_equal(stroke_grid(black), np.zeros((2, 9, 9, 8), np.float32))


def test_occupancy_overrides_colour() -> None:
    rng = np.random.default_rng(4)
    img = random_strokes(rng, 33, 35)
    occ = rng.random((33, 35)) < 0.2
    np.testing.assert_array_equal(stroke_grid(img, occupancy=occ), ref.stroke_grid(img, occ))
    np.testing.assert_array_equal(stroke_grid(img, occupancy=occ.astype(np.uint8) * 7), ref.stroke_grid(img, occ))
    np.testing.assert_array_equal(stroke_grid(img, occupancy=occ.astype(np.int64)), ref.stroke_grid(img, occ))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_empty_images_give_zeros(dtype: type) -> None:
    img = np.zeros((2, 30, 40, 3), dtype)
    np.testing.assert_array_equal(stroke_grid(img), np.zeros((2, 9, 9, 8), np.float32))
    full = np.full((2, 30, 40, 3), 1, dtype)
    np.testing.assert_array_equal(stroke_grid(full, occupancy=np.zeros((2, 30, 40), bool)), np.zeros((2, 9, 9, 8), np.float32))


def test_batch_equals_single_images_and_shapes() -> None:
    rng = np.random.default_rng(5)
    images = np.stack([random_strokes(rng, 31, 29) for _ in range(5)])
    batch = stroke_grid(images, grid=(4, 6))
    assert batch.shape == (5, 4, 6, 8) and batch.dtype == np.float32
    for b in range(5):
        single = stroke_grid(images[b], grid=(4, 6))
        assert single.shape == (4, 6, 8)
        np.testing.assert_array_equal(single, batch[b])


def test_empty_batch() -> None:
    assert stroke_grid(np.zeros((0, 10, 10, 3), np.uint8)).shape == (0, 9, 9, 8)
    assert stroke_grid_from_image(np.zeros((0, 10, 10, 3), np.uint8)).shape == (0, 9, 9, 8)


def test_thread_count_does_not_change_results() -> None:
    rng = np.random.default_rng(6)
    images = np.stack([random_strokes(rng, 40, 40) for _ in range(7)])
    expected = stroke_grid(images)
    try:
        for n in (1, 3, 8):
            _C.set_num_threads(n)
            np.testing.assert_array_equal(stroke_grid(images), expected)
    finally:
        _C.set_num_threads(0)


def test_non_contiguous_and_integer_input_is_converted() -> None:
    rng = np.random.default_rng(8)
    img = random_strokes(rng, 40, 60)
    flipped = img[:, ::-1]
    np.testing.assert_array_equal(stroke_grid(flipped), ref.stroke_grid(np.ascontiguousarray(flipped)))
    np.testing.assert_array_equal(stroke_grid(img.astype(np.int32)), stroke_grid(img))
    as_float64 = img.astype(np.float64) / 255
    np.testing.assert_array_equal(stroke_grid(as_float64), stroke_grid(as_float64.astype(np.float32)))


def test_torch_cpu_tensors_in_and_out() -> None:
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(9)
    images = np.stack([random_strokes(rng, 36, 44) for _ in range(2)])
    occ = images.any(axis=3)
    out = stroke_grid(torch.from_numpy(images), occupancy=torch.from_numpy(occ))
    assert isinstance(out, torch.Tensor) and out.dtype == torch.float32 and out.shape == (2, 9, 9, 8)
    np.testing.assert_array_equal(out.numpy(), reference_batch(images, occ))
    synth = stroke_grid_from_image(torch.from_numpy(images), seed=3)
    assert isinstance(synth, torch.Tensor)
    np.testing.assert_array_equal(synth.numpy(), stroke_grid_from_image(images, seed=3))
    latent = stroke_grid_latent(out)
    assert isinstance(latent, torch.Tensor) and latent.shape == (2, 648)


# ---- bad input -------------------------------------------------------------------------------


def _img(*shape: int, dtype: type = np.uint8) -> np.ndarray:
    return np.zeros(shape, dtype)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"strokes": _img(10, 10)}, ValueError, "shape"),
        ({"strokes": _img(10, 10, 4)}, ValueError, "shape"),
        ({"strokes": _img(1, 1, 10, 10, 3)}, ValueError, "shape"),
        ({"strokes": _img(0, 10, 3)}, ValueError, "empty"),
        ({"strokes": _img(2, 10, 0, 3)}, ValueError, "empty"),
        ({"strokes": _img(10, 10, 3), "grid": (0, 3)}, ValueError, "grid"),
        ({"strokes": _img(10, 10, 3), "grid": (11, 3)}, ValueError, "grid"),
        ({"strokes": _img(10, 10, 3), "grid": (3, 11)}, ValueError, "grid"),
        ({"strokes": _img(10, 10, 3), "grid": 9}, TypeError, "grid"),
        ({"strokes": _img(10, 10, 3), "grid": (3.0, 3)}, TypeError, "grid"),
        ({"strokes": _img(10, 10, 3), "grid": (3, 3, 3)}, TypeError, "grid"),
        ({"strokes": _img(10, 10, 3, dtype=bool)}, TypeError, "dtype"),
        ({"strokes": _img(10, 10, 3, dtype=np.complex64)}, TypeError, "dtype"),
        ({"strokes": np.full((10, 10, 3), np.nan, np.float32)}, ValueError, "NaN"),
        ({"strokes": np.full((10, 10, 3), 1.5, np.float32)}, ValueError, r"\[0, 1\]"),
        ({"strokes": np.full((10, 10, 3), -0.1, np.float64)}, ValueError, r"\[0, 1\]"),
        ({"strokes": np.full((10, 10, 3), 256, np.int32)}, ValueError, r"\[0, 255\]"),
        ({"strokes": [["a"]]}, TypeError, "strokes"),
        ({"strokes": _img(10, 10, 3), "occupancy": _img(10, 11)}, ValueError, "occupancy"),
        ({"strokes": _img(2, 10, 10, 3), "occupancy": _img(10, 10)}, ValueError, "occupancy"),
        ({"strokes": _img(10, 10, 3), "occupancy": _img(10, 10, dtype=np.float32)}, TypeError, "occupancy"),
    ],
)
def test_bad_input_is_refused(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        stroke_grid(**kwargs)


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"images": _img(10, 10, 3), "drop": 1.5}, ValueError, "drop"),
        ({"images": _img(10, 10, 3), "drop": float("nan")}, ValueError, "drop"),
        ({"images": _img(10, 10, 3), "drop": "most"}, TypeError, "drop"),
        ({"images": _img(10, 10, 3), "seed": -1}, ValueError, "seed"),
        ({"images": _img(10, 10, 3), "seed": 2**64}, ValueError, "seed"),
        ({"images": _img(10, 10, 3), "seed": 1.5}, TypeError, "seed"),
        ({"images": _img(10, 10, 3), "grid": (20, 2)}, ValueError, "grid"),
        ({"images": _img(10, 10, 2)}, ValueError, "shape"),
        ({"images": np.full((10, 10, 3), np.nan, np.float32)}, ValueError, "NaN"),
    ],
)
def test_bad_synthesis_input_is_refused(kwargs: dict, error: type, match: str) -> None:
    with pytest.raises(error, match=match):
        stroke_grid_from_image(**kwargs)


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        ((_img(10, 10, 3), None, 3, 3), ValueError, r"strokes: expected a \(B, H, W, 3\) array"),
        ((_img(1, 10, 10, 4), None, 3, 3), ValueError, r"strokes: expected a \(B, H, W, 3\) array"),
        ((_img(1, 10, 10, 3), None, 0, 3), ValueError, "grid must be between 1 and the image size"),
        ((_img(1, 10, 10, 3), None, 3, 11), ValueError, "grid must be between 1 and the image size"),
        ((_img(1, 0, 10, 3), None, 1, 1), ValueError, "strokes: image is empty"),
        ((_img(1, 10, 10, 3)[:, ::-1], None, 3, 3), ValueError, "strokes: expected a C-contiguous array"),
        ((_img(1, 10, 10, 3, dtype=np.int16), None, 3, 3), TypeError, "strokes: expected uint8 or float32 pixels"),
        ((_img(1, 10, 10, 3), _img(2, 10, 10), 3, 3), ValueError, r"occupancy: expected a \(B, H, W\) array matching strokes"),
        ((_img(1, 10, 10, 3), _img(1, 10, 10, dtype=np.int32), 3, 3), ValueError, "occupancy: expected a C-contiguous uint8 or bool array"),
        ((_img(1, 10, 10, 3), [[0] * 10] * 10, 3, 3), TypeError, "occupancy: expected a NumPy array or None"),
        (([[[[0, 0, 0]]]], None, 1, 1), TypeError, "incompatible function arguments"),
    ],
)
def test_compiled_kernel_checks_its_arguments(args: tuple, error: type, message: str) -> None:
    with pytest.raises(error, match=message):
        _C.stroke_grid_cpu(*args)


def test_compiled_synthesis_checks_dropped_count() -> None:
    with pytest.raises(ValueError, match=r"dropped cells must be in \[0, S1 \* S2\]"):
        _C.stroke_grid_from_image_cpu(_img(1, 10, 10, 3), 3, 3, 10, 0)


# ---- training synthesis ----------------------------------------------------------------------


def independent_cell_means(image: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    h, w, _ = image.shape
    scale = 255.0 if image.dtype == np.uint8 else 1.0
    means = np.zeros(grid + (3,))
    for i in range(grid[0]):
        for j in range(grid[1]):
            rows = slice(i * h // grid[0], (i + 1) * h // grid[0])
            cols = slice(j * w // grid[1], (j + 1) * w // grid[1])
            means[i, j] = image[rows, cols].reshape(-1, 3).astype(np.float64).mean(axis=0) / scale
    return means


@pytest.mark.parametrize(("drop", "grid"), [(0.75, (9, 9)), (0.0, (9, 9)), (1.0, (4, 5)), (0.5, (3, 3)), (0.3, (7, 4))])
def test_synthesis_drops_exactly_round_drop_cells(drop: float, grid: tuple[int, int]) -> None:
    rng = np.random.default_rng(10)
    images = rng.integers(0, 256, (4, 43, 37, 3), dtype=np.uint8)
    out = stroke_grid_from_image(images, grid=grid, drop=drop, seed=11)
    cells = grid[0] * grid[1]
    zeroed = (out == 0).all(axis=3).sum(axis=(1, 2))
    np.testing.assert_array_equal(zeroed, round(drop * cells))
    for b in range(4):
        np.testing.assert_array_equal(out[b], ref.stroke_grid_from_image(images[b], grid, drop, 11, index=b))


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_synthesis_keeps_cell_means_and_whole_cell_rects(dtype: type) -> None:
    rng = np.random.default_rng(12)
    images = rng.integers(1, 256, (3, 50, 41, 3)).astype(dtype)
    if dtype == np.float32:
        images /= 255
    grid = (9, 9)
    out = stroke_grid_from_image(images, grid=grid)
    rows, cols = np.diff(ref.cell_edges(50, 9)), np.diff(ref.cell_edges(41, 9))
    for b in range(3):
        kept = out[b, :, :, 0] == 1
        assert kept.sum() == 81 - 61
        means = independent_cell_means(images[b], grid)
        np.testing.assert_allclose(out[b][kept][:, 5:], means[kept], rtol=1e-6)
        np.testing.assert_array_equal(out[b][kept][:, 1:3], 0)
        np.testing.assert_array_equal(out[b][..., 3][kept], np.broadcast_to(cols[None, :] / 41, (9, 9))[kept].astype(np.float32))
        np.testing.assert_array_equal(out[b][..., 4][kept], np.broadcast_to(rows[:, None] / 50, (9, 9))[kept].astype(np.float32))
        np.testing.assert_array_equal(out[b][~kept], 0)


def test_synthesis_is_deterministic_per_seed() -> None:
    rng = np.random.default_rng(13)
    images = rng.integers(1, 256, (6, 30, 30, 3), dtype=np.uint8)
    a = stroke_grid_from_image(images, seed=5)
    np.testing.assert_array_equal(a, stroke_grid_from_image(images, seed=5))
    b = stroke_grid_from_image(images, seed=6)
    assert not np.array_equal(a[..., 0], b[..., 0])
    # Images of one batch draw different cells; image b of a batch is keyed by (seed, b).
    assert len({a[i, :, :, 0].tobytes() for i in range(6)}) == 6
    np.testing.assert_array_equal(stroke_grid_from_image(images[0], seed=5), a[0])
    np.testing.assert_array_equal(stroke_grid_from_image(images[2:3], seed=2**64 - 1)[0],
                                  ref.stroke_grid_from_image(images[2], seed=2**64 - 1))


def test_synthesis_draws_cells_uniformly() -> None:
    image = np.full((18, 18, 3), 9, np.uint8)
    batch = np.broadcast_to(image, (400, 18, 18, 3))
    hits = (stroke_grid_from_image(batch, grid=(3, 3), drop=1 / 3, seed=1)[..., 0] == 0).sum(axis=0)
    # 400 images x 3 of 9 cells: each cell expected 133 times (binomial sd ~9.4).
    assert hits.sum() == 1200 and np.all(np.abs(hits - 1200 / 9) < 45)


# ---- latent ----------------------------------------------------------------------------------


def test_latent_is_the_row_major_flattening() -> None:
    rng = np.random.default_rng(14)
    feats = stroke_grid(np.stack([random_strokes(rng, 40, 40) for _ in range(3)]))
    latent = stroke_grid_latent(feats)
    assert latent.shape == (3, 648)
    np.testing.assert_array_equal(latent[1, (2 * 9 + 4) * 8 + 5], feats[1, 2, 4, 5])
    assert stroke_grid_latent(feats[0]).shape == (648,)
    with pytest.raises(ValueError, match="features"):
        stroke_grid_latent(np.zeros((3, 9, 9, 7), np.float32))
    with pytest.raises(ValueError, match="features"):
        stroke_grid_latent(np.zeros(648, np.float32))


def test_import_stays_light() -> None:
    code = "import sys, pyfill.ops; print([m for m in ('torch', 'scipy', 'cv2') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=tempfile.gettempdir())
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"


# ---- CUDA kernel -----------------------------------------------------------------------------


@pytest.fixture
def torch_cuda():
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("torch has no CUDA device")
    return torch


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize(("h", "w", "grid"), [(64, 64, (9, 9)), (37, 53, (9, 9)), (101, 29, (13, 3)), (512, 512, (9, 9))])
def test_cuda_matches_reference(torch_cuda, h: int, w: int, grid: tuple[int, int]) -> None:
    torch = torch_cuda
    rng = np.random.default_rng(h + w)
    images = np.stack([random_strokes(rng, h, w, n=10) for _ in range(3)])
    out = stroke_grid(torch.from_numpy(images).cuda(), grid=grid)
    assert out.is_cuda and out.dtype == torch.float32 and out.shape == (3, *grid, 8)
    np.testing.assert_array_equal(out.cpu().numpy(), reference_batch(images, grid=grid))
    np.testing.assert_array_equal(out.cpu().numpy(), stroke_grid(images, grid=grid))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("density", [0.05, 0.4, 0.7])
def test_cuda_dense_noise_and_float_input(torch_cuda, density: float) -> None:
    torch = torch_cuda
    rng = np.random.default_rng(int(density * 10))
    occ = rng.random((3, 57, 83)) < density
    images = (occ[..., None] * rng.random((3, 57, 83, 3))).astype(np.float32)
    out = stroke_grid(torch.from_numpy(images).cuda(), grid=(7, 11)).cpu().numpy()
    np.testing.assert_allclose(out, reference_batch(images, grid=(7, 11)), rtol=1e-6, atol=1e-7)


@requires_cuda
@pytest.mark.cuda
def test_cuda_special_cases(torch_cuda) -> None:
    torch = torch_cuda
    diagonal = np.zeros((20, 20, 3), np.uint8)
    for y in range(5, 15):
        diagonal[y, 19 - y] = (255, 0, 0)
    got = stroke_grid(torch.from_numpy(diagonal).cuda(), grid=(2, 2)).cpu().numpy()
    np.testing.assert_array_equal(got, ref.stroke_grid(diagonal, grid=(2, 2)))
    rng = np.random.default_rng(15)
    occ = np.stack([random_strokes(rng, 40, 50).any(axis=2) for _ in range(2)])
    black = np.zeros((2, 40, 50, 3), np.uint8)
    for mask in (occ, occ.astype(np.uint8), occ.astype(np.int64)):
        got = stroke_grid(torch.from_numpy(black).cuda(), occupancy=torch.from_numpy(mask).cuda()).cpu().numpy()
        np.testing.assert_array_equal(got, reference_batch(black, occ))
    empty = torch.zeros((2, 30, 30, 3), dtype=torch.uint8, device="cuda")
    assert not stroke_grid(empty).any()
    assert stroke_grid(torch.zeros((0, 30, 30, 3), dtype=torch.uint8, device="cuda")).shape == (0, 9, 9, 8)
    flipped = torch.from_numpy(random_strokes(rng, 30, 40)).cuda().flip(1)
    np.testing.assert_array_equal(stroke_grid(flipped).cpu().numpy(), ref.stroke_grid(flipped.cpu().numpy()))


@requires_cuda
@pytest.mark.cuda
def test_cuda_bad_input(torch_cuda) -> None:
    torch = torch_cuda
    with pytest.raises(ValueError, match="NaN"):
        stroke_grid(torch.full((10, 10, 3), float("nan"), device="cuda"))
    with pytest.raises(TypeError, match="uint8 or float32"):
        stroke_grid(torch.zeros((10, 10, 3), dtype=torch.int32, device="cuda"))
    with pytest.raises(ValueError, match="grid"):
        stroke_grid(torch.zeros((10, 10, 3), dtype=torch.uint8, device="cuda"), grid=(11, 2))
    with pytest.raises(ValueError, match="occupancy"):
        stroke_grid(torch.zeros((10, 10, 3), dtype=torch.uint8, device="cuda"), occupancy=np.zeros((10, 10), bool))


@requires_cuda
@pytest.mark.cuda
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_cuda_synthesis_equals_cpu(torch_cuda, dtype: type) -> None:
    torch = torch_cuda
    rng = np.random.default_rng(16)
    images = rng.integers(0, 256, (5, 61, 47, 3)).astype(dtype)
    if dtype == np.float32:
        images /= 255
    for seed, drop, grid in [(0, 0.75, (9, 9)), (123, 0.5, (5, 3)), (2**63 + 7, 1.0, (4, 4))]:
        cpu = stroke_grid_from_image(images, grid=grid, drop=drop, seed=seed)
        gpu = stroke_grid_from_image(torch.from_numpy(images).cuda(), grid=grid, drop=drop, seed=seed).cpu().numpy()
        np.testing.assert_array_equal(gpu[..., 0], cpu[..., 0])
        np.testing.assert_allclose(gpu, cpu, rtol=1e-6, atol=0)


# ---- found by mutation testing (tools/mutation.py stroke_grid) -----------------------------------
def test_argument_errors_name_the_argument() -> None:
    from pyfill import ops

    strokes = np.zeros((18, 18, 3), np.uint8)
    with pytest.raises(TypeError, match=r"^grid: expected a pair of ints \(S1, S2\), got \(True, 9\)$"):
        ops.stroke_grid(strokes, grid=(True, 9))
    with pytest.raises(TypeError, match=r"^grid: expected a pair of ints \(S1, S2\), got \(9, False\)$"):
        ops.stroke_grid(strokes, grid=(9, False))
    with pytest.raises(ValueError, match=r"^strokes: integer pixels must lie in \[0, 255\]$"):
        ops.stroke_grid(np.full((18, 18, 3), 300, np.int32))
    with pytest.raises(TypeError, match=r"^occupancy: expected a numeric array, got dict$"):
        ops.stroke_grid(strokes, occupancy={"mask": 1})
    with pytest.raises(TypeError, match=r"^images: expected a numeric array, got dict$"):
        ops.stroke_grid_from_image({"photo": 1})
    with pytest.raises(ValueError, match=r"^features: expected shape \(B, S1, S2, 8\) or \(S1, S2, 8\), got \(\)$"):
        ops.stroke_grid_latent([1.0, 2.0])
