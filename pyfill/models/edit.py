"""Text-driven face editing (SPEC S4): the StyleGAN-like decoder, the image -> W+ encoder, the
latent mappers and the image-text matcher.

Shapes (``size`` = 64 by default, aligned crops with the ``pyfill.faces.align.template(size)``
five-point template):

* :class:`StyleDecoder` (family ``edit_decoder``): a W+ latent (N, num_ws, w_dim) -> an image
  (N, 3, size, size) sRGB in [0, 1]. A learned 4 x 4 constant is refined by style-modulated 3x3
  convolutions (weights modulated per sample by an affine map of that layer's w, then
  demodulated), doubled in resolution up to ``size``; RGB is summed over the scales (StyleGAN2's
  skip outputs). :class:`MappingNetwork` (z (N, z_dim) -> w (N, w_dim)) draws the latents the
  GAN is trained on; W+ repeats w once per layer (``num_ws`` layers).
* :class:`LatentEncoder` (family ``edit_encoder``): an aligned crop (N, 3, size, size) in [0, 1]
  -> W+ (N, num_ws, w_dim), predicted as the average latent plus an offset per layer.
* :class:`LatentMapper` (family ``edit_mapper``): W+ -> dW+ for one target text, residual fully
  connected blocks per group of layers; the edit is ``w + alpha * dw``.
  :class:`ConditionalMapper` (family ``edit_mapper_cond``) takes (W+, text embedding (N, E)).
* :class:`ImageTower` / :class:`TextTower` (families ``edit_matcher_image`` / ``_text``): the
  matcher's dual encoder; both give unit embeddings (N, E) compared by cosine (CLIP's contract).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill.manifest import Manifest, SizeRequirements, TensorSpec
from pyfill.models import Architecture, register


def _channels(size: int, base: int, cap: int) -> list[tuple[int, int]]:
    """(resolution, channels) from 4 up to ``size``; channels halve per doubling from ``cap``."""
    if size < 8 or size & (size - 1):
        raise ValueError(f"size must be a power of two >= 8, got {size}")
    out, res, ch = [], 4, cap
    while res <= size:
        out.append((res, max(base, ch)))
        res, ch = res * 2, ch // 2 if res >= 8 else ch
    return out


def num_ws_for(size: int) -> int:
    """Layers of W+ for a decoder of ``size``: one conv at 4 x 4, two per doubling after it."""
    return 1 + 2 * (int(math.log2(size)) - 2)


class EqualLinear(nn.Module):
    """A linear layer with weights scaled at run time (StyleGAN's equalised learning rate);
    ``lr_mul`` slows the layer down (0.01 for the mapping network)."""

    def __init__(self, cin: int, cout: int, bias_init: float = 0.0, lr_mul: float = 1.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin) / lr_mul)
        self.bias = nn.Parameter(torch.full((cout,), float(bias_init) / lr_mul))
        self.scale, self.lr_mul = lr_mul / math.sqrt(cin), lr_mul

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.linear(x, self.weight * self.scale, self.bias * self.lr_mul)


class MappingNetwork(nn.Module):
    """z (N, z_dim) -> w (N, w_dim): pixel-norm (``normalize``), then ``layers`` leaky-ReLU
    equalised layers learning ``lr_mul`` times slower than the rest (StyleGAN's 0.01 for
    Gaussian z; 1 when z is a face's parameter vector and w must follow it closely)."""

    def __init__(self, z_dim: int = 64, w_dim: int = 128, layers: int = 4, normalize: bool = True,
                 lr_mul: float = 0.01) -> None:
        super().__init__()
        self.z_dim, self.normalize = z_dim, normalize
        mods: list[nn.Module] = []
        for i in range(layers):
            mods += [EqualLinear(z_dim if i == 0 else w_dim, w_dim, lr_mul=lr_mul), nn.LeakyReLU(0.2)]
        self.net = nn.Sequential(*mods)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        if self.normalize:
            z = z / torch.sqrt((z * z).mean(dim=1, keepdim=True) + 1e-8)
        return self.net(z) * math.sqrt(2.0)


class ModulatedConv(nn.Module):
    """A 3x3 (or 1x1) convolution whose input channels are scaled by ``affine(w)`` and whose
    output is demodulated (divided by the norm of the modulated weights), written as scale ->
    plain conv -> scale, which equals StyleGAN2's grouped form and exports with a dynamic batch."""

    def __init__(self, cin: int, cout: int, w_dim: int, kernel: int = 3, demodulate: bool = True,
                 upsample: bool = False) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, cin, kernel, kernel))
        self.bias = nn.Parameter(torch.zeros(cout))
        self.affine = EqualLinear(w_dim, cin, bias_init=1.0)
        self.scale = 1.0 / math.sqrt(cin * kernel * kernel)
        self.demodulate, self.upsample, self.pad = demodulate, upsample, kernel // 2

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        style = self.affine(w)  # (N, cin)
        weight = self.weight * self.scale
        if self.upsample:
            x = F.interpolate(x, scale_factor=2.0, mode="bilinear", align_corners=False)
        y = F.conv2d(x * style[:, :, None, None], weight, padding=self.pad)
        if self.demodulate:
            k2 = weight.shape[2] * weight.shape[3]
            norm = torch.sqrt((style * style) @ ((weight * weight).mean(dim=(2, 3)) * k2).t() + 1e-8)  # (N, cout)
            y = y / norm[:, :, None, None]
        return y + self.bias[None, :, None, None]


class StyleLayer(nn.Module):
    def __init__(self, cin: int, cout: int, w_dim: int, upsample: bool = False) -> None:
        super().__init__()
        self.conv = ModulatedConv(cin, cout, w_dim, upsample=upsample)

    def forward(self, x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
        return F.leaky_relu(self.conv(x, w), 0.2) * math.sqrt(2.0)


class StyleDecoder(nn.Module):
    """The synthesis network: W+ (N, num_ws, w_dim) -> image (N, 3, size, size) in [0, 1].

    The RGB output before the final clamp is ``0.5 + 0.5 * raw``; :meth:`raw` returns ``raw``
    in about [-1, 1] (what the discriminator sees while training)."""

    def __init__(self, size: int = 64, w_dim: int = 128, base: int = 16, cap: int = 128) -> None:
        super().__init__()
        self.size, self.w_dim = size, w_dim
        chans = _channels(size, base, cap)
        self.num_ws = num_ws_for(size)
        self.const = nn.Parameter(torch.randn(1, chans[0][1], 4, 4))
        self.layers = nn.ModuleList([StyleLayer(chans[0][1], chans[0][1], w_dim)])
        self.to_rgb = nn.ModuleList([ModulatedConv(chans[0][1], 3, w_dim, kernel=1, demodulate=False)])
        cin = chans[0][1]
        for _, ch in chans[1:]:
            self.layers.append(StyleLayer(cin, ch, w_dim, upsample=True))
            self.layers.append(StyleLayer(ch, ch, w_dim))
            self.to_rgb.append(ModulatedConv(ch, 3, w_dim, kernel=1, demodulate=False))
            cin = ch

    def raw(self, ws: torch.Tensor) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1] != self.num_ws or ws.shape[2] != self.w_dim:
            raise ValueError(f"W+ must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        x = self.const.expand(ws.shape[0], -1, -1, -1)
        x = self.layers[0](x, ws[:, 0])
        rgb = self.to_rgb[0](x, ws[:, 0])
        for i in range(1, len(self.to_rgb)):
            x = self.layers[2 * i - 1](x, ws[:, 2 * i - 1])
            x = self.layers[2 * i](x, ws[:, 2 * i])
            up = F.interpolate(rgb, scale_factor=2.0, mode="bilinear", align_corners=False)
            rgb = up + self.to_rgb[i](x, ws[:, 2 * i])
        return rgb

    def forward(self, ws: torch.Tensor) -> torch.Tensor:
        return (0.5 + 0.5 * self.raw(ws)).clamp(0.0, 1.0)


class StyleGenerator(nn.Module):
    """Mapping network + decoder, the GAN's generator: z (N, z_dim) -> image. ``w_avg`` is the
    running mean of w (the truncation centre and the encoder's starting point). ``z_norm``:
    pixel-normalise z (StyleGAN's Gaussian z); off when z is a face's parameter vector."""

    def __init__(self, size: int = 64, z_dim: int = 64, w_dim: int = 128, mapping_layers: int = 4, base: int = 16,
                 cap: int = 128, z_norm: bool = True, mapping_lr_mul: float = 0.01) -> None:
        super().__init__()
        self.mapping = MappingNetwork(z_dim, w_dim, mapping_layers, z_norm, mapping_lr_mul)
        self.decoder = StyleDecoder(size, w_dim, base, cap)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def ws(self, z: torch.Tensor, psi: float = 1.0) -> torch.Tensor:
        """W+ (N, num_ws, w_dim) of ``z``, truncated towards ``w_avg`` by ``psi`` (1 = none)."""
        w = self.mapping(z)
        if psi != 1.0:
            w = self.w_avg + psi * (w - self.w_avg)
        return w[:, None, :].expand(-1, self.decoder.num_ws, -1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.ws(z))


class _DownBlock(nn.Module):
    """Residual block that halves the resolution: two 3x3 convs beside a strided 1x1 skip."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv1, self.conv2 = nn.Conv2d(cin, cin, 3, 1, 1), nn.Conv2d(cin, cout, 3, 2, 1)
        self.skip = nn.Conv2d(cin, cout, 1, 2, 0, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.leaky_relu(self.conv2(F.leaky_relu(self.conv1(x), 0.2)), 0.2)
        return (y + self.skip(x)) / math.sqrt(2.0)


class StyleDiscriminator(nn.Module):
    """Residual downsampling discriminator with a minibatch standard-deviation channel:
    image (N, 3, size, size) in [-1, 1] -> logits (N,)."""

    def __init__(self, size: int = 64, base: int = 16, cap: int = 128) -> None:
        super().__init__()
        chans = list(reversed(_channels(size, base, cap)))
        self.stem = nn.Conv2d(3, chans[0][1], 1)
        self.blocks = nn.ModuleList([_DownBlock(cin, cout) for (_, cin), (_, cout) in zip(chans[:-1], chans[1:])])
        c = chans[-1][1]
        self.final = nn.Conv2d(c + 1, c, 3, 1, 1)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, c), nn.LeakyReLU(0.2), nn.Linear(c, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.leaky_relu(self.stem(x), 0.2)
        for block in self.blocks:
            x = block(x)
        group = min(4, x.shape[0])
        while x.shape[0] % group:
            group -= 1
        n, c, h, w = x.shape
        std = x.reshape(group, -1, c, h, w).var(dim=0, unbiased=False).add(1e-8).sqrt().mean(dim=(1, 2, 3))
        std = std.reshape(-1, 1, 1, 1).repeat(group, 1, h, w)
        x = F.leaky_relu(self.final(torch.cat([x, std], dim=1)), 0.2)
        return self.head(x).squeeze(1)


def conv_tower(size: int, base: int, cap: int, cin: int = 3) -> tuple[nn.Sequential, int]:
    """Strided 3x3 conv + leaky-ReLU stages from ``size`` down to 4 x 4: (module, channels).

    The convolutions start from He initialisation (gain of the leaky ReLU), so that the signal
    keeps its scale through the depth (PyTorch's default shrinks it about 3x per layer, and
    the 9-layer tower then starts out blind to its input)."""
    layers: list[nn.Module] = [nn.Conv2d(cin, base, 3, 1, 1), nn.LeakyReLU(0.2)]
    c, res = base, size
    while res > 4:
        nxt = min(cap, c * 2)
        layers += [nn.Conv2d(c, nxt, 3, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(nxt, nxt, 3, 1, 1), nn.LeakyReLU(0.2)]
        c, res = nxt, res // 2
    for layer in layers:
        if isinstance(layer, nn.Conv2d):
            nn.init.kaiming_normal_(layer.weight, a=0.2, nonlinearity="leaky_relu")
            if layer.bias is not None:
                nn.init.zeros_(layer.bias)
    return nn.Sequential(*layers), c


class LatentEncoder(nn.Module):
    """Aligned crop (N, 3, size, size) in [0, 1] -> W+ (N, num_ws, w_dim) = ``w_avg`` + offsets."""

    def __init__(self, size: int = 64, w_dim: int = 128, base: int = 16, cap: int = 64, hidden: int = 256) -> None:
        super().__init__()
        self.num_ws, self.w_dim = num_ws_for(size), w_dim
        self.features, c = conv_tower(size, base, cap)
        last = nn.Linear(hidden, self.num_ws * w_dim)
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, hidden), nn.LeakyReLU(0.2), last)
        self.register_buffer("w_avg", torch.zeros(w_dim))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        off = self.head(self.features(image * 2.0 - 1.0)).reshape(-1, self.num_ws, self.w_dim)
        return self.w_avg + off


class _ResidualFC(nn.Module):
    def __init__(self, dim: int, hidden: int) -> None:
        super().__init__()
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.fc2(F.leaky_relu(self.fc1(x), 0.2))


class LatentMapper(nn.Module):
    """One target text's editing model: W+ (N, num_ws, w_dim) -> dW+ of the same shape.

    The layers of W+ are split into coarse / medium / fine groups (StyleCLIP's latent mapper);
    each group has its own residual fully connected stack; the last layer starts at zero, so an
    untrained mapper does not edit. ``cond`` > 0 adds a text-embedding input of that length
    (the conditional mapper): the embedding is concatenated to each layer's w."""

    def __init__(self, num_ws: int = 9, w_dim: int = 128, hidden: int = 64, blocks: int = 1, cond: int = 0) -> None:
        super().__init__()
        self.num_ws, self.w_dim, self.cond = num_ws, w_dim, cond
        bounds = [0, min(3, num_ws), min(6, num_ws), num_ws]
        self.groups = [(a, b) for a, b in zip(bounds[:-1], bounds[1:]) if b > a]
        self.nets = nn.ModuleList()
        for _ in self.groups:
            last = nn.Linear(hidden, w_dim)
            nn.init.zeros_(last.weight)
            nn.init.zeros_(last.bias)
            self.nets.append(nn.Sequential(nn.Linear(w_dim + cond, hidden), nn.LeakyReLU(0.2),
                                           *[_ResidualFC(hidden, hidden) for _ in range(blocks)], last))

    def forward(self, ws: torch.Tensor, text: torch.Tensor | None = None) -> torch.Tensor:
        if ws.ndim != 3 or ws.shape[1:] != (self.num_ws, self.w_dim):
            raise ValueError(f"W+ must have shape (N, {self.num_ws}, {self.w_dim}), got {tuple(ws.shape)}")
        x = ws
        if self.cond:
            if text is None or text.ndim != 2 or text.shape[1] != self.cond:
                raise ValueError(f"the conditional mapper needs a text embedding (N, {self.cond})")
            x = torch.cat([ws, text[:, None, :].expand(-1, self.num_ws, -1)], dim=2)
        return torch.cat([net(x[:, a:b]) for net, (a, b) in zip(self.nets, self.groups)], dim=1)


class ImageTower(nn.Module):
    """The matcher's image encoder: an aligned crop (N, 3, size, size) in [0, 1] -> unit
    embedding (N, embed)."""

    def __init__(self, size: int = 64, embed: int = 64, base: int = 16, cap: int = 128) -> None:
        super().__init__()
        self.features, c = conv_tower(size, base, cap)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, 256), nn.LeakyReLU(0.2), nn.Linear(256, embed))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.head(self.features(image * 2.0 - 1.0)), dim=1)


class TextTower(nn.Module):
    """The matcher's text encoder: token ids (N, L) int64 (0 = padding) -> unit embedding
    (N, embed). Word embeddings with a learned position term, a masked mean and an MLP."""

    def __init__(self, vocab: int = 128, length: int = 16, embed: int = 64, width: int = 128) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab, width, padding_idx=0)
        self.position = nn.Parameter(torch.zeros(length, width))
        self.mlp = nn.Sequential(nn.Linear(width, width), nn.LeakyReLU(0.2), nn.Linear(width, embed))
        self.length = length

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        mask = tokens.clamp(0, 1).float()[..., None]  # 0 for padding, 1 for words
        x = (self.tokens(tokens) + self.position[None, : tokens.shape[1]]) * mask
        x = x.mean(dim=1) / mask.mean(dim=1).clamp(min=1e-6)
        return F.normalize(self.mlp(x), dim=1)


class DualEncoder(nn.Module):
    """The matcher: :class:`ImageTower` ``image`` and :class:`TextTower` ``text``;
    ``forward(image, tokens)`` gives the cosine (N, 1) of each image with its own text."""

    def __init__(self, size: int = 64, embed: int = 64, base: int = 16, cap: int = 128, vocab: int = 128,
                 length: int = 16, width: int = 128) -> None:
        super().__init__()
        self.image = ImageTower(size, embed, base, cap)
        self.text = TextTower(vocab, length, embed, width)

    def encode_image(self, image: torch.Tensor) -> torch.Tensor:
        return self.image(image)

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.text(tokens)

    def forward(self, image: torch.Tensor, tokens: torch.Tensor) -> torch.Tensor:
        prod = self.image(image) * self.text(tokens)
        return prod.mean(dim=1, keepdim=True) * prod.shape[1]  # the cosine (N, 1), as ReduceMean


class AttributeRegressor(nn.Module):
    """Evaluation only: an aligned crop (N, 3, size, size) in [0, 1] -> the seven edited
    attributes (N, 7) in [0, 1] (``training.edit_data.ATTRIBUTES``)."""

    def __init__(self, size: int = 64, outputs: int = 7, base: int = 16, cap: int = 128) -> None:
        super().__init__()
        self.features, c = conv_tower(size, base, cap)
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(c * 16, 256), nn.LeakyReLU(0.2), nn.Linear(256, outputs))

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.head(self.features(image * 2.0 - 1.0)))


# ---- registry ---------------------------------------------------------------------------------
def _image_spec(name: str) -> TensorSpec:
    return TensorSpec(name, "image", 3, "rgb", (0.0, 1.0))


def _ws_spec(name: str, num_ws: int, w_dim: int, value_range: tuple[float, float] = (-10.0, 10.0)) -> TensorSpec:
    return TensorSpec(name, "tensor", 1, "none", value_range, shape=[num_ws, w_dim])


def _fixed(size: int) -> SizeRequirements:
    return SizeRequirements(fixed=(size, size), resize="stretch")


DECODER_DEFAULTS = {"size": 64, "z_dim": 64, "w_dim": 128, "mapping_layers": 4, "base": 16, "cap": 128, "z_norm": True,
                    "mapping_lr_mul": 0.01}
ENCODER_DEFAULTS = {"size": 64, "w_dim": 128, "base": 16, "cap": 64, "hidden": 256}
MAPPER_DEFAULTS = {"num_ws": 9, "w_dim": 128, "hidden": 64, "blocks": 1, "cond": 0, "text": "", "vocabulary": []}
IMAGE_TOWER_DEFAULTS = {"size": 64, "embed": 64, "base": 16, "cap": 128}
TEXT_TOWER_DEFAULTS = {"vocab": 128, "length": 16, "embed": 64, "width": 128, "vocabulary": []}


def _decoder_manifest(c: dict[str, Any], task: str) -> Manifest:
    n = num_ws_for(int(c["size"]))
    return Manifest(family="edit_decoder", task=task or "edit", config=dict(c),
                    inputs=[_ws_spec("wplus", n, int(c["w_dim"]))], outputs=[_image_spec("image")],
                    size=_fixed(int(c["size"])))


def _generator_manifest(c: dict[str, Any], task: str) -> Manifest:
    return Manifest(family="edit_generator", task=task or "edit", config=dict(c),
                    inputs=[TensorSpec("z", "vector", 1, "none", (-5.0, 5.0), length=int(c["z_dim"]))],
                    outputs=[_image_spec("image")], size=SizeRequirements())


def _encoder_manifest(c: dict[str, Any], task: str) -> Manifest:
    n = num_ws_for(int(c["size"]))
    return Manifest(family="edit_encoder", task=task or "edit", config=dict(c),
                    inputs=[_image_spec("image")], outputs=[_ws_spec("wplus", n, int(c["w_dim"]))],
                    size=_fixed(int(c["size"])))


def _mapper_manifest(c: dict[str, Any], task: str) -> Manifest:
    n, d = int(c["num_ws"]), int(c["w_dim"])
    inputs = [_ws_spec("wplus", n, d)]
    if int(c["cond"]):
        inputs.append(TensorSpec("text_embedding", "embedding", 1, "none", (-1.0, 1.0), length=int(c["cond"])))
    return Manifest(family="edit_mapper", task=task or "edit", config=dict(c), inputs=inputs,
                    outputs=[_ws_spec("delta", n, d)], size=SizeRequirements())


def _image_tower_manifest(c: dict[str, Any], task: str) -> Manifest:
    return Manifest(family="edit_matcher_image", task=task or "edit", config=dict(c),
                    inputs=[_image_spec("image")],
                    outputs=[TensorSpec("embedding", "embedding", 1, "none", (-1.0, 1.0), length=int(c["embed"]))],
                    size=_fixed(int(c["size"])))


def _text_tower_manifest(c: dict[str, Any], task: str) -> Manifest:
    return Manifest(family="edit_matcher_text", task=task or "edit", config=dict(c),
                    inputs=[TensorSpec("tokens", "tokens", 1, "none", (0.0, float(c["vocab"] - 1)),
                                       shape=[int(c["length"])], vocabulary=list(c["vocabulary"]))],
                    outputs=[TensorSpec("embedding", "embedding", 1, "none", (-1.0, 1.0), length=int(c["embed"]))],
                    size=SizeRequirements())


MATCHER_DEFAULTS = {**IMAGE_TOWER_DEFAULTS, **TEXT_TOWER_DEFAULTS, "attributes": {}}
REGRESSOR_DEFAULTS = {"size": 64, "outputs": 7, "base": 16, "cap": 128, "attributes": []}


def _matcher_manifest(c: dict[str, Any], task: str) -> Manifest:
    return Manifest(family="edit_matcher", task=task or "edit", config=dict(c),
                    inputs=[_image_spec("image"),
                            TensorSpec("tokens", "tokens", 1, "none", (0.0, float(c["vocab"] - 1)),
                                       shape=[int(c["length"])], vocabulary=list(c["vocabulary"]))],
                    outputs=[TensorSpec("cosine", "vector", 1, "none", (-1.0, 1.0), length=1)],
                    size=_fixed(int(c["size"])))


def _regressor_manifest(c: dict[str, Any], task: str) -> Manifest:
    return Manifest(family="edit_attributes", task=task or "edit", config=dict(c),
                    inputs=[_image_spec("image")],
                    outputs=[TensorSpec("attributes", "vector", 1, "none", (0.0, 1.0), length=int(c["outputs"]))],
                    size=_fixed(int(c["size"])))


def _only(keys: dict[str, Any], c: dict[str, Any]) -> dict[str, Any]:
    return {k: c[k] for k in keys if k in c and k not in ("text", "vocabulary", "attributes")}


register(Architecture("edit_decoder", lambda c: StyleGenerator(**_only(DECODER_DEFAULTS, c)).decoder,
                      _decoder_manifest, DECODER_DEFAULTS))
register(Architecture("edit_generator", lambda c: StyleGenerator(**_only(DECODER_DEFAULTS, c)),
                      _generator_manifest, DECODER_DEFAULTS))
register(Architecture("edit_encoder", lambda c: LatentEncoder(**_only(ENCODER_DEFAULTS, c)),
                      _encoder_manifest, ENCODER_DEFAULTS))
register(Architecture("edit_mapper", lambda c: LatentMapper(**_only(MAPPER_DEFAULTS, c)),
                      _mapper_manifest, MAPPER_DEFAULTS))
register(Architecture("edit_matcher_image", lambda c: ImageTower(**_only(IMAGE_TOWER_DEFAULTS, c)),
                      _image_tower_manifest, IMAGE_TOWER_DEFAULTS))
register(Architecture("edit_matcher_text", lambda c: TextTower(**_only(TEXT_TOWER_DEFAULTS, c)),
                      _text_tower_manifest, TEXT_TOWER_DEFAULTS))
register(Architecture("edit_matcher", lambda c: DualEncoder(**_only(MATCHER_DEFAULTS, c)),
                      _matcher_manifest, MATCHER_DEFAULTS))
register(Architecture("edit_attributes", lambda c: AttributeRegressor(**_only(REGRESSOR_DEFAULTS, c)),
                      _regressor_manifest, REGRESSOR_DEFAULTS))
