"""Export the editing chain to ONNX with pyfill manifests (SPEC S4):
``python -m training.edit_export --runs runs/edit --out DIR``.

Writes, from the run folders of the stages:

- ``edit_decoder.onnx``: W+ (N, num_ws, w_dim) -> aligned crop (N, 3, S, S) in [0, 1]
  (the decoder of ``decoder/edit_generator.safetensors``, its EMA weights);
- ``edit_encoder.onnx``: aligned crop -> W+ (``encoder/edit_encoder.safetensors``);
- ``edit_mapper_<target>.onnx``: W+ -> dW+ per text (``mappers/<target>/edit_mapper.safetensors``)
  and ``edit_mapper_cond.onnx``: (W+, text embedding (N, E)) -> dW+ (``mappers/conditional``);
- ``edit_matcher_text.onnx``: token ids (N, L) int64 -> unit text embedding (N, E), whose
  manifest carries the vocabulary, the length and the attribute phrases of the tokenizer;
  ``edit_matcher_image.onnx``: aligned crop -> unit image embedding (N, E).

Every export is checked against PyTorch by :func:`pyfill.export.export_onnx` (batches 1 and 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyfill.export import export_onnx, load_checkpoint
from pyfill.models import build_model, full_config, make_manifest
from training import edit_data as D


def _with_provenance(manifest: Any, source: Any) -> Any:
    manifest.provenance = {**source.provenance, **manifest.provenance}
    return manifest


def export_decoder(checkpoint: str | Path, out: str | Path) -> Path:
    """``edit_decoder.onnx`` from an ``edit_generator`` checkpoint (the decoder only)."""
    gen, gm = load_checkpoint(checkpoint)
    if gm.family != "edit_generator":
        raise ValueError(f"{checkpoint}: an edit_generator checkpoint is needed, got {gm.family}")
    config = full_config("edit_decoder", dict(gm.config))
    decoder = build_model("edit_decoder", config)
    decoder.load_state_dict(gen.decoder.state_dict())
    return export_onnx(decoder, out, _with_provenance(make_manifest("edit_decoder", config, task="edit"), gm))


def export_matcher_towers(checkpoint: str | Path, folder: str | Path) -> tuple[Path, Path]:
    """``edit_matcher_text.onnx`` and ``edit_matcher_image.onnx`` from an ``edit_matcher`` checkpoint."""
    model, mm = load_checkpoint(checkpoint)
    if mm.family != "edit_matcher":
        raise ValueError(f"{checkpoint}: an edit_matcher checkpoint is needed, got {mm.family}")
    c = dict(mm.config)
    tc = full_config("edit_matcher_text", {k: c[k] for k in ("vocab", "length", "embed", "width", "vocabulary")})
    tm = make_manifest("edit_matcher_text", tc, task="edit")
    tm.config["attributes"] = dict(c.get("attributes", {}))
    ic = full_config("edit_matcher_image", {k: c[k] for k in ("size", "embed", "base", "cap")})
    folder = Path(folder)
    text = export_onnx(model.text.eval(), folder / "edit_matcher_text.onnx", _with_provenance(tm, mm))
    image = export_onnx(model.image.eval(), folder / "edit_matcher_image.onnx",
                        _with_provenance(make_manifest("edit_matcher_image", ic, task="edit"), mm))
    return text, image


def export_all(runs: str | Path, out: str | Path) -> list[Path]:
    """Export every stage found under ``runs`` (decoder/, encoder/, matcher/, mappers/<name>/)
    into ``out``; returns the files written."""
    runs, out = Path(runs), Path(out)
    written = [export_decoder(runs / "decoder" / "edit_generator.safetensors", out / "edit_decoder.onnx"),
               export_onnx(runs / "encoder" / "edit_encoder.safetensors", out / "edit_encoder.onnx")]
    written += export_matcher_towers(runs / "matcher" / "edit_matcher.safetensors", out)
    for name in D.EDIT_TARGETS:
        ckpt = runs / "mappers" / name / "edit_mapper.safetensors"
        if ckpt.is_file():
            written.append(export_onnx(ckpt, out / f"edit_mapper_{name}.onnx"))
    cond = runs / "mappers" / "conditional" / "edit_mapper.safetensors"
    if cond.is_file():
        written.append(export_onnx(cond, out / "edit_mapper_cond.onnx"))
    return written


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Export the text-editing chain to ONNX (SPEC S4).")
    parser.add_argument("--runs", default="runs/edit", help="folder with decoder/, encoder/, matcher/, mappers/")
    parser.add_argument("--out", required=True, help="folder for the ONNX files")
    args = parser.parse_args(argv)
    try:
        for p in export_all(args.runs, args.out):
            print(f"{p} ({p.stat().st_size / 1e6:.2f} MB)")
    except (ValueError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
