"""Restoration of a folder of images: ``pyfill restore DIR -o OUT`` in one process (the baseline)
against :func:`pyfill.distributed.map_images` on a local Ray instance with 1 worker of 2 CPUs and
2 workers of 1 CPU. Each round is one whole run (actor start-up and model loading included; the
Ray instance itself is started once, before). Images: PYFILL_BENCH_IMAGES (default 2000) random
RGB PNGs of PYFILL_BENCH_SIZE (default 128) pixels square.

Besides the wall time, each case records the CPU seconds it used per image (``extra_info``:
``cpu_ms_per_image``): the pytest process for the CLI; for Ray, the driver plus every process of
the Ray instance (sampled with psutil), so Ray's own work is counted even on a busy machine
where wall times mostly measure each process's share of the CPUs."""

from __future__ import annotations

import itertools
import os
import shutil
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from pyfill.cli import main
from pyfill.images import write_image

ray = pytest.importorskip("ray")
pytest.importorskip("ray.data")
from pyfill.distributed import map_images  # noqa: E402

N = int(os.environ.get("PYFILL_BENCH_IMAGES", "2000"))
SIZE = int(os.environ.get("PYFILL_BENCH_SIZE", "128"))
CASE = f"restore {N} images {SIZE}x{SIZE}"
_RUN = itertools.count()


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bench_ray")
    rng = np.random.default_rng(0)
    for i in range(N):
        write_image(root / "in" / f"{i // 500:02d}" / f"{i:05d}.png", rng.integers(0, 256, (SIZE, SIZE, 3), np.uint8))
    return root


@pytest.fixture(scope="module")
def cluster():
    if ray.is_initialized():
        ray.shutdown()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


class CpuMeter:
    """CPU seconds (user + system) used by this process and all its descendants while active,
    counting processes that start and end meanwhile (sampled every 0.2 s)."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.me = psutil.Process()
        self.start = self._sample()
        self.last = dict(self.start)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _sample(self) -> dict[int, float]:
        out = {}
        for proc in [self.me, *self.me.children(recursive=True)]:
            try:
                t = proc.cpu_times()
                out[proc.pid] = t.user + t.system
            except self.psutil.Error:
                pass
        return out

    def _run(self) -> None:
        while not self.stop.wait(0.2):
            self.last.update(self._sample())

    def seconds(self) -> float:
        self.stop.set()
        self.thread.join()
        self.last.update(self._sample())
        return sum(t - self.start.get(pid, 0.0) for pid, t in self.last.items())


def _measured(benchmark, run: Callable[[str], None], folder: Path) -> None:
    used: list[float] = []

    def timed(out: str) -> None:
        meter = CpuMeter()
        run(out)
        used.append(meter.seconds())

    benchmark.pedantic(timed, setup=lambda: _fresh(folder), rounds=1, iterations=1)
    benchmark.extra_info["images_per_second"] = N / benchmark.stats.stats.mean
    benchmark.extra_info["cpu_ms_per_image"] = 1000 * used[0] / N
    print(f"\n{benchmark.name}: {N / benchmark.stats.stats.mean:.2f} images/s, "
          f"{1000 * used[0] / N:.1f} CPU ms per image, load {os.getloadavg()[0]:.1f}")


def _fresh(folder: Path) -> tuple[tuple[str], dict]:
    out = folder / f"out{next(_RUN)}"
    shutil.rmtree(out, ignore_errors=True)
    return (str(out),), {}


def _check(out: Path) -> None:
    assert sum(1 for p in out.rglob("*.png")) == N


def test_cli_single_process(benchmark, ratios, folder: Path) -> None:
    def run(out: str) -> None:
        assert main(["restore", str(folder / "in"), "-o", out]) == 0
        _check(Path(out))

    _measured(benchmark, run, folder)
    ratios.record(benchmark, CASE, "cli (1 process)", "cli (1 process)")


@pytest.mark.parametrize("workers,cpus", [(1, 2), (2, 1)])
def test_ray_workers(benchmark, ratios, folder: Path, cluster, workers: int, cpus: int) -> None:
    def run(out: str) -> None:
        report = map_images(folder / "in", out, "restore", workers=workers, cpus_per_worker=cpus,
                            batch_size=16, progress=False)
        assert (report.done, report.failed) == (N, 0)
        _check(Path(out))

    _measured(benchmark, run, folder)
    ratios.record(benchmark, CASE, f"ray {workers} worker(s) x {cpus} CPU", "cli (1 process)")
