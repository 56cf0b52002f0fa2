"""Image-text matchers for editing with CLIP's interface: ``tokenize(texts)`` -> token ids,
``encode_text(tokens)`` and ``encode_image(images)`` -> embeddings compared by cosine.

* :class:`ShippedMatcher`: pyfill's small dual encoder (:class:`pyfill.models.edit.DualEncoder`)
  with its fixed-vocabulary :class:`pyfill.tasks.edit.Tokenizer`; images are aligned crops
  (N, 3, 64, 64) sRGB in [0, 1].
* :class:`ClipMatcher`: an open_clip model the user has on disk (or one created without
  weights, for tests). Images (N, 3, H, W) in [0, 1] are resized to the model's input size and
  normalised with its mean / std; nothing is ever downloaded.

:func:`load_matcher` builds either from one argument: a pyfill ``edit_matcher`` checkpoint,
``"clip:MODEL"`` (random weights) or ``"clip:MODEL:/path/to/checkpoint"``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from pyfill._core import require
from pyfill.tasks.edit import Tokenizer


class ShippedMatcher(nn.Module):
    """pyfill's dual encoder behind CLIP's three methods."""

    model: Any

    def __init__(self, model: nn.Module, tokenizer: Tokenizer) -> None:
        super().__init__()
        self.model, self.tokenizer = model, tokenizer

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        """(N, L) int64 token ids; :class:`pyfill.tasks.edit.UnknownTextError` for unknown words."""
        return torch.from_numpy(self.tokenizer(texts))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return self.model.encode_text(tokens.to(next(self.model.parameters()).device))

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(images)


class ClipMatcher(nn.Module):
    """An open_clip model behind the same interface; ``encode_*`` return unit embeddings."""

    model: Any
    mean: torch.Tensor
    std: torch.Tensor

    def __init__(self, model: nn.Module, tokenizer: Any, image_size: int, mean: tuple[float, ...],
                 std: tuple[float, ...]) -> None:
        super().__init__()
        self.model, self.tokenizer, self.image_size = model, tokenizer, int(image_size)
        self.register_buffer("mean", torch.tensor(mean, dtype=torch.float32).reshape(1, 3, 1, 1))
        self.register_buffer("std", torch.tensor(std, dtype=torch.float32).reshape(1, 3, 1, 1))

    def tokenize(self, texts: str | list[str]) -> torch.Tensor:
        return self.tokenizer([texts] if isinstance(texts, str) else list(texts))

    def encode_text(self, tokens: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_text(tokens.to(self.mean.device)).float(), dim=-1)

    def encode_image(self, images: torch.Tensor) -> torch.Tensor:
        x = F.interpolate(images, size=(self.image_size, self.image_size), mode="bilinear", align_corners=False)
        return F.normalize(self.model.encode_image((x - self.mean) / self.std).float(), dim=-1)


def clip_matcher(model_name: str, checkpoint: str | Path | None = None) -> ClipMatcher:
    """An open_clip ``model_name`` (e.g. ``"RN50"``, ``"ViT-B-32"``) with the weights of a local
    ``checkpoint`` file, or with random weights when None (tests). Never downloads."""
    open_clip = require("open_clip", "clip")
    if checkpoint is not None and not Path(checkpoint).is_file():
        raise FileNotFoundError(f"CLIP checkpoint not found: {checkpoint}")
    model = open_clip.create_model(model_name, pretrained=str(checkpoint) if checkpoint else None)
    model.eval()
    for p in model.parameters():
        p.requires_grad_(False)
    size = model.visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    mean = getattr(model.visual, "image_mean", None) or open_clip.OPENAI_DATASET_MEAN
    std = getattr(model.visual, "image_std", None) or open_clip.OPENAI_DATASET_STD
    return ClipMatcher(model, open_clip.get_tokenizer(model_name), int(size), tuple(mean), tuple(std))


def load_matcher(spec: str | Path) -> nn.Module:
    """A matcher from one argument: ``"clip:MODEL"`` / ``"clip:MODEL:CHECKPOINT"`` (open_clip),
    or a pyfill ``edit_matcher`` checkpoint (``.safetensors`` with its ``.json``, or a name in
    the store). The matcher is frozen and in eval mode."""
    text = str(spec)
    if text.startswith("clip:"):
        parts = text.split(":", 2)
        if len(parts) < 2 or not parts[1]:
            raise ValueError(f"a CLIP matcher is 'clip:MODEL' or 'clip:MODEL:CHECKPOINT', got {text!r}")
        return clip_matcher(parts[1], parts[2] if len(parts) == 3 and parts[2] else None)
    from pyfill.export import load_checkpoint
    from pyfill.store import resolve_model

    module, manifest = load_checkpoint(resolve_model(spec))
    if manifest.family != "edit_matcher":
        raise ValueError(f"{spec}: an edit_matcher checkpoint is needed, got the {manifest.family} family")
    c = manifest.config
    matcher = ShippedMatcher(module, Tokenizer(list(c["vocabulary"]), int(c["length"]), dict(c["attributes"])))
    for p in matcher.parameters():
        p.requires_grad_(False)
    return matcher.eval()
