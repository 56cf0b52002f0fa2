"""PyTorch training for pyfill's models: one trainer per system and a shared harness.

``python -m training.<system>`` runs from the repository root, which puts the checkout first on
``sys.path``; its ``pyfill/`` has no compiled core, so the installed pyfill (``pip install .``) is
preferred here whenever the checkout's copy lacks one.
"""

from __future__ import annotations

import sys
from pathlib import Path


def _prefer_installed_pyfill() -> None:
    root = Path(__file__).resolve().parent.parent
    if "pyfill" in sys.modules or any((root / "pyfill").glob("_C*")):
        return
    sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != root]


_prefer_installed_pyfill()
