"""The model manifest: one description of a model that travels with every form of it.

A checkpoint carries it as the ``.json`` beside its ``.safetensors``; an ONNX file carries it as
JSON under the metadata key ``pyfill.manifest``; a TensorRT engine carries it as the ``.json``
beside the serialised engine. The Engine reads it, the exporter writes it, the CLI prints it.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

FORMAT_VERSION = 1
ONNX_METADATA_KEY = "pyfill.manifest"

INPUT_KINDS = ("image", "labels", "vector")
# Pre-processing steps a vector input may declare, with the keys each needs. ``stroke_grid``:
# the vector is pyfill.ops.stroke_grid_latent(stroke_grid(<from>, grid, occupancy)) of an RGB
# stroke image passed as the call argument named by ``from``.
DERIVE_OPS: dict[str, tuple[str, ...]] = {"stroke_grid": ("from", "grid")}
# Call arguments each derive op takes besides its source (``occupancy``: the stroke pixels mask).
DERIVE_EXTRA_ARGS: dict[str, tuple[str, ...]] = {"stroke_grid": ("occupancy",)}
COLOUR_SPACES = ("rgb", "gray", "lab_l", "lab_ab", "none")


class ManifestError(ValueError):
    """A manifest is missing, malformed, or from a newer pyfill than this one."""


@dataclass
class TensorSpec:
    """One model input or output.

    kind: ``image`` (N, C, H, W float, spatial), ``labels`` (an (H, W) index map fed as an
    (N, classes, H, W) one-hot tensor), or ``vector`` (N, D float, not spatial).

    Labels may name their classes (``class_names``) and give each a legend colour (``palette``,
    [r, g, b] in 0..255 per class), so that a colour-coded label image can stand in for the
    index map. A vector may declare ``derive``: a pre-processing step the Engine runs to compute
    it from another call argument, e.g. ``{"op": "stroke_grid", "from": "strokes", "grid": [9, 9]}``
    (see :data:`DERIVE_OPS`).
    """

    name: str
    kind: str = "image"
    channels: int = 3
    colour_space: str = "rgb"
    value_range: tuple[float, float] = (0.0, 1.0)
    classes: int = 0  # labels only
    length: int = 0  # vector only
    optional: bool = False  # a missing optional input is fed as zeros
    class_names: list[str] = field(default_factory=list)  # labels only
    palette: list[list[int]] = field(default_factory=list)  # labels only
    derive: dict[str, Any] = field(default_factory=dict)  # vector only

    def __post_init__(self) -> None:
        self.value_range = (float(self.value_range[0]), float(self.value_range[1]))
        if self.kind not in INPUT_KINDS:
            raise ManifestError(f"tensor '{self.name}': kind must be one of {INPUT_KINDS}, got '{self.kind}'")
        if self.colour_space not in COLOUR_SPACES:
            raise ManifestError(f"tensor '{self.name}': unknown colour space '{self.colour_space}'")
        if self.kind == "labels" and self.classes < 1:
            raise ManifestError(f"tensor '{self.name}': a labels input needs classes >= 1")
        if self.kind == "vector" and self.length < 1:
            raise ManifestError(f"tensor '{self.name}': a vector input needs length >= 1")
        for key in ("class_names", "palette"):
            value = getattr(self, key)
            if value and (self.kind != "labels" or len(value) != self.classes):
                raise ManifestError(f"tensor '{self.name}': {key} belongs to a labels input and lists one entry per class")
        if len({tuple(c) for c in self.palette}) != len(self.palette):
            raise ManifestError(f"tensor '{self.name}': palette colours must be distinct")
        if self.derive:
            if self.kind != "vector":
                raise ManifestError(f"tensor '{self.name}': only vector inputs can be derived")
            op = self.derive.get("op")
            if op not in DERIVE_OPS:
                raise ManifestError(f"tensor '{self.name}': unknown derive op {op!r}; known: {sorted(DERIVE_OPS)}")
            missing = sorted(set(DERIVE_OPS[op]) - set(self.derive))
            if missing:
                raise ManifestError(f"tensor '{self.name}': derive op {op!r} needs {missing}")

    @property
    def spatial(self) -> bool:
        return self.kind in ("image", "labels")


@dataclass
class Manifest:
    """Everything needed to run a model: task, architecture, tensors, size rules, precision.

    ``size``: ``multiple_of`` (spatial sizes the model accepts are multiples of it),
    ``min_size``, and ``fixed`` ([H, W] for models that only run at one size; inputs are
    resized to it and outputs back). ``tiling``: whether overlapping tiles give the same result
    as a whole-image run (fully convolutional models), and the advised tile and overlap.
    """

    task: str
    family: str
    config: dict[str, Any]
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    size: dict[str, Any] = field(default_factory=lambda: {"multiple_of": 1, "min_size": 1, "fixed": None})
    tiling: dict[str, Any] = field(default_factory=lambda: {"supported": False, "tile": 512, "overlap": 32})
    fp16: bool = True
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
        self.size = {"multiple_of": 1, "min_size": 1, "fixed": None, **(self.size or {})}
        self.tiling = {"supported": False, "tile": 512, "overlap": 32, **(self.tiling or {})}
        if int(self.size["multiple_of"]) < 1 or int(self.size["min_size"]) < 1:
            raise ManifestError("size.multiple_of and size.min_size must be >= 1")
        if not self.pyfill_version:
            from pyfill import __version__

            self.pyfill_version = __version__

    @property
    def primary_input(self) -> TensorSpec:
        """The first spatial input: the one a positional argument of ``Engine.__call__`` fills."""
        for spec in self.inputs:
            if spec.spatial:
                return spec
        return self.inputs[0]

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        for group in ("inputs", "outputs"):
            for t in d[group]:
                t["value_range"] = list(t["value_range"])
        return d

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Manifest:
        if not isinstance(d, dict):
            raise ManifestError(f"a manifest must be a JSON object, got {type(d).__name__}")
        version = d.get("format_version", FORMAT_VERSION)
        if not isinstance(version, int) or version > FORMAT_VERSION:
            raise ManifestError(
                f"manifest format {version} comes from a newer pyfill (written by pyfill "
                f"{d.get('pyfill_version', '?')}); this pyfill reads format <= {FORMAT_VERSION}: upgrade pyfill"
            )
        missing = [k for k in ("task", "family", "config", "inputs", "outputs") if k not in d]
        if missing:
            raise ManifestError(f"manifest is missing {missing}")
        known = {f for f in cls.__dataclass_fields__}
        try:
            return cls(**{k: v for k, v in d.items() if k in known})
        except TypeError as exc:
            raise ManifestError(f"malformed manifest: {exc}") from exc

    @classmethod
    def from_json(cls, text: str) -> Manifest:
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise ManifestError(f"manifest is not valid JSON: {exc}") from exc
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
        return cls.from_json(path.read_text())


def read_onnx_manifest(path: str | Path) -> Manifest | None:
    """The manifest stored in an ONNX file's metadata, or None for an ONNX file without one.

    Uses ONNX Runtime's model-metadata reader, so it needs no ``onnx`` package.
    """
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        sess = ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ONNX model ({exc})") from exc
    meta = sess.get_modelmeta().custom_metadata_map
    text = meta.get(ONNX_METADATA_KEY)
    return Manifest.from_json(text) if text else None
