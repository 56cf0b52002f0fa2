"""One function per system, owning what is specific to it (gray in -> gray out, alpha kept,
legend colours, the colouriser's realness score, stroke images). The CLI, the drawing board,
video and batch runners call these; ``pyfill.restore`` etc. are the same functions.

``frame_processor(name, **options)`` wraps a task for streams of RGB frames (video).
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from pyfill.tasks.colorize import Colorized, colorize, colorize_engine
from pyfill.tasks.generate import LegendEntry, generate, generate_engine, legend
from pyfill.tasks.restore import restore, restore_engine
from pyfill.tasks.swap import FaceWarning, Swapper, SwapResult, swap

FrameProcessor = Callable[[list[np.ndarray]], list[np.ndarray]]
TASK_NAMES = ("restore", "colorize", "generate", "swap")


def frame_processor(name: str, **options: Any) -> FrameProcessor:
    """A function mapping a batch of RGB uint8 (H, W, 3) frames to processed RGB uint8 frames
    with the task ``name``; ``options`` are the task's keyword arguments (``model``,
    ``backend``, ...). ``generate`` reads each frame as a colour-coded label map; ``swap`` needs
    ``source`` (an image with one face) and tracks faces from frame to frame. Engines for streams
    compile once per frame size (``static_shapes``) and, on OpenVINO, run the frames of a batch
    as concurrent requests (``throughput``; pass ``throughput=False`` for one at a time)."""
    if name == "restore":
        engine = restore_engine(options.pop("model", "restore"), static_shapes=True,
                                throughput=options.pop("throughput", True), **options)
        from pyfill.video.cuda import gpu_frames

        gpu = gpu_frames(engine)  # the GPU path: pinned buffers, copy and compute streams
        return gpu if gpu is not None else lambda frames: list(engine(list(frames)))
    if name == "colorize":
        engine = colorize_engine(options.pop("model", "colorize"), static_shapes=True,
                                 throughput=options.pop("throughput", True), **options)
        return lambda frames: [r.image for r in engine.run(list(frames))]
    if name == "generate":
        model = options.pop("model", "generate")
        return lambda frames: [generate(f, model=model, **options) for f in frames]
    if name == "swap":
        if options.get("source") is None:
            raise ValueError("the swap task needs source= (the image whose face goes onto every frame)")
        return Swapper(options.pop("source"), **options)
    raise ValueError(f"unknown task {name!r}; tasks: {', '.join(TASK_NAMES)}")


__all__ = ["restore", "colorize", "generate", "swap", "Swapper", "SwapResult", "FaceWarning", "legend", "Colorized", "LegendEntry", "frame_processor",
           "restore_engine", "colorize_engine", "generate_engine", "TASK_NAMES"]
