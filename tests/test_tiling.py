"""Tiling with runs whose tiles differ, so that the blend window decides the result.

A fully convolutional model gives every tile the same answer a whole-image run gives (the tiles
carry enough context), and then any blend weights look right. Here every tile's answer is the
mean of its own input window, different from tile to tile; the raised-cosine blend must then
move smoothly from one tile's value to the next across each overlap, and equal a tile's value
where no other tile reaches. Checked on :func:`run_tiled` itself (scale 1 and an x2 upscaler)
and through the Engine on every backend installed here (an ONNX model built with ``onnx``'s
helper for ONNX Runtime and OpenVINO, the same function as a torch module for torch).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfill.engine.tiling import run_tiled, tile_layout
from references import engine_backends


def mean_run(scale: int):
    """(B, C, h, w) -> (B, C, s*h, s*w): every tile's value is the mean of its own input."""

    def run(x: np.ndarray) -> np.ndarray:
        m = x.mean(axis=(2, 3), keepdims=True)
        return np.broadcast_to(m, (*x.shape[:2], x.shape[2] * scale, x.shape[3] * scale)).astype(np.float32)

    return run


def ramp_image(h: int, w: int) -> np.ndarray:
    """(1, 1, h, w) float32: the column index / w, so tiles further right have larger means."""
    return np.broadcast_to(np.arange(w, dtype=np.float32) / w, (1, 1, h, w)).copy()


def check_blend(out: np.ndarray, x: np.ndarray, tile: int, overlap: int, scale: int) -> None:
    """The blend of per-tile means along a row of tiles: rows agree; each column that only
    tile i's core covers holds one value c_i (the plateau); and between plateaus i and i + 1 the
    values rise monotonically from c_i to c_{i+1} with no step above the steepest slope of a
    raised cosine over ``overlap * scale`` columns, pi / (2 * overlap * scale) of the rise
    (a window left rising where it should fall steps by about half of it)."""
    h, w = x.shape[-2:]
    assert out.shape == (1, 1, h * scale, w * scale)
    row = out[0, 0, 0].astype(np.float64)
    np.testing.assert_allclose(out[0, 0], np.broadcast_to(row, out.shape[-2:]), atol=1e-6)
    xs, tw = tile_layout(w, tile, overlap)
    assert len(xs) >= 3, "the test needs several tiles across"
    plateaus = []
    for i in range(len(xs)):
        lo = (xs[i - 1] + tw if i > 0 else 0) * scale
        hi = (xs[i + 1] if i + 1 < len(xs) else w) * scale
        assert hi - lo >= 2, "every tile keeps columns of its own"
        np.testing.assert_allclose(row[lo:hi], row[lo], atol=1e-6)
        plateaus.append((lo, hi, row[lo]))
    slope = np.pi / (2 * overlap * scale)
    ramp = overlap * scale
    for (_, end, a), (begin, _, b) in zip(plateaus, plateaus[1:]):
        assert b > a + 1e-3, "neighbouring tiles' values differ"
        steps = np.diff(row[end - 1:begin + 1])
        assert steps.min() >= -1e-6, "the blend never falls between rising tiles"
        assert steps.max() <= 1.2 * slope * (b - a), (steps.max() / (b - a), slope)
        if begin - end == ramp:  # the two windows span the same columns: a raised cosine from a to b
            k = np.arange(ramp)
            np.testing.assert_allclose(row[end:begin], a + (b - a) * (0.5 - 0.5 * np.cos(np.pi * (k + 0.5) / ramp)),
                                       atol=1e-5)


def test_tile_layout_is_the_fewest_evenly_spread_tiles_that_cover() -> None:
    """Checked against its definition on a grid of lengths, tile sizes and overlaps: the tiles
    cover [0, length), neighbours overlap by at least ``overlap``, no tile is larger than
    ``tile``, one tile fewer of the largest size could not cover, the starts are evenly spread
    (steps differ by at most one pixel) and the size is the smallest that covers with that many."""
    for length in range(1, 140):
        for tile in (8, 16, 33, 64):
            for overlap in (0, 1, 4, tile // 4, tile // 2 - 1):
                starts, size = tile_layout(length, tile, overlap)
                n = len(starts)
                assert 1 <= size <= min(tile, length) and starts[0] == 0 and starts[-1] + size == length
                if n == 1:
                    assert size == length and length <= tile
                    continue
                steps = np.diff(starts)
                assert steps.min() >= 1 and size - steps.max() >= overlap, (length, tile, overlap)
                assert steps.max() - steps.min() <= 1
                assert (n - 1) * (tile - overlap) + overlap < length, "one tile fewer would do"
                assert (n - 1) * (size - 1 - overlap) + size - 1 < length, "a smaller tile would do"


def effective(tile: int, overlap: int, multiple_of: int) -> tuple[int, int]:
    """The tile and overlap :func:`run_tiled` uses: the tile floored to a multiple of
    ``multiple_of`` (at least one multiple), the overlap at most half of it."""
    tile = max(multiple_of, tile // multiple_of * multiple_of)
    return tile, min(overlap, tile // 2)


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("h, w, tile, overlap, multiple_of", [
    (24, 200, 64, 16, 1), (150, 300, 96, 24, 1), (150, 200, 60, 12, 8), (70, 260, 64, 30, 1)])
@pytest.mark.parametrize("axis", ["columns", "rows"])
def test_run_tiled_blends_differing_tiles_smoothly(h: int, w: int, tile: int, overlap: int, multiple_of: int,
                                                   scale: int, axis: str) -> None:
    """Along the columns, and transposed (the image rising down its rows) for the vertical blend."""
    x = ramp_image(h, w)
    if axis == "rows":
        out = run_tiled(mean_run(scale), np.ascontiguousarray(x.transpose(0, 1, 3, 2)), tile=tile, overlap=overlap,
                        multiple_of=multiple_of).transpose(0, 1, 3, 2)
    else:
        out = run_tiled(mean_run(scale), x, tile=tile, overlap=overlap, multiple_of=multiple_of)
    assert out.dtype == np.float32
    check_blend(out, x, *effective(tile, overlap, multiple_of), scale)


def test_run_tiled_keeps_a_torch_tensors_dtype() -> None:
    torch = pytest.importorskip("torch")
    x = torch.from_numpy(ramp_image(60, 150).astype(np.float64))
    got = run_tiled(lambda t: t.mean(dim=(2, 3), keepdim=True).expand_as(t), x, tile=48, overlap=12, multiple_of=1)
    assert got.dtype == torch.float64
    want = run_tiled(mean_run(1), x.numpy().astype(np.float32), tile=48, overlap=12, multiple_of=1)
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_run_tiled_on_torch_tensors_equals_numpy() -> None:
    """Torch input (the Engine's path for CUDA tensors) blends like NumPy input, in its dtype."""
    torch = pytest.importorskip("torch")
    x = ramp_image(90, 150) + ramp_image(150, 90).transpose(0, 1, 3, 2)
    want = run_tiled(mean_run(2), x, tile=48, overlap=12, multiple_of=4)

    def run(t):
        m = t.mean(dim=(2, 3), keepdim=True)
        return m.expand(-1, -1, t.shape[2] * 2, t.shape[3] * 2)

    got = run_tiled(run, torch.from_numpy(x), tile=48, overlap=12, multiple_of=4)
    assert isinstance(got, torch.Tensor) and got.dtype == torch.float32
    np.testing.assert_allclose(got.numpy(), want, atol=1e-5)


def test_run_tiled_batches_at_most_max_batch_and_reports_progress() -> None:
    """Every call gets at most ``max_batch`` tiles per image, all tiles run once, the result is
    the same for any batch size, and ``progress(done, total)`` counts up to the tile count."""
    x = ramp_image(100, 170) + ramp_image(170, 100).transpose(0, 1, 3, 2)
    x = np.concatenate([x, 1 - x])  # two images: tiles batch per image
    results = []
    for max_batch in (1, 3, 8):
        sizes: list[int] = []
        calls: list[tuple[int, int]] = []

        def run(b: np.ndarray) -> np.ndarray:
            sizes.append(len(b))
            return mean_run(1)(b)

        results.append(run_tiled(run, x, tile=40, overlap=10, multiple_of=1, max_batch=max_batch,
                                 progress=lambda done, total: calls.append((done, total))))
        (ys, _), (xs, _) = tile_layout(100, 40, 10), tile_layout(170, 40, 10)
        total = len(ys) * len(xs)
        assert max(sizes) <= 2 * max_batch and sum(sizes) == 2 * total
        assert [c[1] for c in calls] == [total] * len(calls) and calls[-1][0] == total
        assert all(b[0] > a[0] for a, b in zip(calls, calls[1:]))
    for other in results[1:]:
        np.testing.assert_allclose(other, results[0], atol=1e-6)


@pytest.mark.parametrize("tile, overlap, multiple_of", [(48, 12, 1), (48, 12, 8), (33, 30, 1), (60, 40, 8)])
def test_each_tile_sees_its_core_and_context_on_the_stride_grid(tile: int, overlap: int, multiple_of: int) -> None:
    """The window each tile runs on starts on the ``multiple_of`` grid, at most ``overlap`` plus
    one grid step before its core, and reaches ``overlap`` past it (or the image's edge); an
    identity run blends back to the input whatever the overlap (here also above half a tile)."""
    h, w = 100, 190
    rows, cols = np.mgrid[0:h, 0:w].astype(np.float32)
    x = np.stack([rows, cols])[None]  # every pixel holds its own coordinates
    windows: list[tuple[int, int, int, int]] = []

    def run(batch: np.ndarray) -> np.ndarray:
        for b in batch:
            windows.append((int(b[0, 0, 0]), int(b[1, 0, 0]), int(b[0, -1, -1]) + 1, int(b[1, -1, -1]) + 1))
        return batch

    out = run_tiled(run, x, tile=tile, overlap=overlap, multiple_of=multiple_of)
    np.testing.assert_allclose(out, x, atol=1e-4)  # an identity run blends back to the input
    t, ov = effective(tile, overlap, multiple_of)
    (ys, th), (xs, tw) = tile_layout(h, t, ov), tile_layout(w, t, ov)
    assert len(ys) > 1 and len(xs) > 1

    def start(core: int) -> int:  # the last grid point at or before the context's start
        return max(0, (core - ov) // multiple_of * multiple_of)

    want = [(start(cy), start(cx), min(h, cy + th + ov), min(w, cx + tw + ov)) for cy in ys for cx in xs]
    assert sorted(windows) == sorted(want)


# ---- through the Engine, every backend --------------------------------------------------------
def mean_onnx(path: Path, scale: int) -> Path:
    """An ONNX model y = mean over (H, W) of x, broadcast to (N, C, s*H, s*W), with a pyfill
    manifest that says it tiles (it does not agree with a whole-image run, which is the point)."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    from pyfill.manifest import ONNX_METADATA_KEY, Manifest, SizeRequirements, TensorSpec, Tiling

    nodes = [
        helper.make_node("ReduceMean", ["x"], ["m"], keepdims=1, axes=[2, 3]),
        helper.make_node("Mul", ["x", "zero"], ["z"]),
        helper.make_node("Add", ["z", "m"], ["b"]),
        helper.make_node("Resize", ["b", "", "scales"], ["y"], mode="nearest"),
    ]
    inits = [helper.make_tensor("zero", TensorProto.FLOAT, [], [0.0]),
             helper.make_tensor("scales", TensorProto.FLOAT, [4], [1.0, 1.0, float(scale), float(scale)])]
    graph = helper.make_graph(nodes, "tile_mean",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, "h", "w"])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["n", 3, "sh", "sw"])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    manifest = Manifest(task="restore", family="tile_mean", config={"scale": scale},
                        inputs=[TensorSpec("x", "image", 3, "rgb", (0.0, 1.0))],
                        outputs=[TensorSpec("y", "image", 3, "rgb", (0.0, 1.0))],
                        size=SizeRequirements(multiple_of=1, min_size=1, scale=scale),
                        tiling=Tiling(supported=True, tile=64, overlap=16))
    helper.set_model_props(model, {ONNX_METADATA_KEY: manifest.to_json()})
    onnx.save(model, str(path))
    return path


def torch_mean_checkpoint(folder: Path, scale: int) -> Path:
    """The same function as a pyfill checkpoint of a registered torch architecture."""
    torch = pytest.importorskip("torch")
    from pyfill.export import save_checkpoint
    from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
    from pyfill.models import Architecture, _REGISTRY, make_manifest, register

    class TileMean(torch.nn.Module):
        def __init__(self, scale: int) -> None:
            super().__init__()
            self.scale = scale
            self.unused = torch.nn.Parameter(torch.zeros(1))  # a checkpoint holds at least one tensor

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            m = x.mean(dim=(2, 3), keepdim=True) + 0 * self.unused
            return m.expand(-1, -1, x.shape[2] * self.scale, x.shape[3] * self.scale)

    def manifest(config: dict, task: str) -> Manifest:
        return Manifest(task="restore", family="tile_mean", config=config,
                        inputs=[TensorSpec("x", "image", 3, "rgb", (0.0, 1.0))],
                        outputs=[TensorSpec("y", "image", 3, "rgb", (0.0, 1.0))],
                        size=SizeRequirements(multiple_of=1, min_size=1, scale=config["scale"]),
                        tiling=Tiling(supported=True, tile=64, overlap=16))

    if "tile_mean" not in _REGISTRY:
        register(Architecture("tile_mean", lambda c: TileMean(c["scale"]), manifest, {"scale": 1}))
    return save_checkpoint(TileMean(scale), make_manifest("tile_mean", {"scale": scale}), folder / f"tile_mean{scale}")


@pytest.mark.parametrize("scale", [1, 2])
@pytest.mark.parametrize("backend", engine_backends())
def test_engine_tiles_blend_smoothly_on_every_backend(backend: str, scale: int, tmp_path: Path) -> None:
    """The Engine's tiled run of a model whose tiles differ equals :func:`run_tiled` with the
    same function in NumPy, and blends smoothly (see :func:`check_blend`)."""
    from pyfill.engine import Engine

    if backend == "torch":
        model = torch_mean_checkpoint(tmp_path, scale)
    else:
        model = mean_onnx(tmp_path / f"mean{scale}.onnx", scale)
    engine = Engine(model, backend=backend, precision="fp32", tile=64, tile_overlap=16)
    h, w = 40, 230
    gray = ramp_image(h, w)[0, 0]
    image = np.repeat(gray[..., None], 3, axis=-1)
    out = engine(image)
    assert out.shape == (h * scale, w * scale, 3) and out.dtype == np.float32
    want = run_tiled(mean_run(scale), gray[None, None], tile=64, overlap=16, multiple_of=1)[0, 0]
    for c in range(3):
        np.testing.assert_allclose(out[..., c], want, atol=1e-5)
    check_blend(out[..., 0][None, None], gray[None, None], 64, 16, scale)
