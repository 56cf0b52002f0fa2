"""A SPADE-style generator with two inputs: a semantic label map and a latent vector, and the
multi-scale PatchGAN discriminator it is trained against (SPEC S2).

latent (N, latent_dim) -> linear -> (N, C, 4, 4), then residual upsampling blocks that double
the resolution up to ``size``, each normalised with spatially-adaptive (SPADE) modulation from
the one-hot label map resized (nearest) to the block's resolution.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models import Architecture, register
from pyfill.models.blocks import PatchGAN, instance_norm


class SPADE(nn.Module):
    """Parameter-free instance norm, then per-pixel scale and shift predicted from the labels."""

    def __init__(self, channels: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, 1, 1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, 1, 1)
        self.beta = nn.Conv2d(hidden, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(labels, size=x.shape[-2:], mode="nearest")
        h = self.shared(seg)
        return instance_norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEBlock(nn.Module):
    def __init__(self, cin: int, cout: int, label_channels: int, hidden: int) -> None:
        super().__init__()
        self.norm1 = SPADE(cin, label_channels, hidden)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = SPADE(cout, label_channels, hidden)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.norm1(x, labels), 0.2))
        h = self.conv2(F.leaky_relu(self.norm2(h, labels), 0.2))
        return self.skip(x) + h


class SPADEGenerator(nn.Module):
    """(labels one-hot (N, classes, size, size), latent (N, latent_dim)) -> RGB (N, 3, size, size)
    in [-1, 1].

    ``base`` channels at 4 x 4, halved per block down to ``min_width``; ``hidden`` channels in
    every SPADE modulation branch. With ``stroke_map`` = (S1, S2) the latent is also read as the
    (S1, S2, 8) stroke grid and fed, resized (nearest) to each block, to the SPADE branches beside
    the labels, so that every block sees the local stroke colours (an addition to SPEC S2's
    generator, which conditions the blocks on the labels only). ``stroke_upsample``: how the grid
    is resized, ``nearest`` (cells with hard edges, which the picture can show as a block grid)
    or ``bilinear`` (a smooth map without steps at the cell edges).
    """

    def __init__(self, classes: int = 8, latent_dim: int = 648, base: int = 64, size: int = 64,
                 hidden: int = 32, min_width: int = 16, stroke_map: tuple[int, int] | None = None,
                 stroke_upsample: str = "nearest") -> None:
        super().__init__()
        if stroke_upsample not in ("nearest", "bilinear"):
            raise ValueError(f"stroke_upsample must be 'nearest' or 'bilinear', got {stroke_upsample!r}")
        self.stroke_upsample = stroke_upsample
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        if stroke_map is not None and int(stroke_map[0]) * int(stroke_map[1]) * 8 != latent_dim:
            raise ValueError(f"stroke_map {tuple(stroke_map)} needs latent_dim {int(stroke_map[0]) * int(stroke_map[1]) * 8}")
        self.stroke_map = (int(stroke_map[0]), int(stroke_map[1])) if stroke_map is not None else None
        cond = classes + (8 if self.stroke_map else 0)
        self.base = base
        self.fc = nn.Linear(latent_dim, base * 16)
        n_blocks = int(math.log2(size)) - 2
        widths = [base] + [max(base // 2**i, min_width) for i in range(1, n_blocks + 1)]
        self.blocks = nn.ModuleList(SPADEBlock(widths[i], widths[i + 1], cond, hidden) for i in range(n_blocks))
        self.head = nn.Conv2d(widths[-1], 3, 3, 1, 1)

    def stroke_condition(self, latent: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
        """The stroke grid of ``latent`` (N, S1 * S2 * 8) resized to ``size``: (N, 8, *size)."""
        if self.stroke_map is None:
            raise ValueError("this generator has no stroke map")
        grid = latent.reshape(-1, *self.stroke_map, 8).permute(0, 3, 1, 2)
        if self.stroke_upsample == "nearest":
            return F.interpolate(grid, size=size, mode="nearest")
        return F.interpolate(grid, size=size, mode="bilinear", align_corners=False)

    def forward(self, labels: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        h = self.fc(latent).view(-1, self.base, 4, 4)
        cond = labels
        if self.stroke_map is not None:
            cond = torch.cat([labels, self.stroke_condition(latent, (labels.shape[-2], labels.shape[-1]))], dim=1)
        for block in self.blocks:
            h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"), cond)
        return torch.tanh(self.head(F.leaky_relu(h, 0.2)))


class PatchDiscriminator(PatchGAN):
    """A PatchGAN conditioned on the label map: (labels one-hot (N, classes, H, W), RGB (N, 3, H, W)
    in [-1, 1]) -> the features of every layer, the last one (N, 1, H', W') being the logits.

    ``layers`` stride-2 4 x 4 convolutions (widths ``base`` doubling, capped at 8 x ``base``) with
    instance norm after the first, then a stride-1 convolution to one logit per patch. Weights
    saved under the names of the earlier layout (``convs.<i>``, ``head``) still load.
    """

    def __init__(self, classes: int, base: int = 32, layers: int = 3) -> None:
        super().__init__(classes + 3, base, layers, norm=True)
        self.layers = layers
        self._register_load_state_dict_pre_hook(self._rename_earlier_keys)

    def _rename_earlier_keys(self, state: dict[str, Any], prefix: str, *args: Any) -> None:
        for key in [k for k in state if k.startswith(prefix + "convs.") or k.startswith(prefix + "head.")]:
            rest = key[len(prefix):]
            if rest.startswith("head."):
                new = f"net.{2 * self.layers}.{rest[len('head.'):]}"
            else:
                index, name = rest[len("convs."):].split(".", 1)
                new = f"net.{2 * int(index)}.{name}"
            state[prefix + new] = state.pop(key)

    def prepare(self, labels: torch.Tensor, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return torch.cat([labels, image], dim=1)

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> list[torch.Tensor]:  # type: ignore[override]
        return self.features(self.prepare(labels, image))


class MultiScaleDiscriminator(nn.Module):
    """``scales`` PatchGANs on the image and label map at full, 1/2, 1/4 ... resolution (average
    pooling for the image, nearest for the labels). Returns one feature list per scale."""

    def __init__(self, classes: int = 8, base: int = 32, layers: int = 3, scales: int = 2) -> None:
        super().__init__()
        if scales < 1 or layers < 1:
            raise ValueError(f"scales and layers must be >= 1, got {scales} and {layers}")
        self.nets = nn.ModuleList(PatchDiscriminator(classes, base, layers) for _ in range(scales))

    def forward(self, labels: torch.Tensor, image: torch.Tensor) -> list[list[torch.Tensor]]:
        outs = []
        for i, net in enumerate(self.nets):
            if i > 0:
                image = F.avg_pool2d(image, 3, 2, 1, count_include_pad=False)
                labels = F.interpolate(labels, size=image.shape[-2:], mode="nearest")
            outs.append(net(labels, image))
        return outs


GENERATOR_KEYS = ("classes", "latent_dim", "base", "size", "hidden", "min_width")
DEFAULTS: dict[str, Any] = {"classes": 8, "latent_dim": 648, "base": 64, "size": 64, "hidden": 32, "min_width": 16,
                            "stroke_grid": [9, 9], "stroke_map": False, "stroke_upsample": "nearest",
                            "class_names": None, "palette": None}


def build_generator(config: dict[str, Any]) -> SPADEGenerator:
    """The generator of a full ``spade`` config (the keys in :data:`GENERATOR_KEYS`, and
    ``stroke_map``: feed the ``stroke_grid``-shaped latent to the SPADE branches, resized by
    ``stroke_upsample``)."""
    if config["stroke_map"] and not config["stroke_grid"]:
        raise ValueError("stroke_map needs stroke_grid")
    return SPADEGenerator(**{k: config[k] for k in GENERATOR_KEYS},
                          stroke_map=tuple(config["stroke_grid"]) if config["stroke_map"] else None,
                          stroke_upsample=config["stroke_upsample"])


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    """Inputs ``labels`` (with the legend when ``class_names``/``palette`` are set) and ``latent``;
    with ``stroke_grid`` = [S1, S2] (latent_dim = S1 * S2 * 8) the latent may instead be derived
    by the Engine from a ``strokes`` image."""
    size, classes = config["size"], config["classes"]
    derive: dict[str, Any] = {}
    if config["stroke_grid"]:
        s1, s2 = (int(v) for v in config["stroke_grid"])
        if s1 * s2 * 8 != config["latent_dim"]:
            raise ValueError(f"stroke_grid {config['stroke_grid']} needs latent_dim {s1 * s2 * 8}, got {config['latent_dim']}")
        derive = {"op": "stroke_grid", "from": "strokes", "grid": [s1, s2]}
    for key in ("class_names", "palette"):
        if config[key] is not None and len(config[key]) != classes:
            raise ValueError(f"{key} must list {classes} entries, got {len(config[key])}")
    return Manifest(
        task=task,
        family="spade",
        config=config,
        inputs=[
            TensorSpec("labels", "labels", classes, "none", (0.0, 1.0), classes=classes,
                       class_names=list(config["class_names"] or []),
                       palette=[list(map(int, c)) for c in config["palette"] or []]),
            TensorSpec("latent", "vector", 1, "none", (0.0, 1.0), length=config["latent_dim"], optional=True,
                       derive=derive),
        ],
        outputs=[TensorSpec("image", "image", 3, "rgb", (-1.0, 1.0))],
        size=SizeRequirements(multiple_of=size, min_size=size, fixed=(size, size), resize="stretch"),
        tiling=Tiling(supported=False, tile=size, overlap=0),
        fp16=True,
    )


ARCH = register(Architecture("spade", build_generator, _manifest, DEFAULTS))
