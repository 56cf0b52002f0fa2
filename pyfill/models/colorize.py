"""Colour filling (colourisation) in Lab: a U-Net generator G predicting ab from L and a
conditional PatchGAN discriminator D on (L, ab) giving a realness probability.

:class:`Colorizer` bundles G and D with the sRGB <-> Lab conversions written in elementary
operations, so its exported ONNX graph takes an sRGB image in [0, 1] and returns the
colourised sRGB image and D's realness score. The fill keeps the input's own L exactly: the
network's ab is recombined with the L computed from the input pixel itself, and colours outside
the sRGB gamut are pulled towards gray in linear RGB along a line of constant luminance, which
leaves L unchanged (see :func:`lab_to_rgb`).

Lab here is CIE L*a*b* with the D65 white and the sRGB primaries, the same as
``skimage.color.rgb2lab`` / ``lab2rgb``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models import Architecture, register
from pyfill.models.blocks import PatchGAN, UNetBody

# sRGB (linear) -> XYZ, D65; and its inverse. Row 1 of RGB_TO_XYZ is the luminance Y.
RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
WHITE_D65 = (0.95047, 1.0, 1.08883)
_DELTA = 6.0 / 29.0
AB_SCALE = 110.0  # the generator's tanh output times this is ab


def _xyz_to_rgb_matrix() -> torch.Tensor:
    return torch.linalg.inv(torch.tensor(RGB_TO_XYZ, dtype=torch.float64)).float()


_XYZ_TO_RGB = _xyz_to_rgb_matrix()


def _le(x: torch.Tensor, v: float) -> torch.Tensor:
    """x <= v written as Clip + Equal: the export allow-list has no comparison operators."""
    return x.clamp(max=v) == x


def _srgb_to_linear(c: torch.Tensor) -> torch.Tensor:
    return torch.where(_le(c, 0.04045), c / 12.92, ((c.clamp(min=0.0) + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(c: torch.Tensor) -> torch.Tensor:
    c = c.clamp(0.0, 1.0)
    return torch.where(_le(c, 0.0031308), c * 12.92, 1.055 * c.clamp(min=0.0031308) ** (1.0 / 2.4) - 0.055)


def _f(t: torch.Tensor) -> torch.Tensor:
    return torch.where(_le(t, _DELTA**3), t / (3 * _DELTA**2) + 4.0 / 29.0, t.clamp(min=_DELTA**3) ** (1.0 / 3.0))


def _f_inv(t: torch.Tensor) -> torch.Tensor:
    return torch.where(_le(t, _DELTA), 3 * _DELTA**2 * (t - 4.0 / 29.0), t**3)


def _mix(m: tuple[tuple[float, ...], ...] | torch.Tensor, x: torch.Tensor) -> list[torch.Tensor]:
    """Rows of a 3 x 3 matrix applied to the 3 channels of x (N, 3, H, W), as Mul/Add only."""
    c = [x[:, i : i + 1] for i in range(3)]
    return [c[0] * float(m[r][0]) + c[1] * float(m[r][1]) + c[2] * float(m[r][2]) for r in range(3)]


def rgb_to_lightness(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) float in [0, 1] -> L* (N, 1, H, W) in [0, 100]."""
    lin = _srgb_to_linear(rgb)
    y = _mix(RGB_TO_XYZ, lin)[1]
    return 116.0 * _f(y) - 16.0


def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """sRGB (N, 3, H, W) float in [0, 1] -> Lab (N, 3, H, W): L in [0, 100], a and b about
    [-110, 110]."""
    x, y, z = _mix(RGB_TO_XYZ, _srgb_to_linear(rgb))
    fx, fy, fz = _f(x / WHITE_D65[0]), _f(y / WHITE_D65[1]), _f(z / WHITE_D65[2])
    return torch.cat([116.0 * fy - 16.0, 500.0 * (fx - fy), 200.0 * (fy - fz)], dim=1)


def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """Lab (N, 3, H, W) -> sRGB (N, 3, H, W) float in [0, 1] with the same L.

    Out-of-gamut colours are not clipped channel by channel (that would change L): in linear
    RGB the colour c is moved towards the gray Y of the same luminance, c' = Y + t (c - Y) with
    the largest t in [0, 1] that puts c' in the unit cube. Y depends on L only, and the
    luminance of c' is Y for every t, so L is kept.
    """
    fy = (lab[:, 0:1] + 16.0) / 116.0
    fx = fy + lab[:, 1:2] / 500.0
    fz = fy - lab[:, 2:3] / 200.0
    xyz = torch.cat([_f_inv(fx) * WHITE_D65[0], _f_inv(fy) * WHITE_D65[1], _f_inv(fz) * WHITE_D65[2]], dim=1)
    r, g, b = _mix(_XYZ_TO_RGB, xyz)
    lum = xyz[:, 1:2]
    t = torch.ones_like(lum)
    for c in (r, g, b):
        over = (1.0 - lum) / (c - lum).clamp(min=1e-6)
        under = lum / (lum - c).clamp(min=1e-6)
        inside = torch.where(_le(-c, 0.0), torch.ones_like(c), under)
        t = torch.minimum(t, torch.where(_le(c, 1.0), inside, over))
    lin = lum + t.clamp(0.0, 1.0) * (torch.cat([r, g, b], dim=1) - lum)
    return _linear_to_srgb(lin)


class Generator(UNetBody):
    """U-Net G: normalised L (N, 1, H, W) in [-1, 1] -> ab / AB_SCALE (N, 2, H, W) in [-1, 1].
    H and W must be multiples of 2**depth."""

    def __init__(self, base: int = 16, depth: int = 3) -> None:
        super().__init__(1, base, depth)
        self.head = nn.Conv2d(self.width, 2, 3, 1, 1)

    def forward(self, l_norm: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.features(l_norm)))


class PatchDiscriminator(PatchGAN):
    """Conditional PatchGAN D: (normalised L (N, 1, H, W), ab / AB_SCALE (N, 2, H, W)) ->
    realness logits (N, 1, H / 2**layers, W / 2**layers), one per overlapping patch."""

    def __init__(self, base: int = 16, layers: int = 3) -> None:
        super().__init__(3, base, layers)

    def prepare(self, l_norm: torch.Tensor, ab_norm: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([l_norm, ab_norm], dim=1)


def realness(logits: torch.Tensor) -> torch.Tensor:
    """Patch logits (N, 1, h, w) -> per-image probability of "real" (N, 1): mean patch sigmoid."""
    return torch.sigmoid(logits).mean(dim=(2, 3))


def normalise_l(lightness: torch.Tensor) -> torch.Tensor:
    """L in [0, 100] -> [-1, 1]."""
    return lightness / 50.0 - 1.0


class Colorizer(nn.Module):
    """G and D together. ``forward(image)``: sRGB (N, 3, H, W) float in [0, 1] (gray images as
    three equal channels) -> (fill: sRGB (N, 3, H, W) in [0, 1] with the input's L,
    realness: (N, 1) in [0, 1], D's probability that the fill is a real colour image)."""

    def __init__(self, base: int = 16, depth: int = 3, disc_base: int = 16, disc_layers: int = 3) -> None:
        super().__init__()
        self.generator = Generator(base, depth)
        self.discriminator = PatchDiscriminator(disc_base, disc_layers)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lightness = rgb_to_lightness(image)
        l_norm = normalise_l(lightness)
        ab_norm = self.generator(l_norm)
        fill = lab_to_rgb(torch.cat([lightness, ab_norm * AB_SCALE], dim=1))
        return fill, realness(self.discriminator(l_norm, ab_norm))


DEFAULTS: dict[str, Any] = {"base": 16, "depth": 3, "disc_base": 16, "disc_layers": 3}


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    m = 2 ** max(config["depth"], config["disc_layers"])
    return Manifest(
        task="colorize" if task == "image-to-image" else task,
        family="colorize",
        config=config,
        inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
        outputs=[
            TensorSpec("fill", "image", 3, "rgb", (0.0, 1.0)),
            TensorSpec("realness", "vector", 1, "none", (0.0, 1.0), length=1),
        ],
        size=SizeRequirements(multiple_of=m, min_size=m),
        tiling=Tiling(supported=False, tile=512, overlap=32),
        fp16=False,
    )


ARCH = register(Architecture("colorize", lambda c: Colorizer(**c), _manifest, DEFAULTS))
