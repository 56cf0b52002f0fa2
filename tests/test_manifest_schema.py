"""The manifest's documented limits, field by field: each value just inside a limit is read, each
value just outside it is refused with a ManifestError naming the field. The limits are the ones
the manifest's reference states (``docs/engine.md``, ``pyfill/manifest.py``'s module constants),
written out here by hand, so a change to the schema or to a tensor's checks shows up as a
refusal that no longer happens or an acceptance that no longer does."""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest

from pyfill.manifest import (
    FORMAT_VERSION,
    MAX_MANIFEST_BYTES,
    Manifest,
    ManifestError,
    TensorSpec,
    validate_manifest_dict,
)

SIDE = 65536  # the largest side a manifest may declare
AXIS = 1 << 24  # the largest per-item axis
ELEMENTS = 1 << 28  # the most elements per item


def base() -> dict[str, Any]:
    return Manifest(task="restore", family="probe", config={"k": 1},
                    inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
                    outputs=[TensorSpec("out", "image", 3, "rgb", (0.0, 1.0))]).to_dict()


def with_value(path: tuple[str, ...], value: Any) -> dict[str, Any]:
    d = copy.deepcopy(base())
    target = d
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return d


# (field, a value outside its limits)
REFUSED = [
    (("task",), ""), (("task",), 3),
    (("family",), ""), (("family",), None),
    (("config",), []),
    (("inputs",), []), (("inputs",), {}),
    (("outputs",), []), (("outputs",), "out"),
    (("size",), []),
    (("size", "multiple_of"), 0), (("size", "multiple_of"), SIDE + 1), (("size", "multiple_of"), 1.5),
    (("size", "min_size"), 0), (("size", "min_size"), SIDE + 1),
    (("size", "max_size"), 0), (("size", "max_size"), SIDE + 1), (("size", "max_size"), "big"),
    (("size", "fixed"), [96]), (("size", "fixed"), [0, 96]), (("size", "fixed"), [96, SIDE + 1]),
    (("size", "fixed"), "96x96"),
    (("size", "scale"), 0), (("size", "scale"), 65), (("size", "scale"), 2.5),
    (("size", "resize"), "crop"),
    (("tiling",), 5),
    (("tiling", "supported"), "yes"),
    (("tiling", "tile"), 0), (("tiling", "tile"), SIDE + 1),
    (("tiling", "overlap"), -1), (("tiling", "overlap"), SIDE + 1), (("tiling", "overlap"), 0.5),
    (("fp16",), "yes"), (("bf16",), 0),
    (("pyfill_version",), 3),
    (("provenance",), []),
    (("format_version",), 0), (("format_version",), 1.5), (("format_version",), "2"),
]


@pytest.mark.parametrize("path,value", REFUSED, ids=[f"{'/'.join(p)}={v!r}" for p, v in REFUSED])
def test_each_field_outside_its_limits_is_refused_by_name(path: tuple[str, ...], value: Any) -> None:
    with pytest.raises(ManifestError, match=rf"^manifest field '{'/'.join(path)}(/\d+)?': "):
        validate_manifest_dict(with_value(path, value))
    with pytest.raises(ManifestError, match=rf"^manifest field '{'/'.join(path)}(/\d+)?': "):
        Manifest.from_json(json.dumps(with_value(path, value)))


# (field, a value at the edge of its limits)
ACCEPTED = [
    (("task",), "t"), (("family",), "f"), (("config",), {}),
    (("size", "multiple_of"), SIDE), (("size", "multiple_of"), 1),
    (("size", "min_size"), 1), (("size", "max_size"), SIDE), (("size", "max_size"), None),
    (("size", "fixed"), [1, SIDE]), (("size", "fixed"), None),
    (("size", "scale"), 64), (("size", "scale"), 1), (("size", "resize"), "stretch"),
    (("tiling", "supported"), False), (("tiling", "tile"), SIDE), (("tiling", "tile"), 1),
    (("tiling", "overlap"), 0), (("tiling", "overlap"), SIDE),
    (("fp16",), False), (("bf16",), True), (("pyfill_version",), ""), (("provenance",), {"a": [1]}),
    (("format_version",), 1), (("format_version",), FORMAT_VERSION),
]


@pytest.mark.parametrize("path,value", ACCEPTED, ids=[f"{'/'.join(p)}={v!r}" for p, v in ACCEPTED])
def test_each_field_at_the_edge_of_its_limits_is_read(path: tuple[str, ...], value: Any) -> None:
    d = with_value(path, value)
    validate_manifest_dict(d)
    m = Manifest.from_dict(d)
    if path[0] in ("size", "tiling"):
        got = getattr(getattr(m, path[0]), path[1])
        assert (list(got) if isinstance(got, tuple) else got) == value
    elif path != ("format_version",) and path != ("pyfill_version",):
        assert getattr(m, path[0]) == value


def test_a_newer_format_is_refused_with_the_writers_version_or_a_question_mark() -> None:
    newer = {**base(), "format_version": FORMAT_VERSION + 1}
    with pytest.raises(ManifestError, match=rf"^manifest format {FORMAT_VERSION + 1} comes from a newer pyfill "
                                            rf"\(written by pyfill 9\.9\); this pyfill reads format <= "
                                            rf"{FORMAT_VERSION}: upgrade pyfill$"):
        validate_manifest_dict({**newer, "pyfill_version": "9.9"})
    del newer["pyfill_version"]
    with pytest.raises(ManifestError, match=r"\(written by pyfill \?\)"):
        validate_manifest_dict(newer)


def test_unknown_tensor_keys_are_a_malformed_manifest() -> None:
    d = base()
    d["inputs"][0]["bogus"] = 1
    with pytest.raises(ManifestError, match=r"^malformed manifest: .*unexpected keyword argument 'bogus'$"):
        Manifest.from_dict(d)


def test_the_json_text_limit_is_inclusive_and_deep_nesting_is_refused() -> None:
    text = json.dumps(base())
    at_limit = text + " " * (MAX_MANIFEST_BYTES - len(text))
    assert len(at_limit) == MAX_MANIFEST_BYTES
    assert Manifest.from_json(at_limit).to_dict() == base()
    with pytest.raises(ManifestError, match=rf"^manifest of {MAX_MANIFEST_BYTES + 1:,} characters exceeds the "
                                            rf"{MAX_MANIFEST_BYTES:,} limit$"):
        Manifest.from_json(at_limit + " ")
    with pytest.raises(ManifestError, match=r"^manifest is not valid JSON: nested too deeply$"):
        Manifest.from_json("[" * 200_000 + "]" * 200_000)


# ---- one tensor's checks ------------------------------------------------------------------------

TENSOR_REFUSED = [
    ({"kind": "cube"}, r"kind must be one of \('image', .*\), got 'cube'"),
    ({"colour_space": "cmyk"}, r"unknown colour space 'cmyk'"),
    ({"kind": "labels", "classes": 0}, r"a labels input needs classes >= 1"),
    ({"channels": 0}, r"channels must be 1\.\.4096 and classes 0\.\.65536"),
    ({"channels": 4097}, r"channels must be 1\.\.4096 and classes 0\.\.65536"),
    ({"kind": "labels", "classes": 65537}, r"channels must be 1\.\.4096 and classes 0\.\.65536"),
    ({"kind": "tensor", "shape": [AXIS + 1]}, r"declared shape \[16777217\] / length 0 exceeds 16,777,216 per axis "
                                              r"or 268,435,456 elements"),
    ({"kind": "tensor", "shape": [-1]}, r"declared shape \[-1\] / length 0 exceeds"),
    ({"kind": "vector", "length": AXIS + 1}, r"declared shape \[\] / length 16777217 exceeds"),
    ({"kind": "tensor", "shape": [1 << 14, 1 << 14, 2]}, r"declared shape \[16384, 16384, 2\] / length 0 exceeds"),
    ({"kind": "vector"}, r"a vector needs length >= 1"),
    ({"kind": "embedding", "shape": [None]}, r"a embedding needs length >= 1"),
    ({"kind": "tensor"}, r"a tensor needs its shape \(per item, None for a free axis\)"),
    ({"kind": "tokens"}, r"tokens have shape \[length\] \(length may be None\)"),
    ({"kind": "tokens", "shape": [4, 4]}, r"tokens have shape \[length\]"),
    ({"kind": "landmarks", "shape": [68, 3]}, r"landmarks have shape \[K, 2\]"),
    ({"kind": "landmarks", "shape": [2, 68]}, r"landmarks have shape \[K, 2\]"),
    ({"kind": "landmarks", "shape": [68]}, r"landmarks have shape \[K, 2\]"),
    ({"kind": "landmarks", "shape": [1, 68, 2]}, r"landmarks have shape \[K, 2\]"),
    ({"kind": "boxes", "shape": [10, 6]}, r"boxes have shape \[B, 4\] \(x0, y0, x1, y1\) or \[B, 5\] \(\+ score\)"),
    ({"kind": "boxes", "shape": [4, 10]}, r"boxes have shape \[B, 4\]"),
    ({"kind": "boxes", "shape": [10]}, r"boxes have shape \[B, 4\]"),
    ({"kind": "boxes", "shape": [1, 10, 4]}, r"boxes have shape \[B, 4\]"),
    ({"class_names": ["a"]}, r"class_names belongs to a labels input and lists one entry per class"),
    ({"kind": "labels", "classes": 2, "palette": [[0, 0, 0]]}, r"palette belongs to a labels input"),
    ({"kind": "labels", "classes": 2, "palette": [[1, 2, 3], [1, 2, 3]]}, r"palette colours must be distinct"),
    ({"kind": "vector", "length": 4, "derive": {"op": "blur"}}, r"unknown derive op 'blur'; known: \['stroke_grid'\]"),
    ({"kind": "vector", "length": 4, "derive": {"op": "stroke_grid", "from": "s"}},
     r"derive op 'stroke_grid' needs \['grid'\]"),
    ({"derive": {"op": "stroke_grid", "from": "s", "grid": [9, 9]}}, r"only vector inputs can be derived"),
]


@pytest.mark.parametrize("fields,message", TENSOR_REFUSED, ids=[str(f) for f, _ in TENSOR_REFUSED])
def test_each_tensor_rule_refuses_with_the_tensors_name(fields: dict[str, Any], message: str) -> None:
    with pytest.raises(ManifestError, match=rf"^tensor 'x': {message}"):
        TensorSpec("x", **fields)


def test_tensors_at_the_edge_of_the_rules_are_read() -> None:
    assert TensorSpec("x", kind="labels", classes=1).classes == 1
    assert TensorSpec("x", kind="labels", classes=65536).classes == 65536
    assert TensorSpec("x", channels=4096).channels == 4096
    assert TensorSpec("x", kind="tensor", shape=[AXIS]).shape == [AXIS]
    assert TensorSpec("x", kind="tensor", shape=[1 << 14, 1 << 14]).shape == [1 << 14, 1 << 14]  # exactly 2**28
    assert TensorSpec("x", kind="tensor", shape=[None, 512]).shape == [None, 512]
    # a vector's length comes from its one-axis shape when not given, and wins over it when given
    assert (TensorSpec("x", kind="vector", shape=[7]).length, TensorSpec("x", kind="vector", shape=[7]).shape) == (7, [7])
    one = TensorSpec("x", kind="vector", length=1, shape=[7])
    assert (one.length, one.shape) == (1, [1])
    five = TensorSpec("x", kind="embedding", length=5, shape=[7])
    assert (five.length, five.shape) == (5, [5])
    assert TensorSpec("x", kind="vector", length=AXIS).length == AXIS
    tokens = TensorSpec("x", kind="tokens", shape=[None])
    assert (tokens.dtype, tokens.shape) == ("int64", [None])
    assert TensorSpec("x", kind="landmarks", shape=[68, 2]).shape == [68, 2]
    assert TensorSpec("x", kind="landmarks").shape == []
    assert [TensorSpec("x", kind="boxes", shape=[10, n]).shape for n in (4, 5)] == [[10, 4], [10, 5]]
    spec = TensorSpec("x", kind="labels", classes=2, class_names=["a", "b"], palette=[[0, 0, 0], [255, 255, 255]])
    assert spec.class_names == ["a", "b"] and spec.palette == [[0, 0, 0], [255, 255, 255]]
    derived = TensorSpec("x", kind="vector", length=4, derive={"op": "stroke_grid", "from": "s", "grid": [9, 9]})
    assert derived.derive["grid"] == [9, 9]
    assert TensorSpec("x", value_range=(-1, 1)).value_range == (-1.0, 1.0)
    assert all(type(v) is float for v in TensorSpec("x", value_range=(-1, 1)).value_range)
