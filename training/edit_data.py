"""Data for text-driven editing (SPEC S4): aligned procedural faces with their exact attributes,
and captions generated from those attributes.

Faces come from :mod:`training.faces`, rendered straight into aligned ``size`` x ``size`` crops
(``pyfill.faces.align.template(size)``, 64 by default). Pose is kept to half of the renderer's
yaw / pitch range, eye openness spans [0, 1] (closed to open) and age [0, 1]; everything else
is the renderer's own sampling. :data:`ATTRIBUTES` are the seven edited attributes, each scaled
to [0, 1] (:func:`attribute_vector`). Data sets are cached as ``.npz`` files (uint8 images, the
attribute matrix and the identity vectors) keyed by (seed, count, size).

Captions (:func:`caption_for`) describe one to three attributes of a face with synonyms and
templates ("a smiling person", "someone with glasses", "an old man with grey hair"); each
caption carries its constraints (attribute, low / high) so that :func:`caption_matches` can tell
for any face whether the caption is true of it, which is what the matcher's contrastive loss
uses as positives.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from training import faces as FR

#: The edited attributes (columns of :func:`attribute_vector`), each scaled to [0, 1].
ATTRIBUTES = ("smile", "mouth_open", "eye_open", "glasses", "hair_lightness", "hair_redness", "age")
_RANGES = {"smile": (-0.3, 1.0), "mouth_open": (0.0, 1.0), "eye_open": (0.0, 1.0), "glasses": (0.0, 1.0),
           "hair_lightness": (0.0, 1.0), "hair_redness": (0.0, 1.0), "age": (0.0, 1.0)}


def sample_face(rng: np.random.Generator) -> tuple[FR.Identity, FR.Attributes]:
    """Identity and attributes of one training face (see the module's notes on the ranges)."""
    ident = FR.sample_identity(rng)
    attrs = FR.sample_attributes(rng)
    attrs = dataclasses.replace(attrs, yaw=attrs.yaw / 2, pitch=attrs.pitch / 2, eye_open=float(rng.uniform(0.0, 1.0)),
                                age=float(rng.uniform(0.0, 1.0)))
    return ident, attrs


def attribute_vector(ident: FR.Identity, attrs: FR.Attributes) -> np.ndarray:
    """The :data:`ATTRIBUTES` of a face as float32 (7,), each mapped to [0, 1]."""
    vals = []
    for name in ATTRIBUTES:
        v = getattr(attrs, name) if hasattr(attrs, name) else getattr(ident, name)
        lo, hi = _RANGES[name]
        vals.append((float(v) - lo) / (hi - lo))
    return np.clip(np.asarray(vals, np.float32), 0.0, 1.0)


def parameter_vector(ident: FR.Identity, attrs: FR.Attributes) -> np.ndarray:
    """Every identity and attribute field of a face, each mapped to [0, 1] by its range (the
    eye openness and age by [0, 1]): float32 (len(Identity) + len(Attributes),) = (40,)."""
    vals = []
    for obj in (ident, attrs):
        for f in dataclasses.fields(obj):
            lo, hi = (0.0, 1.0) if f.name in ("eye_open", "age") else f.metadata["range"]
            vals.append((float(getattr(obj, f.name)) - lo) / (hi - lo))
    return np.clip(np.asarray(vals, np.float32), 0.0, 1.0)


def render_face(ident: FR.Identity, attrs: FR.Attributes, size: int = 64) -> np.ndarray:
    """An aligned ``size`` crop (size, size, 3) uint8 of the face."""
    from pyfill.faces.align import template

    return FR.render(ident, attrs, size=max(64, size * 5 // 4), align_to=template(size), out_size=size).image


@dataclass
class FaceSet:
    """``images`` (N, size, size, 3) uint8, ``attributes`` (N, 7) float32 in [0, 1] (the
    :data:`ATTRIBUTES`), ``identity`` (N, 20) float32 (:func:`training.faces.identity_vector`),
    ``params`` (N, 40) float32 (:func:`parameter_vector`)."""

    images: np.ndarray
    attributes: np.ndarray
    identity: np.ndarray
    params: np.ndarray

    def __len__(self) -> int:
        return len(self.images)


def make_faces(seed: int, count: int, size: int = 64, cache: str | Path | None = None) -> FaceSet:
    """``count`` faces drawn from ``numpy.random.default_rng((seed, k))`` for face k (so any
    prefix of a larger set is the smaller set), cached in ``cache`` (a folder) when given."""
    path = None
    if cache is not None:
        key = hashlib.sha256(f"edit-faces-v2:{seed}:{count}:{size}".encode()).hexdigest()[:12]
        path = Path(cache) / f"faces_{seed}_{count}_{size}_{key}.npz"
        if path.is_file():
            with np.load(path) as z:
                return FaceSet(z["images"], z["attributes"], z["identity"], z["params"])
    images, attributes, identity, params = [], [], [], []
    for k in range(count):
        ident, attrs = sample_face(np.random.default_rng((seed, k)))
        images.append(render_face(ident, attrs, size))
        attributes.append(attribute_vector(ident, attrs))
        identity.append(FR.identity_vector(ident))
        params.append(parameter_vector(ident, attrs))
    out = FaceSet(np.stack(images), np.stack(attributes), np.stack(identity), np.stack(params))
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp.npz")
        np.savez(tmp, images=out.images, attributes=out.attributes, identity=out.identity, params=out.params)
        tmp.replace(path)
    return out


# ---- captions ---------------------------------------------------------------------------------
#: (attribute, low, high, phrases): a phrase is true of a face whose attribute (scaled to
#: [0, 1]) lies in [low, high]. ``{noun}`` is filled by a subject noun.
PHRASES: tuple[tuple[str, float, float, tuple[str, ...]], ...] = (
    ("smile", 0.62, 1.0, ("a smiling {noun}", "a happy {noun}", "a {noun} with a smile", "a {noun} smiling",
                          "a cheerful {noun}", "a grinning {noun}", "a smiling face")),
    ("smile", 0.0, 0.3, ("a frowning {noun}", "a sad {noun}", "a serious {noun}", "a {noun} with a frown",
                         "an unhappy {noun}", "a frowning face")),
    ("mouth_open", 0.65, 1.0, ("a {noun} with an open mouth", "a {noun} with mouth open", "an open mouth",
                               "a surprised {noun}", "a {noun} with open lips")),
    ("mouth_open", 0.0, 0.2, ("a {noun} with a closed mouth", "a {noun} with mouth closed", "a closed mouth")),
    ("eye_open", 0.0, 0.2, ("a {noun} with closed eyes", "a {noun} with eyes closed", "closed eyes",
                            "a sleeping {noun}", "a {noun} with shut eyes", "eyes closed")),
    ("eye_open", 0.65, 1.0, ("a {noun} with open eyes", "a {noun} with eyes open", "wide open eyes",
                             "an awake {noun}", "eyes open")),
    ("glasses", 0.5, 1.0, ("a {noun} with glasses", "a {noun} wearing glasses", "someone with glasses",
                           "a {noun} with spectacles", "a {noun} wearing spectacles", "glasses")),
    ("glasses", 0.0, 0.5, ("a {noun} without glasses", "a {noun} with no glasses", "no glasses")),
    ("hair_lightness", 0.7, 1.0, ("a {noun} with blond hair", "a blond {noun}", "a {noun} with light hair",
                                  "a face with blond hair", "blonde hair", "a {noun} with fair hair")),
    ("hair_lightness", 0.0, 0.25, ("a {noun} with black hair", "a {noun} with dark hair", "dark hair",
                                   "a dark haired {noun}", "black hair")),
    ("hair_redness", 0.72, 1.0, ("a {noun} with red hair", "a red haired {noun}", "a redhead", "ginger hair",
                                 "a {noun} with ginger hair")),
    ("age", 0.7, 1.0, ("an old {noun}", "an elderly {noun}", "an old man", "an old woman", "an aged {noun}",
                       "a {noun} with wrinkles", "a wrinkled face", "a {noun} with grey hair", "an older {noun}")),
    ("age", 0.0, 0.2, ("a young {noun}", "a youthful {noun}", "a young man", "a young woman",
                       "a {noun} with smooth skin", "a younger {noun}")),
)
NOUNS = ("person", "face", "man", "woman", "someone", "portrait", "people", "guy", "lady")
JOIN = ("with", "and")
EXTRA_WORDS = ("photo", "of", "picture", "image", "the", "this", "make", "give", "her", "him", "them", "more",
               "look", "very", "slightly", "older", "younger", "an", "a", "to")

#: The six edit targets of the shipped per-text mappers: name -> (text, attribute, direction).
EDIT_TARGETS: dict[str, tuple[str, str, float]] = {
    "smile": ("a smiling face", "smile", 1.0),
    "open_mouth": ("a person with an open mouth", "mouth_open", 1.0),
    "eyes_closed": ("a person with closed eyes", "eye_open", -1.0),
    "glasses": ("a person with glasses", "glasses", 1.0),
    "blond_hair": ("a person with blond hair", "hair_lightness", 1.0),
    "old": ("an old person", "age", 1.0),
}


@dataclass(frozen=True)
class Caption:
    """A caption and the constraints that make it true: ((attribute index, low, high), ...)."""

    text: str
    constraints: tuple[tuple[int, float, float], ...]


def _phrase_text(template: str, rng: np.random.Generator) -> str:
    return template.format(noun=NOUNS[int(rng.integers(len(NOUNS)))])


def caption_for(attributes: np.ndarray, rng: np.random.Generator, max_parts: int = 2) -> Caption:
    """A random caption that is true of a face with ``attributes`` (7,) in [0, 1]: one to
    ``max_parts`` phrases (the first with its subject, the rest joined by "with" / "and"), or
    "a face" / "a person" when no phrase applies."""
    true = [(ATTRIBUTES.index(a), lo, hi, ps) for a, lo, hi, ps in PHRASES
            if lo <= attributes[ATTRIBUTES.index(a)] <= hi]
    if not true:
        return Caption(f"a {NOUNS[int(rng.integers(2))]}", ())
    k = int(rng.integers(1, min(max_parts, len(true)) + 1))
    picks = [true[i] for i in rng.choice(len(true), size=k, replace=False)]
    parts = [_phrase_text(p[3][int(rng.integers(len(p[3])))], rng) for p in picks]
    text = parts[0]
    for p in parts[1:]:
        text += f" {JOIN[int(rng.integers(len(JOIN)))]} {p}"
    return Caption(text, tuple((i, lo, hi) for i, lo, hi, _ in picks))


def caption_matches(caption: Caption, attributes: np.ndarray) -> np.ndarray:
    """(N,) bool: whether ``caption`` is true of each face of ``attributes`` (N, 7)."""
    ok = np.ones(len(attributes), bool)
    for i, lo, hi in caption.constraints:
        ok &= (attributes[:, i] >= lo) & (attributes[:, i] <= hi)
    return ok


def vocabulary() -> list[str]:
    """Every word the captions, the edit targets and :data:`EXTRA_WORDS` use, sorted."""
    import re

    words: set[str] = set(NOUNS) | set(JOIN) | set(EXTRA_WORDS)
    texts = [p for *_, ps in PHRASES for p in ps] + [t for t, *_ in EDIT_TARGETS.values()]
    for t in texts:
        words |= set(re.findall(r"[a-z]+", t.replace("{noun}", "")))
    return sorted(words)


def caption_attributes() -> dict[str, list[str]]:
    """attribute -> the example phrases the matcher was trained on (for error messages)."""
    out: dict[str, list[str]] = {}
    for a, _, _, ps in PHRASES:
        out.setdefault(a, []).append(ps[0].format(noun="person"))
    return out


def describe() -> dict[str, Any]:
    """The data set's settings for a data manifest."""
    return {"source": "training.faces (procedural)", "attributes": list(ATTRIBUTES),
            "pose": "yaw and pitch within half the renderer's range", "eye_open": [0, 1], "age": [0, 1]}
