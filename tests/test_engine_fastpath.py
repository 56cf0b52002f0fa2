"""The Engine's per-call fast paths: compiled uint8 <-> float conversion with the value range
folded in, and OpenVINO's static recompilation for a stream of same-size inputs."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pyfill.engine import Engine  # noqa: E402


def test_uint8_fast_path_equals_the_float_path(unet_files) -> None:
    engine = Engine(unet_files[1], backend="onnxruntime")
    x = np.random.default_rng(0).integers(0, 256, (48, 64, 3), dtype=np.uint8)
    fast = engine(x)  # uint8 in, uint8 out: the compiled conversions
    slow = engine(x.astype(np.float32) / 255.0)  # float in, float out: the NumPy path
    assert fast.dtype == np.uint8 and slow.dtype == np.float32
    assert np.abs(fast.astype(int) - np.rint(slow * 255).astype(int)).max() <= 1
    gray = engine(x[..., 0])  # a gray input goes the general way and comes back RGB
    assert gray.shape == (48, 64, 3)


def test_bgr_models_get_reversed_channels_on_the_fast_path(unet_files) -> None:
    rgb = Engine(unet_files[1], backend="onnxruntime")
    bgr = Engine(unet_files[1], backend="onnxruntime", channel_order="bgr")
    x = np.random.default_rng(1).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    # A BGR model sees the channels reversed and its output is reversed back.
    np.testing.assert_array_equal(bgr(x), rgb(x[..., ::-1].copy())[..., ::-1])


def test_openvino_static_shapes_compile_once_per_size(unet_files) -> None:
    dynamic = Engine(unet_files[1], backend="openvino", precision="fp32")
    engine = Engine(unet_files[1], backend="openvino", precision="fp32", static_shapes=True)
    assert engine.info["static_shapes"] and not dynamic.info["static_shapes"]
    x = np.random.default_rng(2).integers(0, 256, (64, 80, 3), dtype=np.uint8)
    first, second = engine(x), engine(x)
    assert len(engine.backend._static) == 1 and np.array_equal(first, second)
    assert np.abs(first.astype(int) - dynamic(x).astype(int)).max() <= 1
    assert not dynamic.backend._static
    for side in (32, 48, 96, 112, 128, 144):  # more sizes than kept: the oldest are dropped
        y = np.zeros((side, side, 3), np.uint8)
        engine(y), engine(y)
    assert len(engine.backend._static) == 4
