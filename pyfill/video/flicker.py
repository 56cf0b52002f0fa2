"""Colour flicker between video frames: a metric and a temporal chroma smoother.

Chroma is the (Cb, Cr) pair of full-range BT.601 YCbCr (JPEG's), in 0..255 units.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

# Full-range BT.601 (JFIF) RGB <-> YCbCr.
_TO_YCC = np.array([[0.299, 0.587, 0.114],
                    [-0.168735892, -0.331264108, 0.5],
                    [0.5, -0.418687589, -0.081312411]], dtype=np.float32)
_FROM_YCC = np.linalg.inv(_TO_YCC.astype(np.float64)).astype(np.float32)


def to_ycbcr(image: np.ndarray) -> np.ndarray:
    """RGB uint8 (H, W, 3) -> float32 (H, W, 3) Y, Cb, Cr; Y in [0, 255], Cb/Cr centred on 0
    (range [-127.5, 127.5])."""
    return image.astype(np.float32) @ _TO_YCC.T


def from_ycbcr(ycc: np.ndarray) -> np.ndarray:
    """float32 (H, W, 3) Y, Cb, Cr (as :func:`to_ycbcr` gives) -> RGB uint8 (H, W, 3), rounded
    and clipped."""
    return np.clip(np.rint(ycc @ _FROM_YCC.T), 0, 255).astype(np.uint8)


def chroma_change(frames: Iterable[np.ndarray], stride: int = 1) -> float:
    """Mean absolute change of chroma (Cb and Cr, 0..255 units) between consecutive frames,
    averaged over pixels, both channels and all consecutive pairs. ``frames``: RGB uint8
    (H, W, 3) of one size; ``stride`` samples every stride-th row and column. 0.0 for fewer than
    two frames."""
    meter = ChromaMeter(stride)
    for frame in frames:
        meter.add(frame)
    return meter.value


class ChromaMeter:
    """Running :func:`chroma_change` of a stream, fed one frame at a time (every 4th row and
    column are sampled by default, to keep it cheap on large frames)."""

    def __init__(self, stride: int = 4) -> None:
        self.stride = stride
        self.total, self.pairs = 0.0, 0
        self._prev: np.ndarray | None = None

    def add(self, frame: np.ndarray) -> None:
        """Account one RGB uint8 (H, W, 3) frame; a frame of another size starts over."""
        chroma = to_ycbcr(frame[::self.stride, ::self.stride])[..., 1:]
        if self._prev is not None and self._prev.shape == chroma.shape:
            self.total += float(np.abs(chroma - self._prev).mean())
            self.pairs += 1
        self._prev = chroma

    @property
    def value(self) -> float:
        """Mean absolute chroma change per consecutive pair so far (0.0 before two frames)."""
        return self.total / self.pairs if self.pairs else 0.0


class ChromaSmoother:
    """Temporal smoothing of chroma that leaves luma alone, for colourised video.

    Each frame's chroma is blended with the smoothed chroma of the frame before:
    ``c = w * c_prev + (1 - w) * c_now`` per pixel. ``w = strength`` where neither luma nor
    chroma moved much; it falls linearly to 0 as the pixel's luma change reaches ``motion``
    levels, and as its chroma change (against the smoothed chroma) goes from
    ``chroma_motion / 2`` to ``chroma_motion`` levels. So small frame-to-frame colour jitter is
    averaged out, while moving content, even of the same brightness as what it covers, takes its
    new colour at once and leaves no trail. A scene cut (mean absolute luma change above ``cut``
    levels) or a change of frame size resets the state, so a new shot carries no colour of the
    last one.

    Args:
        strength: weight of the past in [0, 1) (0 = off).
        motion: luma change, in 0..255 levels, at which a pixel stops being smoothed.
        chroma_motion: chroma change, in levels, at which a pixel stops being smoothed.
        cut: mean absolute luma change, in levels, that counts as a scene cut.
    """

    def __init__(self, strength: float = 0.7, motion: float = 12.0, chroma_motion: float = 32.0,
                 cut: float = 25.0) -> None:
        if not 0.0 <= strength < 1.0:
            raise ValueError(f"strength must be in [0, 1), got {strength}")
        if min(motion, chroma_motion, cut) <= 0:
            raise ValueError(f"motion, chroma_motion and cut must be > 0, got {motion}, {chroma_motion}, {cut}")
        self.strength, self.motion, self.chroma_motion, self.cut = strength, motion, chroma_motion, cut
        self.cuts = 0
        self._luma: np.ndarray | None = None
        self._chroma: np.ndarray | None = None

    def reset(self) -> None:
        """Forget the past (the next frame passes unchanged)."""
        self._luma = self._chroma = None

    def __call__(self, frame: np.ndarray) -> np.ndarray:
        """Smooth one RGB uint8 (H, W, 3) frame; returns RGB uint8 of the same shape."""
        ycc = to_ycbcr(frame)
        luma = ycc[..., 0]
        if self._luma is None or self._luma.shape != luma.shape:
            self._luma, self._chroma = luma, ycc[..., 1:]
            return frame
        change = np.abs(luma - self._luma)
        if float(change.mean()) > self.cut:
            self.cuts += 1
            self._luma, self._chroma = luma, ycc[..., 1:]
            return frame
        chroma_change = np.abs(ycc[..., 1:] - self._chroma).max(axis=-1)
        half = self.chroma_motion / 2
        weight = (self.strength * np.clip(1.0 - change / self.motion, 0.0, 1.0)
                  * np.clip((self.chroma_motion - chroma_change) / half, 0.0, 1.0))[..., None]
        chroma = weight * self._chroma + (1.0 - weight) * ycc[..., 1:]
        self._luma, self._chroma = luma, chroma
        ycc[..., 1:] = chroma
        return from_ycbcr(ycc)
