"""The quality gate of the restoration model and the measured quality labels."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("skimage")

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.append(str(ROOT))

from pyfill.export import save_checkpoint  # noqa: E402
from pyfill.models import build_model, make_manifest  # noqa: E402
from training import quality as Q  # noqa: E402
from training.data import ImageSet  # noqa: E402
from training.restore_gate import gated  # noqa: E402


def rated(net: torch.nn.Module, probs: tuple[float, float, float]) -> None:
    """Make the gate's classifier output the class probabilities ``probs`` for every input."""
    with torch.no_grad():
        net.quality.fc.weight.zero_()
        net.quality.fc.bias.copy_(torch.log(torch.tensor(probs)))


def test_gate_scales_the_correction_by_the_score() -> None:
    torch.manual_seed(0)
    net = build_model("restore", {"base": 4, "depth": 2, "gate": True, "quality_base": 4, "quality_layers": 2,
                                  "gate_low": 40.0, "gate_high": 60.0}).eval()
    with torch.no_grad():
        net.generator.head.weight.normal_(0, 0.1)
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        full = net.generator(x)
        rated(net, (0.0, 0.0, 1.0))  # score 80: good, left alone
        np.testing.assert_array_equal(net(x).numpy(), x.numpy())
        rated(net, (1.0, 0.0, 0.0))  # score 15: full correction
        np.testing.assert_allclose(net(x).numpy(), full.numpy(), atol=1e-6)
        rated(net, (0.5, 0.0, 0.5))  # score 47.5: g = (60 - 47.5) / 20
        np.testing.assert_allclose(net(x).numpy(), (x + 0.625 * (full - x)).numpy(), atol=1e-5)
    assert make_manifest("restore", {"gate": True}).tiling.tile == 1024
    with pytest.raises(ValueError, match="gate_low must be below gate_high"):
        build_model("restore", {"gate": True, "gate_low": 60.0, "gate_high": 50.0})


def test_gated_checkpoint_keeps_both_networks(tmp_path: Path) -> None:
    torch.manual_seed(1)
    restore = build_model("restore", {"base": 4, "depth": 2})
    quality = build_model("quality", {"base": 4, "layers": 2})
    r_path = save_checkpoint(restore, make_manifest("restore", {"base": 4, "depth": 2}), tmp_path / "r.safetensors")
    q_path = save_checkpoint(quality, make_manifest("quality", {"base": 4, "layers": 2}), tmp_path / "q.safetensors")
    net, manifest = gated(r_path, q_path, 30.0, 50.0)
    assert manifest.config["gate"] and manifest.config["gate_low"] == 30.0
    for k, v in restore.generator.state_dict().items():
        assert torch.equal(net.generator.state_dict()[k], v)
    for k, v in quality.state_dict().items():
        assert torch.equal(net.quality.state_dict()[k], v)
    with pytest.raises(ValueError, match="not a quality classifier"):
        gated(r_path, r_path, 30.0, 50.0)


def test_measured_labels_follow_the_psnr_of_each_crop() -> None:
    images = ImageSet((), ["astronaut"], 128, 32)
    source = Q.Measured(images, clean_share=0.3, jpeg_share=0.5, bounds=(27.0, 33.0))
    assert [source.label(p) for p in (20.0, 27.0, 30.0, 33.0, 45.0)] == [0, 1, 1, 2, 2]
    gen = torch.Generator().manual_seed(0)
    clean = images.random_crops(16, 32, torch.Generator().manual_seed(0))
    degraded, labels = source.batch(16, 32, gen)
    # the clean crops drawn inside batch() are the same as those drawn here with the same seed
    mse = ((degraded - clean) ** 2).flatten(1).mean(1).clamp(min=1e-10)
    psnr = 10 * torch.log10(1.0 / mse)
    expected = (psnr >= 27.0).long() + (psnr >= 33.0).long()
    assert torch.equal(labels, expected)
    assert int((labels == 2).sum()) >= 1 and int((labels < 2).sum()) >= 1
    with pytest.raises(ValueError, match="psnr_bounds"):
        Q.Measured(images, 0.2, 0.3, (33.0, 27.0))


def test_calibration_thresholds_and_gains_against_direct_measurements(tmp_path: Path) -> None:
    """``high`` is the lowest score of the good inputs less the margin; the closed-form gain of
    the full correction equals the PSNR change measured with scikit-image."""
    import io

    from PIL import Image
    from skimage import data
    from skimage.metrics import peak_signal_noise_ratio

    from training.restore_data import level_pipeline
    from training.restore_gate import calibrate, calibration_images

    torch.manual_seed(2)
    restore = build_model("restore", {"base": 4, "depth": 2})
    with torch.no_grad():
        restore.generator.head.weight.normal_(0, 0.02)
    quality = build_model("quality", {"base": 4, "layers": 2}).eval()
    r_path = save_checkpoint(restore, make_manifest("restore", {"base": 4, "depth": 2}), tmp_path / "r.safetensors")
    q_path = save_checkpoint(quality, make_manifest("quality", {"base": 4, "layers": 2}), tmp_path / "q.safetensors")
    images = [np.ascontiguousarray(data.astronaut()[100:164, 200:260]), np.ascontiguousarray(data.rocket()[:48, :72])]
    result = calibrate(r_path, q_path, images, seeds=1, margin=1.5)

    net, _ = gated(r_path, q_path, 0.0, 100.0)
    from pyfill.models.restore import quality_score

    def score(img: np.ndarray) -> float:
        x = torch.from_numpy(np.array(img, np.float32)).permute(2, 0, 1)[None] / 255.0
        h, w = x.shape[-2:]
        x = torch.nn.functional.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect")
        with torch.no_grad():
            return float(quality_score(torch.softmax(net.quality(x), dim=1))[0])

    good = []
    for img in images:
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, "JPEG", quality=90)
        good += [score(img), score(np.asarray(Image.open(buf).convert("RGB")))]
    np.testing.assert_allclose(result["good_scores"], good, atol=1e-4)
    assert result["high"] == pytest.approx(min(good) - 1.5)
    assert result["low"] < result["high"]

    for img, row in zip(images, result["degraded"]):
        degraded = level_pipeline("medium", 100)(img[None])[0][0]
        x = torch.from_numpy(np.array(degraded, np.float32)).permute(2, 0, 1)[None] / 255.0
        h, w = x.shape[-2:]
        with torch.no_grad():
            gx = restore.generator(torch.nn.functional.pad(x, (0, -w % 4, 0, -h % 4), mode="reflect"))[..., :h, :w]
        want = (peak_signal_noise_ratio(img / 255.0, gx[0].permute(1, 2, 0).double().numpy(), data_range=1.0)
                - peak_signal_noise_ratio(img / 255.0, degraded / 255.0, data_range=1.0))
        assert row["gain_full"] == pytest.approx(want, abs=1e-3)
        assert abs(want) > 1e-3  # the generator does change the image
    assert result["gain_full"] == pytest.approx(np.mean([r["gain_full"] for r in result["degraded"]]))

    folder = tmp_path / "cal"
    folder.mkdir()
    Image.fromarray(data.astronaut()).save(folder / "a.png")
    shrunk = calibration_images([str(folder)], ["rocket"], max_side=100)
    assert [im.shape for im in shrunk] == [(100, 100, 3), (67, 100, 3)]  # rocket: 427 x 640
    with pytest.raises(FileNotFoundError, match="no such calibration image"):
        calibration_images([str(tmp_path / "missing")], [])
