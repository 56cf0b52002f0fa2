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
from torch.nn import functional as F

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models import Architecture, register
from pyfill.models.blocks import PatchGAN, UNetBody, conv_block

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


def ab_bins(bin_size: float = 10.0, samples: int = 33) -> torch.Tensor:
    """The in-gamut ab bins: centres (K, 2) on a grid of step ``bin_size`` (multiples of
    ``bin_size`` within [-AB_SCALE, AB_SCALE]) whose cell holds the ab of at least one sRGB colour
    of a ``samples``^3 grid over the RGB cube. Deterministic; ``bin_size`` 10 gives 260-320 bins."""
    if not 1.0 <= bin_size <= AB_SCALE:
        raise ValueError(f"bin_size must be in [1, {AB_SCALE}], got {bin_size}")
    axis = torch.linspace(0.0, 1.0, samples, device="cpu")  # real numbers also when built on "meta"
    rgb = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij"), dim=0).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T  # (samples^3, 2)
    cells = torch.unique(torch.round(ab / bin_size), dim=0)
    cells = cells[(cells.abs() * bin_size <= AB_SCALE).all(dim=1)]
    return cells * bin_size


class BinGenerator(nn.Module):
    """Classification G (Zhang et al., 2016): normalised L (N, 1, H, W) in [-1, 1] -> ab / AB_SCALE
    (N, 2, H, W) in about [-1, 1].

    Two stride-2 convolutions take L to 1/4 resolution, a U-Net (``base`` x 2 wide, ``depth``
    stages) gives features there, and a 1 x 1 convolution gives logits over the in-gamut ab bins
    (:func:`ab_bins`). The colour is the *annealed mean* of the distribution,
    sum_k softmax(logits / temperature)_k centre_k (temperature 1: the mean, desaturated; towards
    0: the mode, vivid), then upsampled bilinearly to full resolution. H and W must be multiples
    of 4 * 2**depth.
    """

    def __init__(self, base: int = 16, depth: int = 3, bin_size: float = 10.0, temperature: float = 0.38) -> None:
        super().__init__()
        if temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        self.temperature = float(temperature)
        self.stride = 4 * 2**depth
        self.pre = nn.Sequential(conv_block(1, base, stride=2), conv_block(base, base, stride=2))
        self.body = UNetBody(base, 2 * base, depth)
        centres = ab_bins(bin_size)
        self.register_buffer("centres", centres, persistent=False)
        self.head = nn.Conv2d(self.body.width, len(centres), 1)
        self.decode = nn.Conv2d(len(centres), 2, 1, bias=False)
        with torch.no_grad():  # copy_, not .data =: the module may be built on the "meta" device
            self.decode.weight.copy_((centres / AB_SCALE).T.reshape(2, len(centres), 1, 1))
        self.decode.weight.requires_grad_(False)

    def logits(self, l_norm: torch.Tensor) -> torch.Tensor:
        """Bin logits (N, K, H / 4, W / 4)."""
        return self.head(self.body.features(self.pre(l_norm)))

    def decode_logits(self, logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """Logits (N, K, h, w) -> annealed-mean ab / AB_SCALE (N, 2, *size)."""
        probs = torch.softmax(logits / self.temperature, dim=1)
        return F.interpolate(self.decode(probs), size=size, mode="bilinear", align_corners=False)

    def forward(self, l_norm: torch.Tensor, return_logits: bool = False) -> torch.Tensor:
        """ab / AB_SCALE (N, 2, H, W), or with ``return_logits`` the bin logits (N, K, H / 4, W / 4)."""
        logits = self.logits(l_norm)
        return logits if return_logits else self.decode_logits(logits, (l_norm.shape[-2], l_norm.shape[-1]))


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
    realness: (N, 1) in [0, 1], D's probability that the fill is a real colour image).

    ``head``: ``regression`` (:class:`Generator`, tanh ab) or ``bins`` (:class:`BinGenerator`, a
    distribution over ab bins decoded by its annealed mean at ``temperature``).
    """

    def __init__(self, base: int = 16, depth: int = 3, disc_base: int = 16, disc_layers: int = 3,
                 head: str = "regression", bin_size: float = 10.0, temperature: float = 0.38) -> None:
        super().__init__()
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        self.generator: nn.Module = Generator(base, depth) if head == "regression" \
            else BinGenerator(base, depth, bin_size, temperature)
        self.discriminator = PatchDiscriminator(disc_base, disc_layers)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        lightness = rgb_to_lightness(image)
        l_norm = normalise_l(lightness)
        ab_norm = self.generator(l_norm)
        fill = lab_to_rgb(torch.cat([lightness, ab_norm * AB_SCALE], dim=1))
        return fill, realness(self.discriminator(l_norm, ab_norm))


HEADS = ("regression", "bins")
DEFAULTS: dict[str, Any] = {"base": 16, "depth": 3, "disc_base": 16, "disc_layers": 3, "head": "regression",
                            "bin_size": 10.0, "temperature": 0.38}


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    g_multiple = 2 ** config["depth"] * (4 if config["head"] == "bins" else 1)
    m = max(g_multiple, 2 ** config["disc_layers"])
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
