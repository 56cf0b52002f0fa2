"""Building blocks shared by the model families."""

from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F


def conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    """3x3 convolution (padding 1) + LeakyReLU(0.2)."""
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1), nn.LeakyReLU(0.2))


class UNetBody(nn.Module):
    """The U-Net trunk: a stem, ``depth`` strided-conv encoder stages, and a nearest-upsampling
    decoder with a skip connection at every scale. ``features`` maps (N, in_channels, H, W) to
    (N, width, H, W); H and W must be multiples of 2**depth. Subclasses add their ``head``."""

    def __init__(self, in_channels: int, base: int, depth: int) -> None:
        super().__init__()
        widths = [base * min(2**i, 8) for i in range(depth + 1)]
        self.width = widths[0]
        self.stem = conv_block(in_channels, widths[0])
        self.down = nn.ModuleList(
            nn.Sequential(conv_block(widths[i], widths[i + 1], stride=2), conv_block(widths[i + 1], widths[i + 1]))
            for i in range(depth)
        )
        self.up = nn.ModuleList(
            nn.Sequential(conv_block(widths[i + 1] + widths[i], widths[i]), conv_block(widths[i], widths[i]))
            for i in reversed(range(depth))
        )

    def features(self, x: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(x)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = skips.pop()
        for block in self.up:
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = block(torch.cat([h, skips.pop()], dim=1))
        return h


def patch_discriminator(cin: int, base: int, layers: int) -> nn.Sequential:
    """PatchGAN layers: ``layers`` stride-2 4x4 convolutions with LeakyReLU, then a 3x3 conv to
    one logit per patch: (N, cin, H, W) -> (N, 1, H / 2**layers, W / 2**layers)."""
    mods: list[nn.Module] = []
    for i in range(layers):
        cout = base * min(2**i, 8)
        mods += [nn.Conv2d(cin, cout, 4, 2, 1), nn.LeakyReLU(0.2)]
        cin = cout
    mods.append(nn.Conv2d(cin, 1, 3, 1, 1))
    return nn.Sequential(*mods)
