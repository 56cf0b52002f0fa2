"""Video FPS: pyfill.video.process against the loop a user would write (cv2.VideoCapture ->
Engine per frame -> cv2.VideoWriter, audio lost), same Engine object, same clip, same run.

Clips: the procedural scene of pyfill.video.samples with an AAC tone, H.264, at 640 x 360 and
1280 x 720, FRAMES frames each (short, so the suite fits on a shared 2-core machine).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest

av = pytest.importorskip("av")
cv2 = pytest.importorskip("cv2")

import pyfill  # noqa: E402
from pyfill.tasks import frame_processor  # noqa: E402
from pyfill.video import process  # noqa: E402
from pyfill.video.samples import write_test_clip  # noqa: E402

FRAMES = int(os.environ.get("PYFILL_BENCH_VIDEO_FRAMES", "6"))
SIZES = {"360p": (640, 360), "720p": (1280, 720)}


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("bench_video")
    return {name: write_test_clip(folder / f"{name}.mp4", width=w, height=h, frames=FRAMES)
            for name, (w, h) in SIZES.items()}


@pytest.fixture(scope="module")
def engines() -> dict[str, Any]:
    """The naive loop's Engines (defaults, what a user writes; restore also with tile=0) and the
    frame functions process() builds for a task name (pyfill.tasks.frame_processor: static
    shapes; restore with tile=0 up to 1080p), built once so that no run times a construction."""
    made: dict[str, Any] = {"restore": pyfill.Engine.from_pretrained("restore"),
                            "restore tile=0": pyfill.Engine.from_pretrained("restore", tile=0),
                            "colorize": pyfill.Engine.from_pretrained("colorize"),
                            "task restore": frame_processor("restore", tile=0),
                            "task colorize": frame_processor("colorize")}
    for name, run in made.items():                   # first calls outside the timing (each test also
                                                     # runs its whole clip once untimed: the static
                                                     # shapes compile once per batch shape)
        for w, h in SIZES.values():
            frame = np.zeros((h, w, 3), np.uint8)
            if name.startswith("task"):
                run([frame])
            else:
                run(frame)
    return made


def naive_loop(src: Path, dst: Path, engine: pyfill.Engine) -> int:
    """What a user would write: OpenCV in and out, the Engine on each frame."""
    cap = cv2.VideoCapture(str(src))
    fps = cap.get(cv2.CAP_PROP_FPS)
    size = (int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    out = cv2.VideoWriter(str(dst), cv2.VideoWriter_fourcc(*"mp4v"), fps, size)
    n = 0
    while True:
        ok, bgr = cap.read()
        if not ok:
            break
        result = engine(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB))
        if isinstance(result, dict):
            result = result["fill"]
        out.write(cv2.cvtColor(result, cv2.COLOR_RGB2BGR))
        n += 1
    cap.release()
    out.release()
    return n


# process() gets the frame function it builds for the task name (colorize: smoothing on, its
# default for that task). The naive loop is timed with the Engine's defaults (tiles above 512 px,
# what a user gets) and with tile=0, to show which part of the difference is whole-frame
# inference and which is the rest.
METHODS = [("restore", "naive cv2 loop", "restore"), ("restore", "naive cv2 loop, Engine tile=0", "restore tile=0"),
           ("restore", "pyfill.video.process", "task restore"),
           ("colorize", "naive cv2 loop", "colorize"), ("colorize", "pyfill.video.process", "task colorize")]


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("task,method,engine_key", METHODS)
def test_video_fps(benchmark, ratios, clips, engines, tmp_path, size, task, method, engine_key) -> None:
    src, engine = clips[size], engines[engine_key]
    if method.startswith("naive"):
        run = lambda: naive_loop(src, tmp_path / "naive.mp4", engine)  # noqa: E731
    else:
        run = lambda: process(src, tmp_path / "pyfill.mp4", engine, progress=False,  # noqa: E731
                              smooth=task == "colorize").frames_out
    frames = benchmark.pedantic(run, rounds=2 if size == "360p" else 1, warmup_rounds=1)
    assert frames == FRAMES
    benchmark.extra_info["fps"] = FRAMES / benchmark.stats.stats.mean if benchmark.stats else None
    ratios.record(benchmark, f"video {task} {size} ({FRAMES} frames)", method, "naive cv2 loop",
                  min_ratio=1.5 if method == "pyfill.video.process" else None)  # the CPU target (docs/video.md)
