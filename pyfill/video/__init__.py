"""Video: decode -> infer -> encode in three threads, with audio, subtitles, timestamps,
rotation and colour tags kept. Needs the ``video`` extra (PyAV): ``pip install 'pyfill[video]'``.

- :func:`process` runs a task, an Engine or a frame function over a video and writes a video.
- :func:`frames` iterates over a video's frames (RGB uint8 (H, W, 3)).
- :func:`stream` processes frames an application owns, pipelined, in order.
"""

from __future__ import annotations

from pyfill.video.flicker import ChromaMeter, ChromaSmoother, chroma_change
from pyfill.video.pipeline import (
    TASKS,
    Report,
    VideoInterrupted,
    as_frame_fn,
    auto_batch,
    process,
    stream,
    task_processor,
)
from pyfill.video.reader import Frame, SourceInfo, VideoReader, frames, source_kind
from pyfill.video.writer import VideoWriter, default_codec

__all__ = ["process", "frames", "stream", "Report", "VideoInterrupted", "VideoReader", "VideoWriter", "Frame",
           "SourceInfo", "ChromaSmoother", "ChromaMeter", "chroma_change", "as_frame_fn", "task_processor",
           "default_codec", "source_kind", "auto_batch", "TASKS"]
