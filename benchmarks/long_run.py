"""Long runs with memory watched: many Engine calls of mixed sizes from several threads, and a
long video through pyfill.video. Prints and writes (``--out``) JSON figures: calls, errors,
mismatches against a single-threaded rerun, and resident memory (RSS) at the start (after a
warm-up), its peak and at the end.

    nice -n 10 python benchmarks/long_run.py --calls 10000 --threads 4 --frames 10000 --out long.json

The shipped ``restore`` model runs both (small frames, so it finishes in minutes on a CPU).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np


def rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


class RssWatch:
    """Samples RSS every ``period`` seconds in a thread; ``peak`` and ``samples``."""

    def __init__(self, period: float = 0.5) -> None:
        self.period = period
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.samples.append(rss_mb())
            self._stop.wait(self.period)

    def __enter__(self) -> RssWatch:
        self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def peak(self) -> float:
        return max(self.samples, default=rss_mb())


def _inputs(seed: int) -> np.ndarray:
    """One image of a random size (8..96 a side) and kind: RGB, gray or RGBA uint8, or RGB float32."""
    rng = np.random.default_rng(seed)
    h, w = int(rng.integers(8, 97)), int(rng.integers(8, 97))
    kind = seed % 4
    if kind == 0:
        return rng.integers(0, 256, (h, w, 3), np.uint8)
    if kind == 1:
        return rng.integers(0, 256, (h, w), np.uint8)
    if kind == 2:
        return rng.integers(0, 256, (h, w, 4), np.uint8)
    return rng.random((h, w, 3), dtype=np.float32)


def engine_run(calls: int, threads: int, model: str) -> dict[str, Any]:
    from pyfill import Engine

    engine = Engine(model)
    for i in range(16):  # warm-up: allocator pools and the runtime's caches settle first
        engine(_inputs(10**6 + i))
    start_rss = rss_mb()
    errors: list[str] = []
    results: dict[int, np.ndarray] = {}
    lock = threading.Lock()
    counter = iter(range(calls))
    checkpoints: list[tuple[int, float]] = []

    def worker() -> None:
        while True:
            with lock:
                i = next(counter, None)
            if i is None:
                return
            try:
                out = engine(_inputs(i))
                if i % 250 == 0:
                    with lock:
                        results[i] = out
            except Exception as exc:  # noqa: BLE001 - counted and reported
                with lock:
                    errors.append(f"call {i}: {type(exc).__name__}: {exc}")
            if i % 1000 == 999:
                with lock:
                    checkpoints.append((i + 1, round(rss_mb(), 1)))

    t0 = time.perf_counter()
    with RssWatch() as watch:
        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
    seconds = time.perf_counter() - t0
    mismatches = sum(not np.array_equal(engine(_inputs(i)), out) for i, out in results.items())
    return {"calls": calls, "threads": threads, "model": model, "errors": len(errors), "first_errors": errors[:5],
            "checked_against_serial": len(results), "mismatches": mismatches, "seconds": round(seconds, 1),
            "rss_start_mb": round(start_rss, 1), "rss_peak_mb": round(watch.peak, 1),
            "rss_end_mb": round(rss_mb(), 1), "rss_per_1000_calls": sorted(checkpoints)}


def video_run(frames: int, width: int, height: int) -> dict[str, Any]:
    from pyfill import video
    from pyfill.video.samples import write_test_clip

    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "long.mp4"
        t0 = time.perf_counter()
        write_test_clip(src, width=width, height=height, frames=frames, fps=30, audio=False)
        made = time.perf_counter() - t0
        # Warm-up on a short clip, so the start figure includes the model and codec state.
        short = Path(tmp) / "short.mp4"
        write_test_clip(short, width=width, height=height, frames=30, fps=30, audio=False)
        video.process(short, Path(tmp) / "short_out.mp4", "restore", progress=False)
        start_rss = rss_mb()
        with RssWatch() as watch:
            report = video.process(src, Path(tmp) / "out.mp4", "restore", progress=False)
        counted = sum(1 for _ in video.frames(Path(tmp) / "out.mp4"))
    return {"frames": frames, "size": [width, height], "frames_in": report.frames_in,
            "frames_out": report.frames_out, "frames_in_output_file": counted, "corrupt": report.corrupt,
            "dropped": report.dropped, "seconds": round(report.seconds, 1), "clip_written_s": round(made, 1),
            "rss_start_mb": round(start_rss, 1), "rss_peak_mb": round(watch.peak, 1),
            "rss_end_mb": round(rss_mb(), 1)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=10_000)
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("--model", default="restore")
    parser.add_argument("--frames", type=int, default=10_000, help="video frames (0: skip the video run)")
    parser.add_argument("--size", type=int, nargs=2, default=[64, 48], metavar=("W", "H"))
    parser.add_argument("--out", default="long-run.json")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {"cpu": platform.processor() or _cpu(), "python": platform.python_version()}
    if args.calls:
        report["engine"] = engine_run(args.calls, args.threads, args.model)
        print(json.dumps(report["engine"]), flush=True)
        Path(args.out).write_text(json.dumps(report, indent=2))
    if args.frames:
        report["video"] = video_run(args.frames, *args.size)
        print(json.dumps(report["video"]), flush=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    bad = report.get("engine", {}).get("errors") or report.get("engine", {}).get("mismatches")
    lost = "video" in report and report["video"]["frames_out"] != args.frames
    return 1 if bad or lost else 0


def _cpu() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return "unknown"


if __name__ == "__main__":
    sys.exit(main())
