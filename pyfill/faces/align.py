"""Alignment of faces to canonical crops by a similarity transform (rotation, uniform scale,
translation) fitted to five landmarks, and the way back.

Landmarks are (5, 2) float arrays of ``(x, y)`` pixel coordinates with pixel centres at integer
coordinates (OpenCV's convention), ordered: viewer's left eye centre, right eye centre, nose
tip, left mouth corner, right mouth corner.

The canonical crops follow the conventions face models are trained with: ``ARCFACE_112`` is the
112 x 112 five-point template of ArcFace-style embedders; ``ARCFACE_128`` is the same face
centred in a 128 x 128 crop (the template shifted by 8 pixels), the crop FaceFusion-style
swappers take.
"""

from __future__ import annotations

import numpy as np

from pyfill._core import require

#: ArcFace's five-point template for a 112 x 112 crop, (x, y) pixels.
ARCFACE_112 = np.array(
    [[38.2946, 51.6963], [73.5318, 51.5014], [56.0252, 71.7366], [41.5493, 92.3655], [70.7299, 92.2041]]
)
#: The same template in a 128 x 128 crop (ArcFace's, shifted by 8 pixels on both axes).
ARCFACE_128 = ARCFACE_112 + 8.0


def template(size: int) -> np.ndarray:
    """The five-point template for a ``size`` x ``size`` crop: :data:`ARCFACE_112` for 112,
    otherwise :data:`ARCFACE_128` scaled by ``size / 128``."""
    if size < 16:
        raise ValueError(f"crop size must be >= 16, got {size}")
    return ARCFACE_112.copy() if size == 112 else ARCFACE_128 * (size / 128.0)


def check_landmarks(points: np.ndarray, name: str = "landmarks") -> np.ndarray:
    """``points`` as a float64 (N, 2) array with N >= 2 and finite values."""
    pts = np.asarray(points, dtype=np.float64)
    if pts.ndim != 2 or pts.shape[1] != 2 or len(pts) < 2:
        raise ValueError(f"{name} must be an (N, 2) array with N >= 2, got shape {pts.shape}")
    if not np.isfinite(pts).all():
        raise ValueError(f"{name} contain NaN or infinite values")
    return pts


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """The least-squares similarity (Umeyama 1991, no reflection) mapping ``src`` onto ``dst``
    ((N, 2) each); returns the 2 x 3 matrix ``M`` with ``dst ~ M[:, :2] @ src + M[:, 2]``."""
    src, dst = check_landmarks(src, "src"), check_landmarks(dst, "dst")
    if src.shape != dst.shape:
        raise ValueError(f"src and dst must have the same shape, got {src.shape} and {dst.shape}")
    mu_s, mu_d = src.mean(0), dst.mean(0)
    s, d = src - mu_s, dst - mu_d
    var_s = (s**2).sum() / len(src)
    if var_s <= 1e-12:
        raise ValueError("the source landmarks coincide: no transform is defined")
    cov = d.T @ s / len(src)
    u, sig, vt = np.linalg.svd(cov)
    sign = np.ones(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        sign[-1] = -1.0
    rot = u @ np.diag(sign) @ vt
    scale = (sig * sign).sum() / var_s
    m = np.zeros((2, 3))
    m[:, :2] = scale * rot
    m[:, 2] = mu_d - scale * rot @ mu_s
    return m


def invert_affine(m: np.ndarray) -> np.ndarray:
    """The inverse of a 2 x 3 affine matrix."""
    m = np.asarray(m, dtype=np.float64)
    if m.shape != (2, 3):
        raise ValueError(f"an affine matrix is 2 x 3, got {m.shape}")
    a = np.linalg.inv(m[:, :2])
    return np.column_stack([a, -a @ m[:, 2]])


def apply_affine(m: np.ndarray, points: np.ndarray) -> np.ndarray:
    """``points`` (N, 2) mapped by the 2 x 3 matrix ``m``."""
    pts = check_landmarks(points, "points") if len(np.asarray(points)) > 1 else np.asarray(points, np.float64)
    return pts @ np.asarray(m)[:, :2].T + np.asarray(m)[:, 2]


def alignment_matrix(landmarks: np.ndarray, size: int) -> np.ndarray:
    """The 2 x 3 similarity taking an image's five ``landmarks`` onto :func:`template` (size)."""
    pts = check_landmarks(landmarks)
    if len(pts) != 5:
        raise ValueError(f"alignment needs five landmarks, got {len(pts)}")
    return similarity_transform(pts, template(size))


def align_face(image: np.ndarray, landmarks: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Warp the face with these five ``landmarks`` in ``image`` (H, W, C) to a ``size`` x
    ``size`` canonical crop (bilinear, borders replicated). Returns (crop, the 2 x 3 matrix
    from image to crop coordinates)."""
    cv2 = require("cv2", "face")

    m = alignment_matrix(landmarks, size)
    crop = cv2.warpAffine(image, m, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
    return crop, m
