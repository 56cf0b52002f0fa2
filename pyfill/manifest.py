"""The model manifest: one typed description of a model that travels with every form of it.

A checkpoint carries it as the ``.json`` beside its ``.safetensors``; an ONNX file carries it as
JSON under the metadata key ``pyfill.manifest``; a TensorRT engine carries it as the ``.json``
beside the serialised engine. The Engine reads it, the exporter writes it, the CLI prints it.

This module imports nothing of the engine: tasks, exporters and tools can read a manifest
without loading a runtime. Every manifest is checked against :func:`manifest_schema` (JSON
Schema) when it is read, so a malformed one is refused with a message naming the field.
Format 1 manifests (sizes and tiling as free-form objects, kinds image | labels | vector) read
as they are.
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, get_args

FORMAT_VERSION = 2
ONNX_METADATA_KEY = "pyfill.manifest"

Kind = Literal["image", "labels", "vector", "tensor", "tokens", "landmarks", "boxes", "embedding"]
ResizePolicy = Literal["pad", "stretch", "letterbox"]
ColourSpace = Literal["rgb", "gray", "lab_l", "lab_ab", "none"]
KINDS: tuple[str, ...] = get_args(Kind)
RESIZE_POLICIES: tuple[str, ...] = get_args(ResizePolicy)
COLOUR_SPACES: tuple[str, ...] = get_args(ColourSpace)
SPATIAL_KINDS = ("image", "labels")
# Kinds whose values are pixel coordinates of the spatial inputs: they follow the same resize
# (stretch, letterbox) into the model and back out of it.
POINT_KINDS = ("landmarks", "boxes")

# Pre-processing steps an input may declare, with the keys each needs. ``stroke_grid``: the
# vector is pyfill.ops.stroke_grid_latent(stroke_grid(<from>, grid, occupancy)) of an RGB stroke
# image passed as the call argument named by ``from``.
DERIVE_OPS: dict[str, tuple[str, ...]] = {"stroke_grid": ("from", "grid")}
# Call arguments each derive op takes besides its source (``occupancy``: the stroke pixels mask).
DERIVE_EXTRA_ARGS: dict[str, tuple[str, ...]] = {"stroke_grid": ("occupancy",)}


# Bounds on what a manifest may declare, so that a hostile one cannot make the Engine allocate
# absurd buffers: a side of at most 65,536 pixels (a fixed size of at most 2**28 pixels), 4,096
# channels, 65,536 classes, and per-item tensor axes of at most 2**24 (2**28 elements in all).
MAX_SIDE = 1 << 16
MAX_FIXED_PIXELS = 1 << 28
MAX_CHANNELS = 4096
MAX_CLASSES = 1 << 16
MAX_AXIS = 1 << 24
MAX_ELEMENTS = 1 << 28
MAX_MANIFEST_BYTES = 16 << 20


class ManifestError(ValueError):
    """A manifest is missing, malformed, or from a newer pyfill than this one."""


def _positive_int(minimum: int = 1, maximum: int = MAX_AXIS) -> dict[str, Any]:
    return {"type": "integer", "minimum": minimum, "maximum": maximum}


_PAIR = {"type": "array", "items": {"type": "number"}, "minItems": 2, "maxItems": 2}
_SIDE = _positive_int(1, MAX_SIDE)
_SIZE_PAIR = {"type": "array", "items": _SIDE, "minItems": 2, "maxItems": 2}
_DIM = {"anyOf": [_positive_int(), {"type": "null"}]}

_TENSOR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "minLength": 1},
        "kind": {"enum": list(KINDS)},
        "channels": _positive_int(1, MAX_CHANNELS),
        "colour_space": {"enum": list(COLOUR_SPACES)},
        "value_range": _PAIR,
        "classes": _positive_int(0, MAX_CLASSES),
        "length": _positive_int(0),
        "shape": {"type": "array", "items": _DIM, "maxItems": 8},
        "dtype": {"enum": ["float32", "int64"]},
        "optional": {"type": "boolean"},
        "class_names": {"type": "array", "items": {"type": "string"}},
        "palette": {"type": "array", "items": {"type": "array", "items": {"type": "integer", "minimum": 0,
                                                                           "maximum": 255},
                                               "minItems": 3, "maxItems": 3}},
        "derive": {"type": "object"},
        "vocabulary": {"type": "array", "items": {"type": "string"}},
    },
}


def manifest_schema() -> dict[str, Any]:
    """The JSON Schema every manifest (format 1 and 2) is validated against on load."""
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "pyfill model manifest",
        "type": "object",
        "required": ["task", "family", "config", "inputs", "outputs"],
        "properties": {
            "task": {"type": "string", "minLength": 1},
            "family": {"type": "string", "minLength": 1},
            "config": {"type": "object"},
            "inputs": {"type": "array", "items": _TENSOR_SCHEMA, "minItems": 1},
            "outputs": {"type": "array", "items": _TENSOR_SCHEMA, "minItems": 1},
            "size": {
                "type": "object",
                "properties": {
                    "multiple_of": _SIDE,
                    "min_size": _SIDE,
                    "max_size": {"anyOf": [_SIDE, {"type": "null"}]},
                    "fixed": {"anyOf": [_SIZE_PAIR, {"type": "null"}]},
                    "scale": _positive_int(1, 64),
                    "resize": {"enum": list(RESIZE_POLICIES)},
                },
            },
            "tiling": {
                "type": "object",
                "properties": {
                    "supported": {"type": "boolean"},
                    "tile": _SIDE,
                    "overlap": _positive_int(0, MAX_SIDE),
                },
            },
            "fp16": {"type": "boolean"},
            "bf16": {"type": "boolean"},
            "pyfill_version": {"type": "string"},
            "provenance": {"type": "object"},
            "format_version": {"type": "integer", "minimum": 1, "maximum": FORMAT_VERSION},
        },
    }


@dataclass
class SizeRequirements:
    """The spatial sizes a model accepts, and how other sizes are brought to them.

    ``multiple_of``: height and width must be multiples of it (inputs are padded bottom-right and
    outputs cropped back). ``min_size``: smaller inputs are padded up. ``max_size``: larger inputs
    are tiled where the model tiles, refused otherwise. ``fixed``: [H, W] of a model that runs
    at one size only; ``resize`` says how another size is brought to it: ``stretch`` (resize,
    outputs resized back), ``letterbox`` (scale keeping the aspect ratio and pad the rest; outputs
    and coordinates mapped back) or ``pad`` (pad up to it; larger inputs refused). ``scale``:
    the output's size over the input's (an x4 upscaler says 4).
    """

    multiple_of: int = 1
    min_size: int = 1
    max_size: int | None = None
    fixed: tuple[int, int] | None = None
    scale: int = 1
    resize: ResizePolicy = "pad"

    def __post_init__(self) -> None:
        self.fixed = (int(self.fixed[0]), int(self.fixed[1])) if self.fixed else None
        if self.multiple_of < 1 or self.min_size < 1 or self.scale < 1:
            raise ManifestError("size: multiple_of, min_size and scale must be >= 1")
        if self.max_size is not None and self.max_size < self.min_size:
            raise ManifestError(f"size: max_size {self.max_size} is below min_size {self.min_size}")
        if self.resize not in RESIZE_POLICIES:
            raise ManifestError(f"size.resize must be one of {RESIZE_POLICIES}, got {self.resize!r}")
        sides = [self.multiple_of, self.min_size, self.max_size or 1, *(self.fixed or ())]
        if max(sides) > MAX_SIDE or (self.fixed and self.fixed[0] * self.fixed[1] > MAX_FIXED_PIXELS):
            raise ManifestError(f"size: declared sizes {sides} exceed the limit of {MAX_SIDE} pixels a side "
                                f"({MAX_FIXED_PIXELS:,} pixels for a fixed size)")
        if min(sides) < 1:
            raise ManifestError(f"size: declared sizes must be >= 1, got {sides}")
        if self.scale > 64:
            raise ManifestError(f"size: scale {self.scale} is over 64")


@dataclass
class Tiling:
    """Whether overlapping tiles give the same result as a whole-image run (fully convolutional
    models), and the advised tile size and overlap in input pixels."""

    supported: bool = False
    tile: int = 512
    overlap: int = 32

    def __post_init__(self) -> None:
        if self.tile < 1 or self.overlap < 0:
            raise ManifestError("tiling: tile must be >= 1 and overlap >= 0")
        if self.tile > MAX_SIDE or self.overlap > MAX_SIDE:
            raise ManifestError(f"tiling: tile and overlap must be at most {MAX_SIDE}")


@dataclass
class TensorSpec:
    """One model input or output.

    Kinds:
      - ``image``: (N, C, H, W) float, spatial; user images in any container.
      - ``labels``: an (H, W) index map fed as an (N, classes, H, W) one-hot tensor. Labels may
        name their classes (``class_names``) and give each a legend colour (``palette``).
      - ``vector`` / ``embedding``: (N, D) float; ``length`` = D. An embedding is an identity or
        text feature (compared by cosine).
      - ``tensor``: (N, *shape) float with an explicit ``shape`` (``None`` for a free axis), e.g.
        a W+ latent of shape [14, 512].
      - ``tokens``: (N, L) int64 token ids; ``vocabulary`` may list the known words.
      - ``landmarks`` (N, K, 2) and ``boxes`` (N, B, 4 or 5): pixel coordinates (x, y) of the
        spatial inputs; they follow the spatial resize into and out of the model.
    An input may declare ``derive``: a pre-processing step the Engine runs to compute it from
    another call argument, e.g. ``{"op": "stroke_grid", "from": "strokes", "grid": [9, 9]}``.
    """

    name: str
    kind: Kind = "image"
    channels: int = 3
    colour_space: ColourSpace = "rgb"
    value_range: tuple[float, float] = (0.0, 1.0)
    classes: int = 0  # labels only
    length: int = 0  # vector and embedding
    optional: bool = False  # a missing optional input is fed as zeros
    class_names: list[str] = field(default_factory=list)  # labels only
    palette: list[list[int]] = field(default_factory=list)  # labels only
    derive: dict[str, Any] = field(default_factory=dict)
    shape: list[int | None] = field(default_factory=list)  # per item, without the batch axis
    dtype: Literal["float32", "int64"] = "float32"
    vocabulary: list[str] = field(default_factory=list)  # tokens only

    def __post_init__(self) -> None:
        self.value_range = (float(self.value_range[0]), float(self.value_range[1]))
        where = f"tensor '{self.name}'"
        if self.kind not in KINDS:
            raise ManifestError(f"{where}: kind must be one of {KINDS}, got '{self.kind}'")
        if self.colour_space not in COLOUR_SPACES:
            raise ManifestError(f"{where}: unknown colour space '{self.colour_space}'")
        if self.kind == "labels" and self.classes < 1:
            raise ManifestError(f"{where}: a labels input needs classes >= 1")
        if not 1 <= self.channels <= MAX_CHANNELS or not 0 <= self.classes <= MAX_CLASSES:
            raise ManifestError(f"{where}: channels must be 1..{MAX_CHANNELS} and classes 0..{MAX_CLASSES}")
        dims = [d for d in self.shape if d is not None] + [self.length]
        if any(d < 0 or d > MAX_AXIS for d in dims) or math.prod(d for d in dims[:-1] if d) > MAX_ELEMENTS:
            raise ManifestError(f"{where}: declared shape {self.shape} / length {self.length} exceeds "
                                f"{MAX_AXIS:,} per axis or {MAX_ELEMENTS:,} elements")
        if self.kind in ("vector", "embedding"):
            if self.length < 1 and len(self.shape) == 1 and self.shape[0]:
                self.length = int(self.shape[0])
            if self.length < 1:
                raise ManifestError(f"{where}: a {self.kind} needs length >= 1")
            self.shape = [self.length]
        if self.kind == "tensor" and not self.shape:
            raise ManifestError(f"{where}: a tensor needs its shape (per item, None for a free axis)")
        if self.kind == "tokens":
            self.dtype = "int64"
            if len(self.shape) != 1:
                raise ManifestError(f"{where}: tokens have shape [length] (length may be None)")
        if self.kind == "landmarks" and self.shape and (len(self.shape) != 2 or self.shape[-1] != 2):
            raise ManifestError(f"{where}: landmarks have shape [K, 2]")
        if self.kind == "boxes" and self.shape and (len(self.shape) != 2 or self.shape[-1] not in (4, 5)):
            raise ManifestError(f"{where}: boxes have shape [B, 4] (x0, y0, x1, y1) or [B, 5] (+ score)")
        for key in ("class_names", "palette"):
            value = getattr(self, key)
            if value and (self.kind != "labels" or len(value) != self.classes):
                raise ManifestError(f"{where}: {key} belongs to a labels input and lists one entry per class")
        if len({tuple(c) for c in self.palette}) != len(self.palette):
            raise ManifestError(f"{where}: palette colours must be distinct")
        if self.derive:
            op = self.derive.get("op")
            if op not in DERIVE_OPS:
                raise ManifestError(f"{where}: unknown derive op {op!r}; known: {sorted(DERIVE_OPS)}")
            missing = sorted(set(DERIVE_OPS[op]) - set(self.derive))
            if missing:
                raise ManifestError(f"{where}: derive op {op!r} needs {missing}")
            if self.kind != "vector":
                raise ManifestError(f"{where}: only vector inputs can be derived")

    @property
    def spatial(self) -> bool:
        return self.kind in SPATIAL_KINDS


def _format_path(path: Any) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def validate_manifest_dict(d: Any) -> None:
    """Raise :class:`ManifestError` naming the first offending field when ``d`` does not match
    :func:`manifest_schema` or comes from a newer pyfill."""
    if not isinstance(d, dict):
        raise ManifestError(f"a manifest must be a JSON object, got {type(d).__name__}")
    version = d.get("format_version", 1)
    if isinstance(version, int) and not isinstance(version, bool) and version > FORMAT_VERSION:
        raise ManifestError(
            f"manifest format {version} comes from a newer pyfill (written by pyfill "
            f"{d.get('pyfill_version', '?')}); this pyfill reads format <= {FORMAT_VERSION}: upgrade pyfill"
        )
    import jsonschema

    validator = jsonschema.Draft202012Validator(manifest_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(d))
    if error is None:
        return
    path, message = list(error.absolute_path), error.message
    if error.validator == "required":
        missing = next(k for k in error.validator_value if k not in error.instance)
        path, message = [*path, missing], "required, but missing"
    raise ManifestError(f"manifest field '{_format_path(path)}': {message}")


@dataclass
class Manifest:
    """Everything needed to run a model: task, architecture, tensors, size rules, precision."""

    task: str
    family: str
    config: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    size: SizeRequirements = field(default_factory=SizeRequirements)
    tiling: Tiling = field(default_factory=Tiling)
    fp16: bool = True
    bf16: bool = True
    pyfill_version: str = ""
    provenance: dict[str, Any] = field(default_factory=dict)
    format_version: int = FORMAT_VERSION

    def __post_init__(self) -> None:
        self.inputs = [t if isinstance(t, TensorSpec) else TensorSpec(**t) for t in self.inputs]
        self.outputs = [t if isinstance(t, TensorSpec) else TensorSpec(**t) for t in self.outputs]
        if not self.inputs or not self.outputs:
            raise ManifestError("a manifest needs at least one input and one output")
        names = [t.name for t in self.inputs + self.outputs]
        if len(set(names)) != len(names):
            raise ManifestError(f"tensor names must be unique, got {names}")
        if isinstance(self.size, dict):
            self.size = _size_from_dict(self.size)
        if isinstance(self.tiling, dict):
            self.tiling = Tiling(**self.tiling)
        self.format_version = FORMAT_VERSION
        if not self.pyfill_version:
            from pyfill import __version__

            self.pyfill_version = __version__

    @property
    def primary_input(self) -> TensorSpec:
        """The first spatial input (the one a positional argument of ``Engine.__call__`` fills),
        or the first input of a model without spatial inputs."""
        return next((s for s in self.inputs if s.spatial), self.inputs[0])

    @property
    def spatial(self) -> bool:
        """Whether the model takes a spatial (image or labels) input."""
        return any(s.spatial for s in self.inputs)

    def input(self, name: str) -> TensorSpec:
        return _by_name(self.inputs, name, "input")

    def output(self, name: str) -> TensorSpec:
        return _by_name(self.outputs, name, "output")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for group in ("inputs", "outputs"):
            for t in d[group]:
                t["value_range"] = list(t["value_range"])
        d["size"]["fixed"] = list(self.size.fixed) if self.size.fixed else None
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Any) -> Manifest:
        validate_manifest_dict(d)
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        if len(text) > MAX_MANIFEST_BYTES:
            raise ManifestError(f"manifest of {len(text):,} characters exceeds the {MAX_MANIFEST_BYTES:,} limit")
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
        except RecursionError as exc:
            raise ManifestError("manifest is not valid JSON: nested too deeply") from exc
        return cls.from_dict(data)

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.write_text(self.to_json())
        return path

    @classmethod
    def load(cls, path: str | Path) -> Manifest:
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"manifest not found: {path}")
        if path.stat().st_size > MAX_MANIFEST_BYTES:
            raise ManifestError(f"{path}: a manifest of {path.stat().st_size:,} bytes exceeds the "
                                f"{MAX_MANIFEST_BYTES:,}-byte limit")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as exc:
            raise ManifestError(f"{path}: a manifest is UTF-8 JSON; this file is not text ({exc})") from exc
        return cls.from_json(text)


def _size_from_dict(d: dict[str, Any]) -> SizeRequirements:
    d = dict(d)
    # Format 1 resized inputs of fixed-size models by stretching them.
    if d.get("fixed") and "resize" not in d:
        d["resize"] = "stretch"
    known = {f.name for f in fields(SizeRequirements)}
    return SizeRequirements(**{k: v for k, v in d.items() if k in known})


def _by_name(specs: list[TensorSpec], name: str, what: str) -> TensorSpec:
    for spec in specs:
        if spec.name == name:
            return spec
    raise KeyError(f"no {what} named {name!r}; the model has {[s.name for s in specs]}")


def read_onnx_manifest(path: str | Path) -> Manifest | None:
    """The manifest stored in an ONNX file's metadata, or None for an ONNX file without one.

    Uses ONNX Runtime's model-metadata reader, so it needs no ``onnx`` package.
    """
    import onnxruntime as ort

    from pyfill.onnx_guard import check_onnx_file

    check_onnx_file(path)
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from exc
    text = sess.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    return Manifest.from_json(text) if text else None
