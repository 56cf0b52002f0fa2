"""Evaluate the editing chain on held-out procedural faces (SPEC S4):
``python -m training.evaluate_edit --runs runs/edit --out DIR [--count 96]``.

For every per-text editing model (and the conditional model given the same text), on ``count``
held-out faces (seed stream 1, never trained on) encoded to w = E(x), at strengths alpha:

- ``target``: the change of the target attribute toward the text, regressor(decode(w + alpha dw))
  minus regressor(decode(w)), signed so that positive is toward the text (attributes in [0, 1]);
- ``others``: the mean absolute change of the six other attributes;
- ``id_input`` / ``id_recon``: identity kept, the cosine of the face_id embeddings of the edited
  face and the input (resp. the reconstruction decode(w)).

The baseline "global direction" adds alpha * d with d the mean latent of training faces that have
the attribute (the caption thresholds of :data:`training.edit_data.PHRASES`) minus the mean of
those that do not, rescaled to the mapper's mean ||dw||, so both move the latent equally far.
Also reports the reconstruction (PSNR, identity cosine) and writes picture grids and
``edit_eval.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from pyfill.export import load_checkpoint
from training import edit_data as D
from training import harness as H
from training.edit_encoder import identity_network, load_generator
from training.matcher import to_unit

ALPHAS = (0.0, 0.5, 1.0, 1.5)


def _load(path: Path, family: str) -> Any:
    module, manifest = load_checkpoint(path)
    if manifest.family != family:
        raise ValueError(f"{path}: a {family} checkpoint is needed, got {manifest.family}")
    return module.eval()


def _thresholds(attribute: str, direction: float) -> tuple[tuple[float, float], tuple[float, float]]:
    """((low, high) of faces with the attribute as the text states it, (low, high) of faces without)."""
    spans = [(lo, hi) for a, lo, hi, _ in D.PHRASES if a == attribute]
    hi_span = max(spans, key=lambda s: s[1])
    lo_span = min(spans, key=lambda s: s[0])
    if attribute == "hair_redness":
        lo_span = (0.0, 0.3)
    return (hi_span, lo_span) if direction > 0 else (lo_span, hi_span)


@torch.no_grad()
def evaluate(runs: str | Path, out: str | Path, count: int = 96, train_count: int = 1500,
             cache: str | Path | None = None, data_count: int = 8000) -> dict[str, Any]:
    """Run the evaluation (see the module's notes); returns and writes the numbers."""
    runs, out = Path(runs), Path(out)
    out.mkdir(parents=True, exist_ok=True)
    decoder = load_generator(runs / "decoder" / "edit_generator.safetensors").decoder
    encoder = _load(runs / "encoder" / "edit_encoder.safetensors", "edit_encoder")
    regressor = _load(runs / "regressor" / "edit_attributes.safetensors", "edit_attributes")
    ident = identity_network("face_id")
    size = decoder.size
    held = D.make_faces(1, max(256, count), size, cache)
    x = to_unit(held.images[:count])
    train = D.make_faces(0, data_count, size, cache)
    train_count = min(train_count, data_count)
    w = encoder(x)
    recon = decoder(w)
    e_in, e_rec = ident(x), ident(recon)
    a_in, a_rec = regressor(x), regressor(recon)
    result: dict[str, Any] = {
        "faces": count, "alphas": list(ALPHAS),
        "reconstruction": {"psnr": float(H.psnr(recon, x).mean()), "id_cos": float((e_in * e_rec).sum(1).mean()),
                           "attr_mae_vs_truth": float((a_rec.numpy() - held.attributes[:count]).__abs__().mean()),
                           "regressor_mae_on_inputs": float((a_in.numpy() - held.attributes[:count]).__abs__().mean())},
        "targets": {}}
    w_train = torch.cat([encoder(to_unit(train.images[i:min(i + 250, train_count)]))
                         for i in range(0, train_count, 250)])
    attrs_train = train.attributes[:train_count]
    cond_path = runs / "mappers" / "conditional" / "edit_mapper.safetensors"
    cond = _load(cond_path, "edit_mapper") if cond_path.is_file() else None
    matcher = None
    if cond is not None:
        from pyfill.models.edit_matcher import load_matcher

        matcher = load_matcher(runs / "matcher" / "edit_matcher.safetensors")
    grids: dict[str, list[list[np.ndarray]]] = {}
    for name, (text, attribute, direction) in D.EDIT_TARGETS.items():
        path = runs / "mappers" / name / "edit_mapper.safetensors"
        if not path.is_file():
            continue
        mapper = _load(path, "edit_mapper")
        k = D.ATTRIBUTES.index(attribute)
        others = [i for i in range(len(D.ATTRIBUTES)) if i != k]
        dws = {"mapper": mapper(w)}
        (hl, hh), (ll, lh) = _thresholds(attribute, direction)
        col = attrs_train[:, k]
        with_a = torch.from_numpy((col >= hl) & (col <= hh))
        without = torch.from_numpy((col >= ll) & (col <= lh))
        d = w_train[with_a].mean(0) - w_train[without].mean(0)
        scale = dws["mapper"].flatten(1).norm(dim=1).mean() / d.flatten().norm().clamp(min=1e-8)
        dws["global direction"] = (d * scale).expand_as(w)
        if cond is not None and matcher is not None:
            t = matcher.encode_text(matcher.tokenize([text])).expand(len(w), -1)
            dws["conditional"] = cond(w, t)
        rows: dict[str, Any] = {}
        for method, dw in dws.items():
            per_alpha = []
            for alpha in ALPHAS:
                y = decoder(w + alpha * dw)
                a = regressor(y)
                e = ident(y)
                change = (a - a_rec).numpy()
                per_alpha.append({
                    "alpha": alpha, "target": float(direction * change[:, k].mean()),
                    "others": float(np.abs(change[:, others]).mean()),
                    "id_input": float((e * e_in).sum(1).mean()), "id_recon": float((e * e_rec).sum(1).mean()),
                    "dw_norm": float((alpha * dw).flatten(1).norm(dim=1).mean())})
                if method == "mapper":
                    grids.setdefault(name, []).append([im for im in y[:6].permute(0, 2, 3, 1).numpy()])
            rows[method] = per_alpha
        result["targets"][name] = {"text": text, "attribute": attribute, "direction": direction, **rows}
    for name, cols in grids.items():
        first = [list(x[:6].permute(0, 2, 3, 1).numpy())]
        H.save_image_grid([list(r) for r in zip(*(first + cols))], out / f"edit_{name}.png")
    (out / "edit_eval.json").write_text(json.dumps(result, indent=1))
    return result


def real_photo(onnx_dir: str | Path, out: str | Path, texts: Sequence[str] = ("a smiling face", "a person with glasses",
                                                                          "an old person", "a person with blond hair"),
               strength: float = 1.0) -> Path:
    """scikit-image's astronaut photo edited with the exported chain in ``onnx_dir`` (faces found by
    dlib, aligned, edited, pasted back): a row of (photo, reconstruction at strength 0, each text),
    cropped around the face, saved as ``out/edit_astronaut.png``."""
    from skimage import data

    from pyfill.tasks.edit import Editor, TARGETS

    onnx_dir = Path(onnx_dir)
    ed = Editor(encoder=onnx_dir / "edit_encoder.onnx", decoder=onnx_dir / "edit_decoder.onnx",
                text_encoder=onnx_dir / "edit_matcher_text.onnx", conditional=onnx_dir / "edit_mapper_cond.onnx",
                mappers={t: onnx_dir / f"{n}.onnx" for n, t in TARGETS.items() if (onnx_dir / f"{n}.onnx").is_file()})
    photo = data.astronaut()
    images = [photo, ed.edit(photo, texts[0], 0.0).image] + [ed.edit(photo, t, strength).image for t in texts]
    crop = [im[20:230, 120:330].astype(np.float32) / 255.0 for im in images]
    Path(out).mkdir(parents=True, exist_ok=True)
    return H.save_image_grid([crop], Path(out) / "edit_astronaut.png")


def table(result: dict[str, Any]) -> str:
    """A Markdown table of the numbers at alpha = 1 (and the target change at every alpha)."""
    lines = ["| text | method | target change at alpha 0.5 / 1 / 1.5 | other attributes (mean abs change, alpha 1) "
             "| identity cos to input (alpha 1) | identity cos to reconstruction (alpha 1) |",
             "| --- | --- | --- | --- | --- | --- |"]
    for name, r in result["targets"].items():
        for method in ("mapper", "conditional", "global direction"):
            if method not in r:
                continue
            rows = r[method]
            at1 = next(p for p in rows if p["alpha"] == 1.0)
            growth = " / ".join(f"{p['target']:+.3f}" for p in rows if p["alpha"] > 0)
            lines.append(f"| {r['text']} | {method} | {growth} | {at1['others']:.3f} | {at1['id_input']:.3f} | "
                         f"{at1['id_recon']:.3f} |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate the text-editing chain on held-out faces (SPEC S4).")
    parser.add_argument("--runs", default="runs/edit")
    parser.add_argument("--out", required=True)
    parser.add_argument("--count", type=int, default=96)
    parser.add_argument("--cache", default=None, help="the data cache folder of the training runs")
    parser.add_argument("--data-count", type=int, default=8000, help="faces in the training runs' data set")
    parser.add_argument("--onnx", help="a folder with the exported chain: also edit scikit-image's astronaut photo")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    result = evaluate(args.runs, args.out, args.count, cache=args.cache, data_count=args.data_count)
    print(json.dumps(result["reconstruction"]))
    print(table(result))
    if args.onnx:
        print(real_photo(args.onnx, args.out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
