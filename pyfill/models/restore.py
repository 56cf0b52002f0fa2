"""Restoration (SPEC S3): a U-Net generator G with skip connections that maps a degraded sRGB
image to a restored one of the same size, a PatchGAN discriminator D (real = clean image), and
the quality classifier that curates training data (CNN features -> FC -> softmax over poor /
medium / good).

:class:`Restorer` bundles G and D; its ``forward`` runs G only, so the exported ONNX graph is one
fully convolutional image -> image map that the Engine can tile.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling
from pyfill.models import Architecture, register
from pyfill.models.blocks import PatchGAN, UNetBody

QUALITY_CLASSES = ("poor", "medium", "good")
#: The 0-100 quality scale: poor [0, 30), medium [30, 60), good [60, 100]; the score of a
#: prediction is the probability-weighted mean of these class centres.
QUALITY_CENTRES = (15.0, 45.0, 80.0)
QUALITY_BOUNDS = (30.0, 60.0)


class RestoreGenerator(UNetBody):
    """U-Net G: sRGB (N, 3, H, W) float in [0, 1] -> restored sRGB (N, 3, H, W) in [0, 1].

    Strided-conv encoder, nearest-upsampling decoder, a skip connection at every scale, and a
    global residual: the network predicts a correction added to its input (clipped to [0, 1]);
    the correction starts at zero. H and W must be multiples of 2**depth.
    """

    def __init__(self, base: int = 16, depth: int = 3) -> None:
        super().__init__(3, base, depth)
        self.head = nn.Conv2d(self.width, 3, 3, 1, 1)
        # A zero correction at the start: an untrained G is the identity.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)  # type: ignore[arg-type]  # the conv has a bias

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return (image + self.head(self.features(image * 2.0 - 1.0))).clamp(0.0, 1.0)


class PatchDiscriminator(PatchGAN):
    """PatchGAN D: sRGB (N, 3, H, W) in [0, 1] -> "real" logits (N, 1, H / 2**layers,
    W / 2**layers), one per overlapping patch (clean images are real; degraded and generated
    ones are fake)."""

    def __init__(self, base: int = 16, layers: int = 3) -> None:
        super().__init__(3, base, layers)

    def prepare(self, image: torch.Tensor) -> torch.Tensor:  # type: ignore[override]
        return image * 2.0 - 1.0


class Restorer(nn.Module):
    """G and D together; ``forward(image)`` is G: (N, 3, H, W) in [0, 1] -> (N, 3, H, W) in [0, 1].

    With ``gate``, a quality classifier (:class:`QualityNet` of width ``quality_base`` and
    ``quality_layers`` stages) rates each input and G's correction is scaled by
    g = clip((``gate_high`` - score) / (``gate_high`` - ``gate_low``), 0, 1): an input scored at
    least ``gate_high`` (0-100 scale) comes out unchanged, one scored at most ``gate_low`` gets G's
    full correction, and the output is input + g (G(input) - input).
    """

    def __init__(self, base: int = 16, depth: int = 3, disc_base: int = 16, disc_layers: int = 3,
                 gate: bool = False, quality_base: int = 8, quality_layers: int = 4, gate_low: float = 45.0,
                 gate_high: float = 55.0) -> None:
        super().__init__()
        if gate and not gate_low < gate_high:
            raise ValueError(f"gate_low must be below gate_high, got {gate_low} and {gate_high}")
        self.generator = RestoreGenerator(base, depth)
        self.discriminator = PatchDiscriminator(disc_base, disc_layers)
        self.quality = QualityNet(quality_base, quality_layers) if gate else None
        self.gate_low, self.gate_high = float(gate_low), float(gate_high)

    def gate(self, image: torch.Tensor) -> torch.Tensor:
        """The share of G's correction applied to each image: (N, 3, H, W) -> (N, 1, 1, 1) in
        [0, 1] (all ones without a gate)."""
        if self.quality is None:
            return torch.ones(image.shape[0], 1, 1, 1, dtype=image.dtype, device=image.device)
        score = quality_score(torch.softmax(self.quality(image).float(), dim=1))
        g = ((self.gate_high - score) / (self.gate_high - self.gate_low)).clamp(0.0, 1.0)
        return g.reshape(-1, 1, 1, 1).to(image.dtype)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        restored = self.generator(image)
        if self.quality is None:
            return restored
        return image + self.gate(image) * (restored - image)


class QualityNet(nn.Module):
    """Quality classifier: sRGB (N, 3, H, W) in [0, 1] (any size >= 2**layers) -> logits (N, 3)
    over :data:`QUALITY_CLASSES`. CNN features (strided convs with batch normalisation), global
    average pooling, then a fully connected layer; softmax of the logits gives the class
    probabilities. ``stride``: the features' total downsampling (2**layers)."""

    def __init__(self, base: int = 16, layers: int = 4) -> None:
        super().__init__()
        mods: list[nn.Module] = []
        cin = 3
        for i in range(layers):
            cout = base * min(2**i, 8)
            mods += [nn.Conv2d(cin, cout, 3, 2, 1), nn.BatchNorm2d(cout), nn.ReLU(),
                     nn.Conv2d(cout, cout, 3, 1, 1), nn.BatchNorm2d(cout), nn.ReLU()]
            cin = cout
        self.features = nn.Sequential(*mods)
        self.stride = 2**layers
        self.fc = nn.Linear(cin, len(QUALITY_CLASSES))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return self.fc(self.features(image * 2.0 - 1.0).mean(dim=(2, 3)))


def quality_score(probabilities: torch.Tensor) -> torch.Tensor:
    """Class probabilities (N, 3) (poor, medium, good) -> scores (N,) on the 0-100 scale: the
    probability-weighted mean of :data:`QUALITY_CENTRES`."""
    return probabilities @ torch.tensor(QUALITY_CENTRES, dtype=probabilities.dtype, device=probabilities.device)


def quality_class(score: float) -> str:
    """A 0-100 score -> ``poor`` (< 30), ``medium`` (< 60) or ``good``."""
    if not 0.0 <= score <= 100.0:
        raise ValueError(f"quality scores lie in [0, 100], got {score}")
    return QUALITY_CLASSES[sum(score >= b for b in QUALITY_BOUNDS)]


RESTORE_DEFAULTS: dict[str, Any] = {"base": 16, "depth": 3, "disc_base": 16, "disc_layers": 3, "gate": False,
                                    "quality_base": 8, "quality_layers": 4, "gate_low": 45.0, "gate_high": 55.0}
QUALITY_DEFAULTS: dict[str, Any] = {"base": 16, "layers": 4}


def _restore_manifest(config: dict[str, Any], task: str) -> Manifest:
    m = 2 ** max(config["depth"], config["quality_layers"] if config["gate"] else 0)
    return Manifest(
        task="restore" if task == "image-to-image" else task,
        family="restore",
        config=config,
        inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
        outputs=[TensorSpec("restored", "image", 3, "rgb", (0.0, 1.0))],
        size=SizeRequirements(multiple_of=m, min_size=m),
        # A gated model rates what it sees: large tiles, so that most pictures are rated whole.
        tiling=Tiling(supported=True, tile=1024 if config["gate"] else 256, overlap=32),
        fp16=True,
    )


def _quality_manifest(config: dict[str, Any], task: str) -> Manifest:
    m = 2 ** config["layers"]
    return Manifest(
        task="quality" if task == "image-to-image" else task,
        family="quality",
        config=config,
        inputs=[TensorSpec("image", "image", 3, "rgb", (0.0, 1.0))],
        outputs=[TensorSpec("logits", "vector", 3, "none", (-1e4, 1e4), length=len(QUALITY_CLASSES))],
        size=SizeRequirements(multiple_of=m, min_size=m),
        tiling=Tiling(supported=False, tile=512, overlap=32),
        fp16=False,
    )


RESTORE_ARCH = register(Architecture("restore", lambda c: Restorer(**c), _restore_manifest, RESTORE_DEFAULTS))
QUALITY_ARCH = register(Architecture("quality", lambda c: QualityNet(**c), _quality_manifest, QUALITY_DEFAULTS))
