"""A small fully convolutional U-Net (image -> image, same size): strided-conv encoder,
nearest-upsampling decoder with skip connections. Accepts any size that is a multiple of
2**depth."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.engine.manifest import Manifest, TensorSpec
from pyfill.models import Architecture, register


def _conv(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class UNet(nn.Module):
    """U-Net: (N, in_channels, H, W) in ``value_range`` -> (N, out_channels, H, W) through tanh
    (range [-1, 1]). H and W must be multiples of 2**depth."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 16, depth: int = 3) -> None:
        super().__init__()
        widths = [base * min(2**i, 8) for i in range(depth + 1)]
        self.stem = _conv(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(_conv(widths[i], widths[i + 1], stride=2), _conv(widths[i + 1], widths[i + 1]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.Sequential(_conv(widths[i + 1] + widths[i], widths[i]), _conv(widths[i], widths[i]))
            for i in reversed(range(depth))
        )
        self.head = nn.Conv2d(widths[0], out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = skips.pop()
        for block in self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1))
        return torch.tanh(self.head(h))


DEFAULTS: dict[str, Any] = {"in_channels": 3, "out_channels": 3, "base": 16, "depth": 3}


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    def space(c: int) -> str:
        return "rgb" if c == 3 else "gray" if c == 1 else "none"

    return Manifest(
        task=task,
        family="unet",
        config=config,
        inputs=[TensorSpec("image", "image", config["in_channels"], space(config["in_channels"]), (-1.0, 1.0))],
        outputs=[TensorSpec("output", "image", config["out_channels"], space(config["out_channels"]), (-1.0, 1.0))],
        size={"multiple_of": 2 ** config["depth"], "min_size": 2 ** config["depth"], "fixed": None},
        tiling={"supported": True, "tile": 256, "overlap": 32},
        fp16=True,
    )


ARCH = register(Architecture("unet", lambda c: UNet(**c), _manifest, DEFAULTS))
