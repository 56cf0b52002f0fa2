"""Restoration at inference: the exported generator through the Engine, tiling, the shipped model
and ``pyfill restore``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
metrics = pytest.importorskip("skimage.metrics")

from pyfill.cli import main as cli_main  # noqa: E402
from pyfill.engine import Engine, pretrained_models  # noqa: E402
from pyfill.images import read_image, write_image  # noqa: E402

CFG = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}


@pytest.fixture(scope="module")
def restore_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[torch.nn.Module, Path]:
    """(the torch module, its ONNX export) of a seeded tiny restorer whose correction is not zero."""
    from pyfill.export import export_onnx
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(5)
    net = build_model("restore", CFG)
    with torch.no_grad():
        net.generator.head.weight.normal_(0.0, 0.05)
    folder = tmp_path_factory.mktemp("restore")
    return net.eval(), export_onnx(net, folder / "restore.onnx", manifest=make_manifest("restore", CFG))


def test_engine_matches_the_generator_and_keeps_the_size(restore_files: tuple) -> None:
    net, onnx = restore_files
    img = np.random.default_rng(0).uniform(0, 1, (36, 52, 3)).astype(np.float32)  # padded to multiples of 4
    out = Engine(onnx, backend="onnxruntime")(img)
    assert out.shape == img.shape and out.dtype == np.float32
    with torch.no_grad():
        want = net(torch.from_numpy(img.transpose(2, 0, 1))[None])[0].permute(1, 2, 0).numpy()
    assert np.abs(want - img).max() > 1e-2  # the model really changes the image
    # padding is at the bottom/right only: the top-left interior is unaffected by it
    np.testing.assert_allclose(out[:28, :44], want[:28, :44], atol=1e-4)


def test_tiles_give_the_whole_image_result(restore_files: tuple) -> None:
    _, onnx = restore_files
    img = np.random.default_rng(1).integers(0, 256, (120, 136, 3)).astype(np.uint8)
    whole = Engine(onnx, backend="onnxruntime", tile=0)(img).astype(np.int16)
    tiled = Engine(onnx, backend="onnxruntime", tile=48, tile_overlap=16)(img).astype(np.int16)
    assert tiled.shape == img.shape
    assert np.abs(whole - tiled).max() <= 2  # receptive field of the tiny model fits in the overlap


def test_restore_cli_handles_gray_alpha_16bit_and_broken_files(restore_files: tuple, tmp_path: Path,
                                                               capsys: pytest.CaptureFixture) -> None:
    _, onnx = restore_files
    rng = np.random.default_rng(2)
    src = tmp_path / "in"
    write_image(src / "gray.png", rng.integers(0, 256, (30, 40)).astype(np.uint8))
    rgba = rng.integers(0, 256, (24, 20, 4)).astype(np.uint8)
    write_image(src / "sub" / "rgba.png", rgba)
    write_image(src / "deep.png", rng.integers(0, 65536, (20, 28)).astype(np.uint16))
    write_image(src / "photo.jpg", rng.integers(0, 256, (32, 32, 3)).astype(np.uint8))
    (src / "broken.png").write_bytes(b"\x89PNG broken")
    out = tmp_path / "out"
    assert cli_main(["restore", str(src), "-o", str(out), "--model", str(onnx)]) == 1
    err = capsys.readouterr()
    assert "skipped" in err.err and "broken.png" in err.err
    assert "restored 4 of 5 images" in err.out
    gray = read_image(out / "gray.png")
    assert gray.shape == (30, 40) and gray.dtype == np.uint8
    got = read_image(out / "sub" / "rgba.png")
    assert got.shape == (24, 20, 4)
    np.testing.assert_array_equal(got[..., 3], rgba[..., 3])
    deep = read_image(out / "deep.png")
    assert deep.shape == (20, 28) and deep.dtype == np.uint16
    assert read_image(out / "photo.jpg").shape == (32, 32, 3)
    # a gray input is restored as three equal channels, then written back as their mean
    engine = Engine(onnx)  # the engine the CLI runs
    want = engine(np.repeat(read_image(src / "gray.png")[..., None], 3, axis=-1)).astype(np.float64).mean(-1)
    np.testing.assert_array_equal(gray, np.rint(want).astype(np.uint8))


def test_restore_cli_single_file_and_missing_model(restore_files: tuple, tmp_path: Path) -> None:
    _, onnx = restore_files
    write_image(tmp_path / "a.png", np.full((16, 16, 3), 128, np.uint8))
    assert cli_main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "b.png"), "--model", str(onnx)]) == 0
    assert read_image(tmp_path / "b.png").shape == (16, 16, 3)
    assert cli_main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "c"), "--model", "no-such-model"]) == 1
    assert cli_main(["restore", str(tmp_path / "a.png"), "-o", str(tmp_path / "c"), "--model", str(onnx),
                     "--tile", "-5"]) == 0  # negative: the model's advice


# ---- the shipped model ---------------------------------------------------------------------
needs_shipped = pytest.mark.skipif("restore" not in pretrained_models(), reason="the demo model is not shipped")


@needs_shipped
def test_shipped_model_manifest_allows_tiling() -> None:
    engine = Engine.from_pretrained("restore")
    assert engine.manifest.task == "restore" and engine.manifest.tiling.supported
    assert [s.name for s in engine.manifest.outputs] == ["restored"]


@needs_shipped
def test_shipped_model_improves_a_held_out_degraded_image() -> None:
    from skimage.data import chelsea

    from pyfill.degrade import Pipeline

    clean = chelsea()[:192, :256]
    degraded, _ = Pipeline("seed", seed=11, blur_prob=1.0, blur_kinds=("gaussian",), gaussian_ksize_range=(5, 5),
                           noise_prob=1.0, noise_kinds=("gaussian",), gaussian_noise_sigma_range=(10.0, 10.0),
                           resize_prob=0.0, jpeg_prob=0.0)(clean[None])
    restored = Engine.from_pretrained("restore")(degraded[0])
    before = metrics.peak_signal_noise_ratio(clean, degraded[0], data_range=255)
    after = metrics.peak_signal_noise_ratio(clean, restored, data_range=255)
    assert after > before + 0.5
