"""Evaluate a face swapper (SPEC S5): ``python -m training.evaluate_swap [--swap M] [--face-id M]``.

Held-out procedural triplets (a seed stream no training or validation triplet uses), run through
the exported ONNX files:
  * PSNR and SSIM of O = G(F, E(S)) against the true target T, beside doing nothing (F vs T);
  * identity: cosine of E(O) with E(S) and with E(F) (E: the face_id encoder);
  * pose error: O's yaw and pitch estimated by analysis by synthesis (the renders of S's identity
    under F's other attributes on a yaw x pitch grid; the closest one in L1 gives the estimate)
    against F's true yaw and pitch; the same estimator on T and on F gives its floor.
Real photos (scikit-image's ``astronaut()``, Matplotlib's Grace Hopper sample as a held-out
second person; mirrored, cropped and scaled variants): dlib's embedding distance from O to S
against the distance from F to S, with a picture.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from pyfill.faces.align import template
from training import faces

HELD_OUT_SEED = 2_000_000_011


def _session(path: str) -> Any:
    import onnxruntime as ort

    from pyfill.store import resolve_model

    return ort.InferenceSession(str(resolve_model(path)), providers=["CPUExecutionProvider"])


def _chw(images: Sequence[np.ndarray]) -> np.ndarray:
    return np.stack(images).astype(np.float32).transpose(0, 3, 1, 2) / 255.0


def _hwc(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x.transpose(0, 2, 3, 1) * 255.0), 0, 255).astype(np.uint8)


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10.0 * np.log10(255.0**2 / mse)


def ssim(a: np.ndarray, b: np.ndarray) -> float:
    from skimage.metrics import structural_similarity

    return float(structural_similarity(a, b, channel_axis=-1, data_range=255))


def estimate_pose(image: np.ndarray, identity: faces.Identity, attrs: faces.Attributes, render_size: int,
                  size: int) -> tuple[float, float]:
    """(yaw, pitch) of the render of ``identity`` under ``attrs`` with yaw and pitch on a grid
    that is closest in L1 to ``image`` (an aligned ``size`` crop)."""
    best, arg = np.inf, (0.0, 0.0)
    for yaw in np.arange(-28.0, 28.1, 4.0):
        for pitch in np.arange(-15.0, 15.1, 7.5):
            r = faces.render(identity, dataclasses.replace(attrs, yaw=float(yaw), pitch=float(pitch)), render_size,
                             template(size), size).image
            d = float(np.abs(r.astype(np.int16) - image.astype(np.int16)).mean())
            if d < best:
                best, arg = d, (float(yaw), float(pitch))
    return arg


def procedural(swap_path: str, face_id_path: str, count: int, pose_count: int, render_size: int = 160,
               size: int = 128) -> tuple[dict[str, float], list[list[np.ndarray]]]:
    swapper, encoder = _session(swap_path), _session(face_id_path)
    t_name, e_name = [i.name for i in swapper.get_inputs()]
    enc_in = encoder.get_inputs()[0].name

    def embed(crops: np.ndarray) -> np.ndarray:
        return encoder.run(None, {enc_in: crops[:, :, 8:120, 8:120]})[0]

    rows, metrics = [], {k: [] for k in ("psnr_ot", "psnr_ft", "ssim_ot", "ssim_ft", "cos_os", "cos_of", "cos_fs",
                                          "cos_ts", "yaw_o", "pitch_o", "yaw_t", "pitch_t", "yaw_s", "pitch_s")}
    for k in range(count):
        t = faces.triplet(np.random.default_rng((HELD_OUT_SEED, k)), render_size, template(size), size)
        s_img, f_img, t_img = t.source.image, t.first.image, t.target.image
        x = _chw([s_img, f_img, t_img])
        e = embed(x)
        o = swapper.run(None, {t_name: x[1:2], e_name: e[0:1]})[0]
        o_img = _hwc(o)[0]
        e_o = embed(o)[0]
        metrics["psnr_ot"].append(psnr(o_img, t_img))
        metrics["psnr_ft"].append(psnr(f_img, t_img))
        metrics["ssim_ot"].append(ssim(o_img, t_img))
        metrics["ssim_ft"].append(ssim(f_img, t_img))
        metrics["cos_os"].append(float(e_o @ e[0]))
        metrics["cos_of"].append(float(e_o @ e[1]))
        metrics["cos_fs"].append(float(e[1] @ e[0]))
        metrics["cos_ts"].append(float(e[2] @ e[0]))
        if k < pose_count:
            truth = t.first.attributes
            for key, img in (("o", o_img), ("t", t_img), ("s", s_img)):
                yaw, pitch = estimate_pose(img, t.source.identity, truth, render_size, size)
                metrics[f"yaw_{key}"].append(abs(yaw - truth.yaw))
                metrics[f"pitch_{key}"].append(abs(pitch - truth.pitch))
        if k < 6:
            rows.append([s_img, f_img, o_img, t_img])
    out = {k: float(np.mean(v)) for k, v in metrics.items() if v}
    out["count"], out["pose_count"] = count, min(pose_count, count)
    out["identity_closer_to_source"] = float(np.mean(np.array(metrics["cos_os"]) > np.array(metrics["cos_of"])))
    return out, rows


def photo_pairs() -> list[tuple[str, np.ndarray, str, np.ndarray]]:
    """(source name, source, target name, target) pairs of real photos and their variants."""
    import cv2
    from matplotlib import cbook
    from PIL import Image
    from skimage import data

    astronaut = data.astronaut()
    hopper = np.asarray(Image.open(cbook.get_sample_data("grace_hopper.jpg", asfileobj=False)).convert("RGB"))

    def variants(name: str, img: np.ndarray) -> list[tuple[str, np.ndarray]]:
        h, w = img.shape[:2]
        return [(name, img), (f"{name} mirrored", np.ascontiguousarray(img[:, ::-1])),
                (f"{name} cropped", np.ascontiguousarray(img[h // 10 : h - h // 5, w // 8 : w - w // 8])),
                (f"{name} at 75 %", cv2.resize(img, (w * 3 // 4, h * 3 // 4), interpolation=cv2.INTER_AREA))]

    pairs = [("astronaut", astronaut, n, v) for n, v in variants("Hopper", hopper)]
    pairs += [("Hopper", hopper, n, v) for n, v in variants("astronaut", astronaut)]
    return pairs


def photos(swap_model: str, face_id: str) -> tuple[list[dict[str, Any]], list[list[np.ndarray]]]:
    import warnings

    from pyfill.faces import FaceAnalyzer
    from pyfill.tasks.swap import FaceWarning, Swapper

    analyzer = FaceAnalyzer.default()
    results, rows = [], []
    swappers: dict[str, Swapper] = {}
    for s_name, s_img, f_name, f_img in photo_pairs():
        if s_name not in swappers:
            swappers[s_name] = Swapper(s_img, model=swap_model, embedder=face_id, analyzer=analyzer)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FaceWarning)
            r = swappers[s_name].swap_image(f_img)
        e_s = analyzer.embed(s_img, max(analyzer.detect(s_img), key=lambda f: f.area))
        f_face = max(analyzer.detect(f_img), key=lambda f: f.area)
        e_f = analyzer.embed(f_img, f_face)
        o_faces = analyzer.detect(r.image)
        entry = {"source": s_name, "target": f_name, "faces_swapped": r.faces_swapped,
                 "d_fs": analyzer.distance(e_f, e_s)}
        if o_faces:
            e_o = analyzer.embed(r.image, max(o_faces, key=lambda f: f.area))
            entry.update(d_os=analyzer.distance(e_o, e_s), d_of=analyzer.distance(e_o, e_f))
        results.append(entry)
        if f_name in ("Hopper", "astronaut", "Hopper mirrored", "astronaut mirrored"):
            rows.append([_face_square(s_img, analyzer), _face_square(f_img, analyzer, f_face),
                         _face_square(r.image, analyzer, f_face)])
    return results, rows


def _face_square(img: np.ndarray, analyzer: Any, face: Any = None, size: int = 192) -> np.ndarray:
    """A square crop around a face (the largest detected, or ``face``), resized to ``size``."""
    import cv2

    face = face or max(analyzer.detect(img), key=lambda f: f.area)
    x0, y0, x1, y1 = face.box
    cx, cy, half = (x0 + x1) / 2, (y0 + y1) / 2, 0.9 * max(x1 - x0, y1 - y0)
    m = np.array([[size / (2 * half), 0, size / 2 - cx * size / (2 * half)],
                  [0, size / (2 * half), size / 2 - cy * size / (2 * half)]])
    return cv2.warpAffine(img, m, (size, size), flags=cv2.INTER_AREA, borderMode=cv2.BORDER_CONSTANT)


def save_rows(rows: list[list[np.ndarray]], path: Path) -> None:
    from training.harness import save_image_grid

    save_image_grid([[r.astype(np.float32) / 255.0 for r in row] for row in rows], path)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Evaluate a face swapper (SPEC S5).")
    parser.add_argument("--swap", default="swap", help="swapper ONNX (default: the shipped 'swap')")
    parser.add_argument("--face-id", default="face_id", help="identity encoder ONNX (default: the shipped 'face_id')")
    parser.add_argument("--count", type=int, default=200, help="held-out procedural triplets")
    parser.add_argument("--pose-count", type=int, default=20, help="triplets whose pose is estimated")
    parser.add_argument("--images", default="docs/images", help="folder for the pictures")
    parser.add_argument("--json", help="write the numbers here")
    args = parser.parse_args(argv)
    images = Path(args.images)
    images.mkdir(parents=True, exist_ok=True)
    proc, proc_rows = procedural(args.swap, args.face_id, args.count, args.pose_count)
    save_rows(proc_rows, images / "swap_triplets.png")
    real, real_rows = photos(args.swap, args.face_id)
    save_rows(real_rows, images / "swap_photos.png")
    report = {"procedural": proc, "photos": real}
    text = json.dumps(report, indent=2)
    if args.json:
        Path(args.json).write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
