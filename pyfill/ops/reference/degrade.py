"""NumPy references of the degradation ops (pyfill.ops.degrade), written from their definitions.

All functions take one image (H, W, C) as float64 in grey levels (0..255) and return float64
before saturation/rounding, except where stated; the tests round and compare.
"""

from __future__ import annotations

import math

import numpy as np

_M32 = np.uint64(0xFFFFFFFF)


def correlate2d(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Correlation of each channel with a (K, K) kernel, reflect-101 borders (NumPy "reflect")."""
    r = kernel.shape[0] // 2
    pad = np.pad(img, ((r, r), (r, r), (0, 0)), mode="reflect")
    h, w = img.shape[:2]
    out = np.zeros(img.shape, dtype=np.float64)
    for dy in range(kernel.shape[0]):
        for dx in range(kernel.shape[1]):
            out += kernel[dy, dx] * pad[dy : dy + h, dx : dx + w]
    return out


def _axis_weights(src: int, dst: int, interp: str, area_down: bool) -> np.ndarray:
    """Dense (dst, src) resampling matrix of one axis with OpenCV's coordinate conventions."""
    scale = src / dst
    m = np.zeros((dst, src))
    for d in range(dst):
        if interp == "nearest":
            m[d, min(int(math.floor(d * scale)), src - 1)] = 1.0
        elif interp == "area" and area_down:
            lo, hi = d * scale, min((d + 1) * scale, src)
            for s in range(int(math.floor(lo)), min(int(math.ceil(hi)), src)):
                m[d, s] = max(0.0, min(hi, s + 1) - max(lo, s)) / (hi - lo)
        elif interp == "bicubic":
            f = (d + 0.5) * scale - 0.5
            s0 = math.floor(f)
            t = f - s0
            a = -0.75
            for k, x in zip(range(-1, 3), (1 + t, t, 1 - t, 2 - t)):
                x = abs(x)
                w = ((a + 2) * x - (a + 3)) * x * x + 1 if x <= 1 else ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
                m[d, min(max(s0 + k, 0), src - 1)] += w
        else:
            if interp == "area":  # OpenCV's INTER_AREA when enlarging
                s0 = math.floor(d * scale)
                t = (d + 1) - (s0 + 1) / scale
                t = 0.0 if t <= 0 else t - math.floor(t)
            else:
                f = (d + 0.5) * scale - 0.5
                s0 = math.floor(f)
                t = f - s0
            if s0 < 0:
                s0, t = 0, 0.0
            if s0 >= src - 1:
                s0, t = src - 1, 0.0
            m[d, s0] += 1 - t
            m[d, min(s0 + 1, src - 1)] += t
    return m


def resize(img: np.ndarray, size: tuple[int, int], interp: str) -> np.ndarray:
    """Separable resampling of (H, W, C) to ``size`` = (height, width)."""
    h, w = img.shape[:2]
    down = size[0] <= h and size[1] <= w
    wy = _axis_weights(h, size[0], interp, down)
    wx = _axis_weights(w, size[1], interp, down)
    return np.einsum("yh,hwc,xw->yxc", wy, img, wx)


def philox4x32_10(counter: np.ndarray, key: tuple[int, int]) -> np.ndarray:
    """Philox4x32-10 of counters (N, 4) uint32 under key (k0, k1): (N, 4) uint32."""
    c = [counter[:, i].astype(np.uint64) for i in range(4)]
    k0, k1 = np.uint64(key[0]), np.uint64(key[1])
    for _ in range(10):
        p0 = np.uint64(0xD2511F53) * c[0]
        p1 = np.uint64(0xCD9E8D57) * c[2]
        c = [(p1 >> np.uint64(32)) ^ c[1] ^ k0, p1 & _M32, (p0 >> np.uint64(32)) ^ c[3] ^ k1, p0 & _M32]
        k0 = (k0 + np.uint64(0x9E3779B9)) & _M32
        k1 = (k1 + np.uint64(0xBB67AE85)) & _M32
    return np.stack(c, axis=1).astype(np.uint32)


def draws(seed: int, stream: int, tag: int, n: int) -> np.ndarray:
    """The first ``n`` draws (n, 4) of stream (seed, stream, tag), as the kernels number them."""
    idx = np.arange(n, dtype=np.uint64)
    ctr = np.stack([idx & _M32, idx >> np.uint64(32), np.full(n, stream, np.uint64), np.full(n, tag, np.uint64)], 1)
    return philox4x32_10(ctr.astype(np.uint32), (seed & 0xFFFFFFFF, seed >> 32))


def _uniform(x: np.ndarray) -> np.ndarray:
    return ((x >> np.uint32(8)).astype(np.float64) + 0.5) / 16777216.0


def gaussian_noise(img: np.ndarray, sigma: float, mean: float, gray: bool, seed: int, stream: int = 0) -> np.ndarray:
    """img + N(mean, sigma^2) in grey levels; draw i gives samples 4i..4i+3 via Box-Muller."""
    h, w, c = img.shape
    n = h * w if gray else h * w * c
    r = draws(seed, stream, 1, (n + 3) // 4)
    rad = [np.sqrt(-2 * np.log(_uniform(r[:, j]))) for j in (0, 2)]
    ang = [2 * np.pi * _uniform(r[:, j]) for j in (1, 3)]
    z = np.stack([rad[0] * np.cos(ang[0]), rad[0] * np.sin(ang[0]), rad[1] * np.cos(ang[1]), rad[1] * np.sin(ang[1])], 1)
    noise = mean + sigma * z.reshape(-1)[:n]
    noise = noise.reshape(h, w, 1) if gray else noise.reshape(h, w, c)
    return img + noise


def salt_pepper_mask(shape: tuple[int, int], amount: float, seed: int, stream: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(replaced, white) boolean maps (H, W) of salt-and-pepper noise."""
    h, w = shape
    r = draws(seed, stream, 3, h * w)
    replaced = r[:, 0].astype(np.uint64) < np.uint64(int(amount * 4294967296.0))
    return replaced.reshape(h, w), (r[:, 1] & 1).astype(bool).reshape(h, w)


def _dct_matrix() -> np.ndarray:
    u, x = np.meshgrid(np.arange(8), np.arange(8), indexing="ij")
    m = np.cos((2 * x + 1) * u * np.pi / 16) / 2
    m[0] /= math.sqrt(2)
    return m


_LUMA = np.array([16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56, 14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99]).reshape(8, 8)  # noqa: E501
_CHROMA = np.full((8, 8), 99)
_CHROMA[:4, :4] = [[17, 18, 24, 47], [18, 21, 26, 66], [24, 26, 56, 99], [47, 66, 99, 99]]


def quant_table(base: np.ndarray, quality: int) -> np.ndarray:
    """libjpeg's quality scaling of a base table, clamped to 1..255."""
    scale = 5000 // quality if quality < 50 else 200 - 2 * quality
    return np.clip((base * scale + 50) // 100, 1, 255)


def _plane_roundtrip(plane: np.ndarray, q: np.ndarray) -> np.ndarray:
    m = _dct_matrix()
    h, w = plane.shape
    blocks = plane.reshape(h // 8, 8, w // 8, 8).transpose(0, 2, 1, 3) - 128.0
    coef = m @ blocks @ m.T
    coef = np.sign(coef) * np.floor(np.abs(coef) / q + 0.5) * q
    rec = m.T @ coef @ m + 128.0
    return np.clip(np.floor(rec + 0.5), 0, 255).transpose(0, 2, 1, 3).reshape(h, w)


def jpeg(img: np.ndarray, quality: int, subsampling: str) -> np.ndarray:
    """JPEG lossy round trip of a uint8-valued (H, W, 3) image; returns uint8 (H, W, 3). Chroma
    upsampling here is libjpeg's triangular filter written with array shifts."""
    h, w, _ = img.shape
    mcu = 16 if subsampling == "4:2:0" else 8
    ph, pw = -(-h // mcu) * mcu, -(-w // mcu) * mcu
    x = np.pad(img.astype(np.float64), ((0, ph - h), (0, pw - w), (0, 0)), mode="edge")
    r, g, b = x[..., 0], x[..., 1], x[..., 2]
    y = np.floor(0.299 * r + 0.587 * g + 0.114 * b + 0.5)
    cb = np.floor(-0.168735892 * r - 0.331264108 * g + 0.5 * b + 128.5)
    cr = np.floor(0.5 * r - 0.418687589 * g - 0.081312411 * b + 128.5)
    y, cb, cr = (np.clip(v, 0, 255) for v in (y, cb, cr))
    y = _plane_roundtrip(y, quant_table(_LUMA, quality))
    qc = quant_table(_CHROMA, quality)
    if subsampling == "4:2:0":
        bias = np.tile([1, 2], pw // 2)
        cb, cr = (np.floor((v[0::2, 0::2] + v[0::2, 1::2] + v[1::2, 0::2] + v[1::2, 1::2] + bias[: pw // 2]) / 4) for v in (cb, cr))
        cb, cr = (_plane_roundtrip(v, qc)[: (h + 1) // 2, : (w + 1) // 2] for v in (cb, cr))
        cb, cr = (_fancy_upsample(v)[:h, :w] for v in (cb, cr))
    else:
        cb, cr = (_plane_roundtrip(v, qc)[:h, :w] for v in (cb, cr))
    y = y[:h, :w]
    rgb = np.stack([y + 1.402 * (cr - 128), y - 0.344136286 * (cb - 128) - 0.714136286 * (cr - 128), y + 1.772 * (cb - 128)], -1)
    return np.clip(np.floor(rgb + 0.5), 0, 255).astype(np.uint8)


def _fancy_upsample(c: np.ndarray) -> np.ndarray:
    ext = np.pad(c.astype(np.int64), 1, mode="edge")
    near = ext[1:-1]
    up, down = 3 * near + ext[:-2], 3 * near + ext[2:]  # column sums for even / odd output rows
    out = np.empty((2 * c.shape[0], 2 * c.shape[1]), dtype=np.int64)
    for rows, col in ((slice(0, None, 2), up), (slice(1, None, 2), down)):
        here, left, right = col[:, 1:-1], col[:, :-2], col[:, 2:]
        even = (3 * here + left + 8) >> 4
        even[:, 0] = (4 * here[:, 0] + 8) >> 4
        odd = (3 * here + right + 7) >> 4
        odd[:, -1] = (4 * here[:, -1] + 7) >> 4
        out[rows, 0::2], out[rows, 1::2] = even, odd
    return out
