"""Attach the quality gate to a restoration model:
``python -m training.restore_gate RESTORE QUALITY -o OUT.safetensors [--low 45] [--high 55]``.

``RESTORE``: a restore checkpoint (``restore.safetensors`` with its ``.json``) or an exported
restore ONNX file (the generator's weights are read from its initializers, e.g. the shipped
``pyfill/models/pretrained/restore.onnx``); ``QUALITY``: a quality classifier checkpoint
(``python -m training.quality``). Writes a ``restore`` checkpoint with ``gate`` on, whose
forward pass rates the input with the classifier and scales the generator's correction by
clip((high - score) / (high - low), 0, 1) (see :class:`pyfill.models.restore.Restorer`); export
it with ``pyfill export``. A discriminator is not carried over (it plays no part at inference).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from pyfill.export import load_checkpoint, save_checkpoint
from pyfill.manifest import Manifest
from pyfill.models import build_model, make_manifest


def generator_state(path: str | Path) -> tuple[dict[str, torch.Tensor], Manifest]:
    """(the generator's state dict with ``generator.`` keys, the restore model's manifest) from a
    restore checkpoint or an exported restore ONNX file."""
    path = Path(path)
    if path.suffix == ".onnx":
        import onnx
        from onnx import numpy_helper

        model = onnx.load(str(path))
        meta = {p.key: p.value for p in model.metadata_props}
        if "pyfill.manifest" not in meta:
            raise ValueError(f"{path}: not a pyfill model (no manifest in its metadata)")
        manifest = Manifest.from_json(meta["pyfill.manifest"])
        state = {i.name: torch.from_numpy(numpy_helper.to_array(i).astype("float32").copy())
                 for i in model.graph.initializer if i.name.startswith("generator.")}
    else:
        module, manifest = load_checkpoint(path)
        state = {k: v for k, v in module.state_dict().items() if k.startswith("generator.")}
    if manifest.family != "restore":
        raise ValueError(f"{path}: a '{manifest.family}' model, not a restore model")
    return state, manifest


def gated(restore: str | Path, quality: str | Path, low: float, high: float) -> tuple[torch.nn.Module, Manifest]:
    """The gated :class:`pyfill.models.restore.Restorer` and its manifest."""
    state, r_manifest = generator_state(restore)
    config = dict(r_manifest.config)
    q_module, q_manifest = load_checkpoint(quality)
    if q_manifest.family != "quality":
        raise ValueError(f"{quality}: a '{q_manifest.family}' checkpoint, not a quality classifier")
    config.update(gate=True, quality_base=q_manifest.config["base"], quality_layers=q_manifest.config["layers"],
                  gate_low=float(low), gate_high=float(high))
    net = build_model("restore", config)
    net.generator.load_state_dict({k[len("generator."):]: v for k, v in state.items()}, strict=True)
    net.quality.load_state_dict(q_module.state_dict(), strict=True)
    manifest = make_manifest("restore", config)
    manifest.provenance = {"generator": {"source": Path(restore).name, **r_manifest.provenance},
                           "quality": {"source": Path(quality).name, **q_manifest.provenance},
                           "gate": {"low": float(low), "high": float(high)}}
    return net.eval(), manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Gate a restoration model by the quality classifier.")
    parser.add_argument("restore", help="restore checkpoint (.safetensors) or exported restore model (.onnx)")
    parser.add_argument("quality", help="quality classifier checkpoint (.safetensors)")
    parser.add_argument("-o", "--output", required=True, help="the gated checkpoint to write (.safetensors)")
    parser.add_argument("--low", type=float, default=45.0, help="score at or below which the full correction applies")
    parser.add_argument("--high", type=float, default=55.0, help="score at or above which the input is kept")
    args = parser.parse_args(argv)
    try:
        net, manifest = gated(args.restore, args.quality, args.low, args.high)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {save_checkpoint(net, manifest, args.output)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
