"""Real photographs from Debian's wallpaper and background packages, curated for training:
``python -m training.datasets -o DATA_DIR [--packages P ...] [--classifier quality.safetensors]``.

1. ``apt-get download`` fetches each package's ``.deb`` (nothing is installed) and
   ``dpkg-deb -x`` unpacks it into ``DATA_DIR/packages/<package>``;
2. every image under ``usr/share`` is judged: readable, at least ``min_size`` pixels on both
   sides, a *photograph* by :func:`photo_test` (abstract art and rendered graphics are dropped),
   rated at least ``threshold`` by the quality classifier when one is given, and not a copy of a
   held-out evaluation photo (:data:`HELD_OUT`, compared by :func:`thumbprint`);
3. the kept images are written, shrunk (area filter) to at most ``max_side`` pixels, as PNG to
   ``DATA_DIR/photos/<package>/``, with ``DATA_DIR/manifest.json`` listing for every candidate
   its package, version, path, size, photo statistics, score, licence and copyright (from the
   package's DEP-5 ``copyright`` file) and, for dropped ones, the reason.

Held-out evaluation photos never enter the set: scikit-image's ``chelsea`` and ``coffee`` (used by
``training/evaluate_*.py``), and the sample images of scikit-learn and Matplotlib, which are kept
for independent evaluation.
"""

from __future__ import annotations

import argparse
import fnmatch
import hashlib
import json
import logging
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from training.data import list_images, load_image_file, shrink

log = logging.getLogger("training.datasets")

#: Packages with real photographs among their wallpapers (Debian 12); others can be named.
DEFAULT_PACKAGES = ("mate-backgrounds", "lomiri-wallpapers", "lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04",
                    "ukui-wallpapers", "plasma-workspace-wallpapers", "gnome-backgrounds")
#: Wallpapers in those packages that are paintings, illustrations or 3D renders but pass the
#: simple :func:`photo_test` (judged by eye); ``fnmatch`` patterns on the path under ``usr/share``.
ARTWORK = ("*gnome/licorice-*", "*gnome/pixels-*", "*mate/desktop/*", "*mate/abstract/*", "*analogpattern_by_Peter_Nerlich.*",
           "*wallpapers/Autumn/*", "*wallpapers/Honeywave/*", "*wallpapers/Kay/*", "*wallpapers/Patak/*",
           "*wallpapers/SafeLanding/*", "*wallpapers/Shell/*", "*wallpapers/Volna/*", "*wallpapers/summer_1am/*",
           "*backgrounds/string.*", "*Infinite-Sea_by_Aury88.*")
#: scikit-image photos used for evaluation; they and near-copies of them are never kept.
HELD_OUT = ("chelsea", "coffee")


def apt_download(package: str, folder: str | os.PathLike[str]) -> Path:
    """Fetch ``package``'s .deb into ``folder`` with ``apt-get download`` (no install) and return
    its path; a .deb already there is reused. Raises RuntimeError when apt-get fails (unknown
    package, no network) and FileNotFoundError when apt-get is missing."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    existing = sorted(folder.glob(f"{package}_*.deb"))
    if existing:
        return existing[-1]
    if shutil.which("apt-get") is None:
        raise FileNotFoundError("apt-get not found: training.datasets needs a Debian-based system")
    proc = subprocess.run(["apt-get", "download", package], cwd=folder, stdin=subprocess.DEVNULL,
                          capture_output=True, text=True, timeout=900)
    found = sorted(folder.glob(f"{package}_*.deb"))
    if proc.returncode != 0 or not found:
        raise RuntimeError(f"apt-get download {package} failed: {proc.stderr.strip()[-400:]}")
    return found[-1]


def extract_deb(deb: str | os.PathLike[str], folder: str | os.PathLike[str]) -> Path:
    """Unpack a .deb's files into ``folder`` with ``dpkg-deb -x``; returns ``folder``."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    subprocess.run(["dpkg-deb", "-x", str(deb), str(folder)], check=True, capture_output=True, timeout=900)
    return folder


def deb_version(deb: str | os.PathLike[str]) -> str:
    """The version field of a .deb."""
    out = subprocess.run(["dpkg-deb", "-f", str(deb), "Version"], check=True, capture_output=True, text=True)
    return out.stdout.strip()


def parse_copyright(text: str) -> list[dict[str, Any]]:
    """A DEP-5 ``copyright`` file -> its ``Files`` stanzas in order, each ``{"files": [patterns],
    "copyright": str, "license": str}`` (licence short name: the first line of ``License``).
    A file in another format gives one stanza ``{"files": ["*"], "copyright": first lines,
    "license": "see copyright file"}``."""
    stanzas = []
    for block in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        key = None
        for line in block.splitlines():
            if line[:1] in (" ", "\t") and key:
                fields[key] += "\n" + line.strip()
            elif ":" in line:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                fields[key] = value.strip()
        if "files" in fields:
            stanzas.append({"files": fields["files"].split(),
                            "copyright": " ".join(fields.get("copyright", "").split()),
                            "license": fields.get("license", "").split("\n")[0].strip()})
    if not stanzas:
        head = " ".join(text.strip().splitlines()[:3])
        stanzas.append({"files": ["*"], "copyright": head, "license": "see copyright file"})
    return stanzas


def licence_of(path: str, stanzas: list[dict[str, Any]]) -> dict[str, str]:
    """The copyright and licence of an installed file: the last DEP-5 stanza whose pattern matches
    the end of ``path``, or whose file-name part (when it is not ``*``) matches the file's name
    (the patterns are relative to the source tree, the path to the install root), as in DEP-5
    where later stanzas win."""
    found = {"copyright": "", "license": ""}
    name = path.split("/")[-1]
    for stanza in stanzas:
        for pattern in stanza["files"]:
            parts = pattern.split("/")
            tail = "/".join(path.split("/")[-len(parts):])
            if pattern == "*" or fnmatch.fnmatch(tail, pattern) or (parts[-1] != "*" and fnmatch.fnmatch(name, parts[-1])):
                found = {"copyright": stanza["copyright"], "license": stanza["license"]}
    return found


def photo_statistics(image: np.ndarray) -> dict[str, float]:
    """Statistics that tell photographs from rendered graphics. ``texture``: median |Laplacian|
    of the luma x 255 on the image shrunk to 1024 pixels (photos have fine texture and noise
    nearly everywhere; gradients and flat fills give ~0). On the image shrunk to 256 pixels:
    ``flat``: share of pixels whose 3 x 3 neighbourhood is exactly constant at 8 bits;
    ``colours``: distinct colours at 5 bits per channel per 1000 pixels. ``image``: float
    (H, W, 3) in [0, 1]."""
    mid = shrink(image.astype(np.float32), 1024) * 255.0 @ np.array([0.299, 0.587, 0.114])
    lap = np.abs(4 * mid[1:-1, 1:-1] - mid[:-2, 1:-1] - mid[2:, 1:-1] - mid[1:-1, :-2] - mid[1:-1, 2:])
    texture = float(np.median(lap))
    small = np.rint(shrink(image.astype(np.float32), 256) * 255.0)
    windows = np.lib.stride_tricks.sliding_window_view(small, (3, 3), axis=(0, 1))
    flat = (windows.max(axis=(-1, -2)) == windows.min(axis=(-1, -2))).all(axis=-1)
    q = small.astype(np.int64) // 8
    colours = len(np.unique(q[..., 0] * 1024 + q[..., 1] * 32 + q[..., 2]))
    return {"texture": texture, "flat": float(flat.mean()),
            "colours": 1000.0 * colours / (small.shape[0] * small.shape[1])}


def photo_test(stats: dict[str, float], min_texture: float = 1.4, max_flat: float = 0.1,
               min_colours: float = 12.0) -> str | None:
    """None when :func:`photo_statistics` look like a photograph, else the reason it is not."""
    if stats["texture"] < min_texture:
        return f"graphic: texture {stats['texture']:.2f} < {min_texture:g}"
    if stats["flat"] > max_flat:
        return f"graphic: flat share {stats['flat']:.3f} > {max_flat:g}"
    if stats["colours"] < min_colours:
        return f"graphic: {stats['colours']:.1f} colours per 1000 pixels < {min_colours:g}"
    return None


def thumbprint(image: np.ndarray) -> np.ndarray:
    """A 32 x 32 zero-mean, unit-norm luma thumbnail (float64, flattened) for near-copy checks."""
    from PIL import Image

    luma = (image.astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)).astype(np.float32)
    t = np.asarray(Image.fromarray(luma).resize((32, 32), Image.Resampling.BOX), np.float64).ravel()
    t -= t.mean()
    return t / max(float(np.linalg.norm(t)), 1e-12)


def held_out_prints() -> list[np.ndarray]:
    """Thumbprints of :data:`HELD_OUT` and of scikit-learn's and Matplotlib's sample photos that
    are installed (each of them as it is and flipped)."""
    from training.data import package_image

    images = [package_image(name) for name in HELD_OUT]
    try:
        import matplotlib.cbook

        images.append(load_image_file(matplotlib.cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)))
    except ImportError:
        pass
    try:
        from sklearn.datasets import load_sample_images

        images += [x.astype(np.float32) / 255.0 for x in load_sample_images().images]
    except ImportError:
        pass
    return [thumbprint(x) for img in images for x in (img, img[:, ::-1])]


def curate_folder(folder: str | os.PathLike[str], classifier: Any = None, min_size: int = 500,
                  threshold: float = 60.0, similarity: float = 0.9,
                  max_side: int = 768, exclude: Sequence[str] = ARTWORK,
                  duplicate: float = 0.9) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Judge every image under ``folder`` -> (kept, dropped) entries with ``file`` (relative),
    ``width``, ``height``, ``photo`` statistics, ``score`` (when ``classifier`` is given) and for
    dropped ones ``reason``. ``similarity``: thumbprint correlation above which an image counts as
    a copy of a held-out photo; ``exclude``: path patterns of known artwork; ``duplicate``: the
    correlation above which two kept images are one picture at two sizes (the larger is kept).
    Kept entries carry ``image``: the photo shrunk to ``max_side``."""
    from training.quality import score_image

    prints = held_out_prints()
    kept: list[dict[str, Any]] = []
    dropped: list[dict[str, Any]] = []
    kept_prints: list[np.ndarray] = []
    for path in sorted(list_images(folder), key=lambda p: -p.stat().st_size):
        entry: dict[str, Any] = {"file": str(path.relative_to(folder))}
        if any(fnmatch.fnmatch(entry["file"], pattern) for pattern in exclude):
            dropped.append({**entry, "reason": "artwork: listed in the exclusions"})
            continue
        try:
            img = load_image_file(path)
        except ValueError as exc:
            dropped.append({**entry, "reason": f"unreadable: {exc}"})
            continue
        entry.update(width=img.shape[1], height=img.shape[0])
        if min(img.shape[:2]) < min_size:
            dropped.append({**entry, "reason": f"too small: {img.shape[1]} x {img.shape[0]}"})
            continue
        stats = photo_statistics(img)
        entry["photo"] = {k: round(v, 4) for k, v in stats.items()}
        reason = photo_test(stats)
        if reason is None and classifier is not None:
            entry["score"] = round(score_image(classifier, img)[0], 2)
            if entry["score"] < threshold:
                reason = f"quality: {entry['score']:.1f} < {threshold:g}"
        if reason is None:
            tp = thumbprint(img)
            best = max(float(tp @ p) for p in prints)
            if best > similarity:
                reason = f"held out: correlation {best:.3f} with an evaluation photo"
            elif kept_prints and max(float(tp @ p) for p in kept_prints) > duplicate:
                reason = "duplicate: the same picture is kept at a larger size"
            else:
                kept_prints.append(tp)
        if reason:
            dropped.append({**entry, "reason": reason})
        else:
            kept.append({**entry, "image": shrink(img, max_side)})
    return kept, dropped


def build(out: str | os.PathLike[str], packages: Sequence[str] = DEFAULT_PACKAGES, classifier: Any = None,
          min_size: int = 500, threshold: float = 60.0, max_side: int = 768) -> dict[str, Any]:
    """Fetch, unpack and curate ``packages`` into ``out`` (see the module docstring); returns the
    manifest (also written to ``out/manifest.json``)."""
    out = Path(out)
    kept_all: list[dict[str, Any]] = []
    dropped_all: list[dict[str, Any]] = []
    sources = []
    for package in packages:
        deb = apt_download(package, out / "debs")
        root = out / "packages" / package
        if root.exists():
            shutil.rmtree(root)
        extract_deb(deb, root)
        copyright_files = sorted((root / "usr/share/doc").glob("*/copyright"))
        stanzas = parse_copyright(copyright_files[0].read_text(errors="replace")) if copyright_files else []
        version = deb_version(deb)
        sources.append({"package": package, "version": version, "deb": deb.name,
                        "sha256": hashlib.sha256(deb.read_bytes()).hexdigest()})
        share = root / "usr/share"
        if not share.is_dir():
            continue
        kept, dropped = curate_folder(share, classifier, min_size, threshold, max_side=max_side)
        for entry in kept:
            img = entry.pop("image")
            name = entry["file"].replace("/", "_").rsplit(".", 1)[0] + ".png"
            target = out / "photos" / package / name
            target.parent.mkdir(parents=True, exist_ok=True)
            from PIL import Image

            Image.fromarray(np.rint(img * 255.0).astype(np.uint8)).save(target)
            entry["saved"] = str(target.relative_to(out))
        for entry in kept + dropped:
            entry.update(package=package, version=version, **licence_of(entry["file"], stanzas))
        kept_all += kept
        dropped_all += dropped
        log.info("%s %s: kept %d of %d images", package, version, len(kept), len(kept) + len(dropped))
    manifest = {"sources": sources, "kept": kept_all, "dropped": dropped_all,
                "counts": {"kept": len(kept_all), "dropped": len(dropped_all)},
                "settings": {"min_size": min_size, "threshold": threshold if classifier is not None else None,
                             "max_side": max_side, "held_out": list(HELD_OUT)}}
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2))
    return manifest


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Curate real photographs from Debian wallpaper packages.")
    parser.add_argument("-o", "--out", required=True, help="folder for the .debs, photos/ and manifest.json")
    parser.add_argument("--packages", nargs="+", default=list(DEFAULT_PACKAGES), help="Debian packages to fetch")
    parser.add_argument("--classifier", help="quality classifier checkpoint (.safetensors with .json)")
    parser.add_argument("--threshold", type=float, default=60.0, help="minimum quality score 0-100 (default 60)")
    parser.add_argument("--min-size", type=int, default=500, help="minimum width and height (default 500)")
    parser.add_argument("--max-side", type=int, default=768, help="longer side of the saved photos (default 768)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    classifier = None
    if args.classifier:
        from training.quality import load_classifier

        classifier = load_classifier(args.classifier)
    try:
        manifest = build(args.out, args.packages, classifier, args.min_size, args.threshold, args.max_side)
    except (RuntimeError, FileNotFoundError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    log.info("kept %d photographs -> %s", manifest["counts"]["kept"], Path(args.out) / "photos")
    return 0


if __name__ == "__main__":
    sys.exit(main())
