"""Procedural landscapes with exact label maps: the drawing-board generator's training data.

Every scene is drawn from a seed: a horizon, a fractal mountain ridge with rocky patches, clouds
in the sky, a lake with a sandy shore, grass and trees. Each class is rendered with its own
palette, texture and lighting (sun side, time of day), so that colour strokes have something to
steer: skies go from blue to sunset red or overcast grey, grass from green to dry yellow.

    >>> image, labels = render_landscape(128, 192, seed=3)
    >>> image.shape, image.dtype, labels.shape, int(labels.max()) < len(LABELS)
    ((128, 192, 3), dtype('uint8'), (128, 192), True)
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

# (name, legend colour) in class-index order; the legend colours are for display only.
LABELS: tuple[tuple[str, tuple[int, int, int]], ...] = (
    ("sky", (110, 170, 240)),
    ("cloud", (235, 235, 245)),
    ("mountain", (120, 100, 90)),
    ("rock", (90, 90, 95)),
    ("tree", (30, 100, 40)),
    ("grass", (110, 190, 70)),
    ("water", (40, 90, 170)),
    ("sand", (225, 200, 140)),
)
LABEL_NAMES = tuple(name for name, _ in LABELS)
SKY, CLOUD, MOUNTAIN, ROCK, TREE, GRASS, WATER, SAND = range(len(LABELS))

# Palettes per time of day: sky top, sky horizon, light colour.
_SKIES = {
    "day": ((40, 100, 210), (150, 200, 245), (255, 250, 240)),
    "sunset": ((70, 50, 120), (250, 120, 60), (255, 180, 120)),
    "overcast": ((120, 125, 135), (185, 190, 195), (220, 220, 225)),
    "dawn": ((90, 120, 190), (245, 190, 160), (255, 225, 200)),
}
_GRASS = ((70, 150, 50), (130, 170, 60), (190, 170, 80), (60, 120, 70))
_MOUNTAIN = ((115, 100, 95), (95, 100, 115), (140, 115, 90), (80, 85, 80))


@dataclass(frozen=True)
class SceneParams:
    """The random choices behind one scene (all drawn from its seed)."""

    sky: str
    grass: int
    mountain: int
    horizon: float
    sun_x: float


def _value_noise(h: int, w: int, cells: float, rng: np.random.Generator, octaves: int = 4) -> np.ndarray:
    """Fractal value noise in [0, 1] of shape (h, w): bilinearly upsampled random grids."""
    out = np.zeros((h, w), np.float32)
    amp, total = 1.0, 0.0
    for o in range(octaves):
        n = max(2, int(cells * 2**o))
        gh, gw = n + 1, max(2, int(n * w / max(h, 1))) + 1
        grid = rng.random((gh, gw)).astype(np.float32)
        ys = np.linspace(0, gh - 1, h, dtype=np.float32)
        xs = np.linspace(0, gw - 1, w, dtype=np.float32)
        y0, x0 = np.minimum(ys.astype(int), gh - 2), np.minimum(xs.astype(int), gw - 2)
        fy, fx = (ys - y0)[:, None], (xs - x0)[None, :]
        fy, fx = fy * fy * (3 - 2 * fy), fx * fx * (3 - 2 * fx)  # smoothstep
        a = grid[y0][:, x0]
        b = grid[y0][:, x0 + 1]
        c = grid[y0 + 1][:, x0]
        d = grid[y0 + 1][:, x0 + 1]
        out += amp * ((a * (1 - fx) + b * fx) * (1 - fy) + (c * (1 - fx) + d * fx) * fy)
        total += amp
        amp *= 0.5
    return out / total


def _ridge(w: int, rng: np.random.Generator, octaves: int = 6) -> np.ndarray:
    """A 1-D fractal ridge in [0, 1] of length w (sum of random-phase sines)."""
    x = np.linspace(0, 1, w, dtype=np.float32)
    out = np.zeros(w, np.float32)
    for o in range(octaves):
        f = 1.5 * 2**o * rng.uniform(0.8, 1.2)
        out += np.sin(2 * np.pi * (f * x + rng.random())) / 2**o
    out -= out.min()
    return out / max(out.max(), 1e-6)


def _mix(colour: tuple[int, int, int], shade: np.ndarray) -> np.ndarray:
    """A colour times a (h, w) shade -> float32 (h, w, 3)."""
    return np.asarray(colour, np.float32)[None, None, :] * shade[..., None]


def sample_params(rng: np.random.Generator) -> SceneParams:
    """The scene's palette and layout choices: the first draws :func:`render_landscape` makes
    from ``np.random.default_rng(seed)``."""
    return SceneParams(
        sky=str(rng.choice(list(_SKIES))),
        grass=int(rng.integers(len(_GRASS))),
        mountain=int(rng.integers(len(_MOUNTAIN))),
        horizon=float(rng.uniform(0.42, 0.62)),
        sun_x=float(rng.uniform(0.1, 0.9)),
    )


def render_landscape(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Render one landscape.

    Returns (image uint8 (height, width, 3) RGB, labels uint8 (height, width) with indices into
    :data:`LABELS`). The same seed and size always give the same scene.
    """
    if height < 16 or width < 16:
        raise ValueError(f"landscapes need at least 16 x 16 pixels, got {height} x {width}")
    rng = np.random.default_rng(seed)
    p = sample_params(rng)
    h, w = height, width
    yy = np.arange(h, dtype=np.float32)[:, None] / h
    xx = np.arange(w, dtype=np.float32)[None, :] / w
    labels = np.full((h, w), GRASS, np.uint8)
    horizon = p.horizon

    # Sky above the mountain ridge; the ridge rises above the horizon.
    ridge_height = rng.uniform(0.12, 0.3)
    ridge = horizon - ridge_height * (0.35 + 0.65 * _ridge(w, rng))[None, :]
    sky = yy < ridge
    mountain = (~sky) & (yy < horizon)
    labels[sky] = SKY
    labels[mountain] = MOUNTAIN

    # Rocky patches on the mountain, denser near the peaks.
    rock_noise = _value_noise(h, w, 6, rng) + 0.35 * (horizon - yy) / max(ridge_height, 1e-3)
    labels[mountain & (rock_noise > rng.uniform(0.75, 0.9))] = ROCK

    # Clouds: thresholded noise in the sky, thinner near the horizon.
    cloud_noise = _value_noise(h, w, 3, rng, octaves=5) - 0.25 * (yy / horizon)
    labels[sky & (cloud_noise > rng.uniform(0.5, 0.62))] = CLOUD

    # A lake below the horizon (an ellipse) with a sandy shore around it.
    cx, cy = rng.uniform(0.2, 0.8), horizon + rng.uniform(0.1, 0.3) * (1 - horizon)
    rx, ry = rng.uniform(0.15, 0.35), rng.uniform(0.05, 0.15)
    wobble = 0.15 * (_value_noise(h, w, 4, rng) - 0.5)
    d = ((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2 + wobble
    ground = yy >= horizon
    water = ground & (d < 1.0)
    shore = ground & (d >= 1.0) & (d < rng.uniform(1.3, 1.7))
    labels[shore] = SAND
    labels[water] = WATER

    # Trees: canopies (ellipses) on the grass, larger closer to the viewer.
    for _ in range(int(rng.integers(3, 12))):
        ty = rng.uniform(horizon + 0.02, 0.98)
        tx = rng.uniform(0, 1)
        if labels[min(h - 1, int(ty * h)), min(w - 1, int(tx * w))] != GRASS:
            continue
        size = 0.03 + 0.1 * (ty - horizon) / (1 - horizon)
        canopy = ((xx - tx) / (size * 0.8)) ** 2 + ((yy - (ty - size)) / size) ** 2 < 1.0
        labels[canopy & (labels != WATER) & (labels != SAND) & ground | canopy & (labels == GRASS)] = TREE

    return _shade(labels, p, rng, yy, xx, horizon), labels


def _shade(labels: np.ndarray, p: SceneParams, rng: np.random.Generator, yy: np.ndarray,
           xx: np.ndarray, horizon: float) -> np.ndarray:
    h, w = labels.shape
    top, low, light = _SKIES[p.sky]
    sun = np.clip(1.0 - 1.2 * np.abs(xx - p.sun_x), 0.55, 1.0)  # brighter towards the sun
    t = np.clip(yy / horizon, 0, 1)
    img = np.zeros((h, w, 3), np.float32)
    sky_col = np.asarray(top, np.float32) * (1 - t[..., None]) + np.asarray(low, np.float32) * t[..., None]
    img += np.broadcast_to(sky_col, (h, w, 3)) * (labels == SKY)[..., None]

    tex = _value_noise(h, w, 16, rng, octaves=4)
    fine = rng.random((h, w)).astype(np.float32)
    light_rgb = np.asarray(light, np.float32) / 255.0

    def paint(cls: int, colour: tuple[int, int, int], shade: np.ndarray) -> None:
        mask = labels == cls
        img[mask] = (_mix(colour, shade) * light_rgb)[mask]

    paint(CLOUD, (245, 245, 250), 0.85 + 0.15 * tex * sun)
    mountain_col = _MOUNTAIN[p.mountain]
    haze = 0.75 + 0.25 * (yy / horizon)
    paint(MOUNTAIN, mountain_col, (0.6 + 0.4 * tex) * sun * haze)
    paint(ROCK, (100, 100, 105), (0.55 + 0.45 * tex + 0.1 * fine) * sun)
    grass_col = _GRASS[p.grass]
    depth = np.clip((yy - horizon) / (1 - horizon), 0, 1)
    paint(GRASS, grass_col, (0.7 + 0.25 * tex + 0.1 * fine) * sun * (0.8 + 0.3 * depth))
    paint(TREE, (35, 95, 45) if p.grass != 2 else (90, 95, 40), (0.45 + 0.4 * tex + 0.15 * fine) * sun)
    paint(SAND, (225, 200, 145), (0.85 + 0.1 * tex + 0.05 * fine) * sun)
    # Water reflects the sky's horizon colour, darkened, with horizontal ripples.
    ripples = 0.85 + 0.15 * np.sin(yy * h * 0.9 + 3 * tex)
    water_col = tuple(int(0.55 * c + 0.45 * d) for c, d in zip(low, (30, 70, 140)))
    paint(WATER, water_col, ripples * (0.8 + 0.2 * sun))
    return np.clip(img, 0, 255).astype(np.uint8)


def legend_image(labels: np.ndarray) -> np.ndarray:
    """Colour-code a label map with the legend colours: (H, W) -> uint8 (H, W, 3)."""
    palette = np.asarray([c for _, c in LABELS], np.uint8)
    return palette[labels]
