"""Serving: a Triton Inference Server model repository for a pyfill model.

:func:`write_triton_repository` writes ``OUT/<name>/config.pbtxt`` and ``OUT/<name>/1/`` holding
the model as ONNX (``model.onnx``, Triton's ``onnxruntime`` backend) or as a TensorRT plan
(``model.plan``, the ``tensorrt`` backend). The config declares every input and output with its
data type and dims (batch axis left out, free axes -1) from the model's manifest, checked
against the ONNX graph, turns on dynamic batching up to ``max_batch``, and carries the pyfill
manifest as the model parameter ``pyfill.manifest`` so that a client can do the pre- and
post-processing the manifest describes (value ranges, colour spaces, one-hot labels). Inputs
the manifest calls optional (fed as zeros by :class:`pyfill.Engine`) are required by Triton:
a client sends the zeros.

Run the server with NVIDIA's container (see ``docs/scale.md``); it is not on PyPI.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path
from typing import Literal

from pyfill.manifest import Manifest, TensorSpec

ONNX_TYPES = {"tensor(float)": "TYPE_FP32", "tensor(float16)": "TYPE_FP16", "tensor(int64)": "TYPE_INT64",
              "tensor(int32)": "TYPE_INT32", "tensor(uint8)": "TYPE_UINT8", "tensor(bool)": "TYPE_BOOL"}
MANIFEST_TYPES = {"float32": "TYPE_FP32", "int64": "TYPE_INT64"}


def tensor_dims(spec: TensorSpec, manifest: Manifest) -> list[int]:
    """Triton dims of one tensor without the batch axis (-1 for a free axis): images (C, H, W),
    labels as the one-hot (classes, H, W), vectors and embeddings (length,), tensors, tokens,
    landmarks and boxes by their manifest shape."""
    if spec.kind in ("image", "labels"):
        h, w = manifest.size.fixed or (-1, -1)
        if any(o.name == spec.name for o in manifest.outputs):
            h, w = h * manifest.size.scale, w * manifest.size.scale
        return [spec.classes if spec.kind == "labels" else spec.channels, h, w]
    if spec.shape:
        return [-1 if d is None else int(d) for d in spec.shape]
    return {"landmarks": [-1, 2], "boxes": [-1, 4], "tokens": [-1]}.get(spec.kind, [-1])


def _onnx_signature(onnx_path: Path) -> dict[str, tuple[str, list[int | None]]]:
    """{name: (Triton data type, shape with the batch axis; None for a symbolic axis)} of every
    input and output of an ONNX file."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(str(onnx_path), sess_options=opts, providers=["CPUExecutionProvider"])
    out: dict[str, tuple[str, list[int | None]]] = {}
    for arg in list(sess.get_inputs()) + list(sess.get_outputs()):
        if arg.type not in ONNX_TYPES:
            raise ValueError(f"{onnx_path}: tensor '{arg.name}' has type {arg.type}, which this exporter does not map")
        out[arg.name] = (ONNX_TYPES[arg.type], [d if isinstance(d, int) else None for d in arg.shape])
    return out


def _merge(spec: TensorSpec, manifest: Manifest, graph: dict[str, tuple[str, list[int | None]]] | None,
           batched: bool) -> tuple[str, list[int]]:
    """(data type, dims) of one tensor: the manifest's, with axes the ONNX graph fixes filled in."""
    dims = tensor_dims(spec, manifest)
    dtype = MANIFEST_TYPES[spec.dtype]
    if graph is None:
        return dtype, dims
    if spec.name not in graph:
        raise ValueError(f"the manifest names tensor '{spec.name}', which the ONNX graph does not have "
                         f"(graph: {', '.join(graph)})")
    dtype, shape = graph[spec.name]
    if batched:
        shape = shape[1:]
    if len(shape) != len(dims):
        raise ValueError(f"tensor '{spec.name}': the manifest gives {len(dims)} axes {dims}, the ONNX graph "
                         f"{len(shape)} {shape}")
    merged = []
    for axis, (m, g) in enumerate(zip(dims, shape)):
        if g is not None and m != -1 and m != g:
            raise ValueError(f"tensor '{spec.name}' axis {axis + 1}: the manifest says {m}, the ONNX graph {g}")
        merged.append(g if g is not None else m)
    return dtype, merged


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _tensor_block(name: str, dtype: str, dims: list[int]) -> str:
    return (f"  {{\n    name: {_quote(name)}\n    data_type: {dtype}\n"
            f"    dims: [ {', '.join(map(str, dims))} ]\n  }}")


def config_text(name: str, platform: str, manifest: Manifest,
                tensors: dict[str, tuple[str, list[int]]], max_batch: int, *,
                preferred_batch_sizes: list[int] | None, max_queue_delay_us: int,
                instance_kind: str, instances: int) -> str:
    """The ``config.pbtxt`` text (Triton's ``ModelConfig`` protobuf in text format)."""
    out = [f"name: {_quote(name)}", f"platform: {_quote(platform)}", f"max_batch_size: {max_batch}"]
    for group, specs in (("input", manifest.inputs), ("output", manifest.outputs)):
        blocks = [_tensor_block(s.name, *tensors[s.name]) for s in specs]
        out.append(f"{group} [\n" + ",\n".join(blocks) + "\n]")
    if max_batch > 0:
        out.append("dynamic_batching {")
        if preferred_batch_sizes:
            out.append(f"  preferred_batch_size: [ {', '.join(map(str, preferred_batch_sizes))} ]")
        out.append(f"  max_queue_delay_microseconds: {max_queue_delay_us}")
        out.append("}")
    if instance_kind != "auto":
        out.append(f"instance_group [\n  {{\n    count: {instances}\n    kind: KIND_{instance_kind.upper()}\n  }}\n]")
    out.append("parameters {\n  key: \"pyfill.manifest\"\n  value {\n"
               f"    string_value: {_quote(json.dumps(manifest.to_dict(), separators=(',', ':')))}\n  }}\n}}")
    return "\n".join(out) + "\n"


def write_triton_repository(model: str | os.PathLike[str], out_dir: str | os.PathLike[str], *,
                            name: str | None = None, max_batch: int = 8, version: int = 1,
                            tensorrt: bool = False, precision: Literal["fp16", "fp32"] = "fp16",
                            preferred_batch_sizes: list[int] | None = None, max_queue_delay_us: int = 100,
                            instance_kind: Literal["auto", "gpu", "cpu"] = "auto", instances: int = 1,
                            overwrite: bool = False) -> Path:
    """Write a Triton model repository entry for ``model`` under ``out_dir``.

    Args:
        model: a model file (``.onnx``, a ``.safetensors`` checkpoint with its ``.json``, or a
            TensorRT ``.engine``/``.plan`` with its ``.json``) or a shipped or stored model's name.
        out_dir: the model repository (created); the entry is ``out_dir/<name>``.
        name: the model's name in Triton (default: the file's stem).
        max_batch: Triton's ``max_batch_size``; requests are batched dynamically up to it. The
            model's batch axis must be dynamic (pyfill exports it so unless ``--static``).
        version: the version folder.
        tensorrt: build a TensorRT plan (needs the ``tensorrt`` extra and a CUDA GPU; the plan
            runs only on the GPU model and TensorRT version it was built with) instead of ONNX.
        precision: the TensorRT plan's precision.
        preferred_batch_sizes, max_queue_delay_us: dynamic batching settings.
        instance_kind, instances: ``auto`` leaves placement to Triton (one instance per GPU, or
            CPU); ``gpu``/``cpu`` with ``instances`` per device.
        overwrite: replace an existing entry of that name.

    Returns the entry's folder. Raises FileNotFoundError / ValueError for a missing model, a
    model whose ONNX graph and manifest disagree, or a model with a fixed batch size.
    """
    from pyfill.engine import files as F
    from pyfill.store import resolve_model

    if max_batch < 1:
        raise ValueError(f"max_batch must be >= 1, got {max_batch}")
    if version < 1:
        raise ValueError(f"version must be >= 1, got {version}")
    if instance_kind not in ("auto", "gpu", "cpu") or instances < 1:
        raise ValueError(f"instance_kind must be auto, gpu or cpu and instances >= 1, got {instance_kind!r}, {instances}")
    path = resolve_model(model)
    files = F.locate(path)
    manifest, _ = F.load_manifest(files, "NCHW", "rgb", (0.0, 1.0), (0.0, 1.0))
    name = name or path.stem
    entry = Path(out_dir) / name
    if entry.exists():
        if not overwrite:
            raise FileExistsError(f"{entry} exists; pass overwrite=True (--force) to replace it")
        shutil.rmtree(entry)

    if files.tensorrt_engine is not None or tensorrt:
        plan, platform, graph = files.tensorrt_engine, "tensorrt_plan", None
        if plan is None:
            from pyfill.export import build_tensorrt_engine, default_tensorrt_profile

            profile = {k: {**v, "max": (max_batch, *v["max"][1:])} for k, v in default_tensorrt_profile(manifest).items()}
            plan = build_tensorrt_engine(F.onnx_for_runtime(files), precision=precision, profile=profile)
        source, target = plan, "model.plan"
    else:
        onnx = F.onnx_for_runtime(files)
        graph = _onnx_signature(onnx)
        first = graph[manifest.inputs[0].name][1] if manifest.inputs[0].name in graph else [None]
        if first and first[0] is not None:
            raise ValueError(f"{onnx}: the batch axis is fixed at {first[0]}; Triton's dynamic batching needs a "
                             f"dynamic one (export without --static)")
        source, target, platform = onnx, "model.onnx", "onnxruntime_onnx"
    tensors = {s.name: _merge(s, manifest, graph, batched=True) for s in manifest.inputs + manifest.outputs}
    text = config_text(name, platform, manifest, tensors, max_batch, preferred_batch_sizes=preferred_batch_sizes,
                       max_queue_delay_us=max_queue_delay_us, instance_kind=instance_kind, instances=instances)
    (entry / str(version)).mkdir(parents=True)
    shutil.copyfile(source, entry / str(version) / target)
    (entry / "config.pbtxt").write_text(text)
    return entry



def run_cli_export(args: argparse.Namespace) -> int:
    """``pyfill export MODEL --triton-repo DIR [--max-batch N] [--tensorrt] [--precision P]
    [--force]``: writes the repository entry and prints its folder."""
    entry = write_triton_repository(args.model, args.triton_repo, max_batch=getattr(args, "max_batch", 8),
                                    tensorrt=bool(getattr(args, "tensorrt", False)),
                                    precision=getattr(args, "precision", "fp16"),
                                    overwrite=bool(getattr(args, "force", False)))
    print(f"Triton model repository entry: {entry} (serve with: tritonserver --model-repository={entry.parent})")
    return 0
