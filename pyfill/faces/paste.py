"""Paste-back of a swapped, aligned face crop into the full image.

The crop's face mask is an ellipse fitted around the template landmarks (brows to chin, cheek to
cheek), feathered by a Gaussian blur and kept clear of the crop's border; it and the crop are
warped back by the inverse of the alignment similarity. Colours of the swapped face can be
matched (per-channel mean and standard deviation inside the mask) to the face it replaces.
Only pixels where the warped mask is non-zero are written: every other pixel of the image
stays exactly as it was.
"""

from __future__ import annotations

import numpy as np

from pyfill._core import require
from pyfill.faces.align import invert_affine, template


def face_mask(size: int, feather: float = 0.08) -> np.ndarray:
    """The feathered face mask (size, size) float32 in [0, 1] of an aligned crop.

    An ellipse around the template's five landmarks: centred between eyes and mouth, reaching
    past the eyes sideways and from the brows to the chin; blurred with a Gaussian of sigma
    ``feather * size``; zero where the blur's tail is below 1/512 and on the crop's border.
    """
    cv2 = require("cv2", "face")

    if not 0.0 <= feather <= 0.5:
        raise ValueError(f"feather must be in [0, 0.5], got {feather}")
    pts = template(size)
    eye_dist = float(np.linalg.norm(pts[1] - pts[0]))
    centre = pts.mean(axis=0) + np.array([0.0, -0.1 * eye_dist])
    axes = (1.05 * eye_dist, 1.45 * eye_dist)
    mask = np.zeros((size, size), np.float32)
    cv2.ellipse(mask, (int(round(centre[0])), int(round(centre[1]))), (int(round(axes[0])), int(round(axes[1]))),
                0.0, 0.0, 360.0, 1.0, -1, cv2.LINE_AA)
    sigma = feather * size
    if sigma > 0:
        mask = cv2.GaussianBlur(mask, (0, 0), sigma)
    mask[mask < 1.0 / 512.0] = 0.0  # blur tails that would not change a pixel
    border = max(2, int(round(size * 0.02)))
    mask[:border], mask[-border:], mask[:, :border], mask[:, -border:] = 0.0, 0.0, 0.0, 0.0
    return mask


def match_colours(swapped: np.ndarray, original: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """``swapped`` (H, W, 3) float with each channel's mean and standard deviation inside
    ``mask`` (H, W weights) moved to ``original``'s there."""
    w = mask.astype(np.float64)[..., None]
    total = float(w.sum())
    if total < 1e-6:
        return swapped
    out = swapped.astype(np.float64)
    ref = original.astype(np.float64)
    mu_s, mu_r = (out * w).sum((0, 1)) / total, (ref * w).sum((0, 1)) / total
    sd_s = np.sqrt((((out - mu_s) ** 2) * w).sum((0, 1)) / total)
    sd_r = np.sqrt((((ref - mu_r) ** 2) * w).sum((0, 1)) / total)
    return ((out - mu_s) * (sd_r / np.maximum(sd_s, 1e-6)) + mu_r).astype(np.float32)


def paste_back(image: np.ndarray, crop: np.ndarray, matrix: np.ndarray, mask: np.ndarray | None = None,
               colour_match: bool = False, original_crop: np.ndarray | None = None) -> np.ndarray:
    """Paste an aligned ``crop`` (s, s, 3) uint8 back into ``image`` (H, W, 3) uint8.

    ``matrix``: the 2 x 3 similarity from image to crop coordinates (from
    :func:`pyfill.faces.align.align`); ``mask``: the crop's (s, s) blend weights in [0, 1]
    (default :func:`face_mask`); ``colour_match``: match the crop's colours inside the mask to
    ``original_crop`` (the aligned crop of the face being replaced) first. Returns a new image;
    pixels where the warped mask is zero are exactly those of ``image``.
    """
    cv2 = require("cv2", "face")

    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"image must be uint8 (H, W, 3), got {image.dtype} {image.shape}")
    s = crop.shape[0]
    if crop.dtype != np.uint8 or crop.shape != (s, s, 3):
        raise ValueError(f"crop must be a square uint8 (s, s, 3) array, got {crop.dtype} {crop.shape}")
    mask = face_mask(s) if mask is None else np.asarray(mask, np.float32)
    if mask.shape != (s, s):
        raise ValueError(f"mask must be ({s}, {s}), got {mask.shape}")
    face = crop.astype(np.float32)
    if colour_match:
        if original_crop is None or original_crop.shape != crop.shape:
            raise ValueError("colour_match needs original_crop, the aligned crop of the replaced face")
        face = match_colours(face, original_crop.astype(np.float32), mask)

    h, w = image.shape[:2]
    back = invert_affine(matrix)
    corners = np.array([[0, 0], [s - 1, 0], [0, s - 1], [s - 1, s - 1]], np.float64) @ back[:, :2].T + back[:, 2]
    x0, y0 = (int(np.floor(v)) - 1 for v in corners.min(0))
    x1, y1 = (int(np.ceil(v)) + 2 for v in corners.max(0))
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    out = image.copy()
    if x0 >= x1 or y0 >= y1:
        return out
    # the image -> crop map restricted to the region [x0, x1) x [y0, y1)
    m = np.asarray(matrix, np.float64).copy()
    m[:, 2] += m[:, :2] @ np.array([x0, y0], np.float64)
    size = (x1 - x0, y1 - y0)
    flags = cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(face, m, size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    weight = cv2.warpAffine(mask, m, size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    region = out[y0:y1, x0:x1]
    inside = weight > 0
    wgt = weight[inside][:, None]
    blended = region[inside].astype(np.float32) * (1.0 - wgt) + warped[inside] * wgt
    region[inside] = np.clip(np.rint(blended), 0, 255).astype(np.uint8)
    return out
