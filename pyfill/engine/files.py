"""The files behind a model path: which forms exist (ONNX, checkpoint, TensorRT engine), its
manifest (or the default conventions of a foreign ONNX file), and the ONNX file the ONNX runtimes
load (a checkpoint is exported once into the cache)."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from pyfill import foreign
from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling, read_onnx_manifest
from pyfill.onnx_guard import check_onnx_file

CHECKPOINT_SUFFIXES = (".safetensors", ".json")
ENGINE_SUFFIXES = (".engine", ".plan", ".trt")


@dataclass(frozen=True)
class ModelFiles:
    onnx: Path | None = None
    checkpoint: Path | None = None
    tensorrt_engine: Path | None = None
    # Another project's checkpoint (pyfill.foreign) that does not export to ONNX: its derived
    # manifest (why the export failed: provenance["onnx_export"]); it runs on the torch backend.
    manifest: Manifest | None = None


def locate(path: Path) -> ModelFiles:
    """The model files for ``path``; raises FileNotFoundError / ValueError for what cannot be a model."""
    if not path.exists():
        raise FileNotFoundError(f"model file not found: {path}")
    if path.is_dir():
        raise ValueError(f"{path}: is a folder, not a model file")
    suffix = path.suffix.lower()
    if suffix == ".onnx":
        check_onnx_file(path)
        return ModelFiles(onnx=path)
    if foreign.is_foreign_file(path):
        onnx, derived, _ = foreign.prepare(path)
        return ModelFiles(onnx=onnx) if onnx is not None else ModelFiles(checkpoint=path, manifest=derived)
    if suffix in CHECKPOINT_SUFFIXES:
        weights, manifest = path.with_suffix(".safetensors"), path.with_suffix(".json")
        if not weights.is_file() or not manifest.is_file():
            raise FileNotFoundError(
                f"a checkpoint is a .safetensors file with its .json manifest beside it; missing "
                f"{weights if not weights.is_file() else manifest}"
            )
        return ModelFiles(checkpoint=weights)
    if suffix in ENGINE_SUFFIXES:
        if not path.with_suffix(".json").is_file():
            raise FileNotFoundError(f"a TensorRT engine needs its manifest beside it: {path.with_suffix('.json')}")
        return ModelFiles(tensorrt_engine=path)
    raise ValueError(f"{path}: not a model file pyfill knows (expected .onnx, .safetensors + .json, .engine/.plan, "
                     f"or another project's .pth/.pt/.ckpt/.safetensors checkpoint)")


def load_manifest(files: ModelFiles, layout: str, channel_order: str, input_range: tuple[float, float],
                  output_range: tuple[float, float], given: Manifest | None = None) -> tuple[Manifest, bool]:
    """(manifest, foreign): the model's own manifest, or for an ONNX file without one the
    ``given`` manifest or else one built from the conventions given (``foreign`` True)."""
    if given is not None:
        if not isinstance(given, Manifest):
            raise TypeError(f"manifest must be a pyfill.manifest.Manifest, got {type(given).__name__}")
        if files.onnx is None or files.manifest is not None or read_onnx_manifest(files.onnx) is not None:
            raise ValueError("manifest= describes another project's ONNX file; this model has its own manifest")
        return given, True
    if files.manifest is not None:
        return files.manifest, False
    if files.checkpoint is not None:
        return Manifest.load(files.checkpoint.with_suffix(".json")), False
    if files.tensorrt_engine is not None:
        return Manifest.load(files.tensorrt_engine.with_suffix(".json")), False
    assert files.onnx is not None  # locate() returns one of the three forms
    manifest = read_onnx_manifest(files.onnx)
    if manifest is not None:
        return manifest, False
    return foreign_manifest(files.onnx, layout, channel_order, input_range, output_range), True


def foreign_manifest(onnx: Path, layout: str, channel_order: str, input_range: tuple[float, float],
                     output_range: tuple[float, float]) -> Manifest:
    """A manifest for another project's single-image ONNX model, from its declared input and
    output shapes and the conventions the caller gives."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(onnx), providers=["CPUExecutionProvider"])
    ins, outs = sess.get_inputs(), sess.get_outputs()
    if len(ins) != 1:
        raise ValueError(f"{onnx}: a model without a pyfill manifest must have one image input; it has {len(ins)}")
    shape = list(ins[0].shape)
    if len(shape) != 4:
        raise ValueError(f"{onnx}: expected a 4-D image input, got shape {shape}")
    c_axis, hw = (1, shape[2:4]) if layout == "NCHW" else (3, shape[1:3])
    channels = shape[c_axis] if isinstance(shape[c_axis], int) else 3
    fixed = (hw[0], hw[1]) if all(isinstance(v, int) for v in hw) else None
    out_shape = outs[0].shape
    out_c = out_shape[c_axis] if len(out_shape) == 4 and isinstance(out_shape[c_axis], int) else channels
    spaces = {1: "gray", 3: "rgb"}
    return Manifest(
        task="image-to-image",
        family="foreign-onnx",
        config={"source": onnx.name, "layout": layout, "channel_order": channel_order},
        inputs=[TensorSpec(ins[0].name, "image", channels, spaces.get(channels, "none"), input_range)],  # type: ignore[arg-type]
        outputs=[TensorSpec(outs[0].name, "image", out_c, spaces.get(out_c, "none"), output_range)],  # type: ignore[arg-type]
        size=SizeRequirements(fixed=fixed, resize="stretch"),
        tiling=Tiling(supported=False),
        fp16=False,
    )


def onnx_for_runtime(files: ModelFiles) -> Path:
    """The ONNX file for ONNX Runtime, OpenVINO or a TensorRT build: the given one, or the
    checkpoint exported once into the cache (keyed by the checkpoint's contents)."""
    if files.onnx is not None:
        return files.onnx
    if files.checkpoint is None:
        raise ValueError("a TensorRT engine has no ONNX form; it runs only on the tensorrt backend")
    if files.manifest is not None:
        raise ValueError(f"{files.checkpoint.name} has no ONNX form ({files.manifest.provenance.get('onnx_export')}); "
                         f"run it with backend='torch'")
    from pyfill.export import cache_dir, export_onnx

    h = hashlib.sha256()
    h.update(files.checkpoint.read_bytes())
    h.update(files.checkpoint.with_suffix(".json").read_bytes())
    target = cache_dir() / "onnx" / f"{h.hexdigest()[:32]}.onnx"
    if not target.is_file():
        export_onnx(files.checkpoint, target)
    return target
