"""A small fully convolutional U-Net (image -> image, same size): strided-conv encoder,
nearest-upsampling decoder with skip connections. Accepts any size that is a multiple of
2**depth."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyfill.manifest import ColourSpace, Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models.blocks import UNetBody
from pyfill.models import Architecture, register


class UNet(UNetBody):
    """U-Net: (N, in_channels, H, W) in ``value_range`` -> (N, out_channels, H, W) through tanh
    (range [-1, 1]). H and W must be multiples of 2**depth."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, base: int = 16, depth: int = 3) -> None:
        super().__init__(in_channels, base, depth)
        self.head = nn.Conv2d(self.width, out_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.head(self.features(x)))


DEFAULTS: dict[str, Any] = {"in_channels": 3, "out_channels": 3, "base": 16, "depth": 3}


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    def space(c: int) -> ColourSpace:
        return "rgb" if c == 3 else "gray" if c == 1 else "none"

    return Manifest(
        task=task,
        family="unet",
        config=config,
        inputs=[TensorSpec("image", "image", config["in_channels"], space(config["in_channels"]), (-1.0, 1.0))],
        outputs=[TensorSpec("output", "image", config["out_channels"], space(config["out_channels"]), (-1.0, 1.0))],
        size=SizeRequirements(multiple_of=2 ** config["depth"], min_size=2 ** config["depth"]),
        tiling=Tiling(supported=True, tile=256, overlap=32),
        fp16=True,
    )


ARCH = register(Architecture("unet", lambda c: UNet(**c), _manifest, DEFAULTS))
