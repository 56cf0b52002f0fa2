"""Face swapping (SPEC S5): put the identity of the face in a source image onto the faces of
target images or video frames, keeping their pose, expression, light and background.

Per target face: detect (five landmarks) -> align to the swapper's canonical crop -> run the
swapper on (crop, source embedding) -> paste back (inverse warp, feathered mask, colour match).
Pixels outside the pasted face regions are returned exactly as they were.

Swappers are ONNX models with the FaceFusion swappers' signature: an aligned (N, 3, S, S) RGB
target crop and an (N, D) source identity embedding in, the swapped crop out. pyfill's
shipped ``swap`` model takes the embedding of its shipped ``face_id`` encoder; a swapper from
elsewhere comes with the ArcFace-style embedder it was trained with (``embedder=``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pyfill._core import require
from pyfill.faces.align import align_face, check_landmarks
from pyfill.faces.analysis import ArcFaceEmbedder, DetectedFace, FaceAnalyzer, onnx_session
from pyfill.faces.paste import face_mask, paste_back
from pyfill.tasks._common import back_to_form, face_rgb

DEFAULT_MODEL = "swap"
DEFAULT_EMBEDDER = "face_id"


class FaceWarning(UserWarning):
    """A swap went ahead with something the user should know (no face found, several source
    faces, no face matching the reference)."""


@dataclass
class SwapResult:
    """``image``: the result in the target's form (gray stays gray, alpha kept);
    ``faces_found``: faces detected in the target; ``faces_swapped``: faces replaced;
    ``warnings``: what was reported as :class:`FaceWarning`."""

    image: np.ndarray
    faces_found: int
    faces_swapped: int
    warnings: list[str] = field(default_factory=list)


def _resolve(name_or_path: str | Path) -> Path:
    from pyfill.store import resolve_model

    return resolve_model(name_or_path)


class SwapModel:
    """A swapper run by the :class:`pyfill.Engine`: inputs (target crop (N, 3, S, S), source
    embedding (N, D)), output the swapped crop (N, 3, S, S). A pyfill swapper (ONNX file or
    checkpoint) brings its manifest; for another project's ONNX file the manifest is built from
    its signature (the 4-d input is the crop, the 2-d one the embedding; values in [0, 1], RGB:
    the FaceFusion convention) and handed to the Engine.

    Args:
        model: swapper name or path (default: the shipped ``swap``).
        backend, device, precision: as for :class:`pyfill.Engine`.
    """

    def __init__(self, model: str | Path = DEFAULT_MODEL, *, backend: str = "auto", device: str = "auto",
                 precision: str = "auto") -> None:
        from pyfill.engine import Engine
        from pyfill.engine import files as F

        path = _resolve(model)
        files = F.locate(path)
        foreign = None
        if files.onnx is not None and files.manifest is None and F.read_onnx_manifest(files.onnx) is None:
            foreign = _foreign_swapper_manifest(path)
        self.engine = Engine(path, backend=backend, device=device, precision=precision,  # type: ignore[arg-type]
                             manifest=foreign)
        m = self.engine.manifest
        if m.task != "swap":
            raise ValueError(f"{path} is a {m.task} model, not a face swapper")
        crops = [i for i in m.inputs if i.kind == "image"]
        embs = [i for i in m.inputs if i.kind in ("embedding", "vector")]
        if len(crops) != 1 or len(embs) != 1 or len(m.inputs) != 2 or [o.kind for o in m.outputs] != ["image"]:
            raise ValueError(f"{path}: a swapper takes one image crop and one embedding and returns one image")
        self.path = path
        self.manifest = None if foreign is not None else m
        self.crop_name, self.embedding_name = crops[0].name, embs[0].name
        self.size = int(m.size.fixed[0]) if m.size.fixed else 128
        self.length = int(embs[0].length)

    def __call__(self, crop: np.ndarray, embedding: np.ndarray) -> np.ndarray:
        """One aligned uint8 (S, S, 3) crop and a (D,) embedding -> the swapped uint8 crop."""
        e = np.asarray(embedding, np.float32).reshape(-1)
        out = self.engine.run(**{self.crop_name: crop, self.embedding_name: e})
        assert not isinstance(out, list)  # one crop in, one result out
        return np.asarray(out.image)


def _foreign_swapper_manifest(path: Path) -> Any:
    """A manifest for another project's ONNX swapper, from its declared signature."""
    from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling

    session = onnx_session(path, "swapper")
    inputs, outputs = session.get_inputs(), session.get_outputs()
    if len(inputs) != 2 or len(outputs) != 1:
        raise ValueError(f"{path}: a swapper takes (target crop, source embedding) and returns one image; "
                         f"this model has {len(inputs)} inputs and {len(outputs)} outputs")
    crops = [i for i in inputs if len(i.shape) == 4]
    embs = [i for i in inputs if len(i.shape) == 2]
    if len(crops) != 1 or len(embs) != 1:
        raise ValueError(f"{path}: a swapper's inputs are one (N, 3, S, S) crop and one (N, D) embedding, "
                         f"got shapes {[i.shape for i in inputs]}")
    side, length = crops[0].shape[2], embs[0].shape[1]
    side = side if isinstance(side, int) and side > 0 else 128
    if not (isinstance(length, int) and length > 0):
        raise ValueError(f"{path}: the embedding input {embs[0].name!r} has no fixed length ({embs[0].shape})")
    return Manifest(
        task="swap", family="foreign-onnx", config={"source": path.name},
        inputs=[TensorSpec(crops[0].name, "image", 3, "rgb", (0.0, 1.0)),
                TensorSpec(embs[0].name, "embedding", 1, "none", (-1.0, 1.0), length=length, shape=[length])],
        outputs=[TensorSpec(outputs[0].name, "image", 3, "rgb", (0.0, 1.0))],
        size=SizeRequirements(fixed=(side, side), resize="stretch"), tiling=Tiling(supported=False), fp16=False)


def _warn(messages: list[str], text: str) -> None:
    messages.append(text)
    warnings.warn(text, FaceWarning, stacklevel=3)


class Swapper:
    """A fixed source identity, applied to images (:meth:`swap_image`) or to the frames of a
    video (``swapper(frames)``).

    Args:
        source: the source face image (uint8 gray, RGB or RGBA array, or PIL image). With several
            faces the largest is used (and a :class:`FaceWarning` says so); with none,
            ValueError.
        model: swapper name or ONNX path (default: the shipped ``swap``).
        embedder: the ArcFace-style ONNX embedder the swapper expects (default: the shipped
            ``face_id`` for pyfill's swappers; a swapper from elsewhere needs its own).
        reference: an image of the face to replace: only target faces of that person (by the
            analyzer's embedding) are swapped. None: every face is swapped.
        analyzer: detection and reference matching (default: ``FaceAnalyzer.default()``, dlib).
        colour_match: match the swapped face's colours to the face it replaces.
        feather: mask feathering, share of the crop size.
        detect_every: in video, run the detector on every N-th frame and track the landmarks
            with optical flow in between.
        smoothing: in video, the share of the previous frame's landmarks kept (0 = none).
        restore: a restoration model (name or path, e.g. the shipped ``restore``) run on each
            swapped face crop before it is pasted back; an upscaler's larger result is brought
            back to the crop size (area resampling). None: no restoration.
        backend: the Engine backend for the swapper and the restoration model (``auto``, ...).
    """

    def __init__(self, source: Any, *, model: str | Path = DEFAULT_MODEL, embedder: str | Path | None = None,
                 reference: Any = None, analyzer: FaceAnalyzer | None = None, colour_match: bool = True,
                 feather: float = 0.08, detect_every: int = 5, smoothing: float = 0.5,
                 restore: str | Path | None = None, backend: str = "auto") -> None:
        if detect_every < 1:
            raise ValueError(f"detect_every must be >= 1, got {detect_every}")
        if not 0.0 <= smoothing < 1.0:
            raise ValueError(f"smoothing must be in [0, 1), got {smoothing}")
        self.model = SwapModel(model, backend=backend)
        self.restorer = None
        if restore is not None:
            from pyfill.tasks.restore import restore_engine

            self.restorer = restore_engine(str(restore), backend=backend, tile=0)
        if embedder is None:
            if self.model.manifest is None or self.model.manifest.family != "swap":
                raise ValueError(f"{self.model.path.name} is not one of pyfill's swappers: pass embedder=, the "
                                 "ArcFace-style ONNX embedder it was trained with")
            embedder = DEFAULT_EMBEDDER
        self.embedder = ArcFaceEmbedder(_resolve(embedder))
        if self.model.length and self.embedder.length != self.model.length:
            raise ValueError(f"the embedder gives {self.embedder.length}-d embeddings but {self.model.path.name} "
                             f"takes {self.model.length}-d ones")
        self.analyzer = analyzer or FaceAnalyzer.default()
        self.colour_match, self.detect_every, self.smoothing = bool(colour_match), int(detect_every), float(smoothing)
        self.mask = face_mask(self.model.size, feather)
        self.warnings: list[str] = []
        _, rgb, _ = face_rgb(source, "source", "face swapping")
        face = self._one_face(rgb, "source")
        self.source_embedding = self.embedder.embed(rgb, face)
        self.reference_embedding = None
        if reference is not None:
            _, ref_rgb, _ = face_rgb(reference, "reference", "face swapping")
            self.reference_embedding = self.analyzer.embed(ref_rgb, self._one_face(ref_rgb, "reference"))
        self._tracks: list[np.ndarray] = []
        self._frame = 0
        self._previous_gray: np.ndarray | None = None

    def _one_face(self, rgb: np.ndarray, name: str) -> DetectedFace:
        faces = self.analyzer.detect(rgb)
        if not faces:
            raise ValueError(f"no face found in the {name} image")
        if len(faces) > 1:
            _warn(self.warnings, f"{len(faces)} faces in the {name} image; using the largest")
        return max(faces, key=lambda f: f.area)

    def _selected(self, rgb: np.ndarray, faces: list[DetectedFace], messages: list[str]) -> list[DetectedFace]:
        if self.reference_embedding is None or not faces:
            return faces
        limit = self.analyzer.embedder.same_person
        chosen = [f for f in faces
                  if self.analyzer.distance(self.reference_embedding, self.analyzer.embed(rgb, f)) <= limit]
        if not chosen:
            _warn(messages, f"none of the {len(faces)} faces matches the reference face")
        return chosen

    def swap_face(self, rgb: np.ndarray, landmarks: np.ndarray) -> np.ndarray:
        """``rgb`` (H, W, 3) uint8 with the face at these five ``landmarks`` swapped."""
        crop, matrix = align_face(rgb, check_landmarks(landmarks), self.model.size)
        swapped = self.model(crop, self.source_embedding)
        if self.restorer is not None:
            swapped = self.restored(swapped)
        return paste_back(rgb, swapped, matrix, self.mask, self.colour_match, crop)

    def restored(self, crop: np.ndarray) -> np.ndarray:
        """A swapped uint8 (S, S, 3) crop through the restoration model, at the crop's size."""
        if self.restorer is None:
            return crop
        out = np.asarray(self.restorer(crop))
        if out.shape[:2] != crop.shape[:2]:
            cv2 = require("cv2", "face")
            out = cv2.resize(out, (crop.shape[1], crop.shape[0]), interpolation=cv2.INTER_AREA)
        return out

    def swap_image(self, target: Any) -> SwapResult:
        """Swap the faces of one image (see :func:`swap`)."""
        given, rgb, alpha = face_rgb(target, "target", "face swapping")
        messages: list[str] = []
        faces = self.analyzer.detect(rgb)
        if not faces:
            _warn(messages, "no face found in the target image; it is returned unchanged")
            return SwapResult(given.copy(), 0, 0, messages)
        chosen = self._selected(rgb, faces, messages)
        out = rgb
        for face in chosen:
            out = self.swap_face(out, face.landmarks)
        return SwapResult(back_to_form(given, out, alpha) if chosen else given.copy(), len(faces), len(chosen), messages)

    def __call__(self, frames: list[np.ndarray]) -> list[np.ndarray]:
        """Swap the faces of consecutive RGB uint8 (H, W, 3) video frames; state (tracked
        landmarks) carries over between calls, so a video can come in batches."""
        return [self._swap_frame(f) for f in frames]

    @property
    def tracked_landmarks(self) -> list[np.ndarray]:
        """The (5, 2) landmarks of each face tracked in the last video frame."""
        return [t.copy() for t in self._tracks]

    def _swap_frame(self, frame: np.ndarray) -> np.ndarray:
        cv2 = require("cv2", "face")

        from pyfill.faces.analysis import check_rgb

        rgb = check_rgb(frame, "frame")
        gray = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
        if self._frame % self.detect_every == 0 or not self._tracks:
            found = [f.landmarks for f in self._selected(rgb, self.analyzer.detect(rgb), [])]
            self._tracks = [self._smooth(self._nearest(p), p) for p in found]
        elif self._previous_gray is not None:
            self._tracks = self._flow(self._previous_gray, gray)
        self._previous_gray, self._frame = gray, self._frame + 1
        out = rgb
        for landmarks in self._tracks:
            out = self.swap_face(out, landmarks)
        return out

    def _nearest(self, landmarks: np.ndarray) -> np.ndarray | None:
        """The tracked landmarks of the same face (mean distance under half the eye distance)."""
        if not self._tracks:
            return None
        dists = [float(np.linalg.norm(t - landmarks, axis=1).mean()) for t in self._tracks]
        i = int(np.argmin(dists))
        return self._tracks[i] if dists[i] < 0.5 * float(np.linalg.norm(landmarks[1] - landmarks[0])) else None

    def _smooth(self, previous: np.ndarray | None, measured: np.ndarray) -> np.ndarray:
        return measured if previous is None else self.smoothing * previous + (1.0 - self.smoothing) * measured

    def _flow(self, before: np.ndarray, after: np.ndarray) -> list[np.ndarray]:
        """Landmarks moved by pyramidal Lucas-Kanade optical flow; faces whose points are lost
        are dropped until the next detection."""
        cv2 = require("cv2", "face")

        tracks = []
        for t in self._tracks:
            pts, status, _ = cv2.calcOpticalFlowPyrLK(before, after, t.astype(np.float32).reshape(-1, 1, 2), None,
                                                      winSize=(21, 21), maxLevel=3)
            if status is not None and status.all():
                tracks.append(self._smooth(t, pts.reshape(-1, 2).astype(np.float64)))
        return tracks


def swap(source: Any, target: Any, *, model: str | Path = DEFAULT_MODEL, embedder: str | Path | None = None,
         reference: Any = None, analyzer: FaceAnalyzer | None = None, colour_match: bool = True,
         feather: float = 0.08, restore: str | Path | None = None, backend: str = "auto") -> SwapResult:
    """Put the identity of the face in ``source`` onto the faces in ``target``.

    Args:
        source, target: uint8 (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA arrays, or PIL images.
        model, embedder, reference, analyzer, colour_match, feather, restore, backend: as for
            :class:`Swapper`.

    Returns a :class:`SwapResult`: the image in the target's form (gray stays gray, alpha kept
    as it was), with the number of faces found and swapped. A target without a face comes back
    unchanged with a :class:`FaceWarning`. A source without a face raises ValueError.
    """
    swapper = Swapper(source, model=model, embedder=embedder, reference=reference, analyzer=analyzer,
                      colour_match=colour_match, feather=feather, restore=restore, backend=backend)
    result = swapper.swap_image(target)
    result.warnings = swapper.warnings + result.warnings
    return result

