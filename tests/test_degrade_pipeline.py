"""The seeded degradation pipeline: presets, records, determinism, replay with the ops."""

from __future__ import annotations

import re

import numpy as np
import pytest
from helpers import requires_cuda

from pyfill import ops
from pyfill.degrade import PRESETS, Pipeline, apply_steps


def make_batch(b: int = 6, h: int = 48, w: int = 40, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 127 / (h + w)], -1)
    return np.clip(base[None] + rng.normal(0, 20, (b, h, w, 3)), 0, 255).astype(np.uint8)


def replay(img: np.ndarray, steps: list[dict]) -> np.ndarray:
    """Re-apply a record with the individual ops (independently of pyfill.degrade)."""
    for s in steps:
        op = s["op"]
        if op == "gaussian_blur":
            img = ops.gaussian_blur(img, s["ksize"], s["sigma"])
        elif op == "motion_blur":
            img = ops.motion_blur(img, s["length"], s["angle"])
        elif op == "resize":
            img = ops.resize(img, tuple(s["size"]), s["interpolation"])
        elif op == "gaussian_noise":
            img = ops.add_gaussian_noise(img, s["sigma"], s["mean"], s["gray"], s["seed"])
        elif op == "poisson_noise":
            img = ops.add_poisson_noise(img, s["scale"], s["gray"], s["seed"])
        elif op == "salt_pepper":
            img = ops.add_salt_pepper(img, s["amount"], s["seed"])
        elif op == "jpeg":
            img = ops.jpeg(img, s["quality"], s["subsampling"])
        else:
            raise AssertionError(f"unexpected step {op}")
    return img


@pytest.mark.parametrize("preset", list(PRESETS))
@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_records_replay_to_the_same_output(preset: str, dtype) -> None:
    batch = make_batch()
    if dtype == np.float32:
        batch = batch.astype(np.float32) / 255
    out, records = Pipeline(preset, seed=3)(batch)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    assert len(records) == len(batch)
    for img, deg, rec in zip(batch, out, records):
        assert rec, "at least one step is always applied"
        np.testing.assert_array_equal(replay(img, rec), deg)
        np.testing.assert_array_equal(apply_steps(img, rec), deg)


@pytest.mark.parametrize("preset", list(PRESETS))
def test_same_seed_same_batch_different_seed_different(preset: str) -> None:
    batch = make_batch()
    a, ra = Pipeline(preset, seed=5)(batch)
    b, rb = Pipeline(preset, seed=5)(batch)
    c, rc = Pipeline(preset, seed=6)(batch)
    np.testing.assert_array_equal(a, b)
    assert ra == rb and ra != rc
    assert (a != c).any()


def test_seed_preset_structure_and_ranges() -> None:
    pipe = Pipeline("seed", seed=1)
    records = pipe.sample(400, (64, 48))
    order = ["gaussian_blur", "motion_blur", "resize", "gaussian_noise", "poisson_noise", "salt_pepper", "jpeg"]
    seen = set()
    for rec in records:
        assert rec
        ops_in = [s["op"] for s in rec]
        assert ops_in == sorted(ops_in, key=order.index)  # SPEC order
        seen.update(ops_in)
        for s in rec:
            if s["op"] == "gaussian_blur":
                assert s["ksize"] % 2 == 1 and 3 <= s["ksize"] <= 13 and s["sigma"] == 0.0
            elif s["op"] == "motion_blur":
                assert 0 <= s["length"] <= 12 and 0 <= s["angle"] <= 90
            elif s["op"] == "jpeg":
                assert 50 <= s["quality"] <= 100
            elif s["op"] == "salt_pepper":
                assert 0 <= s["amount"] <= 0.1 and abs(s["amount"] + s["snr"] - 1) < 1e-12
        resizes = [s for s in rec if s["op"] == "resize"]
        if resizes:  # downsample by area, then back to the original size
            assert len(resizes) == 2 and resizes[0]["interpolation"] == "area" and 1 <= resizes[0]["factor"] <= 4
            assert tuple(resizes[1]["size"]) == (64, 48)
            assert resizes[1]["interpolation"] in ("bilinear", "bicubic", "nearest")
    assert seen == set(order)


def test_at_least_one_step_even_with_zero_probabilities() -> None:
    pipe = Pipeline("seed", seed=2, blur_prob=0.0, resize_prob=0.0, noise_prob=0.0, jpeg_prob=0.0)
    records = pipe.sample(50, (32, 32))
    assert all(len(r) >= 1 for r in records)
    only_jpeg = Pipeline("seed", seed=2, blur_prob=0.0, resize_prob=0.0, noise_prob=0.0, jpeg_prob=1.0)
    assert all([s["op"] for s in r] == ["jpeg"] for r in only_jpeg.sample(20, (32, 32)))


def test_realesrgan_preset_is_second_order_and_keeps_size() -> None:
    records = Pipeline("realesrgan", seed=4).sample(100, (64, 64))
    for rec in records:
        ops_in = [s["op"] for s in rec]
        assert ops_in.count("jpeg") == 2 and sum(o in ("gaussian_noise", "poisson_noise") for o in ops_in) == 2
        assert ops_in.count("resize") == 3
        final = [s for s in rec if s["op"] == "resize"][-1]
        assert tuple(final["size"]) == (64, 64)
        assert all(30 <= s["quality"] <= 95 for s in rec if s["op"] == "jpeg")
    out, _ = Pipeline("realesrgan", seed=4)(make_batch(3, 64, 64))
    assert out.shape == (3, 64, 64, 3)


def test_sample_then_apply_equals_call() -> None:
    batch = make_batch()
    out, records = Pipeline("seed", seed=9)(batch)
    pipe = Pipeline("seed", seed=9)
    again = pipe.apply(batch, pipe.sample(len(batch), batch.shape[1:3]))
    np.testing.assert_array_equal(out, again)


def test_torch_cpu_batches() -> None:
    torch = pytest.importorskip("torch")
    batch = make_batch()
    out, records = Pipeline("seed", seed=3)(torch.from_numpy(batch))
    assert isinstance(out, torch.Tensor)
    expected, _ = Pipeline("seed", seed=3)(batch)
    np.testing.assert_array_equal(out.numpy(), expected)


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="preset must be one of .*got 'nope'"):
        Pipeline("nope")
    with pytest.raises(TypeError, match="unknown option.* for preset 'seed': not_an_option"):
        Pipeline("seed", not_an_option=1)
    with pytest.raises(ValueError, match=r"jpeg_prob must be in \[0, 1\], got 1.5"):
        Pipeline("seed", jpeg_prob=1.5)
    with pytest.raises(ValueError, match=r"seed: expected an int in \[0, 2\*\*64\), got -1"):
        Pipeline("seed", seed=-1)
    with pytest.raises(TypeError, match="seed: expected an int, got float"):
        Pipeline("seed", seed=1.5)
    pipe = Pipeline("seed")
    with pytest.raises(ValueError, match=r"batch must have shape \(B, H, W, 3\), got \(4, 4, 3\)"):
        pipe(np.zeros((4, 4, 3), np.uint8))
    with pytest.raises(ValueError, match="got 3 records for a batch of 2 images"):
        pipe.apply(make_batch(2), pipe.sample(3, (48, 40)))
    with pytest.raises(ValueError, match="unknown degradation step 'sharpen'"):
        apply_steps(make_batch(1)[0], [{"op": "sharpen"}])


@requires_cuda
@pytest.mark.parametrize("preset", list(PRESETS))
def test_cuda_pipeline_matches_cpu(preset: str) -> None:
    torch = pytest.importorskip("torch")
    batch = make_batch()
    expected, rec_cpu = Pipeline(preset, seed=3)(batch)
    got, rec_gpu = Pipeline(preset, seed=3)(torch.from_numpy(batch).cuda())
    assert rec_cpu == rec_gpu
    # The ops agree bit for bit on both devices, so whole chains do too: any difference, however
    # small or rare, is a defect (a bound on the share of differing pixels would hide one).
    np.testing.assert_array_equal(got.cpu().numpy(), expected)


@requires_cuda
def test_cuda_pipeline_checks_for_nan_once_per_batch(monkeypatch) -> None:
    torch = pytest.importorskip("torch")
    from pyfill.ops import degrade as degrade_ops

    calls = []
    real = degrade_ops.has_nan
    monkeypatch.setattr(degrade_ops, "has_nan", lambda x: calls.append(1) or real(x))
    batch = torch.from_numpy(make_batch().astype(np.float32) / 255).cuda()
    Pipeline("realesrgan", seed=1)(batch)
    assert len(calls) == 1
    batch[2, 3, 4, 1] = float("nan")
    with pytest.raises(ValueError, match="contains NaN"):
        Pipeline("realesrgan", seed=1)(batch)


# ---- the compiled whole-record path --------------------------------------------------------------

HAND_RECORDS = [
    [],  # no step: a copy
    [{"op": "gaussian_blur", "ksize": 5, "sigma": 1.3}, {"op": "jpeg", "quality": 90, "subsampling": "4:4:4"}],
    [{"op": "motion_blur", "length": 7.5, "angle": 33.0},
     {"op": "resize", "size": (17, 23), "interpolation": "area"},
     {"op": "resize", "size": (30, 11), "interpolation": "bicubic"},
     {"op": "resize", "size": (48, 40), "interpolation": "nearest"},
     {"op": "poisson_noise", "scale": 1.2, "gray": True, "seed": 2**64 - 1}],
    [{"op": "gaussian_noise", "sigma": 12.0, "mean": -3.0, "gray": False, "seed": 11},
     {"op": "salt_pepper", "amount": 0.05, "seed": 12},
     {"op": "resize", "size": (97, 81), "interpolation": "bilinear"},
     {"op": "resize", "size": (48, 40), "interpolation": "area"},
     {"op": "jpeg", "quality": 55, "subsampling": "4:2:0"}],
]


@pytest.mark.parametrize("dtype", [np.uint8, np.float32])
def test_compiled_records_equal_the_individual_ops(dtype) -> None:
    batch = make_batch(len(HAND_RECORDS))
    if dtype == np.float32:
        batch = batch.astype(np.float32) / 255
    out = Pipeline("seed").apply(batch, HAND_RECORDS)
    assert out.shape == batch.shape and out.dtype == batch.dtype
    for img, deg, rec in zip(batch, out, HAND_RECORDS):
        np.testing.assert_array_equal(replay(img, rec), deg)


def test_compiled_records_reject_bad_records() -> None:
    pipe, batch = Pipeline("seed"), make_batch(2)
    jpeg = {"op": "jpeg", "quality": 80, "subsampling": "4:2:0"}
    with pytest.raises(ValueError, match="unknown degradation step"):
        pipe.apply(batch, [[jpeg], [{"op": "sharpen"}]])
    with pytest.raises(ValueError, match="quality"):
        pipe.apply(batch, [[jpeg], [{**jpeg, "quality": 0}]])
    with pytest.raises(ValueError, match="subsampling"):
        pipe.apply(batch, [[jpeg], [{**jpeg, "subsampling": "4:1:1"}]])
    with pytest.raises(ValueError, match="ksize"):
        pipe.apply(batch, [[jpeg], [{"op": "gaussian_blur", "ksize": 4, "sigma": 0.0}]])
    with pytest.raises(ValueError, match="input size"):
        pipe.apply(batch, [[jpeg], [{"op": "resize", "size": (8, 8), "interpolation": "area"}]])
    with pytest.raises(ValueError, match="NaN"):
        pipe.apply(np.full((2, 8, 8, 3), np.nan, np.float32), [[jpeg], [jpeg]])
    with pytest.raises(TypeError, match="images must be uint8 or float32, got int16"):
        pipe.apply(batch.astype(np.int16), [[jpeg], [jpeg]])


def test_compiled_entry_point_rejects_bad_arrays_without_crashing() -> None:
    from pyfill._core import _C

    img = make_batch(2, 8, 8)
    steps = np.array([[6, 80, 1, 0, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)
    params = np.zeros((2, 2), np.float32)
    seeds = np.zeros(2, np.uint64)
    kernels = np.array([0.25, 0.5, 0.25], np.float32)
    offsets = np.array([0, 1, 2], np.int64)
    good = _C.degrade_apply_pipeline(img, steps, params, seeds, kernels, offsets)
    np.testing.assert_array_equal(good[0], ops.jpeg(img[0], 80))
    np.testing.assert_array_equal(good[1], ops.gaussian_blur(img[1], 3))

    def call(**changes):
        args = {"img": img, "steps": steps, "params": params, "seeds": seeds, "kernels": kernels, "offsets": offsets}
        args.update(changes)
        return _C.degrade_apply_pipeline(**args)

    bad = {
        "code": {"steps": np.array([[9, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)},
        "columns": {"steps": steps[:, :5].copy()},
        "kernel slice": {"steps": np.array([[6, 80, 1, 0, 0, 0], [0, 0, 0, 0, 2, 3]], np.int64)},
        "even kernel": {"steps": np.array([[6, 80, 1, 0, 0, 0], [0, 0, 0, 0, 0, 2]], np.int64)},
        "2-D kernel": {"steps": np.array([[6, 80, 1, 0, 0, 0], [1, 0, 0, 0, 0, 3]], np.int64)},
        "quality": {"steps": np.array([[6, 101, 1, 0, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)},
        "resize size": {"steps": np.array([[2, 0, 8, 1, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)},
        "interpolation": {"steps": np.array([[2, 8, 8, 7, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)},
        "end size": {"steps": np.array([[2, 4, 8, 1, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64)},
        "params": {"params": np.zeros((2, 3), np.float32)},
        "seeds": {"seeds": np.zeros(3, np.uint64)},
        "offsets length": {"offsets": np.array([0, 2], np.int64)},
        "offsets order": {"offsets": np.array([0, 2, 1], np.int64)},
        "offsets end": {"offsets": np.array([0, 1, 1], np.int64)},
        "noise sigma": {"steps": np.array([[3, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64),
                        "params": np.array([[-1, 0], [0, 0]], np.float32)},
        "salt amount": {"steps": np.array([[5, 0, 0, 0, 0, 0], [0, 0, 0, 0, 0, 3]], np.int64),
                        "params": np.array([[1.5, 0], [0, 0]], np.float32)},
        "kernel values": {"kernels": np.array([0.25, np.inf, 0.25], np.float32)},
        "jpeg channels": {"img": np.zeros((2, 8, 8, 1), np.uint8)},
        "empty": {"img": np.zeros((2, 0, 8, 3), np.uint8)},
        "rank": {"img": img[0]},
        "non-contiguous": {"img": img[:, :, ::2]},
    }
    messages = {
        'code': 'unknown step code 9',
        'columns': 'steps must be an (S, 6) int64 array',
        'kernel slice': 'kernel slice out of range',
        'even kernel': 'a blur kernel needs an odd number of taps',
        '2-D kernel': 'a 2-D kernel must be square with an odd size',
        'quality': 'JPEG quality must be in 1..100',
        'resize size': 'resize sizes must be in 1..2**20',
        'interpolation': 'unknown interpolation',
        'end size': "image 0's steps do not end at the input size",
        'params': 'params must be an (S, 2) float32 array',
        'seeds': 'seeds must have one entry per step',
        'offsets length': 'offsets must have B + 1 entries',
        'offsets order': 'offsets must start at 0 and end at the number of steps',
        'offsets end': 'offsets must start at 0 and end at the number of steps',
        'noise sigma': 'bad Gaussian noise sigma or mean',
        'salt amount': 'salt-and-pepper amount must be in [0, 1]',
        'kernel values': 'kernels must be finite',
        'jpeg channels': 'JPEG needs 3 channels',
        'empty': 'empty image',
        'rank': 'expected a (B, H, W, C) array',
        'non-contiguous': 'array must be C-contiguous',
    }
    assert messages.keys() == bad.keys()
    for name, changes in bad.items():
        with pytest.raises(ValueError, match="apply_pipeline: " + re.escape(messages[name])):
            call(**changes)
    with pytest.raises(ValueError, match="dtype"):
        call(img=img.astype(np.int16))
