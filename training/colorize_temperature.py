"""Set the annealed-mean temperature of a ``bins`` colour filling checkpoint:
``python -m training.colorize_temperature CHECKPOINT T -o OUT.safetensors``.

The temperature only changes how the predicted distribution over ab bins is decoded (the
weights stay as they are), so it is chosen after training (``python -m
training.evaluate_colorize --checkpoint CHECKPOINT --sweep FOLDER``) and written into a copy of
the checkpoint for ``pyfill export``. The manifest's provenance is kept and records the change.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from pyfill.export import load_checkpoint, save_checkpoint
from pyfill.models import build_model, make_manifest


def with_temperature(checkpoint: str | Path, temperature: float, out: str | Path) -> Path:
    """Write ``checkpoint`` with ``temperature`` to ``out`` (.safetensors with its .json)."""
    if not temperature > 0:
        raise ValueError(f"the temperature must be > 0, got {temperature}")
    module, manifest = load_checkpoint(checkpoint)
    if manifest.family != "colorize" or manifest.config.get("head") != "bins":
        raise ValueError(f"{checkpoint}: not a 'bins' colour filling checkpoint")
    config = {**manifest.config, "temperature": float(temperature)}
    net = build_model("colorize", config)
    net.load_state_dict(module.state_dict(), strict=True)
    new = make_manifest("colorize", config)
    new.provenance = {**manifest.provenance,
                      "temperature": {"from": manifest.config["temperature"], "to": float(temperature)}}
    return save_checkpoint(net, new, out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Set the decoding temperature of a colour filling checkpoint.")
    parser.add_argument("checkpoint", help="colorize.safetensors (with its .json), head 'bins'")
    parser.add_argument("temperature", type=float, help="annealed-mean temperature (1: the mean; lower: more vivid)")
    parser.add_argument("-o", "--output", required=True, help="the checkpoint to write (.safetensors)")
    args = parser.parse_args(argv)
    try:
        path = with_temperature(args.checkpoint, args.temperature, args.output)
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
