"""The Engine's generation inputs: colour-coded label images, and a latent derived from a stroke
image by the manifest-declared stroke-grid step; the ``pyfill generate`` command."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfill.engine import Engine
from pyfill.manifest import ManifestError, TensorSpec
from pyfill.ops.reference.stroke_grid import stroke_grid as reference_stroke_grid

PALETTE = [[110, 170, 240], [235, 235, 245], [120, 100, 90], [90, 90, 95], [30, 100, 40], [110, 190, 70],
           [40, 90, 170], [225, 200, 140]]
NAMES = ["sky", "cloud", "mountain", "rock", "tree", "grass", "water", "sand"]


@pytest.fixture(scope="module")
def legend_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random-weight 32 x 32 spade generator whose manifest carries the legend, as ONNX."""
    torch = pytest.importorskip("torch")
    from pyfill.export import export_onnx, save_checkpoint
    from pyfill.models import build_model, make_manifest

    torch.manual_seed(2)
    cfg = {"size": 32, "base": 16, "hidden": 8, "class_names": NAMES, "palette": PALETTE}
    folder = tmp_path_factory.mktemp("legend")
    ckpt = save_checkpoint(build_model("spade", cfg), make_manifest("spade", cfg, task="generate"), folder / "gen")
    return export_onnx(ckpt, folder / "gen.onnx")


def _labels(h: int = 48, w: int = 64) -> np.ndarray:
    labels = np.full((h, w), 5, np.uint8)
    labels[: h // 2] = 0
    labels[h // 2 : h // 2 + 6, 10:40] = 6
    labels[: h // 5, 30:50] = 1
    return labels


def _strokes(h: int = 48, w: int = 64) -> np.ndarray:
    strokes = np.zeros((h, w, 3), np.uint8)
    strokes[3:9, 5:40] = (250, 40, 30)
    strokes[30:33, 20:60] = (230, 220, 40)
    return strokes


def test_manifest_carries_the_legend_and_the_derive_step(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    labels, latent = engine.manifest.inputs
    assert labels.class_names == NAMES and labels.palette == PALETTE
    assert latent.derive == {"op": "stroke_grid", "from": "strokes", "grid": [9, 9]}
    assert engine.input_names == ["labels", "latent", "strokes", "occupancy"]


def test_colour_coded_labels_equal_the_index_map(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    index = _labels()
    coded = np.asarray(PALETTE, np.uint8)[index]
    a = engine(labels=index)
    b = engine(labels=coded)
    c = engine(labels=np.concatenate([coded, np.full((*index.shape, 1), 255, np.uint8)], axis=-1))
    assert a.shape == (48, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b) and np.array_equal(a, c)


def test_strokes_give_the_latent_of_the_reference_stroke_grid(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    strokes = _strokes()
    latent = reference_stroke_grid(strokes, None, (9, 9)).reshape(-1)
    by_strokes = engine(labels=_labels(), strokes=strokes)
    by_latent = engine(labels=_labels(), latent=latent)
    np.testing.assert_array_equal(by_strokes, by_latent)
    assert not np.array_equal(by_strokes, engine(labels=_labels()))  # the strokes matter
    # Empty strokes are the all-zero latent, the same as giving no strokes.
    np.testing.assert_array_equal(engine(labels=_labels(), strokes=np.zeros_like(strokes)), engine(labels=_labels()))


def test_occupancy_marks_black_strokes(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    strokes = np.zeros((48, 64, 3), np.uint8)
    occupancy = np.zeros((48, 64), bool)
    occupancy[5:12, 5:30] = True  # a black stroke: invisible without occupancy
    latent = reference_stroke_grid(strokes, occupancy, (9, 9)).reshape(-1)
    assert latent.any()
    want = engine(labels=_labels(), latent=latent)
    np.testing.assert_array_equal(engine(labels=_labels(), strokes=strokes, occupancy=occupancy), want)
    rgba = np.concatenate([strokes, occupancy[..., None].astype(np.uint8) * 255], axis=-1)
    np.testing.assert_array_equal(engine(labels=_labels(), strokes=rgba), want)


def test_batches_with_strokes(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    outs = engine(labels=[_labels(), _labels()], strokes=[_strokes(), np.zeros((48, 64, 3), np.uint8)])
    assert np.array_equal(outs[0], engine(labels=_labels(), strokes=_strokes()))
    assert np.array_equal(outs[1], engine(labels=_labels()))


def test_bad_generation_inputs_raise_clear_errors(legend_model: Path) -> None:
    engine = Engine(legend_model, backend="onnxruntime")
    coded = np.asarray(PALETTE, np.uint8)[_labels()]
    coded[4, 7] = (1, 2, 3)
    with pytest.raises(ValueError, match=r"1 pixels have colours outside the legend, e.g. \(1, 2, 3\) at \(row 4, column 7\)"):
        engine(labels=coded)
    bad = _labels()
    bad[0, 0] = 8
    with pytest.raises(ValueError, match=r"class indices must be in \[0, 7\]"):
        engine(labels=bad)
    with pytest.raises(ValueError, match="stroke image size"):
        engine(labels=_labels(), strokes=np.zeros((40, 64, 3), np.uint8))
    with pytest.raises(ValueError, match="RGB stroke image"):
        engine(labels=_labels(), strokes=np.zeros((48, 64), np.uint8))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        engine(labels=_labels(), strokes=np.full((48, 64, 3), 2.0, np.float32))
    with pytest.raises(TypeError, match="not both"):
        engine(labels=_labels(), strokes=_strokes(), latent=np.zeros(648, np.float32))
    with pytest.raises(TypeError, match="go with 'strokes'"):
        engine(labels=_labels(), occupancy=np.ones((48, 64), bool))
    with pytest.raises(TypeError, match="unknown inputs"):
        engine(labels=_labels(), stroke=_strokes())


def test_labels_without_a_legend_refuse_colour_images(spade_files) -> None:
    engine = Engine(spade_files[1], backend="onnxruntime")
    with pytest.raises(ValueError, match="no legend colours"):
        engine(labels=np.zeros((32, 32, 3), np.uint8))


def test_manifest_validates_legend_and_derive() -> None:
    with pytest.raises(ManifestError, match="one entry per class"):
        TensorSpec("labels", "labels", 2, "none", classes=2, palette=[[0, 0, 0]])
    with pytest.raises(ManifestError, match="distinct"):
        TensorSpec("labels", "labels", 2, "none", classes=2, palette=[[0, 0, 0], [0, 0, 0]])
    with pytest.raises(ManifestError, match="unknown derive op"):
        TensorSpec("z", "vector", 1, "none", length=4, derive={"op": "magic", "from": "x"})
    with pytest.raises(ManifestError, match="needs"):
        TensorSpec("z", "vector", 1, "none", length=4, derive={"op": "stroke_grid", "from": "strokes"})
    with pytest.raises(ManifestError, match="only vector"):
        TensorSpec("x", "image", derive={"op": "stroke_grid", "from": "s", "grid": [9, 9]})


def test_cli_generate(legend_model: Path, tmp_path: Path) -> None:
    from PIL import Image

    from pyfill.cli import main

    Image.fromarray(np.asarray(PALETTE, np.uint8)[_labels()]).save(tmp_path / "labels.png")
    Image.fromarray(_labels()).save(tmp_path / "index.png")
    Image.fromarray(_strokes()).save(tmp_path / "strokes.png")
    out = tmp_path / "out.png"
    assert main(["generate", str(tmp_path / "labels.png"), "--strokes", str(tmp_path / "strokes.png"),
                 "-o", str(out), "--model", str(legend_model), "--backend", "onnxruntime"]) == 0
    engine = Engine(legend_model, backend="onnxruntime")
    assert np.array_equal(np.asarray(Image.open(out)), engine(labels=_labels(), strokes=_strokes()))
    assert main(["generate", str(tmp_path / "index.png"), "-o", str(tmp_path / "b.png"),
                 "--model", str(legend_model), "--backend", "onnxruntime"]) == 0
    assert np.array_equal(np.asarray(Image.open(tmp_path / "b.png")), engine(labels=_labels()))
    Image.fromarray(np.zeros((10, 10, 3), np.uint8)).save(tmp_path / "small.png")
    assert main(["generate", str(tmp_path / "labels.png"), "--strokes", str(tmp_path / "small.png"),
                 "-o", str(tmp_path / "c.png"), "--model", str(legend_model)]) == 1
