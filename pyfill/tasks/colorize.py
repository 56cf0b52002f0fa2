"""Colour filling (SPEC S1): colour a gray image; the discriminator's realness score comes back
beside the fill."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyfill.engine import Engine
from pyfill.tasks._common import get_engine, join_alpha, split_alpha, to_array

TASKS = ("colorize", "image-to-image")


@dataclass(frozen=True)
class Colorized:
    """``image``: the colour fill, RGB (or RGBA when the input had alpha), in the input's dtype;
    ``realness``: the discriminator's probability that the fill is a real colour photo (None for
    a model without a discriminator output)."""

    image: np.ndarray
    realness: float | None


def colorize_engine(model: str | Engine = "colorize", *, backend: str = "auto",
                    static_shapes: bool = False, throughput: bool = False) -> Engine:
    """The cached Engine :func:`colorize` runs."""
    return get_engine(model, TASKS, "colorize", backend=backend, static_shapes=static_shapes,
                      throughput=throughput)


def colorize(image: Any, *, model: str | Engine = "colorize", backend: str = "auto") -> Colorized:
    """Colour one image.

    Args:
        image: NumPy uint8 / uint16 / float (H, W) gray, (H, W, 3) or (H, W, 4), or a PIL image.
            A colour input is read for its lightness only.
        model: a model name, a model file or an Engine (default: the shipped ``colorize``).

    Returns :class:`Colorized`. The fill keeps the input's lightness exactly where the model
    recombines it (the shipped model does, in Lab).
    """
    arr = to_array(image)
    engine = colorize_engine(model, backend=backend)
    return finish_colorized(arr, engine.run(split_alpha(arr)[0]))


def finish_colorized(source: np.ndarray, result: Any) -> Colorized:
    """The engine's result for ``source`` -> :class:`Colorized` (alpha kept)."""
    fill = result.image
    score = result.get("realness")
    realness = None if score is None else float(np.asarray(score).reshape(-1)[0])
    return Colorized(join_alpha(fill, split_alpha(source)[1]), realness)
