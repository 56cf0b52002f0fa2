"""Text-driven face editing (SPEC S4): "make this face smile", "give her glasses", "blond hair".

The chain: encoder (aligned crop -> W+ latent) -> editing model (``dw``; the edit is
``w + strength * dw``) -> decoder (a StyleGAN-like generator, W+ -> crop). The shipped models
work on 64 x 64 crops aligned to :func:`pyfill.faces.align.template` (64) and were trained on
the procedural faces of ``training.faces`` only.

- A text that one of the per-text editing models was trained for (:data:`TARGETS`, compared
  lower-cased and without punctuation) uses that model; any other text the matcher can read
  goes to the conditional editing model, which takes (W+, text embedding).
- The matcher reads a fixed vocabulary (:class:`Tokenizer`); a text with other words raises
  :class:`UnknownTextError`, which lists the attributes it knows.
- ``align=True`` (default): every face is detected (five landmarks), aligned, edited and pasted
  back as in the face swap (pixels outside the faces are returned exactly); ``align=False``:
  the image is taken as an aligned crop and resized to the model's size and back.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyfill.tasks._common import back_to_form, face_rgb

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


@dataclass
class EditResult:
    """``image``: the edited image in the input's form (gray stays gray, alpha kept);
    ``model``: the editing model used (a per-text model's name, or the conditional model's);
    ``faces_found`` / ``faces_edited``: with ``align=True``, faces detected and edited (1 and 1
    for an aligned crop); ``warnings``: what was reported."""

    image: np.ndarray
    model: str
    faces_found: int
    faces_edited: int
    warnings: list[str] = field(default_factory=list)


def _normalise(text: str) -> str:
    return " ".join(re.findall(r"[a-z]+", text.lower()))


class _Onnx:
    """One ONNX model of the chain with its pyfill manifest."""

    def __init__(self, model: str | Path, family: str, what: str) -> None:
        from pyfill.faces.analysis import onnx_manifest, onnx_session
        from pyfill.store import resolve_model

        self.path = resolve_model(model)
        if self.path.suffix.lower() != ".onnx":
            raise ValueError(f"{self.path}: the {what} is an ONNX file (export a checkpoint with pyfill export)")
        self.session = onnx_session(self.path, what)
        self.manifest = onnx_manifest(self.session)
        if self.manifest is None or self.manifest.family != family:
            got = "no pyfill manifest" if self.manifest is None else f"a {self.manifest.family} model"
            raise ValueError(f"{self.path}: the {what} must be a pyfill {family} model, got {got}")
        self.names = [i.name for i in self.session.get_inputs()]

    def __call__(self, *arrays: np.ndarray) -> np.ndarray:
        return self.session.run(None, dict(zip(self.names, arrays)))[0]


class Editor:
    """The editing chain on ONNX Runtime: encoder, per-text and conditional editing models,
    decoder and the matcher's text encoder (for texts without their own model).

    Args:
        encoder, decoder, conditional, text_encoder: model names or ONNX paths (defaults: the
            shipped ``edit_encoder``, ``edit_decoder``, ``edit_mapper_cond``,
            ``edit_matcher_text``).
        mappers: {text: model} of per-text editing models (default: :data:`TARGETS`).
        analyzer: face detection for ``align=True`` (default: dlib's, created when first needed).
        feather: the paste-back mask's feathering, share of the crop size.
    """

    def __init__(self, *, encoder: str | Path = DEFAULT_MODELS["encoder"],
                 decoder: str | Path = DEFAULT_MODELS["decoder"],
                 conditional: str | Path | None = DEFAULT_MODELS["conditional"],
                 text_encoder: str | Path = DEFAULT_MODELS["text"], mappers: dict[str, str | Path] | None = None,
                 analyzer: Any = None, feather: float = 0.08) -> None:
        self.encoder = _Onnx(encoder, "edit_encoder", "editing encoder")
        self.decoder = _Onnx(decoder, "edit_decoder", "editing decoder")
        self.size = int(self.encoder.manifest.config["size"])
        if int(self.decoder.manifest.config["size"]) != self.size:
            raise ValueError("the editing encoder and decoder work at different sizes")
        self.text_encoder = _Onnx(text_encoder, "edit_matcher_text", "matcher text encoder")
        c = self.text_encoder.manifest.config
        self.tokenizer = Tokenizer(list(c["vocabulary"]), int(c["length"]), dict(c.get("attributes", {})))
        self.conditional = _Onnx(conditional, "edit_mapper", "conditional editing model") if conditional else None
        pairs = mappers if mappers is not None else {t: n for n, t in TARGETS.items()}
        self.mappers = {_normalise(t): (str(m), t) for t, m in pairs.items()}
        self._loaded: dict[str, _Onnx] = {}
        self.analyzer, self.feather = analyzer, float(feather)

    def texts(self) -> list[str]:
        """The texts with their own editing model."""
        return [t for _, t in self.mappers.values()]

    def _mapper(self, name: str) -> _Onnx:
        if name not in self._loaded:
            self._loaded[name] = _Onnx(name, "edit_mapper", f"editing model for {name!r}")
        return self._loaded[name]

    def text_embedding(self, text: str) -> np.ndarray:
        """The matcher's unit text embedding (E,) float32; :class:`UnknownTextError` for words
        outside its vocabulary."""
        return self.text_encoder(self.tokenizer(text))[0].astype(np.float32)

    def latent(self, crop: np.ndarray) -> np.ndarray:
        """W+ (num_ws, w_dim) float32 of an aligned uint8 (size, size, 3) crop."""
        x = crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        return self.encoder(x)[0]

    def decode(self, ws: np.ndarray) -> np.ndarray:
        """An aligned uint8 (size, size, 3) crop of W+ (num_ws, w_dim)."""
        y = self.decoder(np.asarray(ws, np.float32)[None])[0].transpose(1, 2, 0)
        return np.clip(np.rint(y * 255.0), 0, 255).astype(np.uint8)

    def delta(self, ws: np.ndarray, text: str) -> tuple[np.ndarray, str]:
        """(dw (num_ws, w_dim), the model's name) for ``text``: its own model when it has one,
        else the conditional model on the text's embedding."""
        key = _normalise(text) if isinstance(text, str) else None
        if key is not None and key in self.mappers:
            mapper = self._mapper(self.mappers[key][0])
            return mapper(np.asarray(ws, np.float32)[None])[0], mapper.path.stem
        emb = self.text_embedding(text)  # raises for unknown words, also without a conditional model
        if self.conditional is None:
            raise UnknownTextError(f"no editing model for {text!r}; texts with their own model: {self.texts()}")
        dw = self.conditional(np.asarray(ws, np.float32)[None], emb[None])[0]
        return dw, self.conditional.path.stem

    def edit_crop(self, crop: np.ndarray, text: str, strength: float = 0.8) -> tuple[np.ndarray, str]:
        """(decode(w + strength * dw) as uint8 (size, size, 3), the model's name) for an aligned crop."""
        ws = self.latent(crop)
        dw, name = self.delta(ws, text)
        return self.decode(ws + float(strength) * dw), name

    def edit(self, image: Any, text: str, strength: float = 0.8, align: bool = True) -> EditResult:
        """See :func:`edit`."""
        check_strength(strength)
        if not isinstance(text, str):
            raise TypeError(f"text must be a str, got {type(text).__name__}")
        self.tokenizer.words(text)  # unknown words fail before any image work
        given, rgb, alpha = face_rgb(image, "image", "editing")
        if min(rgb.shape[:2]) < 16:
            raise ValueError(f"image: too small to edit ({rgb.shape[1]} x {rgb.shape[0]} pixels; at least 16 x 16)")
        messages: list[str] = []
        if not align:
            return self._edit_whole(given, rgb, alpha, text, strength)
        from pyfill.faces.align import align_face
        from pyfill.faces.paste import face_mask, paste_back
        from pyfill.tasks.swap import FaceWarning

        if self.analyzer is None:
            from pyfill.faces.analysis import FaceAnalyzer

            self.analyzer = FaceAnalyzer.default()
        faces = self.analyzer.detect(rgb)
        if not faces:
            text_w = "no face found in the image; it is returned unchanged (pass align=False for an aligned crop)"
            messages.append(text_w)
            import warnings

            warnings.warn(text_w, FaceWarning, stacklevel=3)
            return EditResult(given.copy(), "", 0, 0, messages)
        out, name = rgb, ""
        mask = face_mask(self.size, self.feather)
        for face in faces:
            crop, matrix = align_face(out, face.landmarks, self.size)
            edited, name = self.edit_crop(crop, text, strength)
            out = paste_back(out, edited, matrix, mask, False, crop)
        return EditResult(back_to_form(given, out, alpha), name, len(faces), len(faces), messages)

    def _edit_whole(self, given: np.ndarray, rgb: np.ndarray, alpha: np.ndarray | None, text: str,
                    strength: float) -> EditResult:
        import cv2

        h, w = rgb.shape[:2]
        crop = rgb if (h, w) == (self.size, self.size) else cv2.resize(rgb, (self.size, self.size),
                                                                        interpolation=cv2.INTER_AREA)
        edited, name = self.edit_crop(crop, text, strength)
        if (h, w) != (self.size, self.size):
            edited = cv2.resize(edited, (w, h), interpolation=cv2.INTER_CUBIC)
        return EditResult(back_to_form(given, edited, alpha), name, 1, 1, [])


def check_strength(strength: Any) -> float:
    if isinstance(strength, bool) or not isinstance(strength, (int, float, np.floating, np.integer)):
        raise TypeError(f"strength must be a number, got {type(strength).__name__}")
    if not np.isfinite(strength) or not -2.0 <= float(strength) <= 2.0:
        raise ValueError(f"strength must be a finite number in [-2, 2], got {strength}")
    return float(strength)


_EDITORS: dict[tuple, Editor] = {}


def edit(image: Any, text: str, strength: float = 0.8, *, align: bool = True, editor: Editor | None = None,
         **models: Any) -> EditResult:
    """Edit the faces of ``image`` according to ``text`` ("a smiling face", "a person with glasses").

    Args:
        image: uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA array, or a PIL image.
        text: what the face should become; words outside the matcher's vocabulary raise
            :class:`UnknownTextError` (a ValueError) listing the attributes it knows.
        strength: alpha, the share of the editing model's offset added to the latent
            (0 gives the decoder's reconstruction of the face; in [-2, 2]; negative edits away
            from the text).
        align: detect every face, align it, edit it and paste it back (pixels outside the faces
            unchanged; no face: returned unchanged with a ``FaceWarning``); False: the image is
            an aligned face crop, resized to the models' size and back.
        editor: an :class:`Editor` to use; otherwise one is built from ``models`` (the
            :class:`Editor` keyword arguments) and cached.
    """
    if editor is None:
        key = tuple(sorted((k, str(v)) for k, v in models.items()))
        if key not in _EDITORS:
            _EDITORS[key] = Editor(**models)
        editor = _EDITORS[key]
    elif models:
        raise ValueError("pass either editor= or model arguments, not both")
    return editor.edit(image, text, strength, align)
