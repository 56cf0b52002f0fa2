"""The inference engine: model resolution, backend choice, input conversion, tiling, backends."""

from pyfill.engine.engine import Engine, Result, pretrained_models
from pyfill.manifest import Manifest, ManifestError, TensorSpec

__all__ = ["Engine", "Result", "pretrained_models", "Manifest", "ManifestError", "TensorSpec"]
