"""``pyfill demo``: every shipped system run once on inputs that need no download, written as one
side-by-side picture per system and an HTML page with the timings and the backend used.

Inputs: scikit-image's sample photographs where scikit-image is installed (``astronaut``,
``coffee``), otherwise a procedural scene made here; the drawing board's shipped templates for
generation. The page is self-contained (pictures beside it, no scripts).
"""

from __future__ import annotations

import html
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, TypeVar

import numpy as np

from pyfill.images import write_image


@dataclass
class Panel:
    """One system's demo: a picture of labelled tiles side by side, and what it took."""

    system: str
    title: str
    tiles: list[tuple[str, np.ndarray]]
    seconds: float
    backend: str
    notes: list[str] = field(default_factory=list)


def sample_photo(name: str, size: tuple[int, int] = (256, 256)) -> tuple[np.ndarray, str]:
    """(uint8 (H, W, 3) photo, where it came from): a scikit-image sample photo centre-cropped to
    ``size`` where scikit-image is installed, else a procedural scene (sky, sun, hills, a house)."""
    h, w = size
    try:
        from skimage import data

        photo = getattr(data, name)()
        y, x = (photo.shape[0] - h) // 2, (photo.shape[1] - w) // 2
        return np.ascontiguousarray(photo[y:y + h, x:x + w, :3]), f"scikit-image sample '{name}'"
    except (ImportError, AttributeError):
        return procedural_scene(h, w, seed=sum(map(ord, name))), "procedural scene (scikit-image not installed)"


def procedural_scene(h: int, w: int, seed: int = 0) -> np.ndarray:
    """A colourful uint8 (h, w, 3) scene: gradient sky, a sun, two hills, a house with a roof."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    t = yy / h
    img = np.stack([70 + 120 * t, 140 + 80 * t, 235 - 40 * t], axis=-1)
    sun = (yy - 0.2 * h) ** 2 + (xx - 0.78 * w) ** 2 < (0.08 * min(h, w)) ** 2
    img[sun] = (250, 220, 90)
    for base, amp, colour in ((0.62, 0.08, (70, 140, 60)), (0.75, 0.06, (40, 110, 45))):
        ridge = h * (base + amp * np.sin(xx / w * (5 + rng.random() * 3) + rng.random() * 6))
        img[yy > ridge] = colour
    top, left = int(0.55 * h), int(0.2 * w)
    img[top:top + h // 6, left:left + w // 5] = (200, 180, 150)
    for r in range(h // 10):
        img[top - r, left + r:left + w // 5 - r] = (160, 50, 40)
    img += rng.normal(0, 4, img.shape)
    return np.clip(img, 0, 255).astype(np.uint8)


T = TypeVar("T")


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def restore_panel() -> Panel:
    from pyfill.degrade import Pipeline
    from pyfill.tasks import restore, restore_engine

    photo, source = sample_photo("astronaut")
    degraded = Pipeline("seed", seed=7, blur_prob=1.0, noise_prob=1.0, jpeg_prob=1.0)(photo[None])[0][0]
    restored, seconds = _timed(lambda: restore(degraded))
    return Panel("restore", "Restoration: deblur, denoise, de-JPEG",
                 [("degraded input", degraded), ("pyfill.restore", restored), ("original", photo)],
                 seconds, restore_engine().info["backend"], [f"input: {source}, degraded with pyfill.degrade"])


def colorize_panel() -> Panel:
    from pyfill.tasks import colorize, colorize_engine

    photo, source = sample_photo("coffee")
    gray = np.rint(photo @ np.array([0.299, 0.587, 0.114])).astype(np.uint8)
    result, seconds = _timed(lambda: colorize(gray))
    fill = result.image
    return Panel("colorize", "Colour filling: a gray photo coloured",
                 [("gray input", np.repeat(gray[..., None], 3, axis=-1)), ("pyfill.colorize", fill),
                  ("original colours", photo)],
                 seconds, colorize_engine().info["backend"],
                 [f"input: {source}", f"realness score (discriminator): {result.realness}"])


def generate_panel() -> Panel:
    from PIL import Image

    from pyfill.board.server import TEMPLATE_DIR
    from pyfill.tasks import generate, generate_engine, legend

    index = np.asarray(Image.open(TEMPLATE_DIR / "lake.png"))
    palette = np.array([e.colour for e in legend()], np.uint8)
    labels = palette[np.clip(index, 0, len(palette) - 1)]
    h, w = index.shape
    strokes = np.zeros((h, w, 3), np.uint8)
    strokes[h // 12:h // 12 + max(2, h // 25), w // 8:w - w // 8] = (245, 130, 30)
    plain, _ = _timed(lambda: generate(labels))
    stroked, seconds = _timed(lambda: generate(labels, strokes))
    return Panel("generate", "Drawing-board generation: label map + colour strokes",
                 [("label map", labels), ("colour strokes", strokes), ("generated, no strokes", plain),
                  ("generated, orange sky stroke", stroked)],
                 seconds, generate_engine().info["backend"], ["labels: the board's 'lake' template"])


PANELS: dict[str, Callable[[], Panel]] = {"restore": restore_panel, "colorize": colorize_panel,
                                          "generate": generate_panel}


def side_by_side(tiles: list[tuple[str, np.ndarray]], height: int = 256, gap: int = 8) -> np.ndarray:
    """Tiles scaled to ``height`` (nearest for small ones, area for large), on a white strip."""
    from PIL import Image

    scaled = []
    for _, tile in tiles:
        im = Image.fromarray(tile)
        w = max(1, round(tile.shape[1] * height / tile.shape[0]))
        resample = Image.Resampling.NEAREST if tile.shape[0] < height else Image.Resampling.BOX
        scaled.append(np.asarray(im.resize((w, height), resample).convert("RGB")))
    width = sum(t.shape[1] for t in scaled) + gap * (len(scaled) + 1)
    strip = np.full((height + 2 * gap, width, 3), 255, np.uint8)
    x = gap
    for t in scaled:
        strip[gap:gap + height, x:x + t.shape[1]] = t
        x += t.shape[1] + gap
    return strip


def run_demo(out_dir: str | Path = "pyfill-demo", systems: list[str] | None = None) -> Path:
    """Run the demo of each system (default: all shipped) into ``out_dir``; returns the page."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    names = systems or list(PANELS)
    unknown = sorted(set(names) - set(PANELS))
    if unknown:
        raise ValueError(f"unknown systems {unknown}; the demo has {list(PANELS)}")
    panels = [PANELS[n]() for n in names]
    for p in panels:
        write_image(out / f"{p.system}.png", side_by_side(p.tiles))
    page = out / "index.html"
    page.write_text(_html(panels))
    return page


def _html(panels: list[Panel]) -> str:
    from pyfill import __version__

    rows = []
    for p in panels:
        captions = " | ".join(html.escape(label) for label, _ in p.tiles)
        notes = "".join(f"<li>{html.escape(n)}</li>" for n in p.notes)
        rows.append(
            f'<section><h2>{html.escape(p.title)}</h2><img src="{p.system}.png" alt="{html.escape(p.title)}">'
            f"<p>{captions}</p><ul><li>{p.seconds * 1000:.0f} ms on {html.escape(p.backend)}</li>{notes}</ul></section>"
        )
    return ("<!doctype html><html><head><meta charset='utf-8'><title>pyfill demo</title><style>"
            "body{font-family:sans-serif;max-width:1200px;margin:2em auto;color:#222}"
            "img{max-width:100%;border:1px solid #ccc}section{margin-bottom:2em}</style></head><body>"
            f"<h1>pyfill {html.escape(__version__)}: the shipped systems</h1>" + "".join(rows) + "</body></html>\n")
