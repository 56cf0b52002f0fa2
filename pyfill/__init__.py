"""pyfill: a compiled, high-performance inference SDK for GAN image models.

``import pyfill`` needs only NumPy, ONNX Runtime and the compiled core ``pyfill._C``; torch,
TensorRT, PyAV and the web server are optional extras, imported where they are used.
"""

from __future__ import annotations

__version__ = "0.1.0"

from pyfill._core import MissingExtraError, require
from pyfill.runtime import runtime_info

__all__ = ["__version__", "runtime_info", "MissingExtraError", "require", "Engine", "Manifest",
           "restore", "colorize", "generate", "swap", "edit"]

_LAZY = {"Engine": "pyfill.engine", "Manifest": "pyfill.manifest", "restore": "pyfill.tasks",
         "colorize": "pyfill.tasks", "generate": "pyfill.tasks", "swap": "pyfill.tasks",
         "edit": "pyfill.tasks.edit"}


def __getattr__(name: str):
    # The engine and the tasks are imported on first use so that `import pyfill` stays minimal.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'pyfill' has no attribute {name!r}")
