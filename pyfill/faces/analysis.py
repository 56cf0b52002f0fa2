"""Face analysis: detection (boxes, five landmarks, scores) and identity embeddings.

One small interface, :class:`FaceAnalyzer` = a :class:`Detector` + an :class:`Embedder`, with
two kinds of backend:

* dlib (the offline default, ``pip install 'pyfill[face]'``): dlib's HOG frontal face
  detector; its 68-point shape predictor for the five alignment landmarks (eye centres, nose
  tip, mouth corners; dlib's 5-point model has no mouth points); its 128-d face-recognition
  ResNet fed with the 5-point shape, as dlib's own examples do. The weights ship in the
  ``face_recognition_models`` package.
* bring-your-own ONNX with the conventions FaceFusion users have: an SCRFD-style detector
  (:class:`ScrfdDetector`) and an ArcFace-style 112 x 112 embedder (:class:`ArcFaceEmbedder`).
  pyfill's own ``face_id`` model is an ArcFace-style embedder whose manifest declares [0, 1]
  inputs.

Images are RGB uint8 (H, W, 3) arrays; landmarks follow :mod:`pyfill.faces.align`.
"""

from __future__ import annotations

import functools
import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from pyfill._core import MissingExtraError, require
from pyfill.faces.align import align_face, check_landmarks


@dataclass
class DetectedFace:
    """One face: ``box`` (4,) float (x0, y0, x1, y1) pixels; ``landmarks`` (5, 2) float pixels
    (left eye, right eye, nose tip, left and right mouth corner, viewer's left first);
    ``score``: the detector's confidence (its own scale)."""

    box: np.ndarray
    landmarks: np.ndarray
    score: float

    @property
    def area(self) -> float:
        return float(max(self.box[2] - self.box[0], 0.0) * max(self.box[3] - self.box[1], 0.0))


def check_rgb(image: Any, name: str = "image") -> np.ndarray:
    """``image`` as a C-contiguous uint8 (H, W, 3) array, or a clear error."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a NumPy array, got {type(image).__name__}")
    if image.dtype != np.uint8:
        raise TypeError(f"{name} must be uint8, got {image.dtype}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must be an RGB (H, W, 3) array, got shape {image.shape}")
    if image.shape[0] < 8 or image.shape[1] < 8:
        raise ValueError(f"{name} is too small ({image.shape[1]} x {image.shape[0]} pixels)")
    return np.ascontiguousarray(image)


class Detector(Protocol):
    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        """Faces in an RGB uint8 (H, W, 3) image, highest score first."""
        ...


class Embedder(Protocol):
    #: embedding length
    length: int
    #: distances at or below this are the same person (the backend's usual threshold)
    same_person: float

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The identity embedding (length,) float32 of ``face`` in ``image``."""
        ...

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        """Distance between two embeddings (0 = identical)."""
        ...


@dataclass
class FaceAnalyzer:
    """A detector and an embedder. ``FaceAnalyzer.default()`` is dlib's, offline."""

    detector: Detector
    embedder: Embedder

    @classmethod
    def default(cls) -> FaceAnalyzer:
        models = DlibModels.load()
        return cls(DlibDetector(models), DlibEmbedder(models))

    @classmethod
    def from_onnx(cls, detector: str | Path, embedder: str | Path) -> FaceAnalyzer:
        """Bring-your-own ONNX: an SCRFD-style detector and an ArcFace-style embedder."""
        return cls(ScrfdDetector(detector), ArcFaceEmbedder(embedder))

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        return self.detector.detect(check_rgb(image))

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        return self.embedder.embed(check_rgb(image), face)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return self.embedder.distance(a, b)


def _cosine_distance(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
    if a.shape != b.shape:
        raise ValueError(f"embeddings of different lengths: {a.shape[0]} and {b.shape[0]}")
    return float(1.0 - a @ b / max(np.linalg.norm(a) * np.linalg.norm(b), 1e-12))


# ---- dlib ------------------------------------------------------------------------------------
def face_recognition_models_dir() -> Path:
    """The folder of ``.dat`` weights inside the ``face_recognition_models`` package (found
    without importing it: its ``__init__`` needs setuptools' ``pkg_resources``)."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise MissingExtraError(
            "dlib face analysis needs the 'face_recognition_models' package, which is not installed; "
            "install it with: pip install 'pyfill[face]'"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / "models"
    if not folder.is_dir():
        raise FileNotFoundError(f"face_recognition_models has no models folder at {folder}")
    return folder


@dataclass
class DlibModels:
    """dlib's detector, shape predictors and recognition network, loaded once."""

    dlib: Any
    detector: Any
    shape68: Any
    shape5: Any
    recognition: Any

    @classmethod
    def load(cls) -> DlibModels:
        """The models, loaded on first use and shared afterwards (about a second to load)."""
        return _load_dlib_models()

    @classmethod
    def _read(cls) -> DlibModels:
        dlib = require("dlib", "face")
        folder = face_recognition_models_dir()
        return cls(
            dlib,
            dlib.get_frontal_face_detector(),
            dlib.shape_predictor(str(folder / "shape_predictor_68_face_landmarks.dat")),
            dlib.shape_predictor(str(folder / "shape_predictor_5_face_landmarks.dat")),
            dlib.face_recognition_model_v1(str(folder / "dlib_face_recognition_resnet_model_v1.dat")),
        )


@functools.lru_cache(maxsize=1)
def _load_dlib_models() -> DlibModels:
    return DlibModels._read()


def _rect(dlib: Any, box: np.ndarray) -> Any:
    x0, y0, x1, y1 = (int(round(float(v))) for v in box)
    return dlib.rectangle(x0, y0, x1, y1)


class DlibDetector:
    """dlib's HOG detector (the image ``upsample`` times 2x upsampled first) + five landmarks
    from its 68-point predictor. Faces score above ``min_score`` (dlib's own threshold is 0; the
    default 0.3 drops its weakest hits, such as the badge on the suit in scikit-image's
    ``astronaut()``, scored 0.12, while her face scores 1.16)."""

    def __init__(self, models: DlibModels | None = None, upsample: int = 1, min_score: float = 0.3) -> None:
        self.models = models or DlibModels.load()
        self.upsample, self.min_score = int(upsample), float(min_score)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        image = check_rgb(image)
        rects, scores, _ = self.models.detector.run(image, self.upsample, self.min_score)
        faces = []
        for rect, score in zip(rects, scores):
            pts = self.models.shape68(image, rect)
            p = np.array([[pts.part(i).x, pts.part(i).y] for i in range(68)], np.float64)
            landmarks = np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])
            box = np.array([rect.left(), rect.top(), rect.right(), rect.bottom()], np.float64)
            faces.append(DetectedFace(box, landmarks, float(score)))
        return sorted(faces, key=lambda f: -f.score)


class DlibEmbedder:
    """dlib's 128-d face-recognition ResNet (Euclidean distance; < 0.6 is the same person)."""

    length = 128
    same_person = 0.6

    def __init__(self, models: DlibModels | None = None) -> None:
        self.models = models or DlibModels.load()

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        image = check_rgb(image)
        shape = self.models.shape5(image, _rect(self.models.dlib, face.box))
        return np.asarray(self.models.recognition.compute_face_descriptor(image, shape), np.float32)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        a, b = np.asarray(a, np.float64).ravel(), np.asarray(b, np.float64).ravel()
        if a.shape != b.shape:
            raise ValueError(f"embeddings of different lengths: {a.shape[0]} and {b.shape[0]}")
        return float(np.linalg.norm(a - b))


# ---- bring-your-own ONNX -----------------------------------------------------------------------
def onnx_session(path: str | Path, what: str) -> Any:
    """An ONNX Runtime CPU session for ``path``, or a clear error."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} model not found: {path}")
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    try:
        return ort.InferenceSession(str(path), sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ValueError(f"{path}: not a readable ONNX {what} model ({exc})") from exc


def onnx_manifest(session: Any) -> Any:
    """The pyfill manifest in a session's metadata, or None."""
    from pyfill.manifest import ONNX_METADATA_KEY, Manifest

    text = session.get_modelmeta().custom_metadata_map.get(ONNX_METADATA_KEY)
    return Manifest.from_json(text) if text else None


def _nms(boxes: np.ndarray, scores: np.ndarray, iou: float) -> list[int]:
    order = list(np.argsort(-scores))
    keep: list[int] = []
    while order:
        i = order.pop(0)
        keep.append(i)
        rest = []
        for j in order:
            x0, y0 = max(boxes[i, 0], boxes[j, 0]), max(boxes[i, 1], boxes[j, 1])
            x1, y1 = min(boxes[i, 2], boxes[j, 2]), min(boxes[i, 3], boxes[j, 3])
            inter = max(x1 - x0, 0.0) * max(y1 - y0, 0.0)
            union = ((boxes[i, 2] - boxes[i, 0]) * (boxes[i, 3] - boxes[i, 1])
                     + (boxes[j, 2] - boxes[j, 0]) * (boxes[j, 3] - boxes[j, 1]) - inter)
            if inter <= iou * max(union, 1e-9):
                rest.append(j)
        order = rest
    return keep


class ScrfdDetector:
    """An SCRFD-style ONNX detector (the InsightFace / FaceFusion convention).

    Input: one (1, 3, S, S) float tensor, RGB, ``(pixel - 127.5) / 128``; the image is resized
    (aspect kept) into the top-left of the S x S square (S from the model's input shape, 640
    when dynamic). Outputs: for each stride in (8, 16, 32), in that order: scores (K, 1), then
    the three box tensors (K, 4), then the three landmark tensors (K, 10), K = (S / stride)^2 *
    ``anchors``, a leading batch axis allowed. Boxes are distances (left, top, right, bottom)
    and landmarks offsets, both in strides, from anchor centres (x, y) = (col, row) * stride.
    """

    strides = (8, 16, 32)

    def __init__(self, path: str | Path, min_score: float = 0.5, nms_iou: float = 0.4, anchors: int = 2) -> None:
        self.session = onnx_session(path, "detector")
        inputs = self.session.get_inputs()
        outputs = self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 9:
            raise ValueError(f"{path}: an SCRFD-style detector has 1 input and 9 outputs, "
                             f"this one has {len(inputs)} and {len(outputs)}")
        shape = inputs[0].shape
        self.input_name = inputs[0].name
        self.size = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 640
        self.min_score, self.nms_iou, self.anchors = float(min_score), float(nms_iou), int(anchors)

    def detect(self, image: np.ndarray) -> list[DetectedFace]:
        cv2 = require("cv2", "face")

        image = check_rgb(image)
        h, w = image.shape[:2]
        scale = self.size / max(h, w)
        nh, nw = max(1, int(round(h * scale))), max(1, int(round(w * scale)))
        canvas = np.zeros((self.size, self.size, 3), np.float32)
        canvas[:nh, :nw] = cv2.resize(image, (nw, nh), interpolation=cv2.INTER_LINEAR)
        blob = ((canvas - 127.5) / 128.0).transpose(2, 0, 1)[None]
        outs = [np.asarray(o, np.float32) for o in self.session.run(None, {self.input_name: blob})]
        boxes, kps, scores = [], [], []
        for i, stride in enumerate(self.strides):
            side = self.size // stride
            s = outs[i].reshape(-1)
            d = outs[i + 3].reshape(-1, 4) * stride
            k = outs[i + 6].reshape(-1, 10) * stride
            if len(s) != side * side * self.anchors:
                raise ValueError(f"detector output {i} has {len(s)} scores; expected {side * side * self.anchors} "
                                 f"for stride {stride} with {self.anchors} anchors")
            ys, xs = np.mgrid[0:side, 0:side]
            centres = np.repeat(np.stack([xs, ys], -1).reshape(-1, 2) * stride, self.anchors, axis=0).astype(np.float32)
            keep = s >= self.min_score
            c = centres[keep]
            boxes.append(np.concatenate([c - d[keep, :2], c + d[keep, 2:]], axis=1))
            kps.append(np.tile(c, 5) + k[keep])
            scores.append(s[keep])
        all_boxes, all_kps, all_scores = (np.concatenate(a) for a in (boxes, kps, scores))
        faces = [DetectedFace(all_boxes[i] / scale, all_kps[i].reshape(5, 2) / scale, float(all_scores[i]))
                 for i in _nms(all_boxes, all_scores, self.nms_iou)]
        return faces


class ArcFaceEmbedder:
    """An ArcFace-style ONNX embedder: the face aligned to the 112 x 112 ArcFace template
    (crop size from the model's input shape), RGB, NCHW, fed as ``(pixel - 127.5) / 127.5``
    unless a pyfill manifest in the model declares another input range (pyfill's ``face_id``:
    [0, 1]). Cosine distance; <= ``same_person`` (0.6 unless given) is the same person."""

    def __init__(self, path: str | Path, same_person: float = 0.6) -> None:
        self.session = onnx_session(path, "embedder")
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(inputs[0].shape) != 4:
            raise ValueError(f"{path}: an ArcFace-style embedder has one (N, 3, H, W) input")
        shape = inputs[0].shape
        self.input_name = inputs[0].name
        self.size = shape[2] if isinstance(shape[2], int) and shape[2] > 0 else 112
        manifest = onnx_manifest(self.session)
        self.value_range = tuple(manifest.inputs[0].value_range) if manifest else (-1.0, 1.0)
        out_shape = outputs[0].shape
        self.length = int(out_shape[-1]) if isinstance(out_shape[-1], int) else int(self._run(np.zeros((self.size, self.size, 3), np.uint8)).shape[-1])
        self.same_person = float(same_person)

    def _run(self, crop: np.ndarray) -> np.ndarray:
        lo, hi = self.value_range
        x = (crop.astype(np.float32) / 255.0 * (hi - lo) + lo).transpose(2, 0, 1)[None]
        return np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32).reshape(-1)

    def crop(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        """The aligned (size, size, 3) uint8 crop the embedder sees."""
        return align_face(check_rgb(image), check_landmarks(face.landmarks), self.size)[0]

    def embed(self, image: np.ndarray, face: DetectedFace) -> np.ndarray:
        e = self._run(self.crop(image, face))
        return (e / max(float(np.linalg.norm(e)), 1e-12)).astype(np.float32)

    def distance(self, a: np.ndarray, b: np.ndarray) -> float:
        return _cosine_distance(a, b)
