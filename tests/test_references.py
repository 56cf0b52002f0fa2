"""Model outputs against independent references, for every shipped model family and every
backend installed here: the torch module a shipped model came from (rebuilt from the file's
manifest and weights, whatever its architecture) run directly, the Engine on each backend, and
each task's result recomputed with scikit-image (Lab) and OpenCV (resizes).

Tests that need torch import it themselves, so the others also run on the default install."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfill.engine import Engine
from pyfill.store import resolve_model
from references import (
    engine_backends,
    generate_reference,
    hwc,
    module_from_onnx,
    nchw,
    noise_labels,
    run_module,
    to_uint8,
)

SHIPPED = ("colorize", "restore", "generate")


def natural_image(h: int, w: int) -> np.ndarray:
    """float32 (H, W, 3) in [0, 1]: scikit-image's astronaut photo resized with OpenCV (a
    photograph, so colourisers and restorers see what they were trained on)."""
    cv2 = pytest.importorskip("cv2")
    data = pytest.importorskip("skimage.data")
    return cv2.resize(data.astronaut(), (w, h), interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0


def gray_of(rgb: np.ndarray) -> np.ndarray:
    """Three equal channels holding the Lab lightness of ``rgb`` with a = b = 0 (scikit-image)."""
    color = pytest.importorskip("skimage.color")
    lab = color.rgb2lab(rgb)
    lab[..., 1:] = 0.0
    return np.clip(color.lab2rgb(lab), 0.0, 1.0).astype(np.float32)


def make_engine(name: str, backend: str, tmp_path: Path) -> Engine:
    """The shipped model ``name`` on ``backend`` in fp32; for torch, the checkpoint of the
    module rebuilt from the shipped file."""
    path = resolve_model(name)
    if backend != "torch":
        return Engine(path, backend=backend, precision="fp32")
    from pyfill.export import save_checkpoint

    module, manifest = module_from_onnx(path)
    return Engine(save_checkpoint(module, manifest, tmp_path / name), backend="torch", precision="fp32")


def model_inputs(name: str, manifest) -> tuple[dict, list[np.ndarray]]:
    """(the Engine's keyword inputs, the module's positional tensors) for the same item at the
    model's own size (no resize or padding)."""
    if name == "generate":
        cv2 = pytest.importorskip("cv2")
        from pyfill.ops import stroke_grid, stroke_grid_latent

        h, w = manifest.size.fixed
        spec = next(s for s in manifest.inputs if s.kind == "labels")
        labels = noise_labels(h, w, spec.classes, seed=3)
        strokes = np.zeros((h, w, 3), np.uint8)
        cv2.line(strokes, (5, 10), (w - 5, 20), (250, 120, 30), 4)
        vec = next(s for s in manifest.inputs if s.kind == "vector")
        latent = stroke_grid_latent(stroke_grid(strokes, strokes.any(-1), tuple(vec.derive["grid"])))
        onehot = np.eye(spec.classes, dtype=np.float32)[labels].transpose(2, 0, 1)[None]
        return {"labels": labels, "strokes": strokes}, [onehot, latent.reshape(1, -1).astype(np.float32)]
    m = manifest.size.multiple_of  # the model's own size rule: no padding by the Engine
    image = natural_image(-(-48 // m) * m, -(-64 // m) * m)
    if name == "colorize":
        image = gray_of(image)
    return {"image": image}, [nchw(image, manifest.inputs[0].value_range)]


@pytest.mark.parametrize("backend", engine_backends())
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_model_equals_its_torch_module_on_every_backend(name: str, backend: str, tmp_path: Path) -> None:
    """The Engine's outputs equal the torch module run directly (float outputs in fp32)."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    module, manifest = module_from_onnx(resolve_model(name))
    engine = make_engine(name, backend, tmp_path)
    kwargs, feeds = model_inputs(name, manifest)
    result = engine.run(**kwargs)
    want = run_module(module, feeds)
    assert len(want) == len(manifest.outputs)
    for spec, ref in zip(manifest.outputs, want):
        got = np.asarray(result[spec.name], np.float32)
        if spec.kind == "image":
            ref = np.clip(hwc(ref, spec.value_range), 0.0, 1.0)
            if name == "generate":  # uint8 label maps -> uint8 images
                ref = to_uint8(ref).astype(np.float32)
                assert np.abs(got - ref).max() <= 1, (name, backend, spec.name)
                continue
        np.testing.assert_allclose(got.reshape(ref.shape), ref, atol=2e-4, err_msg=f"{name} {backend} {spec.name}")


def test_colorize_task_keeps_lightness_and_adds_the_modules_colour() -> None:
    """``pyfill.colorize`` on an 8-bit gray photo: the fill's Lab lightness (scikit-image) is the
    input's, its a and b are the torch module's prediction (up to 8-bit rounding), and it is
    coloured at all."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    color = pytest.importorskip("skimage.color")
    import pyfill

    module, manifest = module_from_onnx(resolve_model("colorize"))
    gray8 = to_uint8(gray_of(natural_image(64, 64)))
    result = pyfill.colorize(gray8, backend="onnxruntime")
    fill = result.image
    assert fill.shape == (64, 64, 3) and fill.dtype == np.uint8
    lab_fill, lab_in = color.rgb2lab(fill), color.rgb2lab(gray8)
    np.testing.assert_allclose(lab_fill[..., 0], lab_in[..., 0], atol=0.6)
    want = run_module(module, [nchw(gray8.astype(np.float32) / 255.0, manifest.inputs[0].value_range)])
    lab_want = color.rgb2lab(to_uint8(hwc(want[0])))
    # a and b separately: a model whose a and b trade places fails here by tens of units
    for channel in (1, 2):
        assert np.abs(lab_fill[..., channel] - lab_want[..., channel]).max() < 1.5, channel
    assert np.abs(lab_fill[..., 1:]).mean() > 1.0
    assert result.realness == pytest.approx(float(want[1].reshape(-1)[0]), abs=1e-4)


@pytest.mark.parametrize("backend", engine_backends(torch_too=False))
@pytest.mark.parametrize("size", [(96, 160), (200, 150), (128, 128), (45, 301)])
def test_generate_at_any_size_matches_opencv_resizes_around_the_model(size: tuple[int, int], backend: str) -> None:
    """The fixed-size generation path: labels resized nearest to the model's size (OpenCV's
    INTER_NEAREST), the model run by ONNX Runtime directly, the image resized back bilinearly
    (OpenCV's INTER_LINEAR); the Engine on every backend agrees within one grey level."""
    pytest.importorskip("cv2")
    import pyfill

    path = resolve_model("generate")
    labels = noise_labels(*size, classes=8, seed=sum(size))
    want = generate_reference(path, labels)
    got = pyfill.generate(labels, model=Engine(path, backend=backend, precision="fp32"))
    assert got.shape == (*size, 3) and got.dtype == np.uint8
    assert int(np.abs(got.astype(int) - want).max()) <= 1


def test_restore_task_equals_the_module_on_a_padded_size() -> None:
    """``pyfill.restore`` on a size the model cannot take as it is (not a multiple of its size
    rule): the module run on the reflect-padded image (NumPy's pad) and cropped back."""
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    import pyfill

    module, manifest = module_from_onnx(resolve_model("restore"))
    image = to_uint8(natural_image(45, 61))
    m = manifest.size.multiple_of
    ph, pw = -45 % m, -61 % m
    padded = np.pad(image.astype(np.float32) / 255.0, ((0, ph), (0, pw), (0, 0)), mode="reflect")
    want = to_uint8(hwc(run_module(module, [nchw(padded)])[0])[:45, :61])
    got = pyfill.restore(image, backend="onnxruntime", tile=0)
    assert got.shape == image.shape and got.dtype == np.uint8
    assert int(np.abs(got.astype(int) - want).max()) <= 1
