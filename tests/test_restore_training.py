"""Restoration training (SPEC S3): the joint loss, D pre-training, joint steps, resume, the
degraded pairs, the quality classifier and the curation command."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from pyfill.export import save_checkpoint  # noqa: E402
from pyfill.models import build_model, make_manifest  # noqa: E402
from pyfill.models.restore import quality_class, quality_score  # noqa: E402
from training import curate as CU  # noqa: E402
from training import harness as H  # noqa: E402
from training import quality as Q  # noqa: E402
from training import restore as R  # noqa: E402
from training.data import load_image_file  # noqa: E402
from training.restore_data import degrade, quality_of_strength, strength_overrides  # noqa: E402

TINY = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


def tiny_config(tmp_path: Path, *overrides: str) -> dict:
    cfg = H.load_config(R.DEFAULTS, None, [
        "device=cpu", "amp=false", "max_steps=6", "checkpoint_every=3", "sample_every=0", "d_pretrain_steps=2",
        "data.package_images=[\"astronaut\"]", "data.max_side=64", "data.crop=16", "data.batch=2", *overrides,
    ])
    cfg["model"] = dict(TINY)
    cfg["out"] = str(tmp_path / "run")
    return cfg


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


def pair(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(2, 3, 16, 16, generator=g)
    return (clean + 0.1 * torch.randn(2, 3, 16, 16, generator=g)).clamp(0, 1), clean


# ---- the loss ------------------------------------------------------------------------------
def test_joint_loss_matches_a_hand_computation() -> None:
    restored = torch.tensor([0.2, 0.5, 0.9, 0.4]).reshape(1, 1, 2, 2).repeat(2, 3, 1, 1)
    clean = torch.full_like(restored, 0.5)
    logits = torch.tensor([[[[0.0, 2.0], [-1.0, 3.0]]], [[[1.0, -2.0], [0.5, 0.0]]]])
    total, l1, l_gan = R.joint_loss(restored, clean, logits, k1=1.0, k2=1e-4)
    want_l1 = (0.3 + 0.0 + 0.4 + 0.1) / 4
    # -sum log D(G(x)) over each image's patch outputs, D = sigmoid(logit), mean over the 2 images
    per_image = [-sum(math.log(1.0 / (1.0 + math.exp(-z))) for z in img) for img in ([0, 2, -1, 3], [1, -2, 0.5, 0])]
    want_gan = sum(per_image) / 2
    assert l1.item() == pytest.approx(want_l1, rel=1e-6)
    assert l_gan.item() == pytest.approx(want_gan, rel=1e-6)
    assert total.item() == pytest.approx(want_l1 + 1e-4 * want_gan, rel=1e-6)
    _, _, far = R.joint_loss(restored, clean, torch.full((1, 1, 2, 2), -200.0), 1.0, 1e-4)
    assert far.item() == pytest.approx(4 * 200.0, rel=1e-6)  # -log sigmoid(z) -> -z, no overflow to inf


def test_discriminator_loss_is_bce_on_both_halves() -> None:
    real, fake = torch.tensor([[2.0]]), torch.tensor([[-1.0]])
    want = 0.5 * (-math.log(1 / (1 + math.exp(-2.0))) - math.log(1 - 1 / (1 + math.exp(1.0))))
    assert R.discriminator_loss(real, fake).item() == pytest.approx(want, rel=1e-6)


def test_bad_loss_weights_are_refused(tmp_path: Path) -> None:
    net = build_model("restore", TINY)
    with pytest.raises(ValueError, match="k2 must be >= 0"):
        R.JointTrainer(net, tiny_config(tmp_path, "k2=-1"), H.DistContext())


# ---- the model -----------------------------------------------------------------------------
def test_untrained_generator_is_the_identity_at_any_allowed_size() -> None:
    g = build_model("restore", TINY).generator
    x = torch.rand(1, 3, 20, 28)
    with torch.no_grad():
        y = g(x)
    assert y.shape == x.shape
    torch.testing.assert_close(y, x)


# ---- the schedule --------------------------------------------------------------------------
def test_pretraining_step_changes_the_discriminator_only(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("restore", TINY)
    trainer = R.JointTrainer(net, tiny_config(tmp_path), H.DistContext())
    g0, d0 = params(net.generator), params(net.discriminator)
    logs = trainer.step(0, *pair())
    assert logs["phase"] == 1.0 and "loss_g" not in logs
    assert same(params(net.generator), g0)
    assert not same(params(net.discriminator), d0)


def test_joint_steps_train_both_and_lower_the_l1(tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = build_model("restore", TINY)
    trainer = R.JointTrainer(net, tiny_config(tmp_path, "lr_g=0.01"), H.DistContext())
    degraded, clean = pair()
    g0, d0 = params(net.generator), params(net.discriminator)
    first = trainer.step(5, degraded, clean)
    assert first["phase"] == 2.0
    assert not same(params(net.generator), g0) and not same(params(net.discriminator), d0)
    for step in range(6, 30):
        logs = trainer.step(step, degraded, clean)
    assert all(math.isfinite(v) for v in logs.values())
    assert logs["l1"] < first["l1"]
    assert all(p.requires_grad for p in net.discriminator.parameters())  # unfrozen after the G step


def test_pairs_are_seeded_per_step(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(1))
    a = degrade(R.step_pipeline(cfg, 4, 0), clean)
    b = degrade(R.step_pipeline(cfg, 4, 0), clean)
    c = degrade(R.step_pipeline(cfg, 5, 0), clean)
    assert a.shape == clean.shape and a.dtype == clean.dtype
    assert torch.equal(a, b) and not torch.equal(a, c) and not torch.equal(a, clean)


def test_training_resumes_exactly(tmp_path: Path) -> None:
    straight = R.train(tiny_config(tmp_path / "a"))
    R.train(tiny_config(tmp_path / "b", "max_steps=3"))
    resumed = R.train(tiny_config(tmp_path / "b"), resume=True)
    assert straight["steps"] == resumed["steps"] == 6
    assert same(params(straight["model"]), params(resumed["model"]))
    out = Path(straight["out"])
    for name in ("restore.safetensors", "restore.json", "checkpoints/step_00000006/state.safetensors",
                 "checkpoints/step_00000006/state.json", "losses.png"):
        assert (out / name).is_file(), name
    rows = H.read_csv_log(Path(resumed["out"]) / "log.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]
    assert [float(r["phase"]) for r in rows] == [1, 1, 2, 2, 2, 2]


# ---- quality classifier --------------------------------------------------------------------
def test_quality_scale_and_strength_mapping() -> None:
    assert [quality_class(s) for s in (0, 29.9, 30, 59.9, 60, 100)] == \
        ["poor", "poor", "medium", "medium", "good", "good"]
    assert [quality_class(quality_of_strength(t)) for t in (0.0, 0.4, 0.41, 0.7, 0.71, 1.0)] == \
        ["good", "good", "medium", "medium", "poor", "poor"]
    probs = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.2, 0.3, 0.5]])
    torch.testing.assert_close(quality_score(probs), torch.tensor([15.0, 80.0, 0.2 * 15 + 0.3 * 45 + 0.5 * 80]))
    with pytest.raises(ValueError, match=r"\[0, 100\]"):
        quality_class(101.0)


def test_stronger_degradation_loses_more_fidelity() -> None:
    from skimage.data import astronaut
    from skimage.metrics import peak_signal_noise_ratio

    from pyfill.degrade import Pipeline

    clean = torch.from_numpy(astronaut()[100:228, 150:278].astype(np.float32) / 255).permute(2, 0, 1)[None]
    degraded = [degrade(Pipeline("seed", seed=3, **strength_overrides(t)), clean)[0] for t in (0.05, 0.4, 0.9)]
    psnrs = [peak_signal_noise_ratio(clean[0].numpy(), d.numpy(), data_range=1.0) for d in degraded]
    assert psnrs[0] > psnrs[1] > psnrs[2]


def _write(path: Path, arr: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _labelled_folder(root: Path, rng: np.random.Generator, n: int = 4) -> None:
    """good: bright smooth ramps; medium: flat mid-gray; poor: dark noise."""
    ramp = np.linspace(150, 255, 48)[None, :, None] * np.ones((48, 1, 3))
    for i in range(n):
        _write(root / "good" / f"{i}.png", np.clip(ramp + rng.normal(0, 2, ramp.shape), 0, 255).astype(np.uint8))
        _write(root / "medium" / f"{i}.png", np.full((48, 48, 3), 100 + 5 * i, np.uint8))
        _write(root / "poor" / f"{i}.png", rng.integers(0, 80, (48, 48, 3)).astype(np.uint8))


def test_classifier_learns_labelled_folders(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    _labelled_folder(tmp_path / "train", rng)
    cfg = H.load_config(Q.DEFAULTS, None, ["device=cpu", "max_steps=60", "lr=0.01", "data.mode=labelled",
                                           f"data.labelled={tmp_path / 'train'}", "data.crop=32", "data.batch=12",
                                           "model.base=4", "model.layers=2", f"out={tmp_path / 'q'}"])
    result = Q.train(cfg)
    net = Q.load_classifier(Path(result["out"]) / "quality.safetensors")
    _labelled_folder(tmp_path / "held", np.random.default_rng(1), n=2)
    for cls in ("poor", "medium", "good"):
        for f in sorted((tmp_path / "held" / cls).glob("*.png")):
            _, probs = Q.score_image(net, load_image_file(f))
            assert ("poor", "medium", "good")[int(np.argmax(probs))] == cls, (f, probs)


def test_labelled_mode_needs_all_class_folders(tmp_path: Path) -> None:
    (tmp_path / "good").mkdir()
    cfg = H.load_config(Q.DEFAULTS, None, ["data.mode=labelled", f"data.labelled={tmp_path}"])
    with pytest.raises(FileNotFoundError, match="missing"):
        Q.make_source(cfg)


def test_self_labelled_batches_label_clean_crops_good() -> None:
    from training.data import ImageSet

    src = Q.SelfLabelled(ImageSet((), ["astronaut"], 96, 32), clean_share=1.0)
    images, labels = src.batch(4, 32, torch.Generator().manual_seed(0))
    assert images.shape == (4, 3, 32, 32) and labels.tolist() == [2, 2, 2, 2]
    src = Q.SelfLabelled(ImageSet((), ["astronaut"], 96, 32), clean_share=0.0)
    _, labels = src.batch(32, 32, torch.Generator().manual_seed(0))
    assert set(labels.tolist()) == {0, 1, 2}  # strengths are uniform: all three classes occur


# ---- curation ------------------------------------------------------------------------------
def test_curation_keeps_large_good_images_and_reports_the_rest(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    src = tmp_path / "in"
    _write(src / "big.png", rng.integers(0, 255, (520, 600, 3)).astype(np.uint8))
    _write(src / "sub" / "big2.jpg", rng.integers(0, 255, (500, 500, 3)).astype(np.uint8))
    _write(src / "small.png", rng.integers(0, 255, (100, 700, 3)).astype(np.uint8))
    (src / "broken.png").write_bytes(b"not an image")
    torch.manual_seed(0)
    net = build_model("quality", {"base": 4, "layers": 2})
    everything = CU.curate(src, net, min_size=500, threshold=0.0)
    assert sorted(k["file"] for k in everything["kept"]) == ["big.png", str(Path("sub") / "big2.jpg")]
    reasons = {d["file"]: d["reason"] for d in everything["dropped"]}
    assert reasons["small.png"].startswith("too small: 700 x 100")
    assert reasons["broken.png"].startswith("unreadable")
    assert everything["counts"] == {"total": 4, "kept": 2, "dropped": 2, "dropped_unreadable": 1,
                                    "dropped_too_small": 1, "dropped_quality": 0}
    # scores never exceed the good class centre (80), so a threshold of 100 drops every readable large image
    strict = CU.curate(src, net, min_size=500, threshold=100.0)
    assert strict["counts"]["kept"] == 0 and strict["counts"]["dropped_quality"] == 2
    assert CU.curate(src, net, min_size=50, threshold=0.0)["counts"]["kept"] == 3


def test_curation_command_writes_manifest_and_copies(tmp_path: Path) -> None:
    src = tmp_path / "in"
    _write(src / "a.png", np.zeros((64, 64, 3), np.uint8))
    _write(src / "b.png", np.zeros((16, 16, 3), np.uint8))
    small = {"base": 4, "layers": 2}
    ckpt = save_checkpoint(build_model("quality", small), make_manifest("quality", small), tmp_path / "q" / "quality")
    manifest = tmp_path / "m.json"
    assert CU.main([str(src), "--classifier", str(ckpt), "-o", str(manifest), "--min-size", "32",
                    "--threshold", "0", "--copy-to", str(tmp_path / "kept")]) == 0
    data = json.loads(manifest.read_text())
    assert [k["file"] for k in data["kept"]] == ["a.png"] and data["dropped"][0]["file"] == "b.png"
    assert sorted(p.name for p in (tmp_path / "kept").iterdir()) == ["a.png"]
    restore_ckpt = save_checkpoint(build_model("restore", TINY), make_manifest("restore", TINY),
                                   tmp_path / "r" / "restore")
    with pytest.raises(ValueError, match="not a quality classifier"):
        Q.load_classifier(restore_ckpt)


def test_init_starts_from_another_models_generator(tmp_path: Path) -> None:
    source = build_model("restore", TINY)
    for p in source.generator.parameters():
        torch.nn.init.normal_(p, std=0.1)
    save_checkpoint(source, make_manifest("restore", TINY), tmp_path / "source.safetensors")
    cfg = tiny_config(tmp_path, f"init={tmp_path / 'source.safetensors'}")
    net = build_model("restore", TINY)
    R.init_generator(net, cfg["init"])
    assert same(params(net.generator), params(source.generator))
    assert not same(params(build_model("restore", TINY).generator), params(source.generator))
    # a run with init=... trains from those weights: after D pre-training only, G is unchanged
    result = R.train(tiny_config(tmp_path, f"init={tmp_path / 'source.safetensors'}", "max_steps=2"))
    assert same(params(result["model"].generator), params(source.generator))


def test_init_of_another_shape_is_refused(tmp_path: Path) -> None:
    other = {**TINY, "base": 8}
    save_checkpoint(build_model("restore", other), make_manifest("restore", other), tmp_path / "wide.safetensors")
    with pytest.raises(ValueError, match="another shape"):
        R.init_generator(build_model("restore", TINY), str(tmp_path / "wide.safetensors"))
