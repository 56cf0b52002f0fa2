"""Other projects' ONNX models (no pyfill manifest) on the Engine, without torch: the manifest the
Engine derives from the graph's declared shapes (layout, channels, fixed sizes), the upscale it
probes, and the refusals of graphs it cannot run. Models are built with ``onnx``'s helper; the
expected outputs are NumPy's ``repeat`` of the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pyfill.engine import Engine
from references import save_graph

onnx = pytest.importorskip("onnx")
from onnx import helper, numpy_helper  # noqa: E402


def resize_model(path: Path, in_shape: list, out_shape: list, scales: list[float], extra_input: bool = False) -> Path:
    """A nearest-neighbour Resize by ``scales`` (one per axis of the declared input)."""
    inputs = [("x", in_shape)]
    nodes = [helper.make_node("Resize", ["x", "", "scales"], ["y"], mode="nearest")]
    if extra_input:
        inputs.append(("bias", [1]))
        nodes = [helper.make_node("Resize", ["x", "", "scales"], ["r"], mode="nearest"),
                 helper.make_node("Add", ["r", "bias"], ["y"])]
    return save_graph(path, nodes, inputs, [("y", out_shape)],
                      [numpy_helper.from_array(np.array(scales, np.float32), "scales")])


def picture(h: int, w: int, c: int = 3) -> np.ndarray:
    return np.random.default_rng(h * w + c).integers(0, 256, (h, w, c), dtype=np.uint8)


def test_an_nhwc_model_reads_channels_and_size_from_the_last_axes(tmp_path: Path) -> None:
    path = resize_model(tmp_path / "nhwc.onnx", ["n", "h", "w", 3], ["n", "h2", "w2", 3], [1, 2, 2, 1])
    engine = Engine(path, backend="onnxruntime", layout="NHWC")
    spec = engine.manifest.inputs[0]
    assert (spec.channels, spec.colour_space, engine.manifest.size.fixed) == (3, "rgb", None)
    assert engine.manifest.config["layout"] == "NHWC" and engine.info["output_scale"] == 2
    x = picture(10, 14)
    assert np.array_equal(engine(x), np.repeat(np.repeat(x, 2, axis=0), 2, axis=1))


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_a_fixed_non_square_model_is_fixed_at_height_by_width_and_its_scale_probed_there(tmp_path: Path,
                                                                                          layout: str) -> None:
    if layout == "NCHW":
        shape_in, shape_out, scales = [1, 3, 24, 32], [1, 3, 48, 64], [1, 1, 2, 2]
    else:
        shape_in, shape_out, scales = [1, 24, 32, 3], [1, 48, 64, 3], [1, 2, 2, 1]
    engine = Engine(resize_model(tmp_path / "fixed.onnx", shape_in, shape_out, scales), backend="onnxruntime",
                    layout=layout)
    assert engine.manifest.size.fixed == (24, 32) and engine.manifest.size.resize == "stretch"
    assert engine.info["output_scale"] == 2
    x = picture(24, 32)
    assert np.array_equal(engine(x), np.repeat(np.repeat(x, 2, axis=0), 2, axis=1))


def test_a_gray_model_declares_one_gray_channel(tmp_path: Path) -> None:
    engine = Engine(resize_model(tmp_path / "gray.onnx", ["n", 1, "h", "w"], ["n", 1, "h", "w"], [1, 1, 1, 1]),
                    backend="onnxruntime")
    assert [(s.channels, s.colour_space) for s in engine.manifest.inputs + engine.manifest.outputs] == [(1, "gray")] * 2
    assert engine.info["output_scale"] == 1


def test_graphs_the_engine_cannot_run_without_a_manifest_are_refused(tmp_path: Path) -> None:
    two = resize_model(tmp_path / "two.onnx", ["n", 3, "h", "w"], ["n", 3, "h", "w"], [1, 1, 1, 1], extra_input=True)
    with pytest.raises(ValueError, match=r"two\.onnx: a model without a pyfill manifest must have one image input; "
                                         r"it has 2$"):
        Engine(two, backend="onnxruntime")
    flat = resize_model(tmp_path / "flat.onnx", ["h", "w", 3], ["h", "w", 3], [1, 1, 1])
    with pytest.raises(ValueError, match=r"flat\.onnx: expected a 4-D image input, got shape \['h', 'w', 3\]$"):
        Engine(flat, backend="onnxruntime")
    uneven = resize_model(tmp_path / "uneven.onnx", ["n", 3, "h", "w"], ["n", 3, "h2", "w2"], [1, 1, 2, 3])
    with pytest.raises(ValueError, match=r"uneven\.onnx: output shape \(1, 3, 128, 192\) is not an integer upscale "
                                         r"of \(1, 3, 64, 64\)$"):
        Engine(uneven, backend="onnxruntime")
    down = resize_model(tmp_path / "down.onnx", ["n", 3, "h", "w"], ["n", 3, "h2", "w2"], [1, 1, 0.5, 0.5])
    with pytest.raises(ValueError, match=r"down\.onnx: output shape \(1, 3, 32, 32\) is not an integer upscale"):
        Engine(down, backend="onnxruntime")
    # a scale given by the caller is taken without a probe
    assert Engine(uneven, backend="onnxruntime", scale=2).info["output_scale"] == 2


def test_from_pretrained_takes_names_and_passes_options_on() -> None:
    engine = Engine.from_pretrained("restore", tile=0, backend="onnxruntime")
    assert engine.tile == 0 and engine.info["backend"] == "onnxruntime"
    with pytest.raises(ValueError, match=r"^from_pretrained takes a model name, not a file \('restore\.onnx'\); use "
                                         r"Engine\('restore\.onnx'\)$"):
        Engine.from_pretrained("restore.onnx")


def concat_model(path: Path, in_shape: list, out_shape: list, copies: int, axis: int) -> Path:
    """The input repeated ``copies`` times along ``axis`` (e.g. gray -> 3 channels)."""
    return save_graph(path, [helper.make_node("Concat", ["x"] * copies, ["y"], axis=axis)], [("x", in_shape)],
                      [("y", out_shape)])


def test_the_derived_manifest_in_full(tmp_path: Path) -> None:
    from pyfill.engine.files import foreign_manifest

    path = resize_model(tmp_path / "up.onnx", ["n", 3, "h", "w"], ["n", 3, "h2", "w2"], [1, 1, 2, 2])
    m = foreign_manifest(path, "NCHW", "bgr", (-1.0, 1.0), (0.0, 255.0))
    assert (m.task, m.family, m.config) == ("image-to-image", "foreign-onnx",
                                            {"source": "up.onnx", "layout": "NCHW", "channel_order": "bgr"})
    assert (m.fp16, m.tiling.supported, m.size.fixed, m.size.resize) == (False, False, None, "stretch")
    assert [(s.name, s.kind, s.channels, s.colour_space, s.value_range) for s in m.inputs + m.outputs] == [
        ("x", "image", 3, "rgb", (-1.0, 1.0)), ("y", "image", 3, "rgb", (0.0, 255.0))]


@pytest.mark.parametrize("layout", ["NCHW", "NHWC"])
def test_channels_come_from_the_layouts_channel_axis_of_input_and_output(tmp_path: Path, layout: str) -> None:
    from pyfill.engine.files import foreign_manifest

    if layout == "NCHW":
        path = concat_model(tmp_path / "g2rgb.onnx", [1, 1, 20, 30], [1, 3, 20, 30], 3, axis=1)
    else:
        path = concat_model(tmp_path / "g2rgb.onnx", [1, 20, 30, 1], [1, 20, 30, 3], 3, axis=3)
    m = foreign_manifest(path, layout, "rgb", (0.0, 1.0), (0.0, 1.0))
    assert (m.inputs[0].channels, m.inputs[0].colour_space) == (1, "gray")
    assert (m.outputs[0].channels, m.outputs[0].colour_space) == (3, "rgb")
    assert m.size.fixed == (20, 30)


def test_unknown_channel_counts_and_axes(tmp_path: Path) -> None:
    from pyfill.engine.files import foreign_manifest

    # a symbolic channel axis reads as 3 channels; the output follows the input when its axis is symbolic too
    free = resize_model(tmp_path / "free.onnx", ["n", "c", "h", "w"], ["n", "c", "h", "w"], [1, 1, 1, 1])
    m = foreign_manifest(free, "NCHW", "rgb", (0.0, 1.0), (0.0, 1.0))
    assert [(s.channels, s.colour_space) for s in m.inputs + m.outputs] == [(3, "rgb"), (3, "rgb")]
    # 4 channels have no colour space; an output of another rank takes the input's channel count
    rgba = concat_model(tmp_path / "rgba.onnx", [1, 4, 8, 8], [2, 4, 8, 8], 2, axis=0)
    m = foreign_manifest(rgba, "NCHW", "rgb", (0.0, 1.0), (0.0, 1.0))
    assert (m.inputs[0].channels, m.inputs[0].colour_space) == (4, "none")
    flat = save_graph(tmp_path / "flat_out.onnx", [helper.make_node("Flatten", ["x"], ["y"], axis=1)],
                      [("x", [1, 1, 8, 8])], [("y", [1, 64])])
    m = foreign_manifest(flat, "NCHW", "rgb", (0.0, 1.0), (0.0, 1.0))
    assert (m.outputs[0].channels, m.outputs[0].colour_space) == (1, "gray")


def test_a_fixed_nhwc_model_with_a_free_channel_axis_is_still_fixed(tmp_path: Path) -> None:
    from pyfill.engine.files import foreign_manifest

    path = resize_model(tmp_path / "free_c.onnx", [1, 24, 32, "c"], [1, 24, 32, "c"], [1, 1, 1, 1])
    m = foreign_manifest(path, "NHWC", "rgb", (0.0, 1.0), (0.0, 1.0))
    assert m.size.fixed == (24, 32) and m.inputs[0].channels == 3
