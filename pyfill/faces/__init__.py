"""Face analysis for face swapping: detection with five landmarks, alignment to canonical crops,
identity embeddings, and paste-back.

Backends: dlib (offline default, ``pip install 'pyfill[face]'``) and bring-your-own ONNX models
with the conventions FaceFusion users have (SCRFD-style detectors, ArcFace-style embedders).
"""

from __future__ import annotations

from pyfill.faces.align import ARCFACE_112, ARCFACE_128, align_face, alignment_matrix, similarity_transform, template
from pyfill.faces.analysis import (
    ArcFaceEmbedder,
    DetectedFace,
    DlibDetector,
    DlibEmbedder,
    FaceAnalyzer,
    ScrfdDetector,
)
from pyfill.faces.paste import face_mask, match_colours, paste_back

__all__ = ["ARCFACE_112", "ARCFACE_128", "align_face", "alignment_matrix", "similarity_transform", "template",
           "ArcFaceEmbedder", "DetectedFace", "DlibDetector", "DlibEmbedder", "FaceAnalyzer", "ScrfdDetector",
           "face_mask", "match_colours", "paste_back"]
