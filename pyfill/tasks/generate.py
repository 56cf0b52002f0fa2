"""Drawing-board generation (SPEC S2): an image from a semantic label map, with local colours
from colour strokes."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from pyfill.engine import Engine
from pyfill.tasks._common import get_engine, to_array

TASKS = ("generate",)


@dataclass(frozen=True)
class LegendEntry:
    index: int
    name: str
    colour: tuple[int, int, int]


def generate_engine(model: str | Engine = "generate", *, backend: str = "auto") -> Engine:
    """The cached Engine :func:`generate` runs."""
    return get_engine(model, TASKS, "generate", backend=backend)


def legend(model: str | Engine = "generate") -> list[LegendEntry]:
    """The model's classes and the colour each has in a colour-coded label image."""
    spec = _labels_spec(generate_engine(model))
    names = spec.class_names or [f"class {i}" for i in range(spec.classes)]
    return [LegendEntry(i, n, (int(c[0]), int(c[1]), int(c[2]))) for i, (n, c) in enumerate(zip(names, spec.palette))]


def _labels_spec(engine: Engine) -> Any:
    spec = next((s for s in engine.manifest.inputs if s.kind == "labels"), None)
    if spec is None:
        raise ValueError(f"{engine.path.name}: a generation model takes a label map")
    return spec


def generate(labels: Any, strokes: Any = None, *, occupancy: Any = None, model: str | Engine = "generate",
             backend: str = "auto") -> np.ndarray:
    """Generate an image from a label map and optional colour strokes.

    Args:
        labels: uint8 (H, W) class indices, or an (H, W, 3|4) colour-coded label image in the
            legend colours (:func:`legend`; alpha ignored); NumPy or PIL.
        strokes: optional RGB strokes on black, (H, W, 3) uint8, or (H, W, 4) whose alpha marks
            the stroke pixels; the label map's size.
        occupancy: optional (H, W) mask of the stroke pixels (default: alpha, else any non-zero
            channel).

    Returns uint8 (H, W, 3) RGB at the label map's size.
    """
    engine = generate_engine(model, backend=backend)
    lab = to_array(labels, "labels")
    if lab.dtype != np.uint8:
        raise ValueError(f"labels: label images are 8-bit (class indices or legend colours), got {lab.dtype}")
    if lab.ndim == 3 and lab.shape[-1] == 4:
        lab = lab[..., :3]
    inputs: dict[str, Any] = {_labels_spec(engine).name: lab}
    if strokes is not None:
        st = to_array(strokes, "strokes")
        if st.dtype != np.uint8:
            raise ValueError(f"strokes: stroke images are 8-bit RGB or RGBA, got {st.dtype}")
        inputs["strokes"], inputs["occupancy"] = st, occupancy
    elif occupancy is not None:
        raise TypeError("occupancy goes with strokes")
    image = engine(**inputs)
    return image if image.dtype == np.uint8 else np.rint(np.clip(image, 0, 1) * 255).astype(np.uint8)
