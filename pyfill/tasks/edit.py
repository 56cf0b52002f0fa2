"""Text-driven face editing (SPEC S4): "make this face smile", "give her glasses", "blond hair".

The chain: encoder (aligned crop -> W+ latent) -> editing model (``dw``; the edit is
``w + strength * dw``) -> decoder (a StyleGAN-like generator, W+ -> crop). The shipped models
work on 64 x 64 crops aligned to :func:`pyfill.faces.align.template` (64) and were trained on
the procedural faces of ``training.faces`` only.

- A text that one of the per-text editing models was trained for (:data:`TARGETS`, or any text
  whose matcher embedding is closest to one of them) uses that model; any other text the
  matcher can read goes to the conditional editing model, which takes (W+, text embedding).
- The matcher reads a fixed vocabulary (:class:`Tokenizer`); a text with other words raises
  :class:`UnknownTextError`, which lists the attributes it knows.
- ``align=True`` (default): every face is detected (five landmarks), aligned, edited and pasted
  back as in the face swap (pixels outside the faces are returned exactly); ``align=False``:
  the image is taken as an aligned crop and resized to the model's size and back.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyfill.tasks._common import join_alpha, split_alpha, to_array

#: per-text editing models shipped: model name -> the text it was trained for.
TARGETS: dict[str, str] = {
    "edit_mapper_smile": "a smiling face",
    "edit_mapper_open_mouth": "a person with an open mouth",
    "edit_mapper_eyes_closed": "a person with closed eyes",
    "edit_mapper_glasses": "a person with glasses",
    "edit_mapper_blond_hair": "a person with blond hair",
    "edit_mapper_old": "an old person",
}
DEFAULT_MODELS = {"encoder": "edit_encoder", "decoder": "edit_decoder", "text": "edit_matcher_text",
                  "conditional": "edit_mapper_cond"}


class UnknownTextError(ValueError):
    """A text with words the matcher's vocabulary does not hold."""


class Tokenizer:
    """Words -> token ids for the shipped matcher: lower-cased runs of letters, id ``k + 1`` for
    the k-th word of ``vocabulary`` (0 is padding), padded or refused beyond ``length`` words.

    ``attributes``: attribute -> example phrases, listed when a text has unknown words."""

    def __init__(self, vocabulary: list[str], length: int = 16, attributes: dict[str, list[str]] | None = None) -> None:
        if not vocabulary or len(set(vocabulary)) != len(vocabulary):
            raise ValueError("a tokenizer needs a non-empty vocabulary of distinct words")
        self.vocabulary, self.length = list(vocabulary), int(length)
        self.index = {w: i + 1 for i, w in enumerate(self.vocabulary)}
        self.attributes = dict(attributes or {})

    def words(self, text: str) -> list[str]:
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        words = re.findall(r"[a-z]+", text.lower())
        if not words:
            raise UnknownTextError(f"the text {text!r} has no words; {self.known()}")
        unknown = sorted({w for w in words if w not in self.index})
        if unknown:
            raise UnknownTextError(f"the matcher does not know the word(s) {unknown} in {text!r}; {self.known()}")
        if len(words) > self.length:
            raise UnknownTextError(f"the text {text!r} has {len(words)} words; the matcher reads at most {self.length}")
        return words

    def known(self) -> str:
        if not self.attributes:
            return f"known words: {', '.join(self.vocabulary)}"
        parts = [f"{a} (e.g. {' / '.join(repr(p) for p in ps[:2])})" for a, ps in self.attributes.items()]
        return "it knows these attributes: " + "; ".join(parts)

    def __call__(self, texts: str | list[str]) -> np.ndarray:
        """Token ids (N, length) int64 of one text or a list of texts."""
        texts = [texts] if isinstance(texts, str) else list(texts)
        out = np.zeros((len(texts), self.length), np.int64)
        for i, t in enumerate(texts):
            ids = [self.index[w] for w in self.words(t)]
            out[i, : len(ids)] = ids
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"vocabulary": self.vocabulary, "length": self.length, "attributes": self.attributes}

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Tokenizer:
        return cls(list(d["vocabulary"]), int(d.get("length", 16)), dict(d.get("attributes", {})))
