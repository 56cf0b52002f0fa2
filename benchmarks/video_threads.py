"""Video restore FPS with limited codec threads: ``pyfill.video.process(..., codec_threads=N)``
against the loop a user would write (cv2.VideoCapture -> Engine per frame -> cv2.VideoWriter),
same machine, same run. One untimed run per method, then the best of two.

    python benchmarks/video_threads.py [FRAMES] [TASKS]   # e.g. 24 restore,colorize
"""

from __future__ import annotations

import sys
import tempfile
import time
from pathlib import Path

import pyfill
from pyfill.tasks import frame_processor
from pyfill.video import process
from pyfill.video.samples import write_test_clip
from test_bench_video import naive_loop  # the loop a user would write, as the benchmark times it


def fps(run, frames: int, reps: int = 2) -> float:
    run()  # untimed: compiles the static shapes
    times = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return frames / min(times)


def main() -> None:
    frames = int(sys.argv[1]) if len(sys.argv) > 1 else 24
    tasks = sys.argv[2].split(",") if len(sys.argv) > 2 else ["restore"]
    tmp = Path(tempfile.mkdtemp())
    clips = {"360p": write_test_clip(tmp / "360.mp4", width=640, height=360, frames=frames),
             "720p": write_test_clip(tmp / "720.mp4", width=1280, height=720, frames=frames)}
    for task in tasks:
        engine = pyfill.Engine.from_pretrained(task)
        fn = frame_processor(task, tile=0) if task == "restore" else frame_processor(task)
        for size, src in clips.items():
            base = fps(lambda: naive_loop(src, tmp / "naive.mp4", engine), frames)
            line = [f"{task} {size}: naive {base:.1f} FPS"]
            for threads in (None, 1, 2):
                got = fps(lambda: process(src, tmp / "out.mp4", fn, progress=False, codec_threads=threads,
                                          smooth=task == "colorize"), frames)
                line.append(f"codec_threads={threads}: {got:.1f} FPS ({got / base:.2f}x)")
            print(" | ".join(line), flush=True)


if __name__ == "__main__":
    main()
