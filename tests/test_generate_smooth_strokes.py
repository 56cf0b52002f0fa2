"""A smooth stroke map for the generator: no steps at the stroke grid's cell edges."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pyfill.models import build_model  # noqa: E402


def conditioning(mode: str) -> np.ndarray:
    net = build_model("spade", {"size": 32, "base": 16, "hidden": 8, "stroke_map": True, "stroke_upsample": mode})
    grid = torch.zeros(1, 9, 9, 8)
    grid[0, 4, 4, 5] = 1.0  # one cell's red channel
    return net.stroke_condition(grid.reshape(1, -1), (126, 126))[0, 5].numpy()


def test_bilinear_stroke_map_has_no_cell_steps() -> None:
    nearest, smooth = conditioning("nearest"), conditioning("bilinear")
    # nearest: the cell is a 14 x 14 plateau with unit steps at its edges
    assert np.abs(np.diff(nearest, axis=1)).max() == 1.0
    assert nearest.sum() == 14 * 14
    # bilinear: the largest step between neighbouring pixels is one 14th of the cell's value
    assert np.abs(np.diff(smooth, axis=1)).max() <= 1.0 / 14 + 1e-6
    # the peak falls between pixel centres, half a pixel (1 / 28 of a cell) from the cell centre
    assert smooth.max() == pytest.approx((1 - 1 / 28) ** 2, abs=1e-5)
    assert smooth.sum() == pytest.approx(14 * 14, rel=0.02)  # the cell's mass is kept
    with pytest.raises(ValueError, match="stroke_upsample must be"):
        build_model("spade", {"stroke_map": True, "stroke_upsample": "cubic"})
