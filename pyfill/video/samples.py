"""A procedural test clip: a moving colour scene with a sine tone, for examples and benchmarks."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require


def scene(index: int, width: int, height: int) -> np.ndarray:
    """Frame ``index`` of the procedural scene: RGB uint8 (height, width, 3), a sky-to-ground
    gradient with a sun and a block that move by a few pixels per frame."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    t = index / 30.0
    img = np.empty((height, width, 3), np.float32)
    ground = yy > height * 0.6
    img[..., 0] = np.where(ground, 60 + 40 * np.sin(xx / 9 + t), 90 + 80 * yy / height)
    img[..., 1] = np.where(ground, 120 + 30 * np.cos(yy / 7), 150 + 60 * yy / height)
    img[..., 2] = np.where(ground, 50, 235 - 40 * yy / height)
    cx, cy = (0.2 + 0.6 * ((t * 0.5) % 1.0)) * width, 0.3 * height
    sun = (xx - cx) ** 2 + (yy - cy) ** 2 < (0.12 * height) ** 2
    img[sun] = (250, 210, 60)
    bx = int((index * 3) % max(width - width // 5, 1))
    img[int(height * 0.45):int(height * 0.75), bx:bx + width // 5] = (200, 40, 50)
    return np.clip(img, 0, 255).astype(np.uint8)


def write_test_clip(path: str | Path, *, width: int = 64, height: int = 48, frames: int = 30, fps: int = 30,
                    codec: str = "libx264", pix_fmt: str = "yuv420p", audio: bool = True, rotation: int = 0) -> Path:
    """Write :func:`scene` frames 0..frames-1 to ``path`` at ``fps`` with, when ``audio``, a 440 Hz
    mono AAC tone (48 kHz) of the same duration; ``rotation`` is stored as display metadata."""
    av = require("av", "video")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with av.open(str(path), "w") as container:
        video: Any = container.add_stream(codec, rate=fps)
        video.width, video.height, video.pix_fmt = width, height, pix_fmt
        if rotation:
            video.set_display_rotation(rotation)
        tone: Any = None
        if audio:
            tone = container.add_stream("aac", rate=48000)
            tone.layout = "mono"
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(scene(i, width, height), format="rgb24")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            container.mux(video.encode(frame))
        container.mux(video.encode(None))
        if tone is not None:
            rate = 48000
            samples = (0.3 * np.sin(2 * np.pi * 440 * np.arange(rate * frames // fps) / rate)).astype(np.float32)
            for start in range(0, samples.size, 1024):
                chunk = av.AudioFrame.from_ndarray(samples[None, start:start + 1024], format="flt", layout="mono")
                chunk.sample_rate, chunk.pts, chunk.time_base = rate, start, Fraction(1, rate)
                container.mux(tone.encode(chunk))
            container.mux(tone.encode(None))
    return path
