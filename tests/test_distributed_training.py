"""Training across machines: two ``torchrun`` launchers, one per "node", join one job through a
c10d rendezvous (the commands of docs/scale.md, both on this machine) and train the restoration
model with DistributedDataParallel over gloo; the two replicas end identical and trained."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
safetensors_torch = pytest.importorskip("safetensors.torch")

ROOT = Path(__file__).resolve().parents[1]
TINY = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_nodes_rendezvous_and_train_one_model(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.append({str(ROOT)!r})
        from safetensors.torch import save_file
        from training import harness as H, restore as R
        cfg = H.load_config(R.DEFAULTS, None, ["device=cpu", "amp=false", "max_steps=4", "checkpoint_every=4",
            "sample_every=0", "d_pretrain_steps=1", 'data.package_images=["astronaut"]', "data.max_side=64",
            "data.crop=16", "data.batch=2"])
        cfg["model"] = {TINY!r}
        cfg["out"] = {str(tmp_path / "run")!r}
        res = R.train(cfg)
        state = {{k: v.contiguous() for k, v in res["model"].state_dict().items()}}
        save_file(state, os.path.join(cfg["out"], "rank" + os.environ["RANK"] + "-of-" + os.environ["WORLD_SIZE"]
                                      + ".safetensors"))
    """))
    endpoint = f"127.0.0.1:{_free_port()}"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    launchers = [
        subprocess.Popen(
            [sys.executable, "-m", "torch.distributed.run", "--nnodes", "2", "--nproc_per_node", "1",
             "--rdzv_backend", "c10d", "--rdzv_endpoint", endpoint, "--rdzv_id", "restore-test",
             "--rdzv_conf", f"is_host={'true' if node == 0 else 'false'}", str(worker)],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            start_new_session=True)  # its own process group: a timeout ends the launcher and its worker
        for node in (0, 1)
    ]
    try:
        errors = [p.communicate(timeout=240)[1] for p in launchers]
    except subprocess.TimeoutExpired:
        for p in launchers:
            os.killpg(p.pid, signal.SIGKILL)
            p.communicate()
        raise
    for p, err in zip(launchers, errors):
        assert p.returncode == 0, err[-3000:]

    r0 = safetensors_torch.load_file(str(tmp_path / "run" / "rank0-of-2.safetensors"))
    r1 = safetensors_torch.load_file(str(tmp_path / "run" / "rank1-of-2.safetensors"))
    assert r0.keys() == r1.keys()
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the replicas on the two nodes differ"
    sys.path.append(str(ROOT))
    from training import harness as H

    assert [int(r["step"]) for r in H.read_csv_log(tmp_path / "run" / "log.csv")] == [1, 2, 3, 4]
    assert (tmp_path / "run" / "restore.safetensors").is_file()


def _global_batch_worker(tmp_path: Path, name: str) -> Path:
    """A colorize run of two steps with ``global_batch=4``. Its crops are fixed and numbered by
    their place in the global batch (a process of rank r with a batch of b takes crops r*b ..
    r*b + b - 1), so one process and two processes see the same four crops per step."""
    worker = tmp_path / f"{name}.py"
    worker.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.append({str(ROOT)!r})
        import torch
        from safetensors.torch import save_file
        from training import colorize as C, data as D, harness as H
        rank = int(os.environ.get("RANK", "0"))
        crops = torch.rand((4, 3, 16, 16), generator=torch.Generator().manual_seed(7))
        def fixed(self, batch, size, generator):
            return crops[rank * batch:(rank + 1) * batch].clone()
        D.ImageSet.random_crops = fixed
        cfg = H.load_config(C.DEFAULTS, None, ["device=cpu", "amp=false", "schedule=alternating", "max_steps=2",
            "checkpoint_every=2", "sample_every=0", "validate=false", "tensorboard=false", "workers=0",
            'data.package_images=["astronaut"]', "data.max_side=64", "data.crop=16", "data.batch=1",
            "global_batch=4", "ema.decay=0"])
        cfg["model"] = {{"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}}
        cfg["out"] = {str(tmp_path / name)!r}
        res = C.train(cfg)
        save_file({{k: v.contiguous() for k, v in res["model"].state_dict().items()}},
                  os.path.join(cfg["out"], "rank" + str(rank) + ".safetensors"))
    """))
    return worker


def test_global_batch_over_two_processes_makes_the_update_of_one_process(tmp_path: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    single = subprocess.run([sys.executable, str(_global_batch_worker(tmp_path, "one"))], cwd=tmp_path, env=env,
                            capture_output=True, text=True, timeout=240)
    assert single.returncode == 0, single.stderr[-3000:]
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(_free_port()), str(_global_batch_worker(tmp_path, "two"))],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        _, err = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, err[-3000:]
    one = safetensors_torch.load_file(str(tmp_path / "one" / "rank0.safetensors"))
    r0 = safetensors_torch.load_file(str(tmp_path / "two" / "rank0.safetensors"))
    r1 = safetensors_torch.load_file(str(tmp_path / "two" / "rank1.safetensors"))
    assert all(torch.equal(r0[k], r1[k]) for k in r0), "the replicas differ"
    torch.manual_seed(0)
    sys.path.append(str(ROOT))
    from pyfill.models import build_model

    init = build_model("colorize", {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}).state_dict()
    moved = max(float((one[k].float() - init[k].float()).abs().max()) for k in one)
    assert moved > 1e-4, "no training happened"
    # the same gradients up to the order of the sums: Adam's steps agree to far below a step's size
    worst = max(float((one[k].float() - r0[k].float()).abs().max()) for k in one)
    assert worst < 1e-3 * moved, (worst, moved)
