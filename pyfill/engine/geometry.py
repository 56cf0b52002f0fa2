"""How an input of any size reaches a fixed-size model, and how outputs and coordinates come back.

:class:`Placement` is the mapping for one input size under a size policy (``stretch``,
``letterbox`` or ``pad``): it moves images and label maps into the model's frame and back, and
maps pixel coordinates (landmarks, boxes) both ways, so that a detector's boxes or a swapper's
landmarks refer to the user's image.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pyfill.engine import processing as P


@dataclass(frozen=True)
class Placement:
    """The input image (h, w) drawn into the model's (fh, fw) frame as the rectangle
    rows [oy, oy + nh) and columns [ox, ox + nw)."""

    h: int
    w: int
    fh: int
    fw: int
    oy: int
    ox: int
    nh: int
    nw: int

    @classmethod
    def for_size(cls, h: int, w: int, fixed: tuple[int, int], policy: str) -> Placement:
        fh, fw = fixed
        if policy == "stretch":
            return cls(h, w, fh, fw, 0, 0, fh, fw)
        if policy == "letterbox":
            s = min(fh / h, fw / w)
            nh, nw = max(1, min(fh, round(h * s))), max(1, min(fw, round(w * s)))
            return cls(h, w, fh, fw, (fh - nh) // 2, (fw - nw) // 2, nh, nw)
        if h > fh or w > fw:
            raise ValueError(f"the model runs at {fh} x {fw} (H x W) and pads smaller inputs; this input is {h} x {w}")
        return cls(h, w, fh, fw, 0, 0, h, w)

    @property
    def identity(self) -> bool:
        return (self.h, self.w) == (self.fh, self.fw) and (self.oy, self.ox) == (0, 0)

    def image_in(self, x: np.ndarray, nearest: bool = False) -> np.ndarray:
        """(N, C, h, w) -> (N, C, fh, fw): resized into the rectangle, zeros around it (the
        letterbox border) or edge padding (``pad``)."""
        if self.identity:
            return x
        scaled = (self.nh, self.nw) != (self.h, self.w)
        if scaled:
            x = P.resize_nearest(x, (self.nh, self.nw)) if nearest else P.resize_bilinear(x, (self.nh, self.nw))
        if (self.nh, self.nw) == (self.fh, self.fw):
            return np.ascontiguousarray(x)
        if not scaled and (self.oy, self.ox) == (0, 0):  # pad: bottom-right, as for multiple_of
            return P.pad_bottom_right(x, self.fh - self.nh, self.fw - self.nw)
        out = np.zeros((*x.shape[:-2], self.fh, self.fw), dtype=x.dtype)
        out[..., self.oy:self.oy + self.nh, self.ox:self.ox + self.nw] = x
        return out

    def image_out(self, y: np.ndarray, scale: int = 1) -> np.ndarray:
        """(N, C, fh*s, fw*s) model output -> (N, C, h*s, w*s) in the input's frame."""
        if self.identity:
            return y
        s = scale
        y = y[..., self.oy * s:(self.oy + self.nh) * s, self.ox * s:(self.ox + self.nw) * s]
        if (self.nh, self.nw) != (self.h, self.w):
            y = P.resize_bilinear(np.ascontiguousarray(y), (self.h * s, self.w * s))
        return y

    def _scales(self) -> tuple[float, float]:
        return self.nw / self.w, self.nh / self.h

    def points_in(self, xy: np.ndarray) -> np.ndarray:
        """(..., 2k) pixel coordinates (x, y, x, y, ...) of the input -> the model's frame."""
        sx, sy = self._scales()
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0::2] = out[..., 0::2] * sx + self.ox
        out[..., 1::2] = out[..., 1::2] * sy + self.oy
        return out

    def points_out(self, xy: np.ndarray) -> np.ndarray:
        """Inverse of :meth:`points_in`."""
        sx, sy = self._scales()
        out = np.array(xy, dtype=np.float32, copy=True)
        out[..., 0::2] = (out[..., 0::2] - self.ox) / sx
        out[..., 1::2] = (out[..., 1::2] - self.oy) / sy
        return out
