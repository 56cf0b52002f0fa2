"""The procedural landscapes (SPEC S2 training data): exact label maps, variety, determinism."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from training import landscapes as L  # noqa: E402


def test_shapes_dtypes_and_label_range() -> None:
    for seed, (h, w) in enumerate([(64, 64), (48, 96), (100, 37)]):
        image, labels = L.render_landscape(h, w, seed)
        assert image.shape == (h, w, 3) and image.dtype == np.uint8
        assert labels.shape == (h, w) and labels.dtype == np.uint8
        assert int(labels.max()) < len(L.LABELS)
    with pytest.raises(ValueError, match="16 x 16"):
        L.render_landscape(8, 64, 0)


def test_same_seed_same_scene_other_seed_other_scene() -> None:
    a, la = L.render_landscape(64, 96, 5)
    b, lb = L.render_landscape(64, 96, 5)
    c, lc = L.render_landscape(64, 96, 6)
    assert np.array_equal(a, b) and np.array_equal(la, lb)
    assert not np.array_equal(la, lc) and not np.array_equal(a, c)


def test_every_class_appears_across_seeds() -> None:
    seen = np.zeros(len(L.LABELS), int)
    for seed in range(20):
        _, labels = L.render_landscape(64, 64, seed)
        seen += np.bincount(labels.ravel(), minlength=len(L.LABELS)) > 0
    missing = [L.LABEL_NAMES[i] for i in np.flatnonzero(seen == 0)]
    assert not missing, f"classes never drawn: {missing}"
    assert seen[L.SKY] == 20 and seen[L.GRASS] == 20  # every scene has a sky and a ground


def test_layout_sky_above_ground() -> None:
    for seed in range(5):
        _, labels = L.render_landscape(64, 64, seed)
        sky_rows = np.flatnonzero((labels == L.SKY).any(axis=1))
        ground_rows = np.flatnonzero(np.isin(labels, (L.GRASS, L.WATER, L.SAND)).any(axis=1))
        assert sky_rows.mean() < ground_rows.mean()
        assert (labels[0] != L.GRASS).all()  # the top row is never ground


def _sky_mean(seed: int) -> np.ndarray:
    image, labels = L.render_landscape(64, 96, seed)
    return image[labels == L.SKY].astype(float).mean(axis=0)


def test_palettes_vary_with_time_of_day() -> None:
    skies = {seed: L.sample_params(np.random.default_rng(seed)).sky for seed in range(40)}
    day = [s for s, v in skies.items() if v == "day"][:3]
    sunset = [s for s, v in skies.items() if v == "sunset"][:3]
    assert day and sunset
    for s in day:
        r, _, b = _sky_mean(s)
        assert b - r > 60, (s, r, b)  # blue sky
    for s in sunset:
        r, _, b = _sky_mean(s)
        assert r - b > 20, (s, r, b)  # red-orange sky
    grass = {seed: L.sample_params(np.random.default_rng(seed)).grass for seed in range(40)}
    green = next(s for s, g in grass.items() if g == 0)
    dry = next(s for s, g in grass.items() if g == 2)

    def grass_mean(seed: int) -> np.ndarray:
        image, labels = L.render_landscape(64, 96, seed)
        return image[labels == L.GRASS].astype(float).mean(axis=0)

    g_green, g_dry = grass_mean(green), grass_mean(dry)
    assert g_green[1] > g_green[0] and g_dry[0] > g_dry[2] + 40  # green vs yellow grass


def test_classes_are_shaded_differently_within_a_scene() -> None:
    image, labels = L.render_landscape(96, 128, 11)
    means = {c: image[labels == c].astype(float).mean(axis=0) for c in np.unique(labels)}
    names = list(means)
    for i, a in enumerate(names):
        for b in names[i + 1:]:
            assert np.abs(means[a] - means[b]).max() > 8, (L.LABEL_NAMES[a], L.LABEL_NAMES[b])
    assert image[labels == L.GRASS].std(axis=0).max() > 3  # textured, not flat


def test_legend_image_uses_the_legend_colours() -> None:
    labels = np.array([[0, 1], [6, 7]], np.uint8)
    out = L.legend_image(labels)
    assert out.dtype == np.uint8 and out.shape == (2, 2, 3)
    assert out[1, 0].tolist() == list(L.LABELS[6][1]) and out[0, 1].tolist() == list(L.LABELS[1][1])
    assert len({c for _, c in L.LABELS}) == len(L.LABELS)  # distinct legend colours
