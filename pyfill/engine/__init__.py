"""The inference engine: manifest, pre/post-processing, tiling and backends."""

from pyfill.engine.engine import Engine, pretrained_models
from pyfill.engine.manifest import Manifest, ManifestError, TensorSpec

__all__ = ["Engine", "pretrained_models", "Manifest", "ManifestError", "TensorSpec"]
