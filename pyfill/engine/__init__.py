"""The inference engine: manifest, pre/post-processing, tiling and backends."""

from pyfill.engine.engine import Engine
from pyfill.engine.manifest import Manifest, ManifestError, TensorSpec

__all__ = ["Engine", "Manifest", "ManifestError", "TensorSpec"]
