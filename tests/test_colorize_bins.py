"""Colour filling as a distribution over ab bins (Zhang et al., 2016) and its realness critic."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
skimage_color = pytest.importorskip("skimage.color")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from pyfill.models.colorize import AB_SCALE, BinGenerator, Colorizer, ab_bins  # noqa: E402
from training import colorize as C  # noqa: E402
from training import harness as H  # noqa: E402
from training.evaluate_colorize import roc_auc  # noqa: E402


def test_bins_cover_the_srgb_gamut_and_nothing_far_outside() -> None:
    centres = ab_bins(10.0).numpy()
    rng = np.random.default_rng(0)
    lab = skimage_color.rgb2lab(rng.random((4000, 1, 3)))[:, 0]
    # every sRGB colour's ab lies within half a bin (per axis) of a bin centre
    d = np.abs(lab[:, None, 1:] - centres[None]).max(-1).min(-1)
    assert d.max() <= 5.0 + 1e-6
    # and every bin holds some sRGB colour of a fine grid (checked with skimage's conversion)
    axis = np.linspace(0, 1, 33)
    grid = np.stack(np.meshgrid(axis, axis, axis, indexing="ij"), -1).reshape(-1, 1, 3)
    ab = skimage_color.rgb2lab(grid)[:, 0, 1:]
    cell = np.round(ab / 10.0)
    assert {tuple(c) for c in np.round(centres / 10.0).astype(int)} <= {tuple(c) for c in cell.astype(int)}
    assert 200 < len(centres) < 330


def test_annealed_mean_matches_numpy() -> None:
    torch.manual_seed(0)
    g = BinGenerator(base=4, depth=1, temperature=0.38).eval()
    l_norm = torch.rand(1, 1, 16, 24) * 2 - 1
    with torch.no_grad():
        logits = g(l_norm, return_logits=True)
        ab = g.decode_logits(logits, (4, 6))  # the logits' own size: no interpolation
    z = logits.numpy()[0] / 0.38
    p = np.exp(z - z.max(0)) / np.exp(z - z.max(0)).sum(0)
    expected = np.einsum("khw,kc->chw", p, g.centres.numpy()) / AB_SCALE
    np.testing.assert_allclose(ab.numpy()[0], expected, atol=1e-5)
    # full-resolution output: the bilinear upsampling of that
    with torch.no_grad():
        full = g(l_norm)
    assert full.shape == (1, 2, 16, 24)
    # a low temperature gives the mode's colour
    g.temperature = 1e-3
    with torch.no_grad():
        mode = g.decode_logits(logits, (4, 6)).numpy()[0]
    np.testing.assert_allclose(mode, g.centres.numpy()[z.argmax(0)].transpose(2, 0, 1) / AB_SCALE, atol=2e-3)


def test_soft_encoding_and_rebalancing() -> None:
    centres = ab_bins(10.0)
    ab = torch.tensor([[3.0, -41.0], [60.0, 20.0]]).T.reshape(1, 2, 1, 2)
    target, nearest = C.soft_encode(ab, centres, 5, 5.0)
    assert torch.allclose(target.sum(1), torch.ones(1, 1, 2))
    assert (target > 0).sum(1).tolist() == [[[5, 5]]]
    for j, (a, b) in enumerate([(3.0, -41.0), (60.0, 20.0)]):
        d = ((centres - torch.tensor([a, b])) ** 2).sum(1)
        assert int(nearest[0, 0, j]) == int(d.argmin())
        assert int(target[0, :, 0, j].argmax()) == int(d.argmin())
    counts = torch.zeros(len(centres))
    counts[0], counts[1] = 1000.0, 1.0
    w = C.rebalancing_weights(counts, centres, 0.5, 5.0)
    p = counts / counts.sum()
    kernel = torch.exp(-torch.cdist(centres, centres) ** 2 / 50.0)
    p = (kernel @ p) / kernel.sum(1)
    p = p / p.sum()
    assert float((p * w).sum()) == pytest.approx(1.0, rel=1e-4)
    assert float(w[0]) < float(w[1]) < float(w[-1]) + 1e-6  # frequent bins weigh least
    with pytest.raises(ValueError, match="rebalance"):
        C.rebalancing_weights(counts, centres, 1.5, 5.0)


def test_random_tint_moves_colours_and_stays_in_range() -> None:
    ab = (torch.rand(12, 2, 8, 8) - 0.5) * 0.4
    tinted = C.random_tint(ab, torch.Generator().manual_seed(0))
    assert tinted.shape == ab.shape and float(tinted.abs().max()) <= 1.0
    assert bool(((tinted - ab).abs().flatten(1).mean(1) > 0.02).all())


def test_roc_auc_closed_form() -> None:
    assert roc_auc([0.9, 0.8], [0.1, 0.2]) == 1.0
    assert roc_auc([0.1], [0.9]) == 0.0
    assert roc_auc([0.5, 0.7], [0.5, 0.6]) == pytest.approx((0.5 + 0.0 + 1.0 + 1.0) / 4)


def test_bins_schedule_trains_resumes_and_needs_the_bins_head(tmp_path: Path) -> None:
    cfg = H.load_config(C.DEFAULTS, None, [
        "device=cpu", "amp=false", "max_steps=4", "checkpoint_every=2", "sample_every=0", "tensorboard=false",
        "workers=0", "schedule=bins", "bins.prior_batches=2", "data.package_images=[\"astronaut\"]",
        "data.max_side=96", "data.crop=32", "data.batch=4", "data.in_memory=true",
    ])
    cfg["model"].update(base=4, depth=1, disc_base=4, disc_layers=2, head="bins")
    cfg["out"] = str(tmp_path / "run")
    result = C.train(cfg)
    assert result["steps"] == 4
    log = (tmp_path / "run" / "log.csv").read_text().splitlines()
    header = log[0].split(",")
    assert all(row.split(",")[header.index("tinted")] != "" for row in log[1:])
    resumed = C.train({**cfg, "max_steps": 6}, resume=True)
    assert resumed["steps"] == 6
    cfg["model"]["head"] = "regression"
    cfg["out"] = str(tmp_path / "run2")
    with pytest.raises(ValueError, match="needs model.head 'bins'"):
        C.train(cfg)


def test_colorizer_rejects_an_unknown_head() -> None:
    with pytest.raises(ValueError, match="head must be one of"):
        Colorizer(head="mixture")


def test_temperature_is_set_after_training(tmp_path: Path) -> None:
    from pyfill.export import load_checkpoint, save_checkpoint
    from pyfill.models import build_model, make_manifest
    from training.colorize_temperature import with_temperature

    config = {"base": 4, "depth": 1, "disc_base": 4, "disc_layers": 2, "head": "bins", "temperature": 0.38}
    torch.manual_seed(0)
    net = build_model("colorize", config)
    src = save_checkpoint(net, make_manifest("colorize", config), tmp_path / "a.safetensors")
    out = with_temperature(src, 1.0, tmp_path / "b.safetensors")
    loaded, manifest = load_checkpoint(out)
    assert manifest.config["temperature"] == 1.0 and loaded.generator.temperature == 1.0
    assert manifest.provenance["temperature"] == {"from": 0.38, "to": 1.0}
    x = torch.rand(1, 3, 32, 32)
    net.generator.temperature = 1.0
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x)[0].numpy(), net.eval()(x)[0].numpy(), atol=1e-6)
    with pytest.raises(ValueError, match="> 0"):
        with_temperature(src, 0.0, tmp_path / "c.safetensors")
