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
