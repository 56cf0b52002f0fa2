"""The task layer: ``pyfill.restore/colorize/generate`` equal what the CLI writes, keep the
input's form (gray, alpha, 16 bits), and are checked against independent computations."""

from __future__ import annotations

import base64
import io
import json
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import pyfill
from pyfill.cli import main
from pyfill.engine import Engine
from pyfill.images import read_image, write_image
from pyfill.tasks import frame_processor, legend

skimage_data = pytest.importorskip("skimage.data")
from skimage.color import rgb2lab  # noqa: E402


@pytest.fixture(scope="module")
def photo() -> np.ndarray:
    return skimage_data.astronaut()[100:196, 150:270].copy()  # 96 x 120 RGB uint8


def _cli(*argv: str) -> None:
    assert main(list(argv)) == 0


# ---- restore -----------------------------------------------------------------------------------
def test_restore_api_equals_cli_file(photo: np.ndarray, tmp_path: Path) -> None:
    write_image(tmp_path / "in.png", photo)
    _cli("restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "out.png"))
    assert np.array_equal(read_image(tmp_path / "out.png"), pyfill.restore(photo))


def test_restore_keeps_gray_alpha_and_16_bits(photo: np.ndarray) -> None:
    engine = Engine("restore")
    gray = photo.mean(axis=-1).astype(np.uint8)
    rgb_of_gray = engine(np.repeat(gray[..., None], 3, axis=-1))
    out = pyfill.restore(gray)
    assert out.shape == gray.shape and out.dtype == np.uint8
    assert np.array_equal(out, np.rint(rgb_of_gray.astype(np.float64).mean(axis=-1)).astype(np.uint8))

    alpha = np.random.default_rng(0).integers(0, 256, photo.shape[:2], dtype=np.uint8)
    rgba = np.dstack([photo, alpha])
    out = pyfill.restore(rgba)
    assert out.shape == rgba.shape and np.array_equal(out[..., 3], alpha)
    assert np.array_equal(out[..., :3], engine(photo))

    deep = photo.astype(np.uint16) * 257
    out16 = pyfill.restore(deep)
    assert out16.dtype == np.uint16 and out16.shape == photo.shape
    assert np.abs(out16 / 257.0 - engine(photo)).max() <= 3


def test_restore_refuses_a_model_for_another_task(photo: np.ndarray, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(ValueError, match="colorize.onnx is a colorize model; restore takes a model for restore"):
        pyfill.restore(photo, model="colorize")
    write_image(tmp_path / "in.png", photo)
    assert main(["restore", str(tmp_path / "in.png"), "-o", str(tmp_path / "o"), "--model", "colorize"]) == 1
    err = capsys.readouterr().err
    assert "is a colorize model" in err and "Traceback" not in err


# ---- colorize ----------------------------------------------------------------------------------
def test_colorize_api_equals_cli_file_and_scores(photo: np.ndarray, tmp_path: Path) -> None:
    gray = photo.mean(axis=-1).astype(np.uint8)
    write_image(tmp_path / "gray.png", gray)
    _cli("colorize", str(tmp_path / "gray.png"), "-o", str(tmp_path / "out.png"), "--scores", str(tmp_path / "s.csv"))
    result = pyfill.colorize(gray)
    assert np.array_equal(read_image(tmp_path / "out.png"), result.image)
    score = float((tmp_path / "s.csv").read_text().splitlines()[1].split(",")[2])
    assert 0.0 <= result.realness <= 1.0 and abs(score - result.realness) < 1e-6


def test_colorize_keeps_the_lightness_of_the_gray_input(photo: np.ndarray) -> None:
    gray = photo.mean(axis=-1).astype(np.uint8)
    fill = pyfill.colorize(gray).image
    assert fill.shape == (*gray.shape, 3) and fill.std(axis=-1).mean() > 0.5  # it did add colour
    l_in = rgb2lab(np.repeat(gray[..., None], 3, axis=-1))[..., 0]
    l_out = rgb2lab(fill)[..., 0]
    assert np.abs(l_in - l_out).mean() < 1.0  # Lab lightness kept (uint8 rounding of the fill)


def test_colorize_keeps_alpha_and_16_bits(photo: np.ndarray) -> None:
    alpha = np.full(photo.shape[:2], 77, np.uint8)
    out = pyfill.colorize(np.dstack([photo, alpha])).image
    assert out.shape == (*photo.shape[:2], 4) and np.all(out[..., 3] == 77)
    out16 = pyfill.colorize(photo.astype(np.uint16) * 257).image
    assert out16.dtype == np.uint16 and np.abs(out16 / 257.0 - pyfill.colorize(photo).image).max() <= 3


# ---- generate ----------------------------------------------------------------------------------
def _labels() -> np.ndarray:
    lab = np.zeros((128, 128), np.uint8)
    lab[64:] = 3
    lab[90:, 30:80] = 5
    return lab


def test_generate_api_equals_cli_and_legend_colours_equal_indices(tmp_path: Path) -> None:
    lab = _labels()
    strokes = np.zeros((128, 128, 3), np.uint8)
    strokes[10:20, 10:60] = (250, 120, 20)
    write_image(tmp_path / "lab.png", lab)
    write_image(tmp_path / "strokes.png", strokes)
    _cli("generate", str(tmp_path / "lab.png"), "--strokes", str(tmp_path / "strokes.png"), "-o", str(tmp_path / "g.png"))
    out = pyfill.generate(lab, strokes)
    assert np.array_equal(read_image(tmp_path / "g.png"), out)
    colours = np.array([e.colour for e in legend()], np.uint8)[lab]
    assert np.array_equal(pyfill.generate(colours, strokes), out)
    assert not np.array_equal(pyfill.generate(lab), out)  # the strokes changed the picture
    with pytest.raises(ValueError, match="labels: label images are 8-bit"):
        pyfill.generate(lab.astype(np.uint16))
    with pytest.raises(TypeError, match="occupancy goes with strokes"):
        pyfill.generate(lab, occupancy=np.ones((128, 128), bool))


def test_board_draw_returns_the_task_pixels(board) -> None:
    lab = _labels()
    colours = np.array([e.colour for e in legend()], np.uint8)[lab]
    buf = io.BytesIO()
    Image.fromarray(colours).save(buf, format="PNG")
    body = json.dumps({"labels": base64.b64encode(buf.getvalue()).decode()}).encode()
    req = urllib.request.Request(board.url + "api/draw", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=60) as resp:
        answer = json.loads(resp.read())
    drawn = np.asarray(Image.open(io.BytesIO(base64.b64decode(answer["image"]))))
    assert np.array_equal(drawn, pyfill.generate(lab))


# ---- streams and the CLI's file handling -------------------------------------------------------
def test_frame_processor_equals_the_task_per_frame(photo: np.ndarray) -> None:
    from pyfill.tasks import colorize_engine, restore_engine

    frames = [photo, photo[::-1].copy(), photo[:, ::-1].copy()]
    stream = restore_engine(static_shapes=True, throughput=True)  # what frame_processor runs
    assert all(np.array_equal(a, pyfill.restore(f, model=stream))
               for a, f in zip(frame_processor("restore")(frames), frames))
    gray = [f.mean(axis=-1).astype(np.uint8) for f in frames]
    rgb = [np.repeat(g[..., None], 3, axis=-1) for g in gray]
    stream = colorize_engine(static_shapes=True, throughput=True)
    for a, g in zip(frame_processor("colorize")(rgb), gray):
        assert np.array_equal(a, pyfill.colorize(g, model=stream).image)
    with pytest.raises(ValueError, match="unknown task 'paint'; tasks: restore, colorize, generate"):
        frame_processor("paint")


def test_cli_never_overwrites_inputs_and_skips_finished_work(photo: np.ndarray, tmp_path: Path,
                                                             capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "in"
    write_image(folder / "a.png", photo)
    write_image(folder / "b.jpg", photo)
    assert main(["restore", str(folder), "-o", str(tmp_path / "x.png")]) == 1
    assert "names one file, but there are 2 input images" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()

    assert main(["restore", str(folder), "-o", str(folder)]) == 1
    assert "would overwrite an input" in capsys.readouterr().err
    assert np.array_equal(read_image(folder / "a.png"), photo)

    out = tmp_path / "out"
    _cli("restore", str(folder), "-o", str(out), "--quality", "90")
    restored_jpg = read_image(out / "b.jpg")
    reference = write_image(tmp_path / "reference.jpg", pyfill.restore(read_image(folder / "b.jpg")), quality=90)
    assert np.array_equal(restored_jpg, read_image(reference))  # the restored image, written at quality 90
    stamp = (out / "a.png").stat().st_mtime_ns
    (out / "b.jpg").unlink()
    _cli("restore", str(folder), "-o", str(out), "--skip-existing", "--format", "png")
    assert (out / "a.png").stat().st_mtime_ns == stamp and (out / "b.png").is_file()


def test_cli_says_an_animated_gif_loses_frames(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    frames = [Image.fromarray(np.full((40, 40, 3), v, np.uint8)) for v in (10, 120, 240)]
    frames[0].save(tmp_path / "anim.gif", save_all=True, append_images=frames[1:])
    _cli("restore", str(tmp_path / "anim.gif"), "-o", str(tmp_path / "out"))
    assert "animated image of 3 frames; only the first is used" in capsys.readouterr().err


def test_backend_help_lists_the_choices(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="^0$"):
        main(["restore", "--help"])
    assert "auto, tensorrt, torch, openvino, onnxruntime" in capsys.readouterr().out


def test_help_lists_the_systems_that_exist(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="^0$"):
        main(["--help"])
    out = capsys.readouterr().out
    for command in ("demo", "restore", "colorize", "generate", "board", "swap", "video", "models"):
        assert f"    {command}" in out
    assert "text-driven" not in out and "edit" not in out.split("positional arguments")[0]


def test_no_progress_bar_is_written_into_logs(photo: np.ndarray, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    write_image(tmp_path / "in" / "a.png", photo)
    write_image(tmp_path / "in" / "b.png", photo)
    _cli("restore", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--tile", "80")
    err = capsys.readouterr().err  # stderr is not a terminal here
    assert "[#" not in err and "tiles" not in err and "\r" not in err
