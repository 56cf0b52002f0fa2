"""Model manifests without torch: the dict/JSON/file/ONNX-metadata round trips of every field
(non-square fixed sizes included), lookups and the messages of refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pyfill.manifest import (
    ONNX_METADATA_KEY,
    Manifest,
    ManifestError,
    SizeRequirements,
    TensorSpec,
    Tiling,
    read_onnx_manifest,
    validate_manifest_dict,
)


def fixed_manifest() -> Manifest:
    return Manifest(task="generate", family="probe", config={"k": 1},
                    inputs=[TensorSpec("labels", "labels", 4, "none", (0.0, 1.0), classes=4),
                            TensorSpec("image", "image", 3, "rgb", (-1.0, 1.0))],
                    outputs=[TensorSpec("out", "image", 3, "rgb", (-1.0, 1.0))],
                    size=SizeRequirements(multiple_of=32, min_size=32, fixed=[96, 128], resize="letterbox"),
                    tiling=Tiling(supported=False, tile=128, overlap=8))


def onnx_with(path: Path, text: str | None) -> Path:
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "id",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 3, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if text is not None:
        helper.set_model_props(model, {ONNX_METADATA_KEY: text})
    onnx.save(model, str(path))
    return path


def test_a_non_square_fixed_size_is_kept_as_height_then_width() -> None:
    m = fixed_manifest()
    assert m.size.fixed == (96, 128) and all(type(v) is int for v in m.size.fixed)
    d = m.to_dict()
    assert d["size"] == {"multiple_of": 32, "min_size": 32, "max_size": None, "fixed": [96, 128], "scale": 1,
                         "resize": "letterbox"}
    assert d["inputs"][1]["value_range"] == [-1.0, 1.0]
    assert json.loads(json.dumps(d)) == d  # plain JSON types only
    back = Manifest.from_dict(d)
    assert back.size.fixed == (96, 128) and back.to_dict() == d
    assert SizeRequirements().fixed is None


def test_json_file_and_onnx_metadata_round_trips(tmp_path: Path) -> None:
    m = fixed_manifest()
    assert Manifest.from_json(m.to_json()).to_dict() == m.to_dict()
    assert Manifest.load(m.save(tmp_path / "m.json")).to_dict() == m.to_dict()
    got = read_onnx_manifest(onnx_with(tmp_path / "m.onnx", m.to_json()))
    assert got is not None and got.to_dict() == m.to_dict()
    assert read_onnx_manifest(onnx_with(tmp_path / "plain.onnx", None)) is None


def test_lookups_by_name() -> None:
    m = fixed_manifest()
    assert m.input("image").channels == 3 and m.input("labels").classes == 4 and m.output("out").name == "out"
    with pytest.raises(KeyError, match=r"no input named 'nope'; the model has \['labels', 'image'\]"):
        m.input("nope")
    with pytest.raises(KeyError, match=r"no output named 'image'; the model has \['out'\]"):
        m.output("image")


def test_refusals_name_the_file_and_the_field(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"^manifest not found: .*missing\.json$"):
        Manifest.load(tmp_path / "missing.json")
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not onnx")
    with pytest.raises(ValueError, match=r"junk\.onnx: not a readable ONNX model \("):
        read_onnx_manifest(junk)
    with pytest.raises(ManifestError, match="a manifest must be a JSON object, got list"):
        validate_manifest_dict([])
    with pytest.raises(ManifestError, match="manifest field 'task': required, but missing"):
        validate_manifest_dict({k: v for k, v in fixed_manifest().to_dict().items() if k != "task"})
    with pytest.raises(ManifestError, match="manifest field 'size/fixed'"):
        Manifest.from_dict({**fixed_manifest().to_dict(), "size": {**fixed_manifest().to_dict()["size"], "fixed": [96]}})
    with pytest.raises(ManifestError, match="manifest is not valid JSON"):
        Manifest.from_json("{")


def test_size_requirements_accept_the_smallest_values_and_refuse_each_field_below() -> None:
    ok = SizeRequirements(multiple_of=1, min_size=1, scale=1, max_size=1)
    assert (ok.multiple_of, ok.min_size, ok.scale, ok.max_size, ok.resize) == (1, 1, 1, 1, "pad")
    for bad in ({"multiple_of": 0}, {"min_size": 0}, {"scale": 0}):
        with pytest.raises(ManifestError, match=r"^size: multiple_of, min_size and scale must be >= 1$"):
            SizeRequirements(**bad)
    with pytest.raises(ManifestError, match=r"^size: max_size 7 is below min_size 8$"):
        SizeRequirements(min_size=8, max_size=7)
    with pytest.raises(ManifestError, match=r"^size.resize must be one of .*got 'crop'$"):
        SizeRequirements(resize="crop")  # type: ignore[arg-type]


def test_tiling_accepts_the_smallest_values_and_refuses_each_field_below() -> None:
    assert (Tiling(tile=1, overlap=0).tile, Tiling(tile=1, overlap=0).overlap) == (1, 0)
    for bad in ({"tile": 0}, {"overlap": -1}):
        with pytest.raises(ManifestError, match=r"^tiling: tile must be >= 1 and overlap >= 0$"):
            Tiling(**bad)


def test_a_manifest_needs_inputs_outputs_and_unique_names() -> None:
    m = fixed_manifest()
    for inputs, outputs in (([], m.outputs), (m.inputs, [])):
        with pytest.raises(ManifestError, match=r"^a manifest needs at least one input and one output$"):
            Manifest(task="restore", family="x", config={}, inputs=inputs, outputs=outputs)
    with pytest.raises(ManifestError, match=r"^tensor names must be unique, got \['labels', 'image', 'image'\]$"):
        Manifest(task="restore", family="x", config={}, inputs=m.inputs,
                 outputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))])


def test_the_writing_pyfill_version_is_recorded_unless_given() -> None:
    import pyfill

    assert fixed_manifest().pyfill_version == pyfill.__version__
    d = {**fixed_manifest().to_dict(), "pyfill_version": "0.0.1"}
    assert Manifest.from_dict(d).pyfill_version == "0.0.1"


def test_format_1_sizes_stretch_only_fixed_sizes() -> None:
    d = fixed_manifest().to_dict()
    fixed_v1 = {k: v for k, v in d["size"].items() if k != "resize"}
    assert Manifest.from_dict({**d, "format_version": 1, "size": fixed_v1}).size.resize == "stretch"
    free_v1 = {**fixed_v1, "fixed": None}
    assert Manifest.from_dict({**d, "format_version": 1, "size": free_v1}).size.resize == "pad"
    assert Manifest.from_dict(d).size.resize == "letterbox"  # a stated policy is kept
