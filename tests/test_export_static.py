"""Static ONNX export (``pyfill export --static``): every model family exports at batch 1 and a
fixed size, the ONNX Runtime check runs at that traced shape, and the Engine runs the result."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from pyfill.engine import Engine  # noqa: E402
from pyfill.manifest import read_onnx_manifest  # noqa: E402
from pyfill.export import export_onnx, example_inputs, save_checkpoint, static_export_size  # noqa: E402
from pyfill.models import architectures, build_model, make_manifest  # noqa: E402

SMALL = {"spade": {"size": 32, "base": 32}}


def _input_shapes(path) -> dict[str, list]:
    model = onnx.load(str(path))
    return {i.name: [d.dim_value if d.HasField("dim_value") else d.dim_param for d in i.type.tensor_type.shape.dim]
            for i in model.graph.input}


@pytest.mark.parametrize("family", architectures())
def test_every_family_exports_static_and_runs(family, tmp_path) -> None:
    torch.manual_seed(0)
    config = SMALL.get(family)
    task = "generate" if family == "spade" else "image-to-image"
    module, manifest = build_model(family, config), make_manifest(family, config, task=task)
    ckpt = save_checkpoint(module, manifest, tmp_path / family)
    out = export_onnx(ckpt, tmp_path / f"{family}.onnx", dynamic=False, static_size=(48, 40))
    h, w = static_export_size(manifest, (48, 40))
    shapes = _input_shapes(out)
    for spec in manifest.inputs:
        assert shapes[spec.name][0] == 1, shapes
        if spec.spatial:
            assert shapes[spec.name][2:] == [h, w]
    written = read_onnx_manifest(out)
    assert written.size.fixed == (h, w)
    # ONNX Runtime at the traced shape equals the module
    import onnxruntime as ort

    feeds = example_inputs(written, batch=1, seed=3)
    got = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, feeds)[0]
    with torch.no_grad():
        want = module.eval()(*(torch.from_numpy(feeds[s.name]) for s in written.inputs))
    want = want[0] if isinstance(want, (tuple, list)) else want
    np.testing.assert_allclose(got, want.numpy(), rtol=1e-3, atol=1e-4)


def test_static_size_rounds_to_the_size_rules() -> None:
    unet = make_manifest("unet")  # multiple of 8
    assert static_export_size(unet, (50, 33)) == (56, 40)
    assert static_export_size(unet) == (512, 512)
    assert static_export_size(make_manifest("spade")) == (64, 64)  # fixed-size models keep theirs
    with pytest.raises(ValueError, match="static_size must be positive"):
        static_export_size(unet, (0, 8))


def test_engine_runs_a_static_export_on_smaller_inputs_and_refuses_larger(unet_files, tmp_path) -> None:
    """A model that does not tile, exported at one size: smaller inputs are padded up to it,
    larger ones refused (a model that tiles is tiled instead: test_runtime2.py)."""
    import dataclasses

    from pyfill.export import load_checkpoint

    module, manifest = load_checkpoint(unet_files[0])
    manifest = dataclasses.replace(manifest, tiling=dataclasses.replace(manifest.tiling, supported=False))
    out = export_onnx(module, tmp_path / "static.onnx", manifest, dynamic=False, static_size=(64, 64))
    engine = Engine(out, backend="onnxruntime")
    img = np.random.default_rng(0).uniform(0, 1, (50, 60, 3)).astype(np.float32)
    y = engine(img)
    assert y.shape == img.shape and np.isfinite(y).all()
    with pytest.raises(ValueError, match=r"takes at most 64 px per side here and the model does not tile; "
                                         r"this input is 50 x 70"):
        engine(np.zeros((50, 70, 3), np.float32))


def test_cli_export_static(unet_files, tmp_path, capsys) -> None:
    from pyfill.cli import main

    out = tmp_path / "cli-static.onnx"
    assert main(["export", str(unet_files[0]), "--static", "-o", str(out)]) == 0
    assert _input_shapes(out)["image"] == [1, 3, 512, 512]
    assert "ONNX model" in capsys.readouterr().out
