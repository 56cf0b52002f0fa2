"""The generator evaluation's scores on images whose answer is known in closed form."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("cv2")
ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from training.evaluate_generate import grid_score, periodic_score  # noqa: E402

SIZE, CELLS = 252, 9  # 28-pixel cells


def test_plateaus_per_cell_score_high_and_a_ramp_scores_neutral() -> None:
    rng = np.random.default_rng(0)
    labels = np.zeros((SIZE, SIZE), np.uint8)
    cell = np.arange(SIZE) * CELLS // SIZE
    plateaus = rng.integers(0, 255, (CELLS, CELLS, 3))[cell[:, None], cell[None, :]].astype(np.uint8)
    # every step is at a cell edge: nothing off the edges, and the whole profile in one bin
    assert grid_score(plateaus, labels) > 1e6
    assert periodic_score(plateaus, labels) == pytest.approx(8.0)  # (max - 0) / (max / 8)
    ramp = np.repeat(np.repeat(np.arange(SIZE, dtype=np.uint8)[None, :, None], SIZE, 0), 3, 2)
    assert grid_score(ramp, labels) == pytest.approx(1.0)  # steps of 1 across and 0 down, at edges and off them
    assert periodic_score(ramp, labels) == pytest.approx(0.0, abs=1e-9)


def test_steps_across_label_boundaries_do_not_count() -> None:
    labels = np.zeros((SIZE, SIZE), np.uint8)
    labels[:, SIZE // 2:] = 1
    image = np.zeros((SIZE, SIZE, 3), np.uint8)
    image[:, SIZE // 2:] = 200  # a hard edge, but between two labels (126 is not a cell edge of 28)
    noise = np.random.default_rng(1).integers(0, 3, image.shape).astype(np.uint8)
    assert grid_score(image + noise, labels) == pytest.approx(1.0, abs=0.1)
