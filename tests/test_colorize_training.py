"""The shared training harness and the colour filling schedules (SPEC S1)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import textwrap
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
from training.data import ImageSet, list_images  # noqa: E402

TINY = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


def tiny_config(tmp_path: Path, **phased) -> dict:
    cfg = H.load_config(C.DEFAULTS, None, [
        "device=cpu", "amp=false", "max_steps=6", "checkpoint_every=3", "sample_every=0",
        "data.package_images=[\"astronaut\"]", "data.max_side=64", "data.crop=16", "data.batch=4",
    ])
    cfg["model"] = dict(TINY)
    cfg["out"] = str(tmp_path / "run")
    cfg["phased"].update(phased)
    return cfg


def make(cfg: dict, seed: int = 0) -> C.Schedule:
    torch.manual_seed(seed)
    from pyfill.models import build_model

    net = build_model("colorize", cfg["model"])
    return C.make_schedule(net, cfg, H.DistContext())


def batch(seed: int = 0, n: int = 4) -> torch.Tensor:
    return torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(seed))


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- configs ---------------------------------------------------------------------------------
def test_config_file_and_overrides(tmp_path: Path) -> None:
    f = tmp_path / "c.json"
    f.write_text('{"max_steps": 7, "phased": {"g_max_steps": 3}}')
    cfg = H.load_config(C.DEFAULTS, f, ["phased.d_max_steps=4", "schedule=alternating", "data.folders=[\"a\"]"])
    assert (cfg["max_steps"], cfg["phased"]["g_max_steps"], cfg["phased"]["d_max_steps"]) == (7, 3, 4)
    assert cfg["schedule"] == "alternating" and cfg["data"]["folders"] == ["a"]
    assert C.DEFAULTS["max_steps"] == 1000  # defaults untouched
    with pytest.raises(ValueError, match="unknown config key 'phased.nope'"):
        H.load_config(C.DEFAULTS, None, ["phased.nope=1"])
    with pytest.raises(ValueError, match="key=value"):
        H.load_config(C.DEFAULTS, None, ["max_steps"])
    f.write_text('{"bogus": 1}')
    with pytest.raises(ValueError, match="bogus"):
        H.load_config(C.DEFAULTS, f)


# ---- the phased schedule ---------------------------------------------------------------------
def test_generator_phase_keeps_discriminator_frozen(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=3))
    d0, g0 = params(s.net.discriminator), params(s.net.generator)
    for i in range(3):
        assert s.phase == "generator"
        s.step(batch(i))
    assert same(params(s.net.discriminator), d0), "D changed during the generator phase"
    assert not same(params(s.net.generator), g0), "G did not train"
    assert s.phase == "discriminator" and s.ended["generator"] == "cap"


def test_discriminator_phase_keeps_generator_frozen(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=1, d_max_steps=3, real_threshold=0.0, result_label="fake"))
    s.step(batch(0))
    g1, d1 = params(s.net.generator), params(s.net.discriminator)
    for i in range(3):
        assert s.phase == "discriminator"
        s.step(batch(i + 1))
    assert same(params(s.net.generator), g1), "G changed during the discriminator phase"
    assert not same(params(s.net.discriminator), d1), "D did not train"


def test_seed_result_loss_starts_with_no_gradient_for_d(tmp_path: Path) -> None:
    # The seed's discrimination-result loss uses r2 (the target D's verdict) as the label for r3;
    # at the start of a phase D equals the target D, so r3 == r2 and the loss gives D nothing to
    # learn, and the image loss does not depend on D (SPEC S1, Decisions).
    s = make(tiny_config(tmp_path, g_max_steps=1, d_max_steps=3, real_threshold=0.0))
    s.step(batch(0))
    d1 = params(s.net.discriminator)
    s.step(batch(1))
    assert same(params(s.net.discriminator), d1)


def test_selection_picks_exactly_the_fooled_samples(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=1, d_max_steps=5))
    s.step(batch(0))
    x = batch(7, n=8)
    # The hand-computed reference: r2 of the target discriminator on the target generator's fills.
    l_norm, _ = C.split_lab(x)
    with torch.no_grad():
        probs = torch.sigmoid(s.target_d(l_norm, s.net.generator(l_norm))).mean(dim=(1, 2, 3))
    threshold = float(probs.median())
    s.p["real_threshold"] = threshold
    s.step(x)
    expected = (probs > threshold).numpy()
    assert 0 < expected.sum() < len(expected)
    np.testing.assert_array_equal(s.last_selection.numpy(), expected)


def test_unselected_samples_do_not_move_the_discriminator(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=1, d_max_steps=5, real_threshold=1.0))
    s.step(batch(0))
    d1 = params(s.net.discriminator)
    logs = s.step(batch(1))
    assert logs["selected"] == 0.0 and logs["loss_d"] == 0.0
    assert same(params(s.net.discriminator), d1)


def test_select_fooled_threshold() -> None:
    r2 = torch.tensor([[0.2], [0.5], [0.51], [0.9]])
    assert C.select_fooled(r2, 0.5).tolist() == [False, False, True, True]


@pytest.mark.parametrize("phase", ["generator", "discriminator"])
def test_phase_stops_on_its_loss_threshold(tmp_path: Path, phase: str) -> None:
    cfg = {"g_max_steps": 50, "d_max_steps": 50, "real_threshold": 0.0}
    cfg.update({"g_loss_threshold": 1e9} if phase == "generator" else {"g_max_steps": 1, "d_loss_threshold": 1e9})
    s = make(tiny_config(tmp_path, **cfg))
    steps = 1 if phase == "generator" else 2
    for i in range(steps):
        s.step(batch(i))
    assert s.ended[phase] == "threshold"
    assert s.phase == ("discriminator" if phase == "generator" else "generator")


def test_loop_stops_when_total_loss_converges(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=2, d_max_steps=2, d_loss_threshold=-1.0, total_threshold=1e9))
    for i in range(4):
        s.step(batch(i))
    assert s.done and s.ended["loop"] == "converged" and s.round == 1
    with pytest.raises(RuntimeError, match="ended"):
        s.step(batch(9))


def test_loop_stops_at_max_rounds_and_carries_d(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, g_max_steps=1, d_max_steps=2, total_threshold=-1e9, max_rounds=2,
                         real_threshold=0.0, result_label="fake"))
    d_init = params(s.net.discriminator)
    for i in range(3):
        s.step(batch(i))
    assert s.round == 1 and not s.done
    # The new round's target discriminator is the D the previous round trained.
    assert same(params(s.target_d), params(s.net.discriminator))
    assert not same(params(s.target_d), d_init)
    for i in range(3):
        s.step(batch(10 + i))
    assert s.done and s.ended["loop"] == "max_rounds" and s.round == 2


def test_fixed_batch_steps_lower_each_phases_loss_and_the_phases_turn(tmp_path: Path) -> None:
    """On one fixed batch: four generator steps lower the generation loss and the fill's L1 to
    the colour image, then the phase turns to the discriminator, whose four steps lower its
    error (fills labelled fake: the seed's label r2 starts at D's own answer, with no gradient), then the next round's generator phase begins."""
    cfg = tiny_config(tmp_path, g_max_steps=4, d_max_steps=4, g_loss_threshold=-1.0, d_loss_threshold=-1.0,
                      total_threshold=-1.0, real_threshold=-1.0, result_label="fake")
    cfg["lr_g"] = cfg["lr_d"] = 5e-3
    s = make(cfg)
    rgb = ImageSet([], ["astronaut"], 64, 16).random_crops(4, 16, torch.Generator().manual_seed(0))

    def l1() -> float:  # of the fill's a and b to the colour image's
        with torch.no_grad():
            return float(torch.nn.functional.l1_loss(C.split_lab(C.colorized(s.net, rgb)[0])[1], C.split_lab(rgb)[1]))

    before, phases, g_losses = l1(), [], []
    for _ in range(4):
        phases.append(s.phase)
        g_losses.append(s.step(rgb)["loss_g"])
    assert phases == ["generator"] * 4 and (s.phase, s.round) == ("discriminator", 0)
    assert g_losses[-1] < g_losses[0] and l1() < before
    d_losses = [s.step(rgb)["loss_d"] for _ in range(4)]
    assert d_losses[-1] < d_losses[0]
    assert (s.phase, s.round, s.phase_step) == ("generator", 1, 0)


@pytest.mark.parametrize("steps", [1, 3, 5])
def test_schedule_state_round_trips_with_phase_and_frozen_networks(tmp_path: Path, steps: int) -> None:
    """The phased schedule's state (round, phase, step in phase, last losses, why phases ended)
    loads into a fresh schedule, which then freezes the network the phase keeps still; taken in
    the generator phase (1 step), the discriminator phase (3) and round 1 (5)."""
    cfg = tiny_config(tmp_path, g_max_steps=2, d_max_steps=2, g_loss_threshold=-1.0, d_loss_threshold=-1.0,
                      total_threshold=-1.0)
    s = make(cfg)
    for i in range(steps):
        s.step(batch(i))
    state = s.state_dict()
    want = {1: ("generator", 0, 1), 3: ("discriminator", 0, 1), 5: ("generator", 1, 1)}[steps]
    assert (state["phase"], state["round"], state["phase_step"]) == want and state["done"] is False
    other = make(cfg, seed=5)
    other.load_state_dict(json_round_trip(state))
    assert other.state_dict() == state
    g_frozen = not any(p.requires_grad for p in other.net.generator.parameters())
    d_frozen = not any(p.requires_grad for p in other.net.discriminator.parameters())
    assert (g_frozen, d_frozen) == ((False, True) if want[0] == "generator" else (True, False))
    assert not any(p.requires_grad for p in other.target_d.parameters())


@pytest.mark.parametrize(("distance", "n"), [("l1", 4), ("l2", 4), ("l1", 1)])
def test_discrimination_error_is_the_image_distance_of_the_selected_samples(tmp_path: Path, distance: str,
                                                                            n: int) -> None:
    """With ``result_weight`` 0 the discriminator phase's error is ``image_weight`` times the
    mean over the selected samples of each sample's mean |fill - ab| (l1) or (fill - ab)^2 (l2),
    computed here from G's prediction directly; r2 and r3 are logged as the target and current
    discriminators' mean realness of the fills."""
    from pyfill.models.colorize import realness

    cfg = tiny_config(tmp_path, g_max_steps=1, image_distance=distance, image_weight=2.0, result_weight=0.0,
                      real_threshold=-1.0, g_loss_threshold=-1.0)
    s = make(cfg)
    rgb = batch(3, n)
    s.step(rgb)
    assert s.phase == "discriminator"
    l_norm, ab = C.split_lab(rgb)
    with torch.no_grad():
        fill = s.net.generator(l_norm)
        r2 = float(realness(s.target_d(l_norm, fill)).mean())
        r3 = float(realness(s.net.discriminator(l_norm, fill)).mean())
    diff = fill - ab
    per_sample = (diff.abs() if distance == "l1" else diff**2).mean(dim=(1, 2, 3))
    logs = s.step(rgb)
    assert s.last_selection.all() and logs["selected"] == 1.0
    assert logs["loss_d"] == pytest.approx(2.0 * float(per_sample.mean()), rel=1e-5)
    assert logs["r2"] == pytest.approx(r2, rel=1e-5) and logs["r3"] == pytest.approx(r3, rel=1e-5)


@pytest.mark.parametrize("term", ["image", "result"])
def test_discrimination_error_counts_only_the_selected_samples(tmp_path: Path, term: str) -> None:
    """With the threshold just below the best-fooling sample's r2 only that sample is selected:
    the error is its own image distance (or its own BCE(r3, r2), written out here), r3 its own
    realness, and the share selected 1/4."""
    from pyfill.models.colorize import realness

    weights = {"image_weight": 2.0, "result_weight": 0.0} if term == "image" else {"image_weight": 0.0, "result_weight": 1.0}
    cfg = tiny_config(tmp_path, g_max_steps=1, g_loss_threshold=-1.0, **weights)
    s = make(cfg)
    rgb = batch(4)
    s.step(rgb)
    l_norm, ab = C.split_lab(rgb)
    with torch.no_grad():
        fill = s.net.generator(l_norm)
        r2 = realness(s.target_d(l_norm, fill)).reshape(-1)
        r3 = realness(s.net.discriminator(l_norm, fill)).reshape(-1)
    best = int(r2.argmax())
    s.p["real_threshold"] = float(r2.sort().values[-2])
    logs = s.step(rgb)
    assert s.last_selection.tolist() == [i == best for i in range(4)] and logs["selected"] == 0.25
    p, q = float(r3[best]), float(r2[best])
    want = 2.0 * float((fill[best] - ab[best]).abs().mean()) if term == "image" else \
        -(q * np.log(p) + (1 - q) * np.log(1 - p))
    assert logs["loss_d"] == pytest.approx(want, rel=1e-4)
    assert logs["r3"] == pytest.approx(p, rel=1e-5)


def json_round_trip(state: dict) -> dict:
    import json

    return json.loads(json.dumps(state))


def test_difference_generation_loss(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path, gen_loss="difference"))
    r1, r2 = torch.tensor([[0.9], [0.7]]), torch.tensor([[0.4], [0.2]])
    assert float(s.generation_loss(r1, r2)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="gen_loss"):
        make(tiny_config(tmp_path, gen_loss="nope"))


def test_alternating_schedule_trains_both(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    cfg["schedule"] = "alternating"
    s = make(cfg)
    g0, d0 = params(s.net.generator), params(s.net.discriminator)
    logs = s.step(batch(0))
    assert set(logs) == {"loss_g", "loss_d"}
    assert not same(params(s.net.generator), g0) and not same(params(s.net.discriminator), d0)
    assert all(p.requires_grad for p in s.net.parameters())


# ---- checkpoints, resume, logs ---------------------------------------------------------------
def test_training_state_round_trip_without_pickle(tmp_path: Path) -> None:
    s = make(tiny_config(tmp_path))
    for i in range(3):
        s.step(batch(i))
    H.save_training_state(tmp_path / "st", {"model": s.net}, {"g": s.opt_g, "d": s.opt_d}, {"step": 3})
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == ["state.json", "state.safetensors"]
    other = make(tiny_config(tmp_path), seed=5)
    meta = H.load_training_state(tmp_path / "st", {"model": other.net}, {"g": other.opt_g, "d": other.opt_d})
    assert meta["step"] == 3
    assert same(params(other.net), params(s.net))
    a, b = s.opt_g.state_dict(), other.opt_g.state_dict()
    assert a["param_groups"] == b["param_groups"] and a["state"].keys() == b["state"].keys()
    for k in a["state"]:
        for field in a["state"][k]:
            assert torch.equal(torch.as_tensor(a["state"][k][field]), torch.as_tensor(b["state"][k][field]))


def test_resume_continues_exactly(tmp_path: Path) -> None:
    straight = C.train({**tiny_config(tmp_path / "a"), "max_steps": 6})
    cut = tiny_config(tmp_path / "b")
    C.train({**cut, "max_steps": 4, "checkpoint_every": 2})
    resumed = C.train({**cut, "max_steps": 6}, resume=True)
    assert resumed["steps"] == 6
    assert same(params(resumed["model"]), params(straight["model"]))
    rows = H.read_csv_log(Path(cut["out"]) / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    out = Path(cut["out"])
    for name in ("losses.png", "colorize.safetensors", "colorize.json", "checkpoints/step_00000006/state.safetensors"):
        assert (out / name).is_file(), name


PHASES = {"g_max_steps": 2, "d_max_steps": 2, "max_rounds": 2,
          "g_loss_threshold": -1.0, "d_loss_threshold": -1.0, "total_threshold": -1.0}  # phases end on their caps


@pytest.fixture(scope="module")
def uncut_run(tmp_path_factory: pytest.TempPathFactory) -> dict:
    return C.train({**tiny_config(tmp_path_factory.mktemp("uncut"), **PHASES), "max_steps": 12, "checkpoint_every": 100})


@pytest.mark.parametrize("cut", [3, 5, 7])
def test_resume_cut_inside_every_phase_continues_exactly(tmp_path: Path, cut: int, uncut_run: dict) -> None:
    """Phases of 2 generator and 2 discriminator steps, at most 2 rounds: a run cut inside the
    discriminator phase of round 0 (step 3), the generator phase of round 1 (step 5) and the
    discriminator phase of round 1 (step 7) and resumed logs the same rounds and losses as an
    uncut run, ends at the same step for the same reason (``max_rounds``), with the same
    weights."""
    straight = uncut_run
    assert straight["steps"] == 8 and straight["ended"]["loop"] == "max_rounds"
    part = {**tiny_config(tmp_path, **PHASES), "checkpoint_every": 1}
    C.train({**part, "max_steps": cut})
    resumed = C.train({**part, "max_steps": 12}, resume=True)
    assert resumed["steps"] == 8 and resumed["ended"] == straight["ended"]
    assert same(params(resumed["model"]), params(straight["model"]))
    want = H.read_csv_log(Path(straight["out"]) / "log.csv")
    got = H.read_csv_log(Path(part["out"]) / "log.csv")
    assert [float(r["round"]) for r in got] == [float(r["round"]) for r in want] == [0, 0, 0, 0, 1, 1, 1, 1]
    for a, b in zip(got, want):
        for field in ("loss_g", "loss_d"):
            assert a[field] == b[field], (field, a, b)


def test_deterministic_seeding(tmp_path: Path) -> None:
    a = C.train({**tiny_config(tmp_path / "a"), "max_steps": 3})
    b = C.train({**tiny_config(tmp_path / "b"), "max_steps": 3})
    c = C.train({**tiny_config(tmp_path / "c"), "max_steps": 3, "seed": 1})
    assert same(params(a["model"]), params(b["model"]))
    assert not same(params(a["model"]), params(c["model"]))


# ---- data --------------------------------------------------------------------------------------
def test_image_folder_skips_and_counts_corrupt_files(tmp_path: Path) -> None:
    from PIL import Image

    (tmp_path / "sub" / "deeper").mkdir(parents=True)
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (40, 50, 3), dtype=np.uint8)).save(tmp_path / "a.png")
    Image.fromarray(rng.integers(0, 256, (60, 40), dtype=np.uint8)).save(tmp_path / "sub" / "b.JPG")
    Image.fromarray(rng.integers(0, 256, (40, 40, 4), dtype=np.uint8)).save(tmp_path / "sub" / "deeper" / "c.png")
    (tmp_path / "sub" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "notes.txt").write_text("not an image")
    assert len(list_images(tmp_path)) == 4
    with pytest.warns(UserWarning, match="broken.png"):
        ds = ImageSet([tmp_path])
    assert len(ds) == 3 and len(ds.skipped) == 1
    assert all(img.shape[-1] == 3 and img.dtype == np.float32 for img in ds.images)
    crops = ds.random_crops(5, 32, torch.Generator().manual_seed(0))
    again = ds.random_crops(5, 32, torch.Generator().manual_seed(0))
    assert crops.shape == (5, 3, 32, 32) and torch.equal(crops, again)
    assert 0.0 <= float(crops.min()) and float(crops.max()) <= 1.0


def test_package_images_are_available_offline() -> None:
    from skimage import data

    ds = ImageSet(package=["astronaut", "stereo_motorcycle"], max_side=100)
    original = data.astronaut().astype(np.float32) / 255.0
    assert ds.images[0].shape == (100, 100, 3) and ds.images[1].shape[1] == 100
    np.testing.assert_allclose(ds.images[0].mean(axis=(0, 1)), original.mean(axis=(0, 1)), atol=2e-3)
    with pytest.raises(ValueError, match="unknown package image"):
        ImageSet(package=["no_such_image"])


# ---- distributed -------------------------------------------------------------------------------
def test_ddp_two_cpu_processes_keep_replicas_identical(tmp_path: Path) -> None:
    worker = tmp_path / "worker.py"
    worker.write_text(textwrap.dedent(f"""
        import os, sys
        sys.path.append({str(ROOT)!r})
        from safetensors.torch import save_file
        from training import colorize as C, harness as H
        cfg = H.load_config(C.DEFAULTS, None, ["device=cpu", "amp=false", "max_steps=4", "sample_every=0",
            'data.package_images=["astronaut"]', "data.max_side=64", "data.crop=16", "data.batch=2",
            "phased.g_max_steps=2", "phased.d_max_steps=2", "phased.real_threshold=0.0"])
        cfg["model"] = {TINY!r}
        cfg["out"] = {str(tmp_path / "run")!r}
        res = C.train(cfg)
        state = {{k: v.contiguous() for k, v in res["model"].state_dict().items()}}
        save_file(state, os.path.join(cfg["out"], "rank" + os.environ["RANK"] + ".safetensors"))
    """))
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    # A process group of its own, so that a timeout ends the launcher and both workers.
    proc = subprocess.Popen(
        [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
         "--master_port", str(port), str(worker)],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
    )
    try:
        _, stderr = proc.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr[-3000:]
    from safetensors.torch import load_file

    r0 = load_file(str(tmp_path / "run" / "rank0.safetensors"))
    r1 = load_file(str(tmp_path / "run" / "rank1.safetensors"))
    assert same(r0, r1), "the replicas' parameters differ"
    rows = H.read_csv_log(tmp_path / "run" / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    torch.manual_seed(0)
    from pyfill.models import build_model

    init = build_model("colorize", TINY).state_dict()
    assert not same(init, r0), "no training happened"
