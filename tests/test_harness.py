"""The shared training loop (training/harness.py): metrics, schedules, EMA, optimizer updates,
checkpoint folders, resume rules, locks, signals, provenance and each option's effect on a tiny
colour filling run."""

from __future__ import annotations

import json
import math
import subprocess
import sys
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
from training.data import ImageSet  # noqa: E402

TINY_MODEL = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


def tiny(out: Path, *overrides: str) -> dict:
    """A colour filling config that trains in well under a second a step on one CPU."""
    cfg = H.load_config(C.DEFAULTS, None, [
        "device=cpu", "amp=false", "max_steps=4", "checkpoint_every=2", "sample_every=0", "workers=0",
        "schedule=alternating", 'data.package_images=["astronaut"]', "data.max_side=64", "data.crop=16",
        "data.batch=4", "val_batches=1", *overrides])
    cfg["model"] = dict(TINY_MODEL)
    cfg["out"] = str(out)
    return cfg


def state_tensors(folder: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return load_file(str(folder / H.STATE_WEIGHTS))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def log_rows(out: Path) -> list[dict[str, str]]:
    return H.read_csv_log(out / "log.csv")


# ---- metrics, schedules, EMA ---------------------------------------------------------------------
def test_psnr_and_ssim_match_scikit_image() -> None:
    from skimage.metrics import peak_signal_noise_ratio, structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((2, 3, 40, 36))
    b = np.clip(a + rng.normal(0, [[[[0.05]]], [[[0.2]]]], a.shape), 0, 1)
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    got_psnr, got_ssim = H.psnr(ta, tb).numpy(), H.ssim(ta, tb).numpy()
    for i in range(2):
        want = structural_similarity(a[i].transpose(1, 2, 0), b[i].transpose(1, 2, 0), data_range=1.0,
                                     channel_axis=-1, gaussian_weights=True, sigma=1.5, use_sample_covariance=False)
        assert got_ssim[i] == pytest.approx(want, abs=1e-6)
        assert got_psnr[i] == pytest.approx(peak_signal_noise_ratio(a[i], b[i], data_range=1.0), abs=1e-9)
    assert got_ssim[0] > got_ssim[1]


def test_lr_factor_warmup_and_schedules() -> None:
    sched = {"kind": "cosine", "warmup": 4, "min_factor": 0.1, "milestones": [], "gamma": 0.5}
    assert [H.lr_factor(s, 14, sched) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    # after warm-up, t = (step - 4) / 10: 0.1 + 0.9 * (1 + cos(pi t)) / 2
    for step in (4, 9, 14):
        t = (step - 4) / 10
        assert H.lr_factor(step, 14, sched) == pytest.approx(0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * t)))
    assert H.lr_factor(9, 14, {**sched, "kind": "linear"}) == pytest.approx(1 - 0.9 * 0.5)
    step_sched = {**sched, "kind": "step", "warmup": 0, "milestones": [3, 6], "gamma": 0.5}
    assert [H.lr_factor(s, 10, step_sched) for s in (0, 2, 3, 5, 6, 9)] == [1, 1, 0.5, 0.5, 0.25, 0.25]
    assert H.lr_factor(7, 10, {**sched, "kind": "constant", "warmup": 0}) == 1.0
    with pytest.raises(ValueError, match="lr_schedule.kind"):
        H.lr_factor(0, 10, {**sched, "kind": "exp"})


def test_ema_follows_the_closed_form_and_swaps_in_and_out() -> None:
    net = torch.nn.Linear(2, 1)
    with torch.no_grad():
        net.weight.fill_(1.0)
        net.bias.fill_(0.0)
    ema = H.EMA(net, decay=0.9)
    expected = 1.0
    for step, value in enumerate((3.0, 5.0, -1.0)):
        with torch.no_grad():
            net.weight.fill_(value)
        ema.update(step)
        d = min(0.9, (1 + step) / (10 + step))
        expected = d * expected + (1 - d) * value
    assert float(ema.shadow.weight[0, 0]) == pytest.approx(expected, rel=1e-6)
    with ema.swapped() as swapped:
        assert swapped is net and float(net.weight[0, 0]) == pytest.approx(expected, rel=1e-6)
    assert float(net.weight[0, 0]) == -1.0
    assert list(ema.shadow.parameters())[0].requires_grad is False
    with pytest.raises(ValueError, match="ema.decay"):
        H.EMA(net, 1.0)


# ---- optimizer updates ---------------------------------------------------------------------------
def _regression(seed: int = 0) -> tuple[torch.nn.Module, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    return torch.nn.Linear(3, 1), torch.randn(8, 3, generator=g), torch.randn(8, 1, generator=g)


def _mse(net: torch.nn.Module):
    def loss_fn(part):
        x, y = part
        loss = ((net(x) - y) ** 2).mean()
        return loss, {"loss": loss.detach()}
    return loss_fn


def test_accumulated_micro_batches_equal_the_whole_batch() -> None:
    results = []
    for accumulate in (1, 2, 4):
        net, x, y = _regression()
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        up = H.Updater({"o": opt}, H.DistContext(), {"accumulate": accumulate, "grad_clip": 0.0, "amp": False})
        logs = up.update("o", (x, y), _mse(net))
        results.append((net.weight.detach().clone(), logs["loss"]))
    for weight, loss in results[1:]:
        torch.testing.assert_close(weight, results[0][0], rtol=1e-6, atol=1e-7)
        assert loss == pytest.approx(results[0][1], rel=1e-6)
    with pytest.raises(ValueError, match="does not split into 3"):
        net, x, y = _regression()
        H.Updater({"o": torch.optim.SGD(net.parameters(), lr=0.1)}, H.DistContext(),
                  {"accumulate": 3}).update("o", (x, y), _mse(net))


@pytest.mark.parametrize("scaled", [False, True])
def test_clipping_acts_on_the_unscaled_gradient(scaled: bool) -> None:
    net, x, y = _regression(1)
    before = [p.detach().clone() for p in net.parameters()]
    loss, _ = _mse(net)((x, y))
    loss.backward()
    norm = math.sqrt(sum(float((p.grad**2).sum()) for p in net.parameters()))
    net.zero_grad()
    assert norm > 0.5
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    up = H.Updater({"o": opt}, H.DistContext(), {"accumulate": 1, "grad_clip": 0.5, "amp": False})
    if scaled:  # what fp16 on CUDA does: a loss scale of 2**10, unscaled before clipping
        up.scalers["o"] = torch.amp.GradScaler("cpu", init_scale=1024.0)
    up.update("o", (x, y), _mse(net))
    step = math.sqrt(sum(float(((p - b) ** 2).sum()) for p, b in zip(net.parameters(), before)))
    assert step == pytest.approx(0.5, rel=1e-5)
    assert up.last_grad_norm["o"] == pytest.approx(norm, rel=1e-5)


def test_autocast_wraps_the_forward_pass_only(monkeypatch: pytest.MonkeyPatch) -> None:
    net, x, y = _regression(2)
    seen: dict[str, bool] = {}

    def loss_fn(part):
        seen["forward"] = torch.is_autocast_enabled("cpu")
        out = net(part[0])
        out.register_hook(lambda g: seen.__setitem__("backward", torch.is_autocast_enabled("cpu")))
        return ((out.float() - part[1]) ** 2).mean(), {}

    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    original_step = opt.step
    monkeypatch.setattr(opt, "step", lambda *a, **k: (seen.__setitem__("step", torch.is_autocast_enabled("cpu")),
                                                       original_step(*a, **k)))
    up = H.Updater({"o": opt}, H.DistContext(), {"accumulate": 1, "amp": True})
    monkeypatch.setattr(up, "autocast", lambda: torch.autocast("cpu", dtype=torch.bfloat16))
    up.update("o", (x, y), loss_fn)
    assert seen == {"forward": True, "backward": False, "step": False}


def test_fp16_loss_scaling_on_the_cpu_skips_overflowing_steps() -> None:
    """``amp_cpu`` with ``float16``: the forward pass runs in fp16 under autocast, the loss is
    scaled, a step whose gradients overflow is skipped and the scale halved (GradScaler's rule),
    the next finite step trains."""
    net, x, y = _regression(3)
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    up = H.Updater({"o": opt}, H.DistContext(), {"accumulate": 1, "amp": True, "amp_dtype": "float16",
                                                   "amp_cpu": True})
    scaler = up.scalers["o"]
    assert scaler.is_enabled() and scaler.get_scale() == 65536.0
    dtypes = []

    def loss_fn(part, blow_up=False):
        out = net(part[0])
        dtypes.append((out.dtype, torch.is_autocast_enabled("cpu")))
        loss = ((out.float() - part[1]) ** 2).mean()
        return (loss * float("inf") if blow_up else loss), {}

    before = net.weight.detach().clone()
    up.update("o", (x, y), lambda p: loss_fn(p, blow_up=True))
    assert torch.equal(net.weight, before) and scaler.get_scale() == 32768.0  # skipped, scale halved
    up.update("o", (x, y), loss_fn)
    assert not torch.equal(net.weight, before) and scaler.get_scale() == 32768.0
    assert dtypes == [(torch.float16, True)] * 2
    assert set(up.state_dict()) == {"o"}  # the scale is part of the training state
    # off by default on the CPU: no autocast, no scaler
    plain = H.Updater({"o": opt}, H.DistContext(), {"amp": True, "amp_dtype": "float16"})
    assert not plain.scalers["o"].is_enabled() and not isinstance(plain.autocast(), torch.autocast)


def test_fp16_run_on_the_cpu_resumes_exactly(tmp_path: Path) -> None:
    fp16 = ("amp=true", "amp_dtype=float16", "amp_cpu=true", "validate=false")
    straight = C.train(tiny(tmp_path / "a", "max_steps=3", *fp16))
    C.train(tiny(tmp_path / "b", "max_steps=2", *fp16))
    resumed = C.train(tiny(tmp_path / "b", "max_steps=3", *fp16), resume=True)
    a, b = straight["model"].state_dict(), resumed["model"].state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    meta = json.loads((H.checkpoint_dirs(tmp_path / "b")[-1][1] / H.STATE_META).read_text())
    assert set(meta["scalers"]) == {"g", "d"} and meta["scalers"]["g"]["scale"] > 0


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_fp16_loss_scaling_on_cuda(tmp_path: Path) -> None:
    """The CUDA case of the fp16 path: autocast in fp16 on the GPU, an overflowing step skipped
    with the scale halved, and a tiny run whose scaler state is saved with its checkpoint."""
    net, x, y = _regression(3)
    net, x, y = net.cuda(), x.cuda(), y.cuda()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    ctx = H.DistContext(device=torch.device("cuda"))
    up = H.Updater({"o": opt}, ctx, {"accumulate": 1, "amp": True, "amp_dtype": "float16"})
    assert up.scalers["o"].is_enabled()
    seen = []

    def loss_fn(part, blow_up=False):
        out = net(part[0])
        seen.append(out.dtype)
        loss = ((out.float() - part[1]) ** 2).mean()
        return (loss * float("inf") if blow_up else loss), {}

    before = net.weight.detach().clone()
    up.update("o", (x, y), lambda p: loss_fn(p, blow_up=True))
    assert torch.equal(net.weight, before) and up.scalers["o"].get_scale() == 32768.0
    up.update("o", (x, y), loss_fn)
    assert not torch.equal(net.weight, before) and seen == [torch.float16] * 2
    result = C.train(tiny(tmp_path / "run", "device=cuda", "amp=true", "amp_dtype=float16", "max_steps=2"))
    assert result["steps"] == 2
    meta = json.loads((H.checkpoint_dirs(tmp_path / "run")[-1][1] / H.STATE_META).read_text())
    assert set(meta["scalers"]) == {"g", "d"}


def test_batch_per_process_from_global_batch() -> None:
    cfg = {"global_batch": 12, "accumulate": 2, "data": {"batch": 5}}
    assert H.process_batch(cfg, H.DistContext(world_size=3)) == 4 and H.process_batch(cfg, H.DistContext()) == 12
    assert H.process_batch({**cfg, "global_batch": 0, "accumulate": 1}, H.DistContext(world_size=3)) == 5
    with pytest.raises(ValueError, match="does not divide over 5 processes"):
        H.process_batch(cfg, H.DistContext(world_size=5))
    with pytest.raises(ValueError, match="multiple of accumulate"):
        H.process_batch({**cfg, "accumulate": 5}, H.DistContext())


# ---- a run's folder: checkpoints, export, validation, provenance -------------------------------
def test_checkpoints_are_step_folders_with_the_step_inside_the_weights(tmp_path: Path) -> None:
    out = tmp_path / "run"
    C.train(tiny(out, "max_steps=6", "keep_last=2", "validate=false"))
    assert [s for s, _ in H.checkpoint_dirs(out)] == [4, 6]  # keep_last=2: step 2 pruned
    for step, folder in H.checkpoint_dirs(out):
        assert folder.name == f"step_{step:08d}"
        assert H.weights_step(folder / H.STATE_WEIGHTS) == step
        assert json.loads((folder / H.STATE_META).read_text())["step"] == step
        assert sorted(p.name for p in folder.iterdir()) == ["colorize.json", "colorize.safetensors", "state.json",
                                                          "state.safetensors"]
    assert not [p for p in (out / "checkpoints").iterdir() if p.name.startswith(".")]
    assert (out / "losses.png").stat().st_size > 0 and (out / "run.lock").is_file()


def test_ema_weights_differ_from_raw_and_are_the_exported_ones(tmp_path: Path) -> None:
    from pyfill.export import load_checkpoint

    out = tmp_path / "run"
    result = C.train(tiny(out, "ema.decay=0.99"))
    state = state_tensors(H.checkpoint_dirs(out)[-1][1])
    ema = {k[len("model.ema."):]: v for k, v in state.items() if k.startswith("model.ema.")}
    raw = {k[len("model.model.generator."):]: v for k, v in state.items() if k.startswith("model.model.generator.")}
    assert ema.keys() == raw.keys() and not same(ema, raw)
    exported, manifest = load_checkpoint(out / "colorize.safetensors")
    assert same({k: v for k, v in exported.generator.state_dict().items()}, ema)
    # the discriminator is exported as trained (no average)
    assert same(exported.discriminator.state_dict(), result["model"].discriminator.state_dict())
    assert same(result["model"].generator.state_dict(), raw)
    # decay 0: the average is the weights themselves
    plain = tmp_path / "plain"
    C.train(tiny(plain, "ema.decay=0"))
    exported, _ = load_checkpoint(plain / "colorize.safetensors")
    state = state_tensors(H.checkpoint_dirs(plain)[-1][1])
    assert same(exported.generator.state_dict(),
                {k[len("model.model.generator."):]: v for k, v in state.items() if k.startswith("model.model.generator.")})


def test_validation_metrics_are_logged_and_measured_on_the_exported_weights(tmp_path: Path) -> None:
    from skimage.metrics import peak_signal_noise_ratio

    from pyfill.export import load_checkpoint

    out = tmp_path / "run"
    result = C.train(tiny(out, "val_batches=2"))
    rows = log_rows(out)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    logged = {int(r["step"]): r for r in rows if r["val_psnr"]}
    assert sorted(logged) == [2, 4] and all(0 < float(r["val_ssim"]) <= 1 for r in logged.values())
    # the logged PSNR of step 4, recomputed independently from the exported checkpoint
    net, _ = load_checkpoint(out / "colorize.safetensors")
    images = ImageSet((), ["astronaut"], 64, 16)
    psnrs = []
    for k in range(2):
        rgb = images.random_crops(4, 16, H.validation_generator(0, k))
        with torch.no_grad():
            fill, _ = C.colorized(net, rgb)
        psnrs += [peak_signal_noise_ratio(rgb[i].numpy().astype(np.float64), fill[i].numpy().astype(np.float64),
                                          data_range=1.0) for i in range(4)]
    assert float(logged[4]["val_psnr"]) == pytest.approx(float(np.mean(psnrs)), abs=1e-4)
    best = max(logged, key=lambda s: float(logged[s]["val_psnr"]))
    assert result["best"]["step"] == best
    best_net, _ = load_checkpoint(out / "colorize_best.safetensors")
    best_state = state_tensors(out / "checkpoints" / f"step_{best:08d}")
    assert same(best_net.generator.state_dict(),
                {k[len("model.ema."):]: v for k, v in best_state.items() if k.startswith("model.ema.")})


def test_every_exported_manifest_carries_provenance(tmp_path: Path) -> None:
    import pyfill
    from pyfill.manifest import Manifest

    out = tmp_path / "run"
    C.train(tiny(out))
    for path in (out / "colorize.json", H.checkpoint_dirs(out)[0][1] / "colorize.json"):
        prov = Manifest.load(path).provenance["training"]
        step = 4 if path.parent == out else 2
        assert prov["steps"] == step and prov["config"]["max_steps"] == 4
        assert prov["pyfill_version"] == pyfill.__version__ and prov["train_seconds"] > 0
        assert prov["data"]["package_images"] == ["astronaut"] and len(prov["data"]["sha256"]) == 64
        if H.git_commit() is not None:
            assert len(prov["git"]["commit"]) == 40
    # the data hash follows the files: another folder, another hash
    from PIL import Image

    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        Image.fromarray(np.zeros((32, 32, 3), np.uint8)).save(tmp_path / name / "x.png")
    Image.fromarray(np.zeros((32, 40, 3), np.uint8)).save(tmp_path / "b" / "y.png")
    sums = [ImageSet([tmp_path / n], (), 64, 16).manifest()["sha256"] for n in ("a", "b", "a")]
    assert sums[0] == sums[2] != sums[1]


# ---- refusals: resume, overwrite, locks -------------------------------------------------------
def test_resume_refuses_a_folder_with_no_state(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="nothing to resume"):
        C.train(tiny(tmp_path / "empty"), resume=True)


def test_a_new_run_refuses_to_overwrite_an_earlier_one_unless_forced(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    C.train(tiny(out, "max_steps=2"))
    with pytest.raises(ValueError, match="holds an earlier run.*--resume.*--force"):
        C.train(tiny(out, "max_steps=2"))
    args = ["--out", str(out), "--set", "device=cpu", "--set", "amp=false", "--set", "max_steps=2",
            "--set", "workers=0", "--set", 'data.package_images=["astronaut"]', "--set", "data.max_side=64",
            "--set", "data.crop=16", "--set", "data.batch=2", "--set", "model.base=4", "--set", "model.depth=2",
            "--set", "model.disc_base=4", "--set", "model.disc_layers=2", "--set", "schedule=alternating"]
    assert C.main(args) == 2
    assert "holds an earlier run" in capsys.readouterr().err
    (out / "notes.txt").write_text("mine")
    assert C.main([*args, "--force"]) == 0
    assert (out / "notes.txt").read_text() == "mine"  # only what a run writes is deleted
    assert [s for s, _ in H.checkpoint_dirs(out)] == [2]


def test_mixed_or_partial_checkpoints_are_refused(tmp_path: Path) -> None:
    import shutil

    out = tmp_path / "run"
    C.train(tiny(out, "checkpoint_every=1", "keep_last=10", "max_steps=3"))
    dirs = dict(H.checkpoint_dirs(out))
    shutil.copy(dirs[2] / H.STATE_META, dirs[3] / H.STATE_META)  # weights of step 3, metadata of step 2
    with pytest.raises(ValueError, match="holds step 3 but state.json says step 2: a mixed training state"):
        C.train(tiny(out, "max_steps=5"), resume=True)
    (dirs[3] / H.STATE_META).unlink()
    with pytest.raises(FileNotFoundError, match="no complete training state.*found only state.safetensors"):
        C.train(tiny(out, "max_steps=5"), resume=True)


def test_resume_applies_changeable_settings_and_refuses_the_others(tmp_path: Path, capsys) -> None:
    out = tmp_path / "run"
    base = ["--out", str(out), "--set", "device=cpu", "--set", "amp=false", "--set", "max_steps=2", "--set",
            "workers=0", "--set", 'data.package_images=["astronaut"]', "--set", "data.max_side=64", "--set",
            "data.crop=16", "--set", "data.batch=2", "--set", "model.base=4", "--set", "model.depth=2", "--set",
            "model.disc_base=4", "--set", "model.disc_layers=2", "--set", "schedule=alternating", "--set", "lr_g=0.0002"]
    assert C.main(base) == 0
    # --resume starts from the saved config: only the changed keys are given
    assert C.main(["--out", str(out), "--resume", "--set", "max_steps=4", "--set", "lr_g=0.001"]) == 0
    rows = log_rows(out)
    assert [float(r["lr_g"]) for r in rows] == [0.0002, 0.0002, 0.001, 0.001]
    meta = json.loads((H.checkpoint_dirs(out)[-1][1] / H.STATE_META).read_text())
    assert meta["config"]["lr_g"] == 0.001 and meta["config"]["model"]["base"] == 4
    assert meta["history"] == [{"step": 2, "changed": {"lr_g": [0.0002, 0.001], "max_steps": [2, 4]}}]
    assert C.main(["--out", str(out), "--resume", "--set", "max_steps=6", "--set", "model.base=8"]) == 2
    err = capsys.readouterr().err
    assert "cannot change model.base: saved 4, given 8 when resuming" in err
    assert [s for s, _ in H.checkpoint_dirs(out)][-1] == 4  # nothing was trained


def test_a_second_process_cannot_take_the_run_folder(tmp_path: Path) -> None:
    out = tmp_path / "run"
    holder = subprocess.Popen(
        [sys.executable, "-c", f"import sys, time; sys.path.append({str(ROOT)!r}); from training import harness as H; "
         f"H.acquire_lock({str(out)!r}); print('locked', flush=True); time.sleep(60)"],
        stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(H.RunLockedError, match=f"in use by another training process \\(pid {holder.pid}\\)"):
            C.train(tiny(out))
    finally:
        holder.kill()
        holder.wait()
    C.train(tiny(out, "max_steps=1"))  # the lock of a killed process is gone with it
    assert [s for s, _ in H.checkpoint_dirs(out)] == [1]


# ---- each option's effect on a tiny run -----------------------------------------------------------
def test_options_show_their_effect_on_a_tiny_run(tmp_path: Path) -> None:
    runs = {name: C.train(tiny(tmp_path / name, *over)) for name, over in {
        "plain": (),
        "workers": ("workers=2",),
        "cosine": ("lr_schedule.kind=cosine", "lr_schedule.warmup=2", "lr_schedule.min_factor=0.5"),
        "clip": ("grad_clip=0.01",),
        "accumulate": ("accumulate=2",),
        "global": ("global_batch=2",),
        "samples": ("sample_every=2",),
    }.items()}
    rows = {name: log_rows(Path(r["out"])) for name, r in runs.items()}
    params = {name: r["model"].state_dict() for name, r in runs.items()}
    # the batch of a step depends on (seed, step, rank) only: loader workers change nothing
    assert same(params["workers"], params["plain"])
    # warm-up then cosine: lr_g = 2e-4 x factor, logged per step
    want = [2e-4 * H.lr_factor(s, 4, {"kind": "cosine", "warmup": 2, "min_factor": 0.5}) for s in range(4)]
    assert [float(r["lr_g"]) for r in rows["cosine"]] == pytest.approx(want)
    assert [float(r["lr_g"]) for r in rows["plain"]] == [2e-4] * 4
    # clipping: the pre-clip norm is logged, and the run differs
    assert all(float(r["grad_norm_g"]) > 0.01 for r in rows["clip"]) and "grad_norm_g" not in rows["plain"][0]
    assert not same(params["clip"], params["plain"])
    # accumulation: 2 micro-batches of 2 give the same losses as one batch of 4 (same data, same mean)
    for a, b in zip(rows["accumulate"][:1], rows["plain"][:1]):
        assert float(a["loss_d"]) == pytest.approx(float(b["loss_d"]), rel=1e-5)
    # global batch 2 on one process: a batch of 2, not data.batch's 4
    assert not same(params["global"], params["plain"])
    assert sorted(p.name for p in Path(runs["samples"]["out"]).glob("samples_*.png")) == \
        ["samples_000002.png", "samples_000004.png"]
    assert not list(Path(runs["plain"]["out"]).glob("samples_*.png"))


def test_early_stopping_ends_a_run_that_stops_improving(tmp_path: Path) -> None:
    # min_delta 1000 dB: no validation after the first counts as an improvement
    result = C.train(tiny(tmp_path / "run", "max_steps=20", "checkpoint_every=1", "early_stop.patience=2",
                          "early_stop.min_delta=1000"))
    assert result["early_stopped"] and result["steps"] == 3
    assert result["best"]["step"] == 1
    assert [int(r["step"]) for r in log_rows(tmp_path / "run")] == [1, 2, 3]


def test_tensorboard_events_beside_the_csv(tmp_path: Path) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    C.train(tiny(tmp_path / "run"))
    events = EventAccumulator(str(tmp_path / "run" / "tensorboard"))
    events.Reload()
    assert {"loss_g", "loss_d", "lr_g", "val_psnr"} <= set(events.Tags()["scalars"])
    csv_rows = log_rows(tmp_path / "run")
    assert [e.value for e in events.Scalars("loss_d")] == pytest.approx([float(r["loss_d"]) for r in csv_rows])


def test_stale_temporary_checkpoints_are_removed_and_never_resumed(tmp_path: Path) -> None:
    out = tmp_path / "run"
    C.train(tiny(out, "max_steps=2"))
    stale = out / "checkpoints" / ".tmp_step_00000003_99999"
    stale.mkdir()
    (stale / H.STATE_META).write_text("{}")
    assert H.latest_checkpoint(out).name == "step_00000002"
    result = C.train(tiny(out), resume=True)
    assert result["steps"] == 4 and not stale.exists()
