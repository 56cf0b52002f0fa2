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


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Parameter-free instance normalisation written with elementary ops, so that it exports to
    ONNX with dynamic batch and channel counts."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred / torch.sqrt(var + eps)


class PatchGAN(nn.Module):
    """The one PatchGAN discriminator of every family: :func:`patch_discriminator` layers in
    ``net`` (N, cin, H, W) -> logits (N, 1, H / 2**layers, W / 2**layers), with parameter-free
    instance normalisation after every convolution but the first when ``norm``.

    Subclasses say how their inputs become the ``cin`` channels (:meth:`prepare`) and what
    ``forward`` returns; :meth:`features` gives every layer's activations, the logits last.
    """

    def __init__(self, cin: int, base: int = 16, layers: int = 3, norm: bool = False) -> None:
        super().__init__()
        if layers < 1:
            raise ValueError(f"a PatchGAN needs layers >= 1, got {layers}")
        self.net = patch_discriminator(cin, base, layers)
        self.norm = norm

    def prepare(self, *inputs: torch.Tensor) -> torch.Tensor:
        """The network's input from ``forward``'s arguments (here: the one tensor as it is)."""
        return inputs[0]

    def features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Each stride-2 layer's activations, then the logits, for the prepared input ``x``."""
        mods = list(self.net)
        feats = []
        for i in range(0, len(mods) - 1, 2):
            x = mods[i](x)
            x = mods[i + 1](instance_norm(x) if self.norm and i > 0 else x)
            feats.append(x)
        feats.append(mods[-1](x))
        return feats

    def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
        x = self.prepare(*inputs)
        return self.features(x)[-1] if self.norm else self.net(x)
