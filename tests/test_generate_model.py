"""The shipped drawing-board model (``Engine.from_pretrained("generate")``, SPEC S2): colour
strokes steer the colours of the regions they are drawn in, and no strokes still give a
plausible landscape.

Colour control, measured in CIE Lab (D65) with ``skimage.color.rgb2lab`` and the CIE76 distance
Delta E: with the same label map, strokes of colour A (then B) drawn over the sky move the mean
colour of the generated sky towards A (B):

- the stroked sky is at least ``MOVE`` = 10 Delta E closer to its stroke colour than the sky
  generated without strokes is, and
- each stroked sky is closer to its own stroke colour than the other stroked sky is, with the two
  stroked skies at least ``APART`` = 15 Delta E apart.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from pyfill.engine import Engine

skimage_color = pytest.importorskip("skimage.color")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from training.landscapes import GRASS, LABELS, SKY, render_landscape  # noqa: E402

MOVE, APART = 10.0, 15.0
ORANGE, VIOLET = (245, 130, 30), (120, 50, 200)
# Scenes rendered from seeds far from the training seeds (0 .. 999), with a large sky and grass.
SCENE_SEEDS = (100_003, 100_011, 100_019)


@pytest.fixture(scope="module")
def engine() -> Engine:
    return Engine.from_pretrained("generate", backend="onnxruntime")


SIZE = 256  # the shipped model's size (test_shipped_model_manifest)


def scene(seed: int) -> np.ndarray:
    _, labels = render_landscape(SIZE, SIZE, seed)
    return labels


def sky_strokes(labels: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """Horizontal 3-pixel scribbles every 8 rows, kept to the sky pixels."""
    strokes = np.zeros((*labels.shape, 3), np.uint8)
    for y in range(2, labels.shape[0], 8):
        strokes[y : y + 3, 4:-4] = colour
    strokes[labels != SKY] = 0
    return strokes


def lab(rgb: np.ndarray) -> np.ndarray:
    return skimage_color.rgb2lab(np.asarray(rgb, np.float64).reshape(1, -1, 3) / 255.0).reshape(-1, 3)


def delta_e(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.linalg.norm(np.asarray(a) - np.asarray(b)))


def region_mean_lab(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    return lab(image[mask]).mean(axis=0)


def test_shipped_model_manifest(engine: Engine) -> None:
    labels, latent = engine.manifest.inputs
    assert engine.manifest.size.fixed == (SIZE, SIZE)
    assert labels.class_names == [n for n, _ in LABELS] and labels.palette == [list(c) for _, c in LABELS]
    assert latent.length == 648 and latent.derive["op"] == "stroke_grid"


@pytest.mark.parametrize("seed", SCENE_SEEDS)
def test_strokes_move_the_sky_towards_their_colour(engine: Engine, seed: int) -> None:
    labels = scene(seed)
    sky = labels == SKY
    assert sky.mean() > 0.15
    plain = region_mean_lab(engine(labels=labels), sky)
    a = region_mean_lab(engine(labels=labels, strokes=sky_strokes(labels, ORANGE)), sky)
    b = region_mean_lab(engine(labels=labels, strokes=sky_strokes(labels, VIOLET)), sky)
    target_a, target_b = lab(ORANGE)[0], lab(VIOLET)[0]
    report = (f"seed {seed}: dE(sky, orange) plain {delta_e(plain, target_a):.1f} -> stroked {delta_e(a, target_a):.1f}; "
              f"dE(sky, violet) plain {delta_e(plain, target_b):.1f} -> stroked {delta_e(b, target_b):.1f}; "
              f"apart {delta_e(a, b):.1f}")
    print(report)
    assert delta_e(a, target_a) <= delta_e(plain, target_a) - MOVE, report
    assert delta_e(b, target_b) <= delta_e(plain, target_b) - MOVE, report
    assert delta_e(a, target_a) < delta_e(b, target_a) and delta_e(b, target_b) < delta_e(a, target_b), report
    assert delta_e(a, b) >= APART, report


@pytest.mark.parametrize("seed", SCENE_SEEDS)
def test_no_strokes_give_a_plausible_landscape(engine: Engine, seed: int) -> None:
    labels = scene(seed)
    image = engine(labels=labels).astype(np.float64)
    sky, grass = image[labels == SKY].mean(axis=0), image[labels == GRASS].mean(axis=0)
    print(f"seed {seed}: sky mean RGB {np.round(sky)}, grass mean RGB {np.round(grass)}, std {image.std():.1f}")
    assert sky[2] > sky[0], "the sky is not bluish"  # blue over red
    greenness = lambda c: c[1] - (c[0] + c[2]) / 2  # noqa: E731
    assert greenness(grass) > greenness(sky) + 10, "grass is not greener than the sky"
    assert image.std() > 10, "the image is nearly constant"
    # every class present is drawn in its own colour: class means differ
    means = [image[labels == c].mean(axis=0) for c in np.unique(labels) if (labels == c).sum() > 30]
    spread = max(np.abs(m - n).max() for m in means for n in means)
    assert spread > 30


def test_cli_generate_with_the_shipped_model(engine: Engine, tmp_path: Path) -> None:
    from PIL import Image

    from pyfill.cli import main
    from training.landscapes import legend_image

    labels = scene(SCENE_SEEDS[0])
    strokes = sky_strokes(labels, ORANGE)
    Image.fromarray(legend_image(labels)).save(tmp_path / "labels.png")
    Image.fromarray(strokes).save(tmp_path / "strokes.png")
    assert main(["generate", str(tmp_path / "labels.png"), "--strokes", str(tmp_path / "strokes.png"),
                 "-o", str(tmp_path / "out.png"), "--backend", "onnxruntime"]) == 0
    out = np.asarray(Image.open(tmp_path / "out.png"))
    assert np.array_equal(out, engine(labels=labels, strokes=strokes))
