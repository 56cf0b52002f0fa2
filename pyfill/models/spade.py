"""A SPADE-style generator with two inputs: a semantic label map and a latent vector.

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

from pyfill.engine.manifest import Manifest, TensorSpec
from pyfill.models import Architecture, register


def instance_norm(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Parameter-free instance normalisation written with elementary ops, so that it exports to
    ONNX with dynamic batch and channel counts."""
    mean = x.mean(dim=(2, 3), keepdim=True)
    centred = x - mean
    var = (centred * centred).mean(dim=(2, 3), keepdim=True)
    return centred / torch.sqrt(var + eps)


class SPADE(nn.Module):
    """Parameter-free instance norm, then per-pixel scale and shift predicted from the labels."""

    def __init__(self, channels: int, label_channels: int, hidden: int = 32) -> None:
        super().__init__()
        self.shared = nn.Sequential(nn.Conv2d(label_channels, hidden, 3, 1, 1), nn.ReLU())
        self.gamma = nn.Conv2d(hidden, channels, 3, 1, 1)
        self.beta = nn.Conv2d(hidden, channels, 3, 1, 1)

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        seg = F.interpolate(labels, size=x.shape[-2:], mode="nearest")
        h = self.shared(seg)
        return instance_norm(x) * (1 + self.gamma(h)) + self.beta(h)


class SPADEBlock(nn.Module):
    def __init__(self, cin: int, cout: int, label_channels: int) -> None:
        super().__init__()
        self.norm1 = SPADE(cin, label_channels)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = SPADE(cout, label_channels)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        self.skip = nn.Conv2d(cin, cout, 1, bias=False) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.leaky_relu(self.norm1(x, labels), 0.2))
        h = self.conv2(F.leaky_relu(self.norm2(h, labels), 0.2))
        return self.skip(x) + h


class SPADEGenerator(nn.Module):
    """(labels one-hot (N, classes, size, size), latent (N, latent_dim)) -> RGB (N, 3, size, size)
    in [-1, 1]."""

    def __init__(self, classes: int = 8, latent_dim: int = 648, base: int = 64, size: int = 64) -> None:
        super().__init__()
        if size < 8 or size & (size - 1):
            raise ValueError(f"size must be a power of two >= 8, got {size}")
        self.base = base
        self.fc = nn.Linear(latent_dim, base * 16)
        n_blocks = int(math.log2(size)) - 2
        widths = [base] + [max(base // 2**i, 16) for i in range(1, n_blocks + 1)]
        self.blocks = nn.ModuleList(SPADEBlock(widths[i], widths[i + 1], classes) for i in range(n_blocks))
        self.head = nn.Conv2d(widths[-1], 3, 3, 1, 1)

    def forward(self, labels: torch.Tensor, latent: torch.Tensor) -> torch.Tensor:
        h = self.fc(latent).view(-1, self.base, 4, 4)
        for block in self.blocks:
            h = block(F.interpolate(h, scale_factor=2.0, mode="nearest"), labels)
        return torch.tanh(self.head(F.leaky_relu(h, 0.2)))


DEFAULTS: dict[str, Any] = {"classes": 8, "latent_dim": 648, "base": 64, "size": 64}


def _manifest(config: dict[str, Any], task: str) -> Manifest:
    size = config["size"]
    return Manifest(
        task=task,
        family="spade",
        config=config,
        inputs=[
            TensorSpec("labels", "labels", config["classes"], "none", (0.0, 1.0), classes=config["classes"]),
            TensorSpec("latent", "vector", 1, "none", (0.0, 1.0), length=config["latent_dim"], optional=True),
        ],
        outputs=[TensorSpec("image", "image", 3, "rgb", (-1.0, 1.0))],
        size={"multiple_of": size, "min_size": size, "fixed": [size, size]},
        tiling={"supported": False, "tile": size, "overlap": 0},
        fp16=True,
    )


ARCH = register(Architecture("spade", lambda c: SPADEGenerator(**c), _manifest, DEFAULTS))
