"""Model architectures (``torch.nn.Module``) and the registry that builds one from its config.

Each family registers an :class:`Architecture`: ``build(config)`` returns the module and
``manifest(config, task)`` describes its inputs, outputs and size rules. Importing this package
needs torch (``pip install 'pyfill[train]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from pyfill._core import require

require("torch", "train")

from pyfill.manifest import Manifest  # noqa: E402


@dataclass(frozen=True)
class Architecture:
    """A model family: how to build it and how to describe it."""

    name: str
    build: Callable[[dict[str, Any]], Any]
    manifest: Callable[[dict[str, Any], str], Manifest]
    defaults: dict[str, Any]


_REGISTRY: dict[str, Architecture] = {}


def register(arch: Architecture) -> Architecture:
    if arch.name in _REGISTRY:
        raise ValueError(f"architecture '{arch.name}' is already registered")
    _REGISTRY[arch.name] = arch
    return arch


def architectures() -> list[str]:
    """Names of the registered model families."""
    return sorted(_REGISTRY)


def get_architecture(family: str) -> Architecture:
    try:
        return _REGISTRY[family]
    except KeyError:
        raise ValueError(f"unknown model family '{family}'; known: {architectures()}") from None


def full_config(family: str, config: dict[str, Any] | None = None) -> dict[str, Any]:
    """The family's defaults overridden by ``config``; unknown keys are refused."""
    arch = get_architecture(family)
    config = dict(config or {})
    unknown = sorted(set(config) - set(arch.defaults))
    if unknown:
        raise ValueError(f"{family}: unknown config keys {unknown}; known: {sorted(arch.defaults)}")
    return {**arch.defaults, **config}


def build_model(family: str, config: dict[str, Any] | None = None):
    """Build an untrained module of ``family`` from ``config`` (defaults fill the rest)."""
    return get_architecture(family).build(full_config(family, config))


def make_manifest(family: str, config: dict[str, Any] | None = None, task: str = "image-to-image") -> Manifest:
    return get_architecture(family).manifest(full_config(family, config), task)


from pyfill.models import colorize, edit, restore, spade, swap, unet  # noqa: E402,F401  (registers the families)

__all__ = ["Architecture", "register", "architectures", "get_architecture", "build_model", "make_manifest", "full_config"]
