"""Face swapping (SPEC S5): the generator G, its triplet discriminator D, and the identity
encoder E whose embedding G takes.

* :class:`FaceIdEncoder` (family ``face_id``): an aligned 112 x 112 face crop (ArcFace
  template) -> an L2-normalised identity embedding; trained on the procedural identities.
* :class:`SwapGenerator` (family ``swap``): (aligned 128 x 128 target crop, source identity
  embedding) -> the target crop with the source's identity, the input signature of the
  swappers FaceFusion users run. The target passes through a strided-conv encoder; the
  embedding drives AdaIN-style identity blocks (instance-normalised features scaled and shifted
  by affine maps of the embedding) at the bottleneck and at every decoder scale; skip
  connections carry the target's pose, expression, light and background; the output is the
  target plus a predicted correction, clipped to [0, 1].
* :class:`TripletDiscriminator`: a PatchGAN over (x, S, F) stacked on the channel axis: it
  judges an image x in [T, O] given the source and first images (the seed's discriminator,
  which sees S, F, T and O).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models import Architecture, register
from pyfill.models.blocks import conv_block, patch_discriminator


def l2_normalise(x: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (N, D) scaled to unit length (written with ReduceMean so that the ONNX
    graph stays inside the exporter's operator allow-list)."""
    return x / torch.sqrt((x * x).mean(dim=1, keepdim=True) * x.shape[1] + 1e-12)


class FaceIdEncoder(nn.Module):
    """E: aligned face crops (N, 3, size, size) sRGB in [0, 1] -> unit embeddings (N, emb).

    Strided 3x3 convolutions down to a 7 x 7 map (for 112 input), flattened so that the
    embedding keeps where features are (eye spacing, face shape), then a linear layer.
    """

    def __init__(self, base: int = 16, emb: int = 128, size: int = 112) -> None:
        super().__init__()
        if size % 16:
            raise ValueError(f"face_id size must be a multiple of 16, got {size}")
        widths = [base, base * 2, base * 4, base * 8]
        layers: list[nn.Module] = [conv_block(3, widths[0])]
        cin = widths[0]
        for w in widths:
            layers += [conv_block(cin, w, stride=2), conv_block(w, w)]
            cin = w
        self.features = nn.Sequential(*layers)
        side = size // 16
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(cin * side * side, emb))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return l2_normalise(self.head(self.features(image * 2.0 - 1.0)))


class IdentityBlock(nn.Module):
    """AdaIN-style identity injection: instance-normalise (N, C, H, W) features, then scale and
    shift each channel by affine maps of the embedding (N, D); followed by a 3x3 conv."""

    def __init__(self, channels: int, emb: int) -> None:
        super().__init__()
        self.norm = nn.InstanceNorm2d(channels, affine=False)
        self.style = nn.Linear(emb, 2 * channels)
        self.conv = nn.Conv2d(channels, channels, 3, 1, 1)
        nn.init.zeros_(self.style.weight)
        nn.init.zeros_(self.style.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        gamma, beta = self.style(emb).unsqueeze(-1).unsqueeze(-1).chunk(2, dim=1)
        return self.conv(F.leaky_relu(self.norm(x) * (1.0 + gamma) + beta, 0.2))


class IdentityResBlock(nn.Module):
    """Two :class:`IdentityBlock` s with a residual connection."""

    def __init__(self, channels: int, emb: int) -> None:
        super().__init__()
        self.a, self.b = IdentityBlock(channels, emb), IdentityBlock(channels, emb)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        return x + self.b(self.a(x, emb), emb)


class SwapGenerator(nn.Module):
    """G: (target crop (N, 3, size, size) sRGB in [0, 1], source embedding (N, emb)) -> the
    swapped crop (N, 3, size, size) in [0, 1]."""

    def __init__(self, base: int = 16, emb: int = 128, blocks: int = 3, depth: int = 3) -> None:
        super().__init__()
        widths = [base * min(2**i, 8) for i in range(depth + 1)]
        self.stem = conv_block(3, widths[0])
        self.down = nn.ModuleList(nn.Sequential(conv_block(widths[i], widths[i + 1], stride=2),
                                                conv_block(widths[i + 1], widths[i + 1])) for i in range(depth))
        self.middle = nn.ModuleList(IdentityResBlock(widths[-1], emb) for _ in range(blocks))
        self.up = nn.ModuleList(conv_block(widths[i + 1] + widths[i], widths[i]) for i in reversed(range(depth)))
        self.up_id = nn.ModuleList(IdentityBlock(widths[i], emb) for i in reversed(range(depth)))
        self.head = nn.Conv2d(widths[0], 3, 3, 1, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # the conv has a bias

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        skips = [self.stem(target * 2.0 - 1.0)]
        for block in self.down:
            skips.append(block(skips[-1]))
        h = skips.pop()
        for block in self.middle:
            h = block(h, source)
        for conv, ident in zip(self.up, self.up_id):
            h = F.interpolate(h, scale_factor=2.0, mode="nearest")
            h = conv(torch.cat([h, skips.pop()], dim=1))
            h = h + ident(h, source)
        return (target + self.head(F.leaky_relu(h, 0.2))).clamp(0.0, 1.0)


class TripletDiscriminator(nn.Module):
    """D: (x, S, F), each (N, 3, H, W) in [0, 1] -> "x is the true target" logits
    (N, 1, H / 2**layers, W / 2**layers)."""

    def __init__(self, base: int = 32, layers: int = 3) -> None:
        super().__init__()
        self.net = patch_discriminator(9, base, layers)

    def forward(self, x: torch.Tensor, source: torch.Tensor, first: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([x, source, first], dim=1) * 2.0 - 1.0)


class FaceSwap(nn.Module):
    """G and D together; ``forward(target, source)`` is G (what is exported)."""

    def __init__(self, base: int = 16, emb: int = 128, blocks: int = 3, depth: int = 3, size: int = 128,
                 disc_base: int = 32, disc_layers: int = 3) -> None:
        super().__init__()
        if size % 2**depth:
            raise ValueError(f"swap size ({size}) must be a multiple of 2**depth ({2**depth})")
        self.generator = SwapGenerator(base, emb, blocks, depth)
        self.discriminator = TripletDiscriminator(disc_base, disc_layers)

    def forward(self, target: torch.Tensor, source: torch.Tensor) -> torch.Tensor:
        return self.generator(target, source)


SWAP_DEFAULTS: dict[str, Any] = {"base": 16, "emb": 128, "blocks": 3, "depth": 3, "size": 128,
                                 "disc_base": 32, "disc_layers": 3}
FACE_ID_DEFAULTS: dict[str, Any] = {"base": 16, "emb": 128, "size": 112}


def _swap_manifest(config: dict[str, Any], task: str) -> Manifest:
    size = int(config["size"])
    return Manifest(
        task="swap" if task == "image-to-image" else task,
        family="swap",
        config=config,
        inputs=[TensorSpec("target", "image", 3, "rgb", (0.0, 1.0)),
                TensorSpec("source", "embedding", 1, "none", (-1.0, 1.0), length=int(config["emb"]))],
        outputs=[TensorSpec("output", "image", 3, "rgb", (0.0, 1.0))],
        size=SizeRequirements(multiple_of=2 ** int(config["depth"]), min_size=size, fixed=(size, size),
                              resize="stretch"),
        tiling=Tiling(supported=False, tile=size, overlap=0),
        fp16=True,
    )


def _face_id_manifest(config: dict[str, Any], task: str) -> Manifest:
    size = int(config["size"])
    return Manifest(
        task="face_id" if task == "image-to-image" else task,
        family="face_id",
        config=config,
        inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
        outputs=[TensorSpec("embedding", "embedding", 1, "none", (-1.0, 1.0), length=int(config["emb"]))],
        size=SizeRequirements(multiple_of=16, min_size=size, fixed=(size, size), resize="stretch"),
        tiling=Tiling(supported=False, tile=size, overlap=0),
        fp16=False,
    )


SWAP_ARCH = register(Architecture("swap", lambda c: FaceSwap(**c), _swap_manifest, SWAP_DEFAULTS))
FACE_ID_ARCH = register(Architecture("face_id", lambda c: FaceIdEncoder(**c), _face_id_manifest, FACE_ID_DEFAULTS))
