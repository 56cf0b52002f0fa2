"""Curate restoration training images (SPEC S3):
``python -m training.curate INPUT_DIR --classifier runs/quality/quality.safetensors -o manifest.json``.

Keeps the images that are at least ``--min-size`` pixels on both sides (500 by default) and that
the quality classifier scores at least ``--threshold`` (60: the "good" class) on the 0-100 scale;
writes a JSON manifest listing every kept and dropped file with its size, score and the reason it
was dropped (``unreadable``, ``too small``, ``quality``), logs the counts, and with ``--copy-to``
copies the kept files (folder structure kept) for ``data.folders`` of the restoration trainer.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from pyfill.models.restore import QualityNet, quality_class
from training.data import list_images, load_image_file
from training.quality import load_classifier, score_image

log = logging.getLogger("training.curate")


def curate(folder: str | os.PathLike[str], classifier: QualityNet, min_size: int = 500,
           threshold: float = 60.0, max_side: int = 512) -> dict[str, Any]:
    """Judge every image file under ``folder`` (recursive). Returns ``{"kept": [...], "dropped":
    [...], "counts": {...}, "settings": {...}}``; each entry has ``file`` (relative to ``folder``),
    and where known ``width``, ``height``, ``score`` (0-100) and ``class``; dropped entries add
    ``reason``. ``max_side``: the size images are shrunk to before scoring (the classifier's
    training size)."""
    if min_size < 1:
        raise ValueError(f"min_size must be >= 1, got {min_size}")
    if not 0.0 <= threshold <= 100.0:
        raise ValueError(f"threshold must be in [0, 100], got {threshold}")
    root = Path(folder)
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    for path in list_images(root):
        entry: dict[str, Any] = {"file": str(path.relative_to(root))}
        try:
            img = load_image_file(path)
        except ValueError as exc:
            dropped.append({**entry, "reason": f"unreadable: {exc}"})
            continue
        h, w = img.shape[:2]
        entry.update(width=w, height=h)
        if min(h, w) < min_size:
            dropped.append({**entry, "reason": f"too small: {w} x {h} < {min_size} x {min_size}"})
            continue
        score, _ = score_image(classifier, img, max_side)
        entry.update(score=round(score, 2), **{"class": quality_class(score)})
        if score < threshold:
            dropped.append({**entry, "reason": f"quality: {score:.1f} < {threshold:g} ({entry['class']})"})
        else:
            kept.append(entry)
    counts = {"total": len(kept) + len(dropped), "kept": len(kept), "dropped": len(dropped)}
    for kind in ("unreadable", "too small", "quality"):
        counts[f"dropped_{kind.replace(' ', '_')}"] = sum(d["reason"].startswith(kind) for d in dropped)
    return {"kept": kept, "dropped": dropped, "counts": counts,
            "settings": {"folder": str(root), "min_size": min_size, "threshold": threshold, "max_side": max_side}}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Keep large, good-quality images for restoration training.")
    parser.add_argument("folder", help="folder of candidate images (searched recursively)")
    parser.add_argument("--classifier", required=True, help="quality classifier checkpoint (.safetensors with .json)")
    parser.add_argument("-o", "--output", required=True, help="manifest JSON file to write")
    parser.add_argument("--min-size", type=int, default=500, help="minimum width and height in pixels (default 500)")
    parser.add_argument("--threshold", type=float, default=60.0, help="minimum quality score 0-100 (default 60)")
    parser.add_argument("--max-side", type=int, default=512, help="shrink to this before scoring (default 512)")
    parser.add_argument("--copy-to", help="copy the kept images into this folder")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    result = curate(args.folder, load_classifier(args.classifier), args.min_size, args.threshold, args.max_side)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    if args.copy_to:
        for entry in result["kept"]:
            target = Path(args.copy_to) / entry["file"]
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(Path(args.folder) / entry["file"], target)
    c = result["counts"]
    log.info("kept %d of %d images (dropped: %d unreadable, %d too small, %d below quality %g) -> %s",
             c["kept"], c["total"], c["dropped_unreadable"], c["dropped_too_small"], c["dropped_quality"],
             args.threshold, out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
