"""The manifest moved to :mod:`pyfill.manifest` (importable without the engine); these names stay
importable from here for code written against the first layout."""

from pyfill.manifest import (  # noqa: F401
    DERIVE_EXTRA_ARGS,
    DERIVE_OPS,
    FORMAT_VERSION,
    ONNX_METADATA_KEY,
    Manifest,
    ManifestError,
    SizeRequirements,
    TensorSpec,
    Tiling,
    read_onnx_manifest,
)
