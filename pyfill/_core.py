"""Loading of the compiled core and of optional extras, with errors that say what to install."""

from __future__ import annotations

import importlib
from types import ModuleType

try:
    from pyfill import _C
except ImportError as exc:  # pragma: no cover - only hit on a broken or source-tree import
    raise ImportError(
        "pyfill's compiled core (pyfill._C) could not be loaded. Install the package with "
        "`pip install .` (or `pip install pyfill`) instead of importing it from the source tree. "
        f"Original error: {exc}"
    ) from exc

__all__ = ["_C", "MissingExtraError", "require"]


class MissingExtraError(ImportError):
    """An optional dependency is missing; the message names the pip extra that provides it."""


def require(module: str, extra: str) -> ModuleType:
    """Import ``module`` or raise :class:`MissingExtraError` naming the extra to install.

    >>> np = require("numpy", "core")
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        if extra == "core":
            raise MissingExtraError(
                f"the Python package '{module}' is a dependency of pyfill but cannot be imported ({exc}); "
                "reinstall pyfill: pip install --force-reinstall pyfill"
            ) from exc
        raise MissingExtraError(
            f"this feature needs the Python package '{module}', which is not installed; "
            f"install it with: pip install 'pyfill[{extra}]'"
        ) from exc
