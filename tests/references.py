"""Independent references for model outputs, shared by the tests.

- :func:`module_from_onnx`: the torch module an exported pyfill ONNX file came from, rebuilt
  from the file's manifest (family and config) with the weights read from the file's
  initializers, so a shipped model can be run directly in torch whatever its architecture.
- :func:`engine_backends`: every Engine backend installed here.
- :func:`save_graph`: a small ONNX graph written to a file (opset 17), with a pyfill manifest in
  its metadata when one is given.
- :func:`generate_reference`: a generation model's answer for a label map of any size computed
  without pyfill's pre- and post-processing: OpenCV's nearest resize of the labels to the
  model's fixed size, ONNX Runtime on the file itself, OpenCV's bilinear resize back.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from pyfill.manifest import ONNX_METADATA_KEY, Manifest, read_onnx_manifest



def save_graph(path: str | Path, nodes: list[Any], inputs: list[tuple[str, list[Any]]],
               outputs: list[tuple[str, list[Any]]], initializers: list[Any] = (),  # type: ignore[assignment]
               manifest: Manifest | None = None) -> Path:
    """Write a small ONNX graph (opset 17, IR version 8) to ``path``: ``inputs`` and ``outputs``
    are (name, shape) pairs of float32 tensors; ``manifest`` goes into the file's metadata."""
    import onnx
    from onnx import TensorProto, helper

    graph = helper.make_graph(list(nodes), Path(path).stem,
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in inputs],
                              [helper.make_tensor_value_info(n, TensorProto.FLOAT, s) for n, s in outputs],
                              list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    if manifest is not None:
        helper.set_model_props(model, {ONNX_METADATA_KEY: manifest.to_json()})
    onnx.save(model, str(path))
    return Path(path)


def engine_backends(torch_too: bool = True) -> list[str]:
    """The CPU backends installed here: onnxruntime always, openvino and torch when importable."""
    names = ["onnxruntime"]
    if importlib.util.find_spec("openvino") is not None:
        names.append("openvino")
    if torch_too and importlib.util.find_spec("torch") is not None:
        names.append("torch")
    return names


def onnx_weights(path: str | Path) -> dict[str, np.ndarray]:
    """The initializers of an ONNX file by name (ONNX Runtime cannot list them; needs ``onnx``)."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    return {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


def module_from_onnx(path: str | Path) -> tuple[Any, Manifest]:
    """(the torch module of ``path``'s family and config with the file's weights, its manifest).

    Every initializer named like a parameter or buffer of the module is loaded; parameters the
    graph does not hold (a discriminator the exported forward never runs) keep their random
    initial values, so a caller that compares outputs also proves those parameters unused.
    """
    import torch

    from pyfill.models import build_model

    manifest = read_onnx_manifest(path)
    assert manifest is not None, f"{path} has no pyfill manifest"
    module = build_model(manifest.family, manifest.config).eval()
    state = module.state_dict()
    every = onnx_weights(path)
    weights = {k: v for k, v in every.items() if k in state}
    assert weights, f"{path}: no initializer is named like a parameter of the {manifest.family} module"
    for name, value in weights.items():
        assert tuple(state[name].shape) == value.shape, name
        state[name] = torch.from_numpy(value.copy())
    _unfold_conv_batchnorm(module, state, weights, every)
    module.load_state_dict(state)
    return module, manifest


def _unfold_conv_batchnorm(module: Any, state: dict[str, Any], named: dict[str, np.ndarray],
                           every: dict[str, np.ndarray]) -> None:
    """Undo the exporter's folding of eval-mode BatchNorm into the convolution before it: such
    pairs leave unnamed ``onnx::Conv_<n>`` (weight, bias) initializers in graph order, and the
    module's Conv2d -> BatchNorm2d pairs whose weights are not in the file get them in module
    order, with the BatchNorm set to the identity (weight 1, bias 0, mean 0, var 1 - eps)."""
    import torch
    from torch import nn

    folded = sorted((int(k.rsplit("_", 1)[1]), v) for k, v in every.items()
                    if k.startswith("onnx::Conv_") and k.rsplit("_", 1)[1].isdigit())
    pairs = [(folded[i][1], folded[i + 1][1]) for i in range(0, len(folded) - 1, 2)
             if folded[i][1].ndim == 4 and folded[i + 1][1].ndim == 1]
    targets = []
    for name, child in module.named_modules():
        if isinstance(child, nn.Sequential):
            items = list(child.named_children())
            for (cname, conv), (bname, bn) in zip(items, items[1:]):
                prefix = f"{name}.{cname}" if name else cname
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and f"{prefix}.weight" not in named:
                    targets.append((prefix, f"{name}.{bname}" if name else bname, bn.eps))
    assert len(pairs) >= len(targets), f"{len(targets)} folded conv-BN pairs expected, {len(pairs)} found"
    for (conv, bn, eps), (weight, bias) in zip(targets, pairs):
        assert tuple(state[f"{conv}.weight"].shape) == weight.shape, conv
        state[f"{conv}.weight"] = torch.from_numpy(weight.copy())
        state[f"{conv}.bias"] = torch.from_numpy(bias.copy())
        size = weight.shape[0]
        state[f"{bn}.weight"], state[f"{bn}.bias"] = torch.ones(size), torch.zeros(size)
        state[f"{bn}.running_mean"], state[f"{bn}.running_var"] = torch.zeros(size), torch.full((size,), 1.0 - eps)


def run_module(module: Any, feeds: list[np.ndarray]) -> list[np.ndarray]:
    """``module(*feeds)`` in float32 on the CPU -> its outputs as NumPy arrays (a tuple output
    in order, a single tensor as a one-item list)."""
    import torch

    with torch.no_grad():
        out = module(*[torch.from_numpy(np.ascontiguousarray(f)) for f in feeds])
    return [t.numpy() for t in (out if isinstance(out, (tuple, list)) else (out,))]


def nchw(image: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """float (H, W, C) in [0, 1] -> (1, C, H, W) float32 in ``value_range``."""
    lo, hi = value_range
    return (image.astype(np.float32).transpose(2, 0, 1)[None] * (hi - lo) + lo).astype(np.float32)


def hwc(tensor: np.ndarray, value_range: tuple[float, float] = (0.0, 1.0)) -> np.ndarray:
    """(1, C, H, W) in ``value_range`` -> float32 (H, W, C) in [0, 1] (not clipped)."""
    lo, hi = value_range
    return ((tensor[0].transpose(1, 2, 0) - lo) / (hi - lo)).astype(np.float32)


def to_uint8(x: np.ndarray) -> np.ndarray:
    return np.rint(np.clip(x, 0.0, 1.0) * 255.0).astype(np.uint8)


def noise_labels(h: int, w: int, classes: int, seed: int) -> np.ndarray:
    """uint8 (H, W) class indices in small random blocks (2-5 px), so that a resize that picks
    the wrong source pixel picks another class."""
    import cv2

    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, classes, (max(1, h // 3), max(1, w // 3)), dtype=np.uint8)
    return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_NEAREST)


def generate_reference(path: str | Path, labels: np.ndarray, latent: np.ndarray | None = None) -> np.ndarray:
    """uint8 (H, W, 3): what a fixed-size generation model at ``path`` makes of the (H, W) class
    indices ``labels`` (and an optional latent), with OpenCV resizes around ONNX Runtime."""
    import cv2
    import onnxruntime as ort

    manifest = read_onnx_manifest(path)
    assert manifest is not None and manifest.size.fixed, "a fixed-size generation model"
    fh, fw = manifest.size.fixed
    spec = next(s for s in manifest.inputs if s.kind == "labels")
    small = cv2.resize(labels.astype(np.uint8), (fw, fh), interpolation=cv2.INTER_NEAREST)
    feeds: dict[str, np.ndarray] = {spec.name: np.eye(spec.classes, dtype=np.float32)[small].transpose(2, 0, 1)[None]}
    for other in manifest.inputs:
        if other.kind == "vector":
            vec = np.zeros(other.length, np.float32) if latent is None else latent.astype(np.float32)
            feeds[other.name] = vec.reshape(1, -1)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, feeds)[0]
    image = hwc(out, manifest.outputs[0].value_range)
    h, w = labels.shape
    if (h, w) != (fh, fw):
        image = cv2.resize(image, (w, h), interpolation=cv2.INTER_LINEAR)
    return to_uint8(image)
