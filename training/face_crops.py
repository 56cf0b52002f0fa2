"""Aligned face crops for swap training from a user's photos:
``python -m training.face_crops PHOTOS OUT [--size 128]``.

``PHOTOS`` holds one sub-folder per person (``PHOTOS/ada/*.jpg``, searched recursively below the
person's folder); an image directly in ``PHOTOS`` is a person of its own (self-reconstruction
only). Each image's largest face is found (dlib by default, offline: the ``face`` extra), aligned
to the swapper's canonical ``size`` x ``size`` crop by the similarity transform of its five
landmarks, and written to ``OUT/<person>/<image stem>.png``; ``training.swap`` reads that folder
as ``data.real_folder``. Images without a face, or unreadable, are counted and skipped; nothing
in ``PHOTOS`` is changed. Crops already in ``OUT`` are kept (a stopped run continues).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class CropReport:
    """What :func:`make_crops` did: crops written, kept from before, images without a face,
    images with several faces (the largest was used) and unreadable files."""

    written: int = 0
    kept: int = 0
    no_face: list[str] = field(default_factory=list)
    several: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)


def _people(photos: Path) -> list[tuple[str, Path]]:
    """(person, image path) for every image under ``photos``."""
    from training.data import list_images

    found = []
    for path in list_images(photos):
        rel = path.relative_to(photos)
        person = rel.parts[0] if len(rel.parts) > 1 else path.stem
        found.append((person, path))
    return found


def make_crops(photos: str | Path, out: str | Path, size: int = 128, analyzer: Any = None,
               progress: bool = False) -> CropReport:
    """Write the aligned ``size`` crop of the largest face of every image under ``photos`` to
    ``out/<person>/<stem>.png`` (see the module docstring); returns a :class:`CropReport`."""
    import numpy as np
    from PIL import Image

    from pyfill.faces.align import align_face
    from pyfill.images import read_image

    photos, out = Path(photos), Path(out)
    if not photos.is_dir():
        raise FileNotFoundError(f"photo folder not found: {photos}")
    if out.resolve() == photos.resolve() or photos.resolve() in out.resolve().parents:
        raise ValueError(f"the output folder {out} must lie outside the photo folder {photos}")
    items = _people(photos)
    if not items:
        raise ValueError(f"no images under {photos}")
    if analyzer is None:
        from pyfill.faces import FaceAnalyzer

        analyzer = FaceAnalyzer.default()
    report = CropReport()
    if progress:
        from tqdm import tqdm

        items = tqdm(items, unit="image", desc="face crops")  # type: ignore[assignment]
    for person, path in items:
        dst = out / person / f"{path.stem}.png"
        if dst.is_file():
            report.kept += 1
            continue
        try:
            arr = read_image(path)
        except (ValueError, OSError):
            report.unreadable.append(str(path))
            continue
        if arr.dtype != np.uint8:
            arr = (arr >> 8).astype(np.uint8)
        rgb = np.repeat(arr[..., None], 3, axis=-1) if arr.ndim == 2 else np.ascontiguousarray(arr[..., :3])
        faces = analyzer.detect(rgb)
        if not faces:
            report.no_face.append(str(path))
            continue
        if len(faces) > 1:
            report.several.append(str(path))
        face = max(faces, key=lambda f: f.area)
        crop, _ = align_face(rgb, face.landmarks, size)
        dst.parent.mkdir(parents=True, exist_ok=True)
        tmp = dst.with_suffix(".tmp.png")
        Image.fromarray(crop).save(tmp)
        tmp.replace(dst)
        report.written += 1
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.face_crops", description=__doc__.split("\n\n")[0])
    parser.add_argument("photos", help="folder with one sub-folder of photos per person")
    parser.add_argument("out", help="output folder of aligned crops (data.real_folder of training.swap)")
    parser.add_argument("--size", type=int, default=128, help="crop size (the swapper's; default 128)")
    args = parser.parse_args(argv)
    try:
        report = make_crops(args.photos, args.out, args.size, progress=sys.stderr.isatty())
    except (FileNotFoundError, ValueError) as exc:
        print(f"face_crops: error: {exc}", file=sys.stderr)
        return 2
    for path in report.no_face:
        print(f"face_crops: note: no face found in {path}", file=sys.stderr)
    print(f"{report.written} crops written, {report.kept} kept from before -> {args.out}; "
          f"{len(report.no_face)} images without a face, {len(report.several)} with several (largest used), "
          f"{len(report.unreadable)} unreadable")
    return 0


if __name__ == "__main__":
    sys.exit(main())
