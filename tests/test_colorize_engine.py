"""Colour filling at inference: Lab conversions, the exported graph through the Engine, the shipped
model, and ``pyfill colorize``."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
color = pytest.importorskip("skimage.color")

from pyfill.cli import main as cli_main  # noqa: E402
from pyfill.engine import Engine, pretrained_models  # noqa: E402


def to_nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(x.transpose(2, 0, 1)[None])).float()


def to_hwc(t: torch.Tensor) -> np.ndarray:
    return t[0].permute(1, 2, 0).numpy().astype(np.float64)


@pytest.fixture(scope="module")
def colorize_onnx(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(3)
    cfg = {"base": 4, "depth": 2, "disc_base": 4, "disc_layers": 2}
    folder = tmp_path_factory.mktemp("colorize")
    ckpt = save_checkpoint(build_model("colorize", cfg), make_manifest("colorize", cfg), folder / "colorize")
    return export_onnx(ckpt, folder / "colorize.onnx", atol=1e-3)


def test_lab_matches_skimage() -> None:
    from pyfill.models.colorize import lab_to_rgb, rgb_to_lab, rgb_to_lightness

    rgb = np.random.default_rng(0).uniform(0, 1, (24, 20, 3))
    lab = to_hwc(rgb_to_lab(to_nchw(rgb)))
    np.testing.assert_allclose(lab, color.rgb2lab(rgb), atol=2e-3)
    np.testing.assert_allclose(to_hwc(rgb_to_lightness(to_nchw(rgb)))[..., 0], color.rgb2lab(rgb)[..., 0], atol=2e-3)
    np.testing.assert_allclose(to_hwc(lab_to_rgb(to_nchw(color.rgb2lab(rgb)))), rgb, atol=1e-4)


@pytest.mark.filterwarnings("ignore:Conversion from CIE-LAB")  # skimage clips the reference's out-of-gamut Z
def test_out_of_gamut_colours_keep_their_lightness() -> None:
    from pyfill.models.colorize import lab_to_rgb

    rng = np.random.default_rng(1)
    lab = np.stack([rng.uniform(0, 100, (32, 32)), rng.uniform(-110, 110, (32, 32)), rng.uniform(-110, 110, (32, 32))], -1)
    rgb = to_hwc(lab_to_rgb(to_nchw(lab)))
    assert rgb.min() >= 0.0 and rgb.max() <= 1.0
    assert np.mean(np.abs(color.lab2rgb(lab) - rgb) > 1e-3) > 0.3  # many colours really were out of gamut
    np.testing.assert_allclose(color.rgb2lab(rgb)[..., 0], lab[..., 0], atol=5e-3)


def test_engine_fill_keeps_the_input_lightness(colorize_onnx: Path) -> None:
    engine = Engine(colorize_onnx, backend="onnxruntime")
    rgb = np.random.default_rng(2).uniform(0, 1, (37, 45, 3)).astype(np.float32)  # not a multiple of 4
    out = engine(rgb)
    assert set(out) == {"fill", "realness"}
    fill = out["fill"]
    assert fill.shape == rgb.shape and fill.dtype == np.float32
    np.testing.assert_allclose(color.rgb2lab(fill)[..., 0], color.rgb2lab(rgb)[..., 0], atol=0.02)
    assert out["realness"].shape == (1,) and 0.0 <= float(out["realness"][0]) <= 1.0


def test_engine_gray_and_16bit_inputs(colorize_onnx: Path) -> None:
    engine = Engine(colorize_onnx, backend="onnxruntime")
    gray = np.random.default_rng(3).integers(0, 65536, (16, 24), dtype=np.uint16)
    fill = engine(gray)["fill"]
    assert fill.shape == (16, 24, 3) and fill.dtype == np.uint16
    lightness = color.rgb2lab(np.repeat(gray[..., None] / 65535.0, 3, -1))[..., 0]
    np.testing.assert_allclose(color.rgb2lab(fill / 65535.0)[..., 0], lightness, atol=0.02)


def test_from_pretrained_unknown_name_lists_the_available() -> None:
    with pytest.raises(FileNotFoundError, match=r"no model file or model named 'nope'; available models: .*colorize.*"
                                                r"pyfill models add FILE --name NAME"):
        Engine.from_pretrained("nope")


@pytest.mark.skipif("colorize" not in pretrained_models(), reason="the shipped colorize model is not installed")
def test_shipped_model_colourises() -> None:
    from skimage import data

    engine = Engine.from_pretrained("colorize")
    assert engine.manifest.task == "colorize"
    rgb = data.coffee()[::4, ::4]
    lab = color.rgb2lab(rgb)
    lab[..., 1:] = 0
    gray = np.rint(np.clip(color.lab2rgb(lab), 0, 1) * 255).astype(np.uint8)
    out = engine(gray)
    fill = out["fill"]
    assert fill.shape == gray.shape and fill.dtype == np.uint8
    # Luminance kept (up to 8-bit rounding), colour added.
    np.testing.assert_allclose(color.rgb2lab(fill)[..., 0], color.rgb2lab(gray)[..., 0], atol=0.6)
    assert np.abs(color.rgb2lab(fill)[..., 1:]).mean() > 1.0
    assert 0.0 <= float(out["realness"][0]) <= 1.0


def test_cli_colorize_files_and_folders(colorize_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from PIL import Image

    from pyfill.images import read_image

    rng = np.random.default_rng(4)
    src = tmp_path / "in"
    (src / "nested").mkdir(parents=True)
    rgba = rng.integers(0, 256, (20, 30, 4), dtype=np.uint8)
    Image.fromarray(rng.integers(0, 256, (21, 17), dtype=np.uint8)).save(src / "gray.png")
    Image.fromarray(rng.integers(0, 256, (12, 40, 3), dtype=np.uint8)).save(src / "nested" / "rgb.jpg")
    Image.fromarray(rgba).save(src / "nested" / "rgba.png")
    Image.fromarray(rng.integers(0, 65536, (9, 11), dtype=np.uint16)).save(src / "deep16.png")
    (src / "broken.png").write_bytes(b"not a png")
    single = tmp_path / "one.png"
    Image.fromarray(rng.integers(0, 256, (8, 8, 3), dtype=np.uint8)).save(single)

    out = tmp_path / "out"
    code = cli_main(["colorize", str(src), str(single), "-o", str(out), "--model", str(colorize_onnx),
                     "--backend", "onnxruntime", "--scores", str(tmp_path / "scores.csv")])
    captured = capsys.readouterr()
    assert code == 1  # one file was unreadable; the rest were done
    assert "skipped" in captured.err and "broken.png" in captured.err
    assert "colourised 5 of 6 images" in captured.out
    g = read_image(out / "gray.png")
    assert g.shape == (21, 17, 3) and g.dtype == np.uint8
    assert read_image(out / "nested" / "rgb.jpg").shape == (12, 40, 3)
    a = read_image(out / "nested" / "rgba.png")
    assert a.shape == (20, 30, 4)
    np.testing.assert_array_equal(a[..., 3], rgba[..., 3])
    assert read_image(out / "one.png").shape == (8, 8, 3)
    deep = (out / "deep16.png").read_bytes()
    assert deep[24] == 16 and deep[25] == 2  # IHDR: 16 bits per sample, RGB
    lines = (tmp_path / "scores.csv").read_text().splitlines()
    assert lines[0] == "input,output,realness" and len(lines) == 6


def test_png16_encoder_round_trip(tmp_path: Path) -> None:
    cv2 = pytest.importorskip("cv2")
    from pyfill.images import write_image

    img = np.random.default_rng(5).integers(0, 65536, (7, 9, 3), dtype=np.uint16)
    write_image(tmp_path / "x.png", img)
    back = cv2.imread(str(tmp_path / "x.png"), cv2.IMREAD_UNCHANGED)[..., ::-1]
    np.testing.assert_array_equal(back, img)
    with pytest.raises(ValueError, match="16-bit images are written as .png"):
        write_image(tmp_path / "x.jpg", img)
