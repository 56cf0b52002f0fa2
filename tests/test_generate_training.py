"""Drawing-board generation training (SPEC S2): data, losses, steps, checkpoints and resume."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))  # after site-packages: the installed pyfill stays first

from training import generate as G  # noqa: E402
from training import harness as H  # noqa: E402
from training.data import LabelledImageSet, read_label_list  # noqa: E402

TINY = ["device=cpu", "amp=false", "max_steps=4", "checkpoint_every=2", "sample_every=2",
        "model.base=8", "model.size=32", "model.hidden=8", "model.min_width=8",
        "disc.base=4", "disc.layers=2", "disc.scales=2", "data.count=6", "data.batch=2"]


def tiny_config(out: Path, *extra: str) -> dict:
    cfg = H.load_config(G.DEFAULTS, None, [*TINY, *extra])
    cfg["out"] = str(out)
    return cfg


def params(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.state_dict().items()}


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---- losses ------------------------------------------------------------------------------------
def test_hinge_losses_by_hand() -> None:
    real = [torch.tensor([2.0, 0.5]), torch.tensor([0.0])]
    fake = [torch.tensor([-2.0, 0.0]), torch.tensor([1.0])]
    # scale 0: relu(1-2)=0, relu(0.5)=.5 -> .25; relu(1-2)=0, relu(1)=1 -> .5; sum .75
    # scale 1: relu(1)=1; relu(2)=2; sum 3. Mean over scales: 1.875.
    assert float(G.hinge_d(real, fake)) == pytest.approx(1.875)
    assert float(G.hinge_g(fake)) == pytest.approx((1.0 + -1.0) / 2)
    # the generator's loss falls as D's fake logits rise: -(1.5) and -(-0.5), averaged
    assert float(G.hinge_g([torch.tensor([2.0, 1.0]), torch.tensor([-0.5])])) == pytest.approx((-1.5 + 0.5) / 2)


def test_one_hot_has_every_class_even_when_the_labels_miss_some() -> None:
    labels = torch.tensor([[[0, 3], [3, 1]]])
    seg = G.one_hot(labels, 8)
    assert seg.shape == (1, 8, 2, 2) and seg.dtype == torch.float32
    assert torch.equal(seg.argmax(1), labels) and float(seg[:, 4:].abs().sum()) == 0.0


def test_feature_matching_skips_logits_and_averages_scales() -> None:
    a = [[torch.zeros(2), torch.ones(2), torch.full((1,), 9.0)], [torch.zeros(3), torch.full((1,), 5.0)]]
    b = [[torch.ones(2), torch.ones(2) * 3, torch.zeros(1)], [torch.full((3,), 0.5), torch.zeros(1)]]
    assert float(G.feature_matching(a, b)) == pytest.approx(((1 + 2) + 0.5) / 2)


def test_inputs_keep_exactly_a_quarter_of_cells_with_their_mean_colours() -> None:
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (2, 36, 45, 3), dtype=np.uint8)
    labels = rng.integers(0, 8, (2, 36, 45))
    seg, latent, real = G.make_inputs(images, labels, 8, 0.75, seed=3, device=torch.device("cpu"))
    assert seg.shape == (2, 8, 36, 45) and torch.equal(seg.argmax(1), torch.from_numpy(labels))
    assert latent.shape == (2, 648) and real.shape == (2, 3, 36, 45)
    assert float(real.min()) >= -1 and float(real.max()) <= 1
    cells = latent.numpy().reshape(2, 9, 9, 8)
    for b in range(2):
        kept = np.argwhere(cells[b, :, :, 0] == 1)
        assert len(kept) == round(0.25 * 81) and (cells[b][cells[b, :, :, 0] == 0] == 0).all()
        for i, j in kept:
            block = images[b, i * 4:(i + 1) * 4, j * 5:(j + 1) * 5].reshape(-1, 3) / 255.0
            np.testing.assert_allclose(cells[b, i, j, 5:], block.mean(0), atol=1e-5)
            np.testing.assert_allclose(cells[b, i, j, 1:5], [0, 0, 5 / 45, 4 / 36], atol=1e-6)


def test_empty_latent_zeroes_only_the_chosen_samples() -> None:
    images = np.random.default_rng(1).integers(1, 256, (3, 27, 27, 3), dtype=np.uint8)
    labels = np.zeros((3, 27, 27), np.int64)
    _, full, _ = G.make_inputs(images, labels, 8, 0.75, seed=5, device=torch.device("cpu"))
    _, some, _ = G.make_inputs(images, labels, 8, 0.75, seed=5, device=torch.device("cpu"),
                               empty=np.array([False, True, False]))
    assert float(some[1].abs().sum()) == 0.0 and float(full[1].abs().sum()) > 0
    assert torch.equal(some[0], full[0]) and torch.equal(some[2], full[2])


# ---- data --------------------------------------------------------------------------------------
def _write_folder(root: Path, n: int = 3, size: tuple[int, int] = (40, 60)) -> None:
    from PIL import Image

    (root / "images").mkdir(parents=True)
    (root / "labels").mkdir()
    (root / "labels.txt").write_text("# classes\nsky 110 170 240\nground 100 200 80\n\nwater 40 90 170\n")
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(root / "images" / f"im{i}.jpg")
        index = np.zeros(size, np.uint8)
        index[size[0] // 2:] = 1
        index[-5:, 25:35] = 2
        Image.fromarray(index).save(root / "labels" / f"im{i}.png")


def test_folder_loader_reads_images_label_maps_and_label_list(tmp_path: Path) -> None:
    _write_folder(tmp_path)
    ds = LabelledImageSet.from_folder(tmp_path, 32)
    assert len(ds) == 3 and ds.names == ["sky", "ground", "water"]
    assert ds.colours == [(110, 170, 240), (100, 200, 80), (40, 90, 170)]
    image, labels = ds.sample(0)
    assert image.shape == (32, 32, 3) and image.dtype == np.uint8 and labels.shape == (32, 32)
    # centre crop 40 x 40 of the 40 x 60 map, nearest resize: top half sky, bottom ground, water corner
    assert (labels[:16] == 0).all() and (labels[16:28] == 1).all()
    assert set(np.unique(labels)) == {0, 1, 2}
    # the image: Pillow's centre crop and box (area) downscale of the file as decoded
    from PIL import Image

    with Image.open(tmp_path / "images" / "im0.jpg") as im:
        expected = np.asarray(im.convert("RGB").crop((10, 0, 50, 40)).resize((32, 32), Image.Resampling.BOX))
    assert np.abs(image.astype(int) - expected.astype(int)).max() <= 1
    images, labels = ds.batch(5, torch.Generator().manual_seed(0))
    again = ds.batch(5, torch.Generator().manual_seed(0))
    assert images.shape == (5, 32, 32, 3) and labels.dtype == np.int64
    assert np.array_equal(images, again[0]) and np.array_equal(labels, again[1])


def test_folder_loader_errors(tmp_path: Path) -> None:
    from PIL import Image

    _write_folder(tmp_path)
    Image.fromarray(np.full((40, 60), 3, np.uint8)).save(tmp_path / "labels" / "im1.png")
    ds = LabelledImageSet.from_folder(tmp_path, 32)  # found when the map is decoded
    ds.sample(0)
    with pytest.raises(ValueError, match=r"im1\.png: class index 3 but only 3 labels"):
        ds.sample(1)
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(tmp_path / "labels" / "im1.png")
    with pytest.raises(ValueError, match="8-bit gray or palette PNGs"):
        LabelledImageSet.from_folder(tmp_path, 32)
    Image.fromarray(np.zeros((20, 60), np.uint8)).save(tmp_path / "labels" / "im1.png")
    with pytest.raises(ValueError, match="differs from its image"):
        LabelledImageSet.from_folder(tmp_path, 32)
    (tmp_path / "labels" / "im1.png").unlink()
    with pytest.raises(ValueError, match="no label map"):
        LabelledImageSet.from_folder(tmp_path, 32)


@pytest.mark.parametrize("text,match", [("a\nb 1 2\n", "name R G B"), ("a 1 2 3\nb\n", "every line"),
                                        ("a 1 2 300\n", "0..255"), ("a\na\n", "unique"), ("# none\n", "no labels")])
def test_label_list_errors(tmp_path: Path, text: str, match: str) -> None:
    (tmp_path / "l.txt").write_text(text)
    with pytest.raises(ValueError, match=match):
        read_label_list(tmp_path / "l.txt")
    (tmp_path / "ok.txt").write_text("a\nb\n")
    assert read_label_list(tmp_path / "ok.txt") == (["a", "b"], None)


def test_landscape_set_is_seeded() -> None:
    from training.landscapes import render_landscape

    a = LabelledImageSet.from_landscapes(3, 32, seed=7)
    b = LabelledImageSet.from_landscapes(3, 32, seed=7)
    assert np.array_equal(a.sample(2)[0], b.sample(2)[0]) and a.names[0] == "sky" and len(a.colours) == 8
    assert not np.array_equal(a.sample(0)[0], a.sample(1)[0])
    image, labels = render_landscape(32, 32, 8)
    assert np.array_equal(a.sample(1)[0], image) and np.array_equal(a.sample(1)[1], labels)


def test_labelled_set_streams_with_bounded_memory() -> None:
    """A million landscapes cost nothing up front; batches render what they draw, flip it as
    NumPy does, and the per-process cache never holds more than its bound."""
    from training.landscapes import render_landscape

    ds = LabelledImageSet.from_landscapes(1_000_000, 24, seed=3, cache=5)
    assert len(ds) == 1_000_000 and len(ds._cache) == 0
    gen = torch.Generator().manual_seed(1)
    idx = torch.randint(len(ds), (4,), generator=gen).tolist()
    flip = (torch.rand(4, generator=gen) < 0.5).tolist()
    images, labels = ds.batch(4, torch.Generator().manual_seed(1))
    for k, (i, f) in enumerate(zip(idx, flip)):
        image, label = render_landscape(24, 24, 3 + i)
        assert np.array_equal(images[k], np.flip(image, 1) if f else image)
        assert np.array_equal(labels[k], np.flip(label, 1) if f else label)
    for s in range(6):
        ds.batch(3, torch.Generator().manual_seed(100 + s))
        assert len(ds._cache) <= 5
    with pytest.raises(IndexError, match="out of range"):
        ds.sample(1_000_000)
    import pickle

    assert len(pickle.dumps(ds)) < 2000  # sources, not pixels


# ---- steps, checkpoints, resume ----------------------------------------------------------------
def test_steps_train_both_networks_with_finite_losses(tmp_path: Path) -> None:
    cfg = tiny_config(tmp_path)
    torch.manual_seed(0)
    t = G.Trainer(cfg, 8, H.DistContext())
    assert t.opt_g.defaults["betas"] == (0.0, 0.999) and t.opt_d.defaults["lr"] > t.opt_g.defaults["lr"]
    g0, d0 = params(t.generator), params(t.discriminator)
    data = LabelledImageSet.from_landscapes(4, 32)
    for step in range(3):
        images, labels = data.batch(2, torch.Generator().manual_seed(step))
        logs = t.step(*G.make_inputs(images, labels, 8, 0.75, step, torch.device("cpu")))
        assert all(np.isfinite(v) for v in logs.values()) and set(logs) == set(G.LOSS_FIELDS)
    assert not same(params(t.generator), g0) and not same(params(t.discriminator), d0)
    assert all(p.requires_grad for p in t.discriminator.parameters())


def _fixed_batch() -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    images, labels = LabelledImageSet.from_landscapes(4, 32).batch(2, torch.Generator().manual_seed(0))
    return G.make_inputs(images, labels, 8, 0.75, 0, torch.device("cpu"))


def _margin(t: G.Trainer, seg: torch.Tensor, latent: torch.Tensor, real: torch.Tensor) -> float:
    """mean D(real) - mean D(fake) over the scales' logits."""
    with torch.no_grad():
        fake = t.generator(seg, latent)
        real_logits = [f[-1] for f in t.discriminator(seg, real)]
        fake_logits = [f[-1] for f in t.discriminator(seg, fake)]
    return float(torch.stack([r.mean() - f.mean() for r, f in zip(real_logits, fake_logits)]).mean())


def test_discriminator_steps_on_a_fixed_batch_widen_the_real_fake_margin(tmp_path: Path) -> None:
    """With G held still (lr_g = 0), D's hinge loss falls and D(real) - D(fake) grows: a loss
    whose real and fake halves traded places would shrink it."""
    torch.manual_seed(0)
    t = G.Trainer(tiny_config(tmp_path, "lr_g=0.0", "lr_d=2e-3"), 8, H.DistContext())
    batch = _fixed_batch()
    g0 = params(t.generator)
    start = _margin(t, *batch)
    losses = [t.step(*batch)["loss_d"] for _ in range(6)]
    assert same(params(t.generator), g0)
    assert _margin(t, *batch) > start + 0.1  # measured: +0.24 after 6 steps
    assert losses[-1] < losses[0]


def test_generator_steps_on_a_fixed_batch_lower_l1_and_the_adversarial_loss(tmp_path: Path) -> None:
    """With D held still (lr_d = 0): the generator's L1 to the real image and its hinge loss
    -D(fake) both fall over a few steps."""
    torch.manual_seed(0)
    t = G.Trainer(tiny_config(tmp_path, "lr_d=0.0", "lr_g=2e-3", "l1_weight=1.0", "fm_weight=0.0"), 8, H.DistContext())
    batch = _fixed_batch()
    d0 = params(t.discriminator)
    logs = [t.step(*batch) for _ in range(6)]
    assert same(params(t.discriminator), d0)
    assert logs[-1]["l1"] < logs[0]["l1"] and logs[-1]["adv_g"] < logs[0]["adv_g"]


def test_discriminator_is_multi_scale_and_conditioned_on_labels() -> None:
    from pyfill.models.spade import MultiScaleDiscriminator

    torch.manual_seed(0)
    d = MultiScaleDiscriminator(classes=5, base=4, layers=3, scales=3)
    image = torch.rand(1, 3, 64, 64) * 2 - 1
    seg = torch.zeros(1, 5, 64, 64)
    seg[:, 0] = 1
    outs = d(seg, image)
    assert [o[-1].shape[-1] for o in outs] == [8, 4, 2]
    other = torch.zeros_like(seg)
    other[:, 3] = 1
    assert not torch.allclose(outs[0][-1], d(other, image)[0][-1])


def test_resume_continues_exactly_and_writes_a_checkpoint(tmp_path: Path) -> None:
    straight = G.train(tiny_config(tmp_path / "a"))
    G.train(tiny_config(tmp_path / "b", "max_steps=2"))
    resumed = G.train(tiny_config(tmp_path / "b"), resume=True)
    assert resumed["steps"] == 4
    assert same(params(resumed["model"]), params(straight["model"]))
    out = tmp_path / "b"
    assert [int(r["step"]) for r in H.read_csv_log(out / "log.csv")] == [1, 2, 3, 4]
    for name in ("losses.png", "samples_000004.png", "generate.safetensors", "generate.json",
                 "checkpoints/step_00000004/state.safetensors"):
        assert (out / name).is_file(), name
    from pyfill.manifest import Manifest

    m = Manifest.load(out / "generate.json")
    assert m.family == "spade" and m.config["size"] == 32
    assert m.inputs[0].class_names[0] == "sky" and m.inputs[0].palette[0] == [110, 170, 240]
    assert m.inputs[1].derive == {"op": "stroke_grid", "from": "strokes", "grid": [9, 9]}


def test_training_on_a_folder_carries_its_legend_into_the_checkpoint(tmp_path: Path) -> None:
    _write_folder(tmp_path / "data", n=2)
    result = G.train(tiny_config(tmp_path / "run", "data.source=folder", f"data.folder={tmp_path / 'data'}",
                                 "max_steps=1", "sample_every=1"))
    from pyfill.manifest import Manifest

    m = Manifest.load(tmp_path / "run" / "generate.json")
    assert result["steps"] == 1 and m.config["classes"] == 3
    assert m.inputs[0].class_names == ["sky", "ground", "water"] and m.inputs[0].palette[2] == [40, 90, 170]


def test_unknown_data_source_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="data.source"):
        G.train(tiny_config(tmp_path, "data.source=nowhere"))


def test_stroke_map_generator_exports_and_reads_the_grid_locally(tmp_path: Path) -> None:
    from pyfill.export import export_onnx
    from pyfill.models import build_model, make_manifest

    cfg = {"base": 8, "size": 32, "hidden": 8, "min_width": 8, "stroke_map": True}
    torch.manual_seed(0)
    g = build_model("spade", cfg).eval()
    g.fc.weight.data.zero_()  # only the SPADE branches see the latent now
    seg = torch.zeros(1, 8, 32, 32)
    seg[:, 0] = 1
    latent = torch.zeros(1, 9, 9, 8)
    base = g(seg, latent.reshape(1, -1))
    latent[0, 8, 8] = torch.tensor([1, 0, 0, 0.1, 0.1, 1, 0, 0])  # the bottom-right cell only
    moved = (g(seg, latent.reshape(1, -1)) - base).abs().sum(1)[0]
    # local: far from the cell only the instance norms' global statistics shift a little
    assert moved[:16, :16].max() < 0.05 * moved[-3:, -3:].max()
    export_onnx(g, tmp_path / "g.onnx", manifest=make_manifest("spade", cfg))  # checks ONNX == torch
    with pytest.raises(ValueError, match="stroke_map needs stroke_grid"):
        build_model("spade", {**cfg, "stroke_grid": None})


def test_one_patchgan_serves_every_family_and_loads_earlier_spade_weights() -> None:
    from torch.nn import functional as F

    from pyfill.models.blocks import PatchGAN
    from pyfill.models.colorize import PatchDiscriminator as ColorizeD
    from pyfill.models.restore import PatchDiscriminator as RestoreD
    from pyfill.models.spade import PatchDiscriminator as SpadeD

    torch.manual_seed(0)
    d = SpadeD(classes=2, base=4, layers=2)
    assert all(isinstance(m, PatchGAN) for m in (d, ColorizeD(4, 2), RestoreD(4, 2)))
    # the names the earlier spade layout saved: convs.<i>.* and head.*
    earlier = {k.replace("net.0.", "convs.0.").replace("net.2.", "convs.1.").replace("net.4.", "head."): v
               for k, v in d.state_dict().items()}
    other = SpadeD(classes=2, base=4, layers=2)
    other.load_state_dict(earlier, strict=True)
    seg, image = torch.rand(1, 2, 16, 16), torch.rand(1, 3, 16, 16) * 2 - 1
    w = earlier
    # the reference, written out with functional ops: conv, conv + instance norm, head
    h = F.leaky_relu(F.conv2d(torch.cat([seg, image], 1), w["convs.0.weight"], w["convs.0.bias"], 2, 1), 0.2)
    h2 = F.conv2d(h, w["convs.1.weight"], w["convs.1.bias"], 2, 1)
    h2 = F.leaky_relu(F.instance_norm(h2, eps=1e-5), 0.2)
    logits = F.conv2d(h2, w["head.weight"], w["head.bias"], 1, 1)
    feats = other(seg, image)
    assert len(feats) == 3
    torch.testing.assert_close(feats[0], h)
    torch.testing.assert_close(feats[1], h2, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(feats[2], logits, atol=1e-5, rtol=1e-4)
