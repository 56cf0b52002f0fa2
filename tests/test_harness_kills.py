"""Training runs in their own processes: SIGTERM saves before exiting, ``kill -9`` at random
moments never leaves a checkpoint that resumes differently from an uninterrupted run, and the
memory of a run over 2,000 image files stays flat."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from training import colorize as C  # noqa: E402
from training import harness as H  # noqa: E402

TINY = ["device=cpu", "amp=false", "schedule=alternating", 'data.package_images=["astronaut"]', "data.max_side=64",
        "data.crop=16", "data.batch=2", "model.base=4", "model.depth=2", "model.disc_base=4", "model.disc_layers=2",
        "val_batches=1", "tensorboard=false", "sample_every=0"]


def write_config(path: Path, out: Path, *overrides: str) -> dict:
    cfg = H.load_config(C.DEFAULTS, None, [*TINY, *overrides])
    cfg["out"] = str(out)
    path.write_text(json.dumps(cfg))
    return cfg


def launch(config: Path, *args: str) -> subprocess.Popen:
    code = f"import sys; sys.path.append({str(ROOT)!r}); from training import colorize; sys.exit(colorize.main(sys.argv[1:]))"
    # one thread and MKL's reproducible code path: the same step in two processes gives the same bits
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_CBWR": "COMPATIBLE", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen([sys.executable, "-c", code, "--config", str(config), *args], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def logged_steps(out: Path) -> int:
    try:
        return len(H.read_csv_log(out / "log.csv"))
    except (FileNotFoundError, KeyError, ValueError):
        return 0


def state_of(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / H.STATE_WEIGHTS))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def test_sigterm_saves_the_step_it_reached_and_resume_continues(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cfg = write_config(tmp_path / "c.json", out, "max_steps=100000", "checkpoint_every=100000", "workers=1")
    proc = launch(tmp_path / "c.json")
    deadline = time.monotonic() + 120
    while logged_steps(out) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err[-2000:]
    assert "stopped by SIGTERM after saving step" in err
    (step, folder), = H.checkpoint_dirs(out)
    assert step == logged_steps(out) >= 2 and H.weights_step(folder / H.STATE_WEIGHTS) == step
    assert (out / "colorize.safetensors").is_file() and (out / "losses.png").is_file()
    result = C.train({**cfg, "max_steps": step + 1, "workers": 0}, resume=True)
    assert result["steps"] == step + 1 and [int(r["step"]) for r in H.read_csv_log(out / "log.csv")] == \
        list(range(1, step + 2))


def _kill_loop(tmp_path: Path, kills: int, steps: int, seed: int) -> None:
    """Train ``steps`` steps with a checkpoint every step, killing the process with SIGKILL at
    random moments ``kills`` times and resuming; every checkpoint left behind must equal the
    uninterrupted run's checkpoint of that step, tensor for tensor, and the run must end equal."""
    rng = random.Random(seed)
    ref_out, out = tmp_path / "reference", tmp_path / "killed"
    common = (f"max_steps={steps}", "checkpoint_every=1", "workers=1")
    write_config(tmp_path / "ref.json", ref_out, *common, f"keep_last={steps + 1}")
    proc = launch(tmp_path / "ref.json")  # the same process set-up (threads) as the killed runs
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    reference = {s: state_of(f) for s, f in H.checkpoint_dirs(ref_out)}
    assert sorted(reference) == list(range(1, steps + 1))
    write_config(tmp_path / "run.json", out, *common, "keep_last=2")
    seen, done = [], 0
    while done < kills:
        resume = H.latest_checkpoint(out) is not None
        proc = launch(tmp_path / "run.json", *(["--resume"] if resume else []))
        before = logged_steps(out)
        deadline = time.monotonic() + 120
        # wait for training to be under way, then kill at a random moment within the next steps
        while logged_steps(out) <= before and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.6))
        if proc.poll() is not None:
            _, err = proc.communicate()
            assert proc.returncode == 0, err[-3000:]
            break  # the run ended before the kill
        proc.kill()
        proc.communicate()
        done += 1
        for step, folder in H.checkpoint_dirs(out):
            state = state_of(folder)
            assert H.weights_step(folder / H.STATE_WEIGHTS) == step
            assert json.loads((folder / H.STATE_META).read_text())["step"] == step
            differ = sorted(k for k in state if not torch.equal(state[k], reference[step].get(k, state[k] + 1)))
            assert not differ, f"checkpoint of step {step} differs after kill {done} (history {seen}): {differ[:6]}"
        seen.append(H.checkpoint_dirs(out)[-1][0] if H.checkpoint_dirs(out) else 0)
    assert done == kills, f"the run ended after {done} kills; give it more steps"
    assert len(set(seen)) > 1, "every kill landed at the same step"
    proc = launch(tmp_path / "run.json", "--resume")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    assert same(state_of(H.checkpoint_dirs(out)[-1][1]), reference[steps])
    assert [int(r["step"]) for r in H.read_csv_log(out / "log.csv")] == list(range(1, steps + 1))


def test_kill_9_three_times_never_leaves_a_checkpoint_that_resumes_differently(tmp_path: Path) -> None:
    _kill_loop(tmp_path, kills=3, steps=16, seed=0)


@pytest.mark.slow
def test_kill_9_twenty_times_never_leaves_a_checkpoint_that_resumes_differently(tmp_path: Path) -> None:
    _kill_loop(tmp_path, kills=20, steps=70, seed=1)


def _peak_rss_of_a_run(tmp_path: Path, folder: Path, name: str, steps: int) -> list[float]:
    out = tmp_path / name
    write_config(tmp_path / f"{name}.json", out, f"max_steps={steps}", "checkpoint_every=100000", "workers=0",
                 "data.batch=8", "data.package_images=[]", f'data.folders=["{folder}"]', "data.max_side=96",
                 "validate=false")
    proc = launch(tmp_path / f"{name}.json")
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 0, err[-3000:]
    return [float(r["rss_mb"]) for r in H.read_csv_log(out / "log.csv")]


def test_memory_stays_flat_over_2000_image_files(tmp_path: Path) -> None:
    from PIL import Image

    big, small = tmp_path / "photos2000", tmp_path / "photos200"
    big.mkdir()
    small.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2000):
        Image.fromarray(rng.integers(0, 256, (96, 96, 3), dtype=np.uint8)).save(big / f"{i:04d}.png", compress_level=1)
        if i < 200:
            os.link(big / f"{i:04d}.png", small / f"{i:04d}.png")
    # held in memory as float32 the way the first harness did, the extra 1,800 images would take
    # 1800 x 96 x 96 x 3 x 4 bytes = 190 MiB
    rss_big = _peak_rss_of_a_run(tmp_path, big, "big", 150)
    rss_small = _peak_rss_of_a_run(tmp_path, small, "small", 30)
    assert len(rss_big) == 150
    # 150 steps x 8 crops decode 1,200 files; after step 20 the resident size grows by < 8 MiB
    assert max(rss_big[20:]) - rss_big[20] < 8.0, (rss_big[20], max(rss_big[20:]))
    # ten times the files, the same memory (within 10 MiB)
    assert abs(max(rss_big[:30]) - max(rss_small)) < 10.0, (max(rss_big[:30]), max(rss_small))
