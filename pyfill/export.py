"""Checkpoints (safetensors + JSON manifest), torch -> ONNX export, ONNX -> TensorRT engines.

No pickle anywhere: weights are safetensors, configs and manifests are JSON.
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require
from pyfill.manifest import ONNX_METADATA_KEY, Manifest

OPSET = 17

# Operators the exported graphs may use: all are supported by TensorRT 8.6+ and by every
# ONNX Runtime / OpenVINO release pyfill supports.
ONNX_OP_ALLOWLIST = frozenset(
    {
        "Add", "Cast", "Clip", "Concat", "Constant", "ConstantOfShape", "Conv", "ConvTranspose",
        "Div", "Gather", "Gemm", "Identity", "InstanceNormalization", "LeakyRelu", "MatMul",
        "Mul", "Pad", "Relu", "Reshape", "Resize", "Shape", "Sigmoid", "Slice", "Softmax", "Sqrt",
        "Sub", "Tanh", "Transpose", "Unsqueeze", "Squeeze", "ReduceMean", "Pow", "Expand",
        "Equal", "Where", "Floor", "Range", "Max", "Min", "Neg", "Exp", "Log", "Abs",
        "BatchNormalization", "MaxPool", "AveragePool", "GlobalAveragePool", "Flatten",
        "Split", "Erf", "Tile",
    }
)


class ExportError(RuntimeError):
    """Export failed a check (ONNX checker, operator allow-list, or output comparison)."""


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights .safetensors, manifest .json) for a checkpoint named by either file or its stem."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_suffix(".safetensors"), stem.with_suffix(".json")


def save_checkpoint(module: Any, manifest: Manifest, path: str | Path) -> Path:
    """Write ``module``'s weights as safetensors and ``manifest`` as JSON beside them.

    Returns the path of the ``.safetensors`` file.
    """
    safetensors_torch = require("safetensors.torch", "train")
    weights, meta = checkpoint_paths(path)
    weights.parent.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().contiguous().cpu() for k, v in module.state_dict().items()}
    safetensors_torch.save_file(state, str(weights), metadata={"format": "pt", "family": manifest.family})
    manifest.save(meta)
    return weights


def load_checkpoint(path: str | Path) -> tuple[Any, Manifest]:
    """Build the module a checkpoint describes and load its weights (strictly).

    Returns (module in eval mode on the CPU, manifest).
    """
    safetensors_torch = require("safetensors.torch", "train")
    from pyfill.models import build_model

    weights, meta = checkpoint_paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    manifest = Manifest.load(meta)
    module = build_model(manifest.family, manifest.config)
    try:
        state = safetensors_torch.load_file(str(weights))
    except Exception as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from exc
    try:
        module.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise ValueError(f"{weights}: weights do not match the '{manifest.family}' config in {meta}: {exc}") from exc
    return module.eval(), manifest


def example_inputs(manifest: Manifest, batch: int = 1, height: int | None = None,
                   width: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 model inputs (NCHW / ND) that satisfy the manifest's size rules."""
    rng = np.random.default_rng(seed)
    fixed = manifest.size.fixed
    m = manifest.size.multiple_of
    h = fixed[0] if fixed else (height or max(m, manifest.size.min_size, 32))
    w = fixed[1] if fixed else (width or h)
    out: dict[str, np.ndarray] = {}
    for spec in manifest.inputs:
        if spec.kind == "image":
            lo, hi = spec.value_range
            out[spec.name] = rng.uniform(lo, hi, (batch, spec.channels, h, w)).astype(np.float32)
        elif spec.kind == "labels":
            idx = rng.integers(0, spec.classes, (batch, h, w))
            out[spec.name] = np.eye(spec.classes, dtype=np.float32)[idx].transpose(0, 3, 1, 2).copy()
        elif spec.kind == "tokens":
            length = spec.shape[0] or 16
            out[spec.name] = rng.integers(0, max(2, len(spec.vocabulary)), (batch, length)).astype(np.int64)
        else:
            shape = [d or 4 for d in spec.shape]
            out[spec.name] = rng.uniform(0, 1, (batch, *shape)).astype(np.float32)
    return out


def onnx_operators(path: str | Path) -> set[str]:
    """The operator types an ONNX file's graph uses."""
    onnx = require("onnx", "train")
    model = onnx.load(str(path))
    return {node.op_type for node in model.graph.node}


def export_onnx(
    source: str | Path | Any,
    out_path: str | Path,
    manifest: Manifest | None = None,
    opset: int = OPSET,
    dynamic: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
) -> Path:
    """Export a checkpoint (path) or a module (with ``manifest``) to ONNX with the manifest in
    its metadata.

    Dynamic batch, and dynamic height and width unless the manifest fixes the size. Before the
    file is written: ``onnx.checker`` passes, the graph uses only :data:`ONNX_OP_ALLOWLIST`, and
    ONNX Runtime's outputs match PyTorch's on random inputs at two sizes (``rtol``/``atol``).
    """
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    if isinstance(source, (str, Path)):
        module, manifest = load_checkpoint(source)
    else:
        if manifest is None:
            raise ValueError("export_onnx(module, ...) needs the module's manifest")
        module = source.eval()
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    spatial_dynamic = dynamic and not manifest.size.fixed

    names_in = [s.name for s in manifest.inputs]
    names_out = [s.name for s in manifest.outputs]
    dyn: dict[str, dict[int, str]] = {}
    if dynamic:
        for s in manifest.inputs + manifest.outputs:
            axes = {0: "batch"}
            if s.spatial and spatial_dynamic:
                axes.update({2: "height", 3: "width"})
            dyn[s.name] = axes
    feeds = example_inputs(manifest, batch=2)
    args = tuple(torch.from_numpy(feeds[n]) for n in names_in)
    tmp = out_path.with_suffix(out_path.suffix + ".tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module, args, str(tmp), input_names=names_in, output_names=names_out,
            dynamic_axes=dyn or None, opset_version=opset, dynamo=False, do_constant_folding=True,
        )
    try:
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
        used = {node.op_type for node in model.graph.node}
        extra = sorted(used - ONNX_OP_ALLOWLIST)
        if extra:
            raise ExportError(f"exported graph uses operators outside the allow-list: {extra}")
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, manifest.to_json()
        onnx.save(model, str(tmp))
        _compare_with_torch(module, manifest, tmp, spatial_dynamic, rtol, atol)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _compare_with_torch(module: Any, manifest: Manifest, onnx_path: Path, spatial_dynamic: bool,
                        rtol: float, atol: float) -> None:
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    m = manifest.size.multiple_of
    base = max(m, manifest.size.min_size, 32)
    sizes = [(base, base), (base + m, base + 2 * m)] if spatial_dynamic else [(None, None)]
    for i, (h, w) in enumerate(sizes):
        feeds = example_inputs(manifest, batch=1 + i, height=h, width=w, seed=100 + i)
        got = sess.run(None, feeds)
        with torch.no_grad():
            want = module(*(torch.from_numpy(feeds[s.name]) for s in manifest.inputs))
        want = want if isinstance(want, (tuple, list)) else (want,)
        for spec, g, ref in zip(manifest.outputs, got, want):
            ref = ref.numpy()
            if g.shape != ref.shape or not np.allclose(g, ref, rtol=rtol, atol=atol):
                err = float(np.max(np.abs(g - ref))) if g.shape == ref.shape else float("nan")
                raise ExportError(
                    f"ONNX output '{spec.name}' differs from PyTorch (shape {g.shape} vs {ref.shape}, max abs error {err})"
                )


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def cache_dir() -> Path:
    """pyfill's user cache directory (``PYFILL_CACHE`` overrides; else XDG / ~/.cache)."""
    root = os.environ.get("PYFILL_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache"), "pyfill"
    )
    path = Path(root)
    path.mkdir(parents=True, exist_ok=True)
    return path


def tensorrt_cache_key(onnx_sha256: str, gpu_name: str, trt_version: str, precision: str,
                       profile: dict[str, Any]) -> str:
    """The engine cache key: model hash + GPU name + TensorRT version + precision + profile."""
    blob = json.dumps(
        {"model": onnx_sha256, "gpu": gpu_name, "trt": trt_version, "precision": precision, "profile": profile},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def build_tensorrt_engine(
    onnx_path: str | Path,
    precision: str = "fp16",
    profile: dict[str, dict[str, tuple[int, ...]]] | None = None,
    out_dir: str | Path | None = None,
    workspace_gib: float = 4.0,
) -> Path:
    """Build (or fetch from the cache) a TensorRT engine for an ONNX model.

    ``profile`` maps each input name to {"min": shape, "opt": shape, "max": shape}; by default
    batch 1..8 and sizes 64..1024 around 512 (fixed-size models: their size). The engine and
    its manifest (``.json``) are stored under ``cache_dir()/tensorrt`` (or ``out_dir``) by
    :func:`tensorrt_cache_key`; a timing cache beside them speeds up later builds.
    """
    trt = require("tensorrt", "tensorrt")
    from pyfill._core import _C

    if precision not in ("fp32", "fp16"):
        raise ValueError(f"precision must be 'fp32' or 'fp16', got {precision!r}")
    devices, reason = _C.cuda_devices()
    if not devices:
        raise RuntimeError(f"building a TensorRT engine needs a CUDA GPU: {reason}")
    from pyfill.manifest import read_onnx_manifest

    manifest = read_onnx_manifest(onnx_path)
    if manifest is None:
        raise ValueError(f"{onnx_path}: no pyfill manifest in the ONNX metadata; export it with pyfill.export")
    profile = profile or default_tensorrt_profile(manifest)
    key = tensorrt_cache_key(file_sha256(onnx_path), devices[0]["name"], trt.__version__, precision,
                             {k: {kk: list(vv) for kk, vv in v.items()} for k, v in profile.items()})
    folder = Path(out_dir) if out_dir else cache_dir() / "tensorrt"
    folder.mkdir(parents=True, exist_ok=True)
    engine_path = folder / f"{key}.engine"
    if engine_path.is_file() and engine_path.with_suffix(".json").is_file():
        return engine_path

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16":
        config.set_flag(trt.BuilderFlag.FP16)
    timing_path = folder / "timing.cache"
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine for {onnx_path}")
    tmp = engine_path.with_suffix(".tmp")
    tmp.write_bytes(bytes(serialized))
    os.replace(tmp, engine_path)
    timing_path.write_bytes(bytes(config.get_timing_cache().serialize()))
    manifest.provenance = {**manifest.provenance, "tensorrt": {"precision": precision, "profile": {
        k: {kk: list(vv) for kk, vv in v.items()} for k, v in profile.items()}, "gpu": devices[0]["name"],
        "version": trt.__version__}}
    manifest.save(engine_path.with_suffix(".json"))
    return engine_path


def default_tensorrt_profile(manifest: Manifest) -> dict[str, dict[str, tuple[int, ...]]]:
    """Batch 1..8; spatial 64..1024 (opt 512) rounded to the size rules, or the fixed size."""
    fixed = manifest.size.fixed
    m = manifest.size.multiple_of

    def rnd(v: int) -> int:
        return max(m, manifest.size.min_size, (v + m - 1) // m * m)

    prof: dict[str, dict[str, tuple[int, ...]]] = {}
    for s in manifest.inputs:
        if not s.spatial:
            shape = tuple(d or 1 for d in s.shape)
            prof[s.name] = {"min": (1, *shape), "opt": (1, *shape), "max": (8, *shape)}
            continue
        c = s.classes if s.kind == "labels" else s.channels
        if fixed:
            lo = opt = hi = tuple(fixed)
        else:
            lo, opt, hi = (rnd(64), rnd(64)), (rnd(512), rnd(512)), (rnd(1024), rnd(1024))
        prof[s.name] = {"min": (1, c, *lo), "opt": (1, c, *opt), "max": (8, c, *hi)}
    return prof
