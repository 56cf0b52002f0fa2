"""Procedural faces with exact identity and attribute parameters: the face-swap training data.

A face is drawn from two parameter sets:

* :class:`Identity` — who it is: head and jaw shape, eye size, spacing and colour, nose, mouth,
  brows, skin tone, hair colour and style;
* :class:`Attributes` — how it is seen: yaw / pitch / roll, expression (smile, open mouth, eye
  openness, raised brows), lighting direction and colour, background, glasses, framing.

Every field carries its documented range in ``dataclasses.fields(...)[i].metadata["range"]``
(and a one-line meaning under ``"doc"``); :func:`sample_identity` / :func:`sample_attributes`
draw uniformly inside those ranges. The face is a shaded relief: a depth map (head, nose,
brows, lips, hair) with an albedo texture is built in a frontal "canonical" frame, rotated in 3-D
by yaw and pitch (an exact forward map, inverted per pixel by a damped fixed-point iteration),
rolled, scaled and shaded with a Lambert + Blinn-Phong model under the attribute's light.

:func:`render` returns the image and five landmarks (viewer's left eye centre, right eye
centre, nose tip, left and right mouth corner, ``(x, y)`` pixels with pixel centres at integer
coordinates) computed by the same forward map, so that alignment can be tested exactly.
:func:`triplet` gives the seed's training triplet: S (identity A, attributes a), F (identity B,
attributes b) and T (identity A, attributes b).

    >>> rng = np.random.default_rng(0)
    >>> face = render(sample_identity(rng), sample_attributes(rng), size=128)
    >>> face.image.shape, face.image.dtype, face.landmarks.shape
    ((128, 128, 3), dtype('uint8'), (5, 2))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np

HAIR_STYLES = ("bald", "short", "fringe", "long", "volume")


def _p(default: float, lo: float, hi: float, doc: str) -> Any:
    return field(default=default, metadata={"range": (lo, hi), "doc": doc})


@dataclass(frozen=True)
class Identity:
    """Who the face is. Lengths are in head units (the canonical frame spans about [-1, 1])."""

    head_width: float = _p(0.62, 0.52, 0.74, "half-width of the head at the temples")
    head_height: float = _p(0.82, 0.74, 0.92, "half-height of the head")
    jaw_taper: float = _p(0.35, 0.05, 0.6, "how much the jaw narrows towards the chin (0 = round)")
    eye_size: float = _p(0.075, 0.055, 0.1, "half-width of each eye")
    eye_spacing: float = _p(0.42, 0.34, 0.5, "distance between the eye centres")
    eye_height: float = _p(-0.05, -0.12, 0.02, "vertical position of the eyes (down is +)")
    iris_hue: float = _p(0.3, 0.0, 1.0, "iris colour: 0 dark brown .. 0.5 green .. 1 blue")
    nose_length: float = _p(0.3, 0.22, 0.38, "eye line to nose tip")
    nose_width: float = _p(0.12, 0.1, 0.15, "width of the nose bump")
    nose_height: float = _p(0.14, 0.1, 0.18, "how far the nose stands out")
    mouth_width: float = _p(0.34, 0.26, 0.44, "distance between the mouth corners")
    lip_thickness: float = _p(0.04, 0.025, 0.06, "half-height of the lips")
    mouth_drop: float = _p(0.22, 0.17, 0.28, "nose tip to mouth line")
    brow_thickness: float = _p(0.03, 0.015, 0.05, "thickness of the brows")
    brow_gap: float = _p(0.13, 0.1, 0.17, "eye centre to brow line")
    skin_tone: float = _p(0.5, 0.0, 1.0, "0 dark .. 1 light skin")
    skin_warmth: float = _p(0.5, 0.0, 1.0, "0 olive .. 1 rosy undertone")
    hair_lightness: float = _p(0.3, 0.0, 1.0, "0 black .. 1 blond / grey hair")
    hair_redness: float = _p(0.3, 0.0, 1.0, "0 ash .. 1 red hair")
    hair_style: int = field(default=1, metadata={"range": (0, len(HAIR_STYLES) - 1),
                                                 "doc": f"index into HAIR_STYLES {HAIR_STYLES}"})


@dataclass(frozen=True)
class Attributes:
    """How the face is seen: pose, expression, light, background, glasses and framing."""

    yaw: float = _p(0.0, -28.0, 28.0, "head turn in degrees (+ turns the face to the viewer's right)")
    pitch: float = _p(0.0, -15.0, 15.0, "nod in degrees (+ tilts the face down)")
    roll: float = _p(0.0, -20.0, 20.0, "in-plane tilt in degrees (+ is clockwise on screen)")
    smile: float = _p(0.2, -0.3, 1.0, "mouth-corner lift (- is a frown)")
    mouth_open: float = _p(0.1, 0.0, 1.0, "jaw opening")
    eye_open: float = _p(0.8, 0.25, 1.0, "eyelid opening")
    brow_raise: float = _p(0.2, 0.0, 1.0, "brow lift")
    light_azimuth: float = _p(0.0, -70.0, 70.0, "light direction around the vertical axis, degrees")
    light_elevation: float = _p(20.0, -20.0, 60.0, "light direction above the horizon, degrees")
    light_warmth: float = _p(0.5, 0.0, 1.0, "0 cool blue .. 1 warm orange light")
    light_intensity: float = _p(1.0, 0.75, 1.2, "light strength")
    ambient: float = _p(0.35, 0.2, 0.5, "share of light that comes from everywhere")
    background_hue: float = _p(0.6, 0.0, 1.0, "background hue")
    background_value: float = _p(0.6, 0.2, 0.95, "background brightness")
    background_gradient: float = _p(0.3, 0.0, 0.6, "strength of the background's vertical gradient")
    glasses: int = field(default=0, metadata={"range": (0, 1), "doc": "1 = wearing glasses"})
    scale: float = _p(0.8, 0.7, 0.9, "head size: canonical units to half the image side")
    shift_x: float = _p(0.0, -0.08, 0.08, "horizontal offset, share of half the image side")
    shift_y: float = _p(0.0, -0.08, 0.08, "vertical offset, share of half the image side")
    age: float = field(default=0.0, metadata={
        "range": (0.0, 1.0), "sample": False,
        "doc": "0 young .. 1 old: grey hair, wrinkles, eye bags, a wider jaw (not drawn by sample_attributes)"})


def parameter_ranges(cls: type) -> dict[str, tuple[float, float]]:
    """``{field name: (low, high)}`` of :class:`Identity` or :class:`Attributes`."""
    return {f.name: f.metadata["range"] for f in dataclasses.fields(cls)}


def _sample_params(cls: type, rng: np.random.Generator) -> Any:
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        if not f.metadata.get("sample", True):
            continue
        lo, hi = f.metadata["range"]
        values[f.name] = int(rng.integers(lo, hi + 1)) if f.type in ("int", int) else float(rng.uniform(lo, hi))
    return cls(**values)


def sample_identity(rng: np.random.Generator) -> Identity:
    """An :class:`Identity` with every field uniform in its range."""
    return _sample_params(Identity, rng)


def sample_attributes(rng: np.random.Generator) -> Attributes:
    """An :class:`Attributes` with every field uniform in its range, except ``age``, which stays
    at its default 0 (so that the random stream of earlier data sets is unchanged)."""
    return _sample_params(Attributes, rng)


def identity_vector(identity: Identity) -> np.ndarray:
    """The identity's fields as a float32 vector, each mapped to [0, 1] by its range."""
    out = [(getattr(identity, f.name) - f.metadata["range"][0]) / (f.metadata["range"][1] - f.metadata["range"][0])
           for f in dataclasses.fields(Identity)]
    return np.asarray(out, np.float32)


@dataclass
class Face:
    """One render: ``image`` (size, size, 3) uint8 RGB; ``landmarks`` (5, 2) float64 pixels
    (left eye, right eye, nose tip, left mouth corner, right mouth corner, viewer's left first);
    ``mask`` (size, size) float32 in [0, 1], the head's coverage (skin and hair)."""

    image: np.ndarray
    landmarks: np.ndarray
    mask: np.ndarray
    identity: Identity
    attributes: Attributes


@dataclass
class Triplet:
    """The seed's triplet: S = (identity A, attributes a), F = (identity B, attributes b),
    T = (identity A, attributes b)."""

    source: Face
    first: Face
    target: Face


# ---- colours -----------------------------------------------------------------------------
def _hsv(h: float, s: float, v: float) -> np.ndarray:
    rgb = cv2.cvtColor(np.array([[[h * 179.0, s * 255.0, v * 255.0]]], np.float32).astype(np.uint8), cv2.COLOR_HSV2RGB)
    return rgb[0, 0].astype(np.float32) / 255.0


def _mix(a: np.ndarray, b: np.ndarray, t: float) -> np.ndarray:
    return (1.0 - t) * np.asarray(a, np.float32) + t * np.asarray(b, np.float32)


def skin_colour(ident: Identity) -> np.ndarray:
    dark, light = np.array([0.36, 0.22, 0.15]), np.array([0.96, 0.80, 0.68])
    base = _mix(dark, light, ident.skin_tone)
    tint = _mix(np.array([0.98, 1.03, 0.95]), np.array([1.06, 0.95, 0.95]), ident.skin_warmth)
    return np.clip(base * tint, 0, 1).astype(np.float32)


def hair_colour(ident: Identity) -> np.ndarray:
    dark, light = np.array([0.07, 0.06, 0.05]), np.array([0.85, 0.75, 0.5])
    base = _mix(dark, light, ident.hair_lightness)
    red = _mix(np.array([1.0, 1.0, 1.0]), np.array([1.5, 0.75, 0.45]), ident.hair_redness)
    return np.clip(base * red + 0.04 * ident.hair_redness, 0, 1).astype(np.float32)


def iris_colour(ident: Identity) -> np.ndarray:
    stops = [np.array([0.3, 0.18, 0.08]), np.array([0.35, 0.45, 0.2]), np.array([0.3, 0.5, 0.75])]
    t = ident.iris_hue * 2.0
    i = min(int(t), 1)
    return _mix(stops[i], stops[i + 1], t - i).astype(np.float32)


def light_colour(attrs: Attributes) -> np.ndarray:
    return _mix(np.array([0.82, 0.92, 1.12]), np.array([1.15, 0.95, 0.75]), attrs.light_warmth) * attrs.light_intensity


# ---- the canonical (frontal) relief --------------------------------------------------------
_EXTENT = 1.35  # the canonical texture spans [-_EXTENT, _EXTENT] on both axes


def _smooth(d: np.ndarray, width: float) -> np.ndarray:
    """Coverage of a signed distance (negative inside), anti-aliased over ``width``."""
    return np.clip(0.5 - d / width, 0.0, 1.0).astype(np.float32)


def _ellipse_d(u: np.ndarray, v: np.ndarray, cu: float, cv: float, ru: float, rv: float) -> np.ndarray:
    """Approximate signed distance to an axis-aligned ellipse (in units of its smaller radius)."""
    return (np.sqrt(((u - cu) / ru) ** 2 + ((v - cv) / rv) ** 2) - 1.0) * np.float32(min(ru, rv))


@dataclass
class _Canvas:
    albedo: np.ndarray  # (T, T, 3)
    depth: np.ndarray  # (T, T)
    alpha: np.ndarray  # (T, T) face and hair coverage
    u: np.ndarray
    v: np.ndarray
    landmarks: np.ndarray  # (5, 2) canonical (u, v)

    def paint(self, cover: np.ndarray, colour: np.ndarray) -> None:
        """Blend ``colour`` ((3,) or (T, T, 3)) over the albedo with coverage ``cover`` (T, T)."""
        inside = cover > 0
        c = cover[inside][:, None].astype(np.float32)
        colour = np.asarray(colour, np.float32)
        colour = colour[inside] if colour.ndim == 3 else colour
        self.albedo[inside] = self.albedo[inside] * (1.0 - c) + c * colour


def _head_shape(ident: Identity, u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(signed distance to the head outline, normalised radius^2) of the jawed ellipse."""
    hw, hh = ident.head_width, ident.head_height
    below = np.clip(v / hh, 0.0, 1.0)
    width = hw * (1.0 - ident.jaw_taper * below**2)
    r2 = (u / width) ** 2 + (v / hh) ** 2
    return (np.sqrt(r2) - 1.0) * hw, r2


def _canonical(ident: Identity, attrs: Attributes, tex: int) -> _Canvas:
    axis = np.linspace(-_EXTENT, _EXTENT, tex, dtype=np.float32)
    u, v = np.meshgrid(axis, axis)
    px = 2.0 * _EXTENT / (tex - 1)
    aa = 1.5 * px
    age = float(attrs.age)
    if age > 0:  # an older face: a wider, heavier jaw
        ident = dataclasses.replace(ident, jaw_taper=ident.jaw_taper * (1.0 - 0.5 * age))
    skin, hair = skin_colour(ident), hair_colour(ident)
    if age > 0:  # greying hair and brows, a paler, less saturated skin
        hair = _mix(hair, np.array([0.74, 0.74, 0.76]), 0.9 * age)
        skin = _mix(skin, np.full(3, float(skin.mean())) * 1.02, 0.25 * age)

    head_d, r2 = _head_shape(ident, u, v)
    head = _smooth(head_d, aa)
    depth = 0.45 * np.clip(1.0 - r2, 0.0, None)
    # eye sockets and cheek bones give the shading something to work with
    ey, es = ident.eye_height, ident.eye_spacing / 2
    for side in (-1.0, 1.0):
        depth -= 0.035 * np.exp(-(((u - side * es) / 0.12) ** 2 + ((v - ey) / 0.08) ** 2))
        depth += 0.03 * np.exp(-(((u - side * (es + 0.06)) / 0.12) ** 2 + ((v - ey - 0.2) / 0.09) ** 2))
    # nose: a ridge from the eye line to the tip, rounded off below the tip
    tip_v = ey + ident.nose_length
    along = np.clip((v - ey) / ident.nose_length, 0.0, 1.0) ** 1.5
    below_tip = np.exp(-np.clip(v - tip_v, 0.0, None) ** 2 / 0.004)
    nose = ident.nose_height * along * below_tip * np.exp(-(u / ident.nose_width) ** 2)
    depth = depth + nose * head

    canvas = _Canvas(np.broadcast_to(skin, (tex, tex, 3)).copy(), depth.astype(np.float32), head, u, v,
                     np.zeros((5, 2)))
    # nostrils: slightly darker skin under the tip
    for side in (-1.0, 1.0):
        canvas.paint(0.5 * _smooth(_ellipse_d(u, v, side * ident.nose_width * 0.45, tip_v + 0.015, 0.025, 0.014), aa),
                     skin * 0.45)

    # eyes: white, iris, pupil, cut by the eyelids
    eye_open = attrs.eye_open
    for side in (-1.0, 1.0):
        cu = side * es
        lid = _smooth(_ellipse_d(u, v, cu, ey, ident.eye_size, ident.eye_size * 0.55 * eye_open + 1e-3), aa)
        canvas.paint(lid, np.array([0.93, 0.92, 0.9]))
        iris_r = ident.eye_size * 0.5
        canvas.paint(lid * _smooth(_ellipse_d(u, v, cu, ey, iris_r, iris_r), aa), iris_colour(ident))
        canvas.paint(lid * _smooth(_ellipse_d(u, v, cu, ey, iris_r * 0.45, iris_r * 0.45), aa), np.full(3, 0.04))
        upper = _smooth(np.abs(_ellipse_d(u, v, cu, ey, ident.eye_size, ident.eye_size * 0.55 * eye_open + 1e-3))
                        - 0.006, aa) * (v < ey)
        canvas.paint(upper, skin * 0.35)
        # brows: a thick arc above each eye, lifted by the expression
        bv = ey - ident.brow_gap - 0.06 * attrs.brow_raise
        arc = bv - 0.04 * (1.0 - ((u - cu) / (ident.eye_size * 1.6)) ** 2)
        brow = _smooth(np.abs(v - arc) - ident.brow_thickness / 2, aa) * _smooth(np.abs(u - cu) - ident.eye_size * 1.5, aa)
        canvas.paint(brow, hair * 0.8 + skin * 0.2)
        canvas.depth += 0.015 * brow

    # mouth: lips whose corners rise with the smile; a dark opening when the jaw opens
    mv = tip_v + ident.mouth_drop
    mw = ident.mouth_width / 2 * (1.0 + 0.12 * attrs.smile)
    t = np.clip(u / mw, -1.0, 1.0)
    curve = mv - 0.05 * attrs.smile * t**2
    gap = 0.045 * attrs.mouth_open * (1.0 - t**2)
    inside_u = _smooth(np.abs(u) - mw, aa)
    lips = _smooth(np.abs(v - curve - gap / 2) - ident.lip_thickness * (1.0 - 0.5 * t**2) - gap / 2, aa) * inside_u
    lip_colour = np.clip(skin * np.array([0.95, 0.62, 0.62]) + np.array([0.08, 0.0, 0.0]), 0, 1)
    canvas.paint(lips, lip_colour)
    opening = _smooth(np.abs(v - curve - gap / 2) - gap / 2, aa) * inside_u * (gap > 1e-3)
    canvas.paint(opening, np.array([0.2, 0.06, 0.06]))
    canvas.depth += 0.02 * lips * (1.0 - opening)

    if attrs.glasses:
        frame_r = ident.eye_size * 1.6
        for side in (-1.0, 1.0):
            ring = _smooth(np.abs(_ellipse_d(u, v, side * es, ey, frame_r, frame_r * 0.8)) - 0.012, aa)
            canvas.paint(ring, np.array([0.08, 0.08, 0.1]))
            canvas.depth += 0.02 * ring
        bridge = _smooth(np.abs(v - ey + 0.02) - 0.01, aa) * _smooth(np.abs(u) - (es - frame_r) - 0.005, aa)
        canvas.paint(bridge, np.array([0.08, 0.08, 0.1]))

    if age > 0:
        _add_age(canvas, ident, attrs, aa, skin, tip_v, mv, mw)
    _add_hair(canvas, ident, aa, hair)
    corner_v = mv - 0.05 * attrs.smile
    canvas.landmarks = np.array([[-es, ey], [es, ey], [0.0, tip_v], [-mw, corner_v], [mw, corner_v]])
    return canvas


def _add_age(canvas: _Canvas, ident: Identity, attrs: Attributes, aa: float, skin: np.ndarray, tip_v: float,
             mouth_v: float, mouth_w: float) -> None:
    """Wrinkles (forehead lines, crow's feet, nasolabial folds) and eye bags, drawn with a
    strength proportional to ``attrs.age`` as darker skin and shallow grooves in the relief."""
    u, v = canvas.u, canvas.v
    age = float(attrs.age)
    ey, es = ident.eye_height, ident.eye_spacing / 2
    line = max(aa, 0.012)
    crease = np.clip(skin * 0.55, 0, 1)
    top = ey - ident.brow_gap - 0.1
    for k in range(3):  # forehead lines, gently curved
        arc = top - 0.055 * k + 0.04 * (u / 0.4) ** 2
        cover = _smooth(np.abs(v - arc) - line / 2, aa) * _smooth(np.abs(u) - 0.32 + 0.04 * k, aa)
        canvas.paint(cover * 0.75 * age, crease)
        canvas.depth -= 0.008 * age * cover
    for side in (-1.0, 1.0):
        cu = side * es
        for k in (-1, 0, 1):  # crow's feet at the outer eye corners
            x0 = cu + side * ident.eye_size * 1.15
            ray = v - ey - 0.5 * k * side * (u - x0) * side
            cover = _smooth(np.abs(ray) - line / 2, aa) * _smooth(np.abs(u - x0 - side * 0.035) - 0.035, aa)
            canvas.paint(cover * 0.7 * age, crease)
        bag = _smooth(np.abs(_ellipse_d(u, v, cu, ey + ident.eye_size * 0.75, ident.eye_size * 0.9,
                                          ident.eye_size * 0.35)) - line / 2, aa) * (v > ey + ident.eye_size * 0.6)
        canvas.paint(bag * 0.8 * age, crease)
        # nasolabial fold: from beside the nostril to beyond the mouth corner
        t = np.clip((v - tip_v + 0.02) / (mouth_v - tip_v + 0.1), 0.0, 1.0)
        fold_u = side * (ident.nose_width * 0.9 + (mouth_w + 0.03 - ident.nose_width * 0.9) * t ** 0.8)
        inside = _smooth(np.abs(v - (tip_v + mouth_v + 0.06) / 2) - (mouth_v - tip_v + 0.1) / 2, aa)
        cover = _smooth(np.abs(u - fold_u) - line / 2, aa) * inside
        canvas.paint(cover * 0.8 * age, crease)
        canvas.depth -= 0.01 * age * cover


def _add_hair(canvas: _Canvas, ident: Identity, aa: float, colour: np.ndarray) -> None:
    style = HAIR_STYLES[ident.hair_style]
    if style == "bald":
        return
    u, v = canvas.u, canvas.v
    hw, hh = ident.head_width, ident.head_height
    strands = 0.85 + 0.15 * np.sin(u * 90.0 + 6.0 * v)
    hair_albedo = colour[None, None, :] * strands[..., None]
    outer_d, _ = _head_shape(dataclasses.replace(ident, head_width=hw * 1.1, head_height=hh * 1.08, jaw_taper=0.0), u, v)
    hairline = ident.eye_height - ident.brow_gap - (0.05 if style == "fringe" else 0.2) - 0.05 * np.cos(u * 3.0)
    top = _smooth(outer_d, aa) * _smooth(v - hairline, aa * 2)
    if style in ("long", "volume"):
        reach = hh * (1.15 if style == "long" else 0.55)
        width = hw * (1.28 if style == "long" else 1.45)
        sides = _smooth(_ellipse_d(u, v, 0.0, -0.1, width, hh * 1.15 if style == "volume" else reach + 0.1), aa)
        sides *= _smooth(v - reach, aa)
        back = sides * (1.0 - canvas.alpha)
        canvas.paint(back, hair_albedo * 0.8)
        canvas.depth = canvas.depth + back * 0.02
        canvas.alpha = np.maximum(canvas.alpha, sides)
    canvas.paint(top, hair_albedo)
    canvas.depth = canvas.depth * (1.0 - top) + top * (canvas.depth + 0.06 * np.clip(1.0 + outer_d * 4, 0.0, 1.0))
    canvas.alpha = np.maximum(canvas.alpha, top)


# ---- pose, projection and shading ------------------------------------------------------------
def _rotation(attrs: Attributes) -> np.ndarray:
    """The 3x3 rotation (yaw about the vertical axis, then pitch about the horizontal one) of
    canonical (u, v, z) points: v points down, z towards the viewer."""
    y, p = np.radians(attrs.yaw), np.radians(attrs.pitch)
    yaw = np.array([[np.cos(y), 0.0, np.sin(y)], [0.0, 1.0, 0.0], [-np.sin(y), 0.0, np.cos(y)]])
    pitch = np.array([[1.0, 0.0, 0.0], [0.0, np.cos(p), -np.sin(p)], [0.0, np.sin(p), np.cos(p)]])
    return pitch @ yaw


def _screen(attrs: Attributes, size: int) -> tuple[np.ndarray, float, np.ndarray]:
    """(image centre (x, y), pixels per canonical unit, 2x2 roll rotation)."""
    centre = np.array([(size - 1) / 2 + attrs.shift_x * size / 2, (size - 1) / 2 + attrs.shift_y * size / 2])
    r = np.radians(attrs.roll)
    return centre, attrs.scale * size / 2, np.array([[np.cos(r), -np.sin(r)], [np.sin(r), np.cos(r)]])


def _sample(img: np.ndarray, u: np.ndarray, v: np.ndarray, tex: int) -> np.ndarray:
    k = (tex - 1) / (2.0 * _EXTENT)
    return cv2.remap(img, ((u + _EXTENT) * k).astype(np.float32), ((v + _EXTENT) * k).astype(np.float32),
                     cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=0)


def _sample_points(img: np.ndarray, pts: np.ndarray, tex: int) -> np.ndarray:
    """Bilinear samples of a (T, T) map at canonical (u, v) points (N, 2)."""
    k = (tex - 1) / (2.0 * _EXTENT)
    x, y = (pts[:, 0] + _EXTENT) * k, (pts[:, 1] + _EXTENT) * k
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    return (img[y0, x0] * (1 - fx) * (1 - fy) + img[y0, x0 + 1] * fx * (1 - fy)
            + img[y0 + 1, x0] * (1 - fx) * fy + img[y0 + 1, x0 + 1] * fx * fy)


def _background(attrs: Attributes, t: np.ndarray) -> np.ndarray:
    """The backdrop at relative heights ``t`` (H, W) (0 top .. 1 bottom of the render)."""
    top = _hsv(attrs.background_hue, 0.45, attrs.background_value)
    bottom = top * (1.0 - attrs.background_gradient)
    t = np.clip(t, 0.0, 1.0)[..., None]
    return ((1.0 - t) * top + t * bottom).astype(np.float32)


def _canvas_landmarks(canvas: _Canvas, attrs: Attributes, size: int, tex: int) -> np.ndarray:
    """The five landmarks of ``canvas`` in the pixels of a ``size`` render (the forward map)."""
    rot = _rotation(attrs)
    centre, ppu, roll = _screen(attrs, size)
    pts = canvas.landmarks
    z = _sample_points(canvas.depth, pts, tex)
    proj = (rot @ np.column_stack([pts, z]).T).T[:, :2]
    return centre + ppu * (proj @ roll.T)


def render(identity: Identity, attributes: Attributes, size: int = 128, align_to: np.ndarray | None = None,
           out_size: int | None = None) -> Face:
    """Render one face at ``size`` x ``size`` (>= 64).

    The canonical relief is built once, then each output pixel is mapped back into it: un-roll,
    un-scale, then invert the yaw/pitch rotation's projection ``(x, y) = (R @ (u, v, depth))[:2]``
    by damped fixed-point iteration.

    ``align_to``: a (5, 2) landmark template of an ``out_size`` crop (default ``size``); the face
    is then rendered straight into that crop, as if the ``size`` render were warped by the
    similarity that takes its landmarks onto the template (no resampling of pixels). The
    returned landmarks and mask are in the crop's pixels.
    """
    from pyfill.faces.align import apply_affine, invert_affine, similarity_transform

    if size < 64:
        raise ValueError(f"size must be >= 64, got {size}")
    tex = size + size // 4
    canvas = _canonical(identity, attributes, tex)
    rot = _rotation(attributes).astype(np.float32)
    centre, ppu, roll = _screen(attributes, size)
    landmarks = _canvas_landmarks(canvas, attributes, size, tex)
    out = size if out_size is None else int(out_size)

    ys, xs = np.mgrid[0:out, 0:out].astype(np.float32)
    if align_to is not None:
        m = similarity_transform(landmarks, align_to)
        back = invert_affine(m).astype(np.float32)
        xs, ys = back[0, 0] * xs + back[0, 1] * ys + back[0, 2], back[1, 0] * xs + back[1, 1] * ys + back[1, 2]
        landmarks = apply_affine(m, landmarks)
    roll32 = roll.astype(np.float32)
    qx, qy = (xs - np.float32(centre[0])) / np.float32(ppu), (ys - np.float32(centre[1])) / np.float32(ppu)
    x2 = roll32[0, 0] * qx + roll32[1, 0] * qy  # roll^-1 = roll^T
    y2 = roll32[0, 1] * qx + roll32[1, 1] * qy
    # (x2, y2) = rows 0 and 1 of rot @ (u, v, z(u, v)); solve for (u, v) with z from the map
    a_inv = np.linalg.inv(rot[:2, :2])
    u, v = x2.copy(), y2.copy()
    for _ in range(8):
        z = _sample(canvas.depth, u, v, tex)
        ru, rv = x2 - rot[0, 2] * z, y2 - rot[1, 2] * z
        u = 0.4 * u + 0.6 * (a_inv[0, 0] * ru + a_inv[0, 1] * rv)
        v = 0.4 * v + 0.6 * (a_inv[1, 0] * ru + a_inv[1, 1] * rv)

    albedo = _sample(canvas.albedo, u, v, tex)
    alpha = _sample(canvas.alpha, u, v, tex)
    gz_v, gz_u = np.gradient(canvas.depth, np.float32(2.0 * _EXTENT / (tex - 1)))
    normals = np.stack([-gz_u, -gz_v, np.ones_like(gz_u)], axis=-1)
    normals /= np.linalg.norm(normals, axis=-1, keepdims=True)
    turn = np.eye(3, dtype=np.float32)
    turn[:2, :2] = roll32
    n = _sample(normals.astype(np.float32), u, v, tex) @ (turn @ rot).T

    az, el = np.radians(attributes.light_azimuth), np.radians(attributes.light_elevation)
    light = np.array([np.sin(az) * np.cos(el), -np.sin(el), np.cos(az) * np.cos(el)], np.float32)
    half = light + np.array([0.0, 0.0, 1.0], np.float32)
    half /= np.linalg.norm(half)
    diffuse = np.clip(n @ light, 0.0, None)[..., None]
    specular = np.clip(n @ half, 0.0, None)[..., None] ** 24
    tint = light_colour(attributes).astype(np.float32)
    lit = albedo * (attributes.ambient + (1.0 - attributes.ambient) * diffuse) * tint + 0.12 * specular * tint
    bg = _background(attributes, ys / max(size - 1, 1))
    shadow = 1.0 - 0.25 * _sample(canvas.alpha, u - 0.08 * np.sin(az), v + 0.06, tex)
    img = alpha[..., None] * lit + (1.0 - alpha[..., None]) * bg * shadow[..., None]
    image = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    return Face(image, landmarks, alpha.astype(np.float32), identity, attributes)


def triplet(rng: np.random.Generator, size: int = 128, align_to: np.ndarray | None = None,
            out_size: int | None = None) -> Triplet:
    """S = render(A, a), F = render(B, b), T = render(A, b) for random identities A, B and
    attributes a, b (arguments as for :func:`render`)."""
    id_a, id_b = sample_identity(rng), sample_identity(rng)
    attrs_a, attrs_b = sample_attributes(rng), sample_attributes(rng)
    return Triplet(*(render(i, a, size, align_to, out_size) for i, a in ((id_a, attrs_a), (id_b, attrs_b), (id_a, attrs_b))))
