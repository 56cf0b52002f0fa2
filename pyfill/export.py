"""Checkpoints (safetensors + JSON manifest), torch -> ONNX export, ONNX -> TensorRT engines.

No pickle anywhere: weights are safetensors, configs and manifests are JSON.
"""

from __future__ import annotations

import dataclasses

import hashlib
import json
import os
import re
import uuid
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require
from pyfill.engine.processing import padded_size
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
        # Found in other projects' upscalers (pixel shuffle, PReLU, window padding, layer norm).
        "DepthToSpace", "PRelu", "Mod", "LayerNormalization", "ScatterND", "Not", "ReduceL2",
    }
)


class ExportError(RuntimeError):
    """Export failed a check (ONNX checker, operator allow-list, or output comparison)."""


def checkpoint_paths(path: str | Path) -> tuple[Path, Path]:
    """(weights .safetensors, manifest .json) for a checkpoint named by either file or its stem;
    a stem may hold dots (``restore.v2`` -> ``restore.v2.safetensors``, ``restore.v2.json``)."""
    path = Path(path)
    stem = path.with_suffix("") if path.suffix in (".safetensors", ".json") else path
    return stem.with_name(stem.name + ".safetensors"), stem.with_name(stem.name + ".json")


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
    """Build the module a checkpoint describes and load its weights (strictly): a pyfill
    checkpoint, or another project's ``.pth``/``.pt``/``.ckpt``/``.safetensors`` whose
    architecture spandrel recognises (:mod:`pyfill.foreign`).

    Returns (module in eval mode on the CPU, manifest).
    """
    from pyfill import foreign

    if foreign.is_foreign_file(path):
        return foreign.load_module(path)
    safetensors_torch = require("safetensors.torch", "train")
    from pyfill.models import build_model

    weights, meta = checkpoint_paths(path)
    if not weights.is_file():
        raise FileNotFoundError(f"checkpoint weights not found: {weights}")
    manifest = Manifest.load(meta)
    try:
        with require("safetensors", "train").safe_open(str(weights), framework="pt"):
            pass  # the header parses and its offsets lie within the file
    except Exception as exc:
        raise ValueError(f"{weights}: not a readable safetensors file ({exc})") from exc
    _check_config_fits(manifest, weights)
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


def _check_config_fits(manifest: Manifest, weights: Path) -> None:
    """Refuse a manifest whose config describes more weights than the checkpoint file holds
    (a hostile or mistaken config such as ``base: 10**6`` would otherwise allocate terabytes
    before the weights are compared): the model is first built on torch's ``meta`` device, which
    allocates nothing."""
    torch = require("torch", "train")
    from pyfill.models import build_model

    try:
        with torch.device("meta"):
            probe = build_model(manifest.family, manifest.config)
    except Exception as exc:  # noqa: BLE001 - any failure of a config to build is the user's file's fault
        raise ValueError(f"{weights.with_suffix('.json')}: config {manifest.config} does not build a "
                         f"'{manifest.family}' model ({exc})") from exc
    need = sum(t.numel() * t.element_size() for t in probe.state_dict().values())
    have = weights.stat().st_size
    if need > have:
        raise ValueError(f"{weights}: the '{manifest.family}' config in {weights.with_suffix('.json').name} "
                         f"describes {need:,} bytes of weights but the file holds {have:,}")


def example_inputs(manifest: Manifest, batch: int = 1, height: int | None = None,
                   width: int | None = None, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 model inputs (NCHW / ND) that satisfy the manifest's size rules."""
    rng = np.random.default_rng(seed)
    fixed = manifest.size.fixed
    m = manifest.size.multiple_of
    h = fixed[0] if fixed else (height or padded_size(32, 32, m, manifest.size.min_size)[0])
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


def static_export_size(manifest: Manifest, size: tuple[int, int] | None = None) -> tuple[int, int]:
    """The (height, width) a static export is traced at: the manifest's fixed size, else
    ``size`` (default 512 x 512) rounded up to the size rules."""
    fixed = manifest.size.fixed
    if fixed:
        return int(fixed[0]), int(fixed[1])
    h, w = size or (512, 512)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"static_size must be positive, got {size}")
    return padded_size(int(h), int(w), manifest.size.multiple_of, manifest.size.min_size)


def export_onnx(
    source: str | Path | Any,
    out_path: str | Path,
    manifest: Manifest | None = None,
    opset: int = OPSET,
    dynamic: bool = True,
    rtol: float = 1e-3,
    atol: float = 1e-4,
    static_size: tuple[int, int] | None = None,
) -> Path:
    """Export a checkpoint (path: a pyfill checkpoint or another project's, see
    :func:`load_checkpoint`) or a module (with ``manifest``) to ONNX with the manifest in its
    metadata.

    ``dynamic``: dynamic batch, and dynamic height and width unless the manifest fixes the size.
    Otherwise (static) the graph takes batch 1 at :func:`static_export_size` (``static_size``,
    default 512 x 512, rounded to the size rules), and the manifest written into it fixes that
    size, so that the Engine resizes other sizes to it. Before the file is written:
    ``onnx.checker`` passes, the graph uses only :data:`ONNX_OP_ALLOWLIST`, and ONNX Runtime's
    outputs match PyTorch's on random inputs (``rtol``/``atol``): at two sizes and batches 1 and
    2 when dynamic, at the traced shape when static.
    """
    torch = require("torch", "train")
    onnx = require("onnx", "train")
    if isinstance(source, (str, Path)):
        from pyfill import foreign

        if foreign.is_foreign_file(source):
            rtol, atol = min(rtol, foreign.RTOL), min(atol, foreign.ATOL)
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
        traced = {"batch": 2}
    else:
        h, w = static_export_size(manifest, static_size)
        # A static file runs at one size: smaller inputs are padded up to it (no resampling).
        manifest = dataclasses.replace(manifest, size=dataclasses.replace(manifest.size, fixed=(h, w), resize="pad"))
        traced = {"batch": 1, "height": h, "width": w}
    feeds = example_inputs(manifest, **traced)
    args = tuple(torch.from_numpy(feeds[n]) for n in names_in)
    tmp = _unique_temp(out_path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(
                    module, args, str(tmp), input_names=names_in, output_names=names_out,
                    dynamic_axes=dyn or None, opset_version=opset, dynamo=False, do_constant_folding=True,
                )
            except RuntimeError as exc:
                first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
                raise ExportError(f"PyTorch could not trace the model to ONNX: {first}") from exc
        model = onnx.load(str(tmp))
        onnx.checker.check_model(model, full_check=True)
        used = {node.op_type for node in model.graph.node}
        extra = sorted(used - ONNX_OP_ALLOWLIST)
        if extra:
            raise ExportError(f"exported graph uses operators outside the allow-list: {extra}")
        entry = model.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, manifest.to_json()
        onnx.save(model, str(tmp))
        checks = _dynamic_checks(manifest, spatial_dynamic) if dynamic else [traced]
        _compare_with_torch(module, manifest, tmp, checks, rtol, atol)
        os.replace(tmp, out_path)
    finally:
        tmp.unlink(missing_ok=True)
    return out_path


def _unique_temp(target: Path) -> Path:
    """A new, empty temporary file beside ``target`` (unique, so that two processes writing the
    same target never share one), to be renamed over it with os.replace. Created with mode 0o666
    less the umask, as ``open`` would make the target (``tempfile.mkstemp`` would leave a model
    readable by its owner only)."""
    name = target.parent / f".{target.name}.{uuid.uuid4().hex}.tmp"
    os.close(os.open(name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
    return name


def _dynamic_checks(manifest: Manifest, spatial_dynamic: bool) -> list[dict[str, int]]:
    """Batch 1 at the smallest size of at least 32 pixels the size rules allow, and batch 2 at a
    larger, non-square one."""
    if not spatial_dynamic:
        return [{"batch": 1}, {"batch": 2}]
    m = manifest.size.multiple_of
    base = padded_size(32, 32, m, manifest.size.min_size)[0]
    return [{"batch": 1, "height": base, "width": base}, {"batch": 2, "height": base + m, "width": base + 2 * m}]


def _compare_with_torch(module: Any, manifest: Manifest, onnx_path: Path, checks: list[dict[str, int]],
                        rtol: float, atol: float) -> None:
    import onnxruntime as ort
    import torch

    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    for i, shape in enumerate(checks):
        feeds = example_inputs(manifest, seed=100 + i, **shape)
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


def tensorrt_cache_key(onnx_sha256: str, gpu: dict[str, Any], trt_version: str, precision: str, typing: str,
                       profile: dict[str, Any]) -> str:
    """The engine cache key: model hash, the GPU (name and compute capability), TensorRT
    version, precision, typing mode ("weak" or "strong") and optimisation profile. An engine
    runs only on the GPU model and TensorRT version it was built for."""
    blob = json.dumps(
        {"model": onnx_sha256, "gpu": gpu["name"], "cc": list(gpu["compute_capability"]), "trt": trt_version,
         "precision": precision, "typing": typing, "profile": profile},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:32]


def tensorrt_typing(trt: Any) -> str:
    """"weak" where the TensorRT module still has ``BuilderFlag.FP16`` (TensorRT 10: fp16 is a
    builder flag on the fp32 graph), else "strong" (TensorRT 11: every network is strongly typed,
    and fp16 needs a graph whose tensors are fp16)."""
    return "weak" if hasattr(trt.BuilderFlag, "FP16") else "strong"


def tensorrt_precision(manifest: Manifest, precision: str) -> str:
    """Resolve "auto" to fp16 where the manifest allows it, else fp32; refuse fp16 for a model
    whose manifest says it does not support fp16."""
    if precision not in ("auto", "fp32", "fp16"):
        raise ValueError(f"precision must be 'auto', 'fp32' or 'fp16', got {precision!r}")
    if precision == "auto":
        return "fp16" if manifest.fp16 else "fp32"
    if precision == "fp16" and not manifest.fp16:
        raise ValueError(f"the manifest of {manifest.family} says the model does not support fp16; use precision='fp32'")
    return precision


def fp16_onnx(onnx_path: str | Path, out_path: str | Path) -> Path:
    """Write an fp16 copy of an fp32 ONNX model for a strongly typed TensorRT build: weights and
    activations in fp16, inputs and outputs kept fp32 (casts inside the graph), the metadata
    kept; operators that need fp32 stay fp32 (onnxconverter-common's block list)."""
    onnx = require("onnx", "tensorrt")
    float16 = require("onnxconverter_common.float16", "tensorrt")
    model = onnx.load(str(onnx_path))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # reports each weight below fp16's smallest normal
        half = float16.convert_float_to_float16(model, keep_io_types=True)
    onnx.save(half, str(out_path))
    return Path(out_path)


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9]+", "-", text).strip("-").lower()


def timing_cache_path(folder: Path, gpu: dict[str, Any], trt_version: str) -> Path:
    """One timing cache per GPU model, compute capability and TensorRT version: timings measured
    on one GPU say nothing about another."""
    cc = "".join(str(v) for v in gpu["compute_capability"])
    return folder / f"timing-{_slug(gpu['name'])}-sm{cc}-trt{_slug(trt_version)}.cache"


def _write_atomically(path: Path, data: bytes) -> None:
    tmp = _unique_temp(path)
    try:
        tmp.write_bytes(data)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def build_tensorrt_engine(
    onnx_path: str | Path,
    precision: str = "auto",
    profile: dict[str, dict[str, tuple[int, ...]]] | None = None,
    out_dir: str | Path | None = None,
    workspace_gib: float = 4.0,
) -> Path:
    """Build (or fetch from the cache) a TensorRT engine for a pyfill ONNX model, for the CUDA
    device current in this thread.

    ``precision``: "auto" (fp16 where the manifest allows it, else fp32), "fp32" or "fp16" (an
    error for a model whose manifest says no). TensorRT 10 builds fp16 with its FP16 builder flag;
    TensorRT 11, which builds only strongly typed networks, from an fp16 copy of the ONNX
    (:func:`fp16_onnx`). ``profile`` maps each input name to {"min": shape, "opt": shape, "max":
    shape}; by default :func:`default_tensorrt_profile`. The engine and its manifest (``.json``)
    are stored under ``cache_dir()/tensorrt`` (or ``out_dir``) by :func:`tensorrt_cache_key`,
    with a timing cache per GPU beside them; files are written under unique temporary names and
    renamed into place, so concurrent builds never see half-written files.
    """
    from pyfill.engine import backends
    from pyfill.manifest import read_onnx_manifest

    trt = backends.load_tensorrt()

    manifest = read_onnx_manifest(onnx_path)
    if manifest is None:
        raise ValueError(f"{onnx_path}: no pyfill manifest in the ONNX metadata; export it with pyfill.export")
    precision = tensorrt_precision(manifest, precision)
    ok, reason = backends.tensorrt_usable()
    if not ok:
        raise RuntimeError(f"building a TensorRT engine needs TensorRT, cuda-python and a CUDA GPU: {reason}")
    gpu = backends.current_gpu()
    typing = tensorrt_typing(trt)
    profile = profile or default_tensorrt_profile(manifest)
    profile_json = {k: {kk: list(vv) for kk, vv in v.items()} for k, v in profile.items()}
    key = tensorrt_cache_key(file_sha256(onnx_path), gpu, trt.__version__, precision, typing, profile_json)
    folder = Path(out_dir) if out_dir else cache_dir() / "tensorrt"
    folder.mkdir(parents=True, exist_ok=True)
    engine_path = folder / f"{key}.engine"
    if engine_path.is_file() and engine_path.with_suffix(".json").is_file():
        return engine_path

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    strong = typing == "strong"
    flags = 0
    if strong and hasattr(trt.NetworkDefinitionCreationFlag, "STRONGLY_TYPED"):
        flags = 1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED)
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    source = Path(onnx_path)
    half = _unique_temp(folder / f"{key}.fp16.onnx") if strong and precision == "fp16" else None
    try:
        if half is not None:
            source = fp16_onnx(onnx_path, half)
        if not parser.parse_from_file(str(source)):
            errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
            raise ExportError(f"TensorRT could not parse {onnx_path}: {errors}")
    finally:
        if half is not None:
            half.unlink(missing_ok=True)
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_gib * (1 << 30)))
    if precision == "fp16" and not strong:
        config.set_flag(trt.BuilderFlag.FP16)
    timing_path = timing_cache_path(folder, gpu, trt.__version__)
    timing = config.create_timing_cache(timing_path.read_bytes() if timing_path.is_file() else b"")
    config.set_timing_cache(timing, ignore_mismatch=True)
    opt_profile = builder.create_optimization_profile()
    for name, shapes in profile.items():
        opt_profile.set_shape(name, tuple(shapes["min"]), tuple(shapes["opt"]), tuple(shapes["max"]))
    config.add_optimization_profile(opt_profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"TensorRT failed to build an engine for {onnx_path}")
    _write_atomically(engine_path, bytes(serialized))
    _write_atomically(timing_path, bytes(config.get_timing_cache().serialize()))
    manifest.provenance = {**manifest.provenance, "tensorrt": {
        "precision": precision, "typing": typing, "profile": profile_json, "gpu": gpu["name"],
        "compute_capability": list(gpu["compute_capability"]), "version": trt.__version__}}
    _write_atomically(engine_path.with_suffix(".json"), manifest.to_json().encode())
    return engine_path


def default_tensorrt_profile(manifest: Manifest) -> dict[str, dict[str, tuple[int, ...]]]:
    """Batch 1..8; spatial 64..1024 (opt 512) for models that tile, 64..2048 for models that
    do not (their large images cannot be cut into tiles), rounded to the size rules; or the
    fixed size."""
    fixed = manifest.size.fixed
    m = manifest.size.multiple_of
    top = 1024 if manifest.tiling.supported else 2048

    def rnd(v: int) -> int:
        return padded_size(v, v, m, manifest.size.min_size)[0]

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
            lo, opt, hi = (rnd(64), rnd(64)), (rnd(512), rnd(512)), (rnd(top), rnd(top))
        prof[s.name] = {"min": (1, c, *lo), "opt": (1, c, *opt), "max": (8, c, *hi)}
    return prof
