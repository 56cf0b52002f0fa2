"""Checkpoints from other projects: PyTorch restoration and upscaling weights (``.pth``, ``.pt``,
``.ckpt``, or a ``.safetensors`` file without a pyfill ``.json`` beside it) whose architecture
spandrel recognises (ESRGAN, Real-ESRGAN Compact, SwinIR, HAT, DAT, SCUNet, NAFNet, GFPGAN...).

The weights are read without unpickling arbitrary objects: safetensors, or ``torch.load`` with
``weights_only=True`` (tensors, numbers, strings and containers only; anything else is refused
before it runs). spandrel detects the architecture and its hyper-parameters from the state dict;
the pyfill :class:`~pyfill.manifest.Manifest` is derived from spandrel's descriptor. The model is
exported to ONNX once per file (checked against PyTorch at two sizes by
:func:`pyfill.export.export_onnx`) into ``cache_dir()/foreign``, keyed by the SHA-256 of the
file; an architecture that does not export cleanly is recorded there too, with the reason, and
runs on the torch backend.

Needs the ``spandrel`` extra (spandrel imports torchvision, which must be built for the same torch
as the one installed).
"""

from __future__ import annotations

import json
import math
import os
import pickle
import warnings
from pathlib import Path
from typing import Any

from pyfill._core import MissingExtraError, require
from pyfill.manifest import Manifest, SizeRequirements, TensorSpec, Tiling

PICKLE_SUFFIXES = (".pth", ".pt", ".ckpt")
FOREIGN_SUFFIXES = (*PICKLE_SUFFIXES, ".safetensors")
# Bumped when the derived manifest or the export changes, so stale cache entries are not reused.
CACHE_VERSION = 1
# The export check's tolerances for other projects' models, tighter than for pyfill's own: a
# graph that froze a shape (the batch size of window-attention models) differs by ~5e-4 at random
# weights, while faithful graphs match to ~3e-7.
RTOL, ATOL = 1e-4, 2e-5
# The advised tile for models spandrel says tile well, in input pixels.
TILE, TILE_OVERLAP = 256, 32

_SPACES = {1: "gray", 3: "rgb"}


def is_foreign_file(path: str | os.PathLike[str]) -> bool:
    """Whether ``path`` names another project's checkpoint: a ``.pth``/``.pt``/``.ckpt`` file, or
    a ``.safetensors`` file without the ``.json`` manifest of a pyfill checkpoint beside it."""
    p = Path(path)
    suffix = p.suffix.lower()
    if suffix in PICKLE_SUFFIXES:
        return True
    return suffix == ".safetensors" and not p.with_suffix(".json").is_file()


def _spandrel() -> Any:
    try:
        return require("spandrel", "spandrel")
    except MissingExtraError:
        raise
    except Exception as exc:  # torchvision built for another torch fails while registering its ops
        raise MissingExtraError(
            f"the 'spandrel' extra is installed but cannot be imported ({type(exc).__name__}: {exc}); "
            "torch and torchvision must be a matching pair from the same index, e.g. "
            "pip install torch==2.14.1 torchvision==0.29.1 'pyfill[spandrel]'"
        ) from exc


def read_state_dict(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The tensors of a checkpoint file, as {name: torch.Tensor} on the CPU.

    ``.safetensors`` are read with safetensors; ``.pth``/``.pt``/``.ckpt`` with
    ``torch.load(weights_only=True)``, which refuses (ValueError) a pickle holding anything but
    tensors, numbers, strings and containers, without running it. The usual wrappers
    (``params_ema``, ``state_dict``, ``module.`` prefixes...) are unwrapped as spandrel does.
    """
    torch = require("torch", "spandrel")
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    if p.suffix.lower() == ".safetensors":
        safetensors_torch = require("safetensors.torch", "spandrel")
        try:
            state: Any = safetensors_torch.load_file(str(p), device="cpu")
        except Exception as exc:
            raise ValueError(f"{p}: not a readable safetensors file ({exc})") from exc
    else:
        try:
            state = torch.load(str(p), map_location="cpu", weights_only=True)
        except pickle.UnpicklingError as exc:
            first = str(exc).split("\n\n")[0].strip()
            raise ValueError(
                f"{p}: refused: the file holds Python objects other than tensors, which pyfill does not "
                f"unpickle (torch.load weights_only=True: {first}). Save the state dict alone, or as safetensors."
            ) from exc
        except Exception as exc:
            raise ValueError(f"{p}: not a readable PyTorch checkpoint ({type(exc).__name__}: {exc})") from exc
    if not isinstance(state, dict):
        raise ValueError(f"{p}: expected a dict of tensors (a state dict), got {type(state).__name__}")
    state = _spandrel().canonicalize_state_dict(state)
    tensors = {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}
    if not tensors:
        raise ValueError(f"{p}: holds no tensors under any key a state dict is kept under")
    return tensors


def load_descriptor(path: str | os.PathLike[str]) -> Any:
    """spandrel's ``ImageModelDescriptor`` for a checkpoint file (model on the CPU, eval mode).

    Raises ValueError for a file whose architecture spandrel does not recognise, or for a model
    that is not single image in, image out (inpainting models take a mask as well)."""
    return load_descriptor_from_state_dict(read_state_dict(path), Path(path).name)


def load_descriptor_from_state_dict(state: dict[str, Any], name: str = "state dict") -> Any:
    """spandrel's ``ImageModelDescriptor`` for a state dict ({key: torch.Tensor}); ``name``
    labels error messages. Raises ValueError as :func:`load_descriptor` does."""
    spandrel = _spandrel()
    try:
        desc = spandrel.ModelLoader(device="cpu").load_from_state_dict(state)
    except spandrel.UnsupportedModelError as exc:
        raise ValueError(
            f"{name}: spandrel {spandrel.__version__} does not recognise this architecture "
            f"(keys such as {sorted(state)[:3]}); pyfill runs checkpoints of the architectures spandrel "
            "knows, pyfill checkpoints (.safetensors + .json) and ONNX files"
        ) from exc
    if not isinstance(desc, spandrel.ImageModelDescriptor):
        raise ValueError(
            f"{name}: a {desc.architecture.name} model ({desc.purpose}) takes more than one "
            "image; pyfill runs spandrel's single-image models only"
        )
    if desc.size_requirements.square:
        raise ValueError(f"{name}: {desc.architecture.name} needs square inputs, which pyfill does not pad to")
    return desc.eval()


def manifest_from_descriptor(desc: Any, source: str | os.PathLike[str] | None = None) -> Manifest:
    """The pyfill manifest of a spandrel ``ImageModelDescriptor``.

    Image in, image out, both RGB (or gray) float in [0, 1] as spandrel's call convention has it.
    Size: spandrel's ``minimum`` and ``multiple_of`` (and the attention window of models that
    pad to it inside, which pyfill pads to outside the graph instead); face models (purpose ``FaceSR``) run at
    their one size (``minimum`` x ``minimum``), other sizes stretched to it and back. Tiling is
    advised where spandrel says ``SUPPORTED`` (not for ``DISCOURAGED`` or ``INTERNAL``).
    Precision: spandrel's ``supports_half`` / ``supports_bfloat16``.
    """
    spandrel = _spandrel()
    req = desc.size_requirements
    multiple_of = req.multiple_of
    window = getattr(desc.model, "window_size", None)
    if isinstance(window, int) and window > 1 and hasattr(desc.model, "check_image_size"):
        # Window-attention models (SwinIR, HAT...) pad to their window inside forward() by an
        # amount that tracing freezes; padding to the window outside the graph (reflect, as they
        # do) gives the same result and an export that serves every size.
        multiple_of = math.lcm(multiple_of, window)
    fixed = (req.minimum, req.minimum) if desc.purpose == "FaceSR" and req.minimum > 0 else None
    arch = desc.architecture
    provenance: dict[str, Any] = {"spandrel": spandrel.__version__, "architecture": arch.id}
    if source is not None:
        provenance["source"] = Path(source).name
    return Manifest(
        task="image-to-image",
        family=f"spandrel-{arch.id}",
        config={"architecture": arch.id, "name": arch.name, "purpose": desc.purpose, "tags": list(desc.tags)},
        inputs=[TensorSpec("image", "image", desc.input_channels, _SPACES.get(desc.input_channels, "none"))],  # type: ignore[arg-type]
        outputs=[TensorSpec("output", "image", desc.output_channels, _SPACES.get(desc.output_channels, "none"))],  # type: ignore[arg-type]
        size=SizeRequirements(multiple_of=multiple_of, min_size=max(1, req.minimum), fixed=fixed,
                              scale=desc.scale, resize="stretch" if fixed else "pad"),
        tiling=Tiling(supported=desc.tiling == spandrel.ModelTiling.SUPPORTED and fixed is None,
                      tile=TILE, overlap=TILE_OVERLAP),
        fp16=bool(desc.supports_half),
        bf16=bool(desc.supports_bfloat16),
        provenance=provenance,
    )


def descriptor_module(desc: Any) -> Any:
    """A ``torch.nn.Module`` that runs ``desc`` as spandrel's call does, without its padding:
    (N, C, H, W) float in [0, 1] -> (N, C', s*H, s*W) clamped to [0, 1]. H and W must meet the
    size requirements (the Engine pads to them)."""
    torch = require("torch", "spandrel")
    call = getattr(desc, "_call_fn", None) or (lambda model, image: model(image))

    base: Any = torch.nn.Module

    class SpandrelModule(base):
        def __init__(self) -> None:
            super().__init__()
            self.model = desc.model

        def forward(self, image: Any) -> Any:
            return call(self.model, image).clamp(0.0, 1.0)

    return SpandrelModule().eval()


def load_module(path: str | os.PathLike[str]) -> tuple[Any, Manifest]:
    """(module in eval mode on the CPU, manifest) for another project's checkpoint file."""
    desc = load_descriptor(path)
    return descriptor_module(desc), manifest_from_descriptor(desc, path)


def _cache_key(path: Path) -> str:
    from pyfill.export import OPSET, file_sha256

    return f"{file_sha256(path)[:32]}-v{CACHE_VERSION}-op{OPSET}"


def prepare(path: str | os.PathLike[str]) -> tuple[Path | None, Manifest, str]:
    """(ONNX file or None, manifest, reason) for a checkpoint file, exporting it on first use.

    The ONNX file lies in ``cache_dir()/foreign`` under the file's SHA-256, with the manifest in
    its metadata; later calls return it without loading torch. When the export fails (the
    architecture does not trace to ONNX, or ONNX Runtime's outputs differ from PyTorch's), the
    result is (None, manifest, reason): the model runs on the torch backend; the outcome is kept
    beside the cache entry and a warning says why.
    """
    from pyfill.export import cache_dir, export_onnx

    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"model file not found: {p}")
    folder = cache_dir() / "foreign"
    key = _cache_key(p)
    onnx_path, failed = folder / f"{key}.onnx", folder / f"{key}.torch-only.json"
    if onnx_path.is_file():
        from pyfill.manifest import read_onnx_manifest

        manifest = read_onnx_manifest(onnx_path)
        if manifest is not None:
            return onnx_path, manifest, ""
    if failed.is_file():
        record = json.loads(failed.read_text())
        manifest = Manifest.from_dict(record["manifest"])
        _warn_torch_only(p, manifest, record["reason"])
        return None, manifest, record["reason"]
    module, manifest = load_module(p)
    folder.mkdir(parents=True, exist_ok=True)
    manifest.provenance["sha256"] = key.split("-")[0]
    try:
        export_onnx(module, onnx_path, manifest=manifest, rtol=RTOL, atol=ATOL)
    except Exception as exc:  # any failure to trace or to match PyTorch means: run it on torch
        reason = f"{type(exc).__name__}: {exc}".strip()
        reason = reason if len(reason) < 400 else reason[:400] + "..."
        manifest.provenance["onnx_export"] = f"failed: {reason}"
        tmp = failed.with_name(failed.name + ".partial")
        tmp.write_text(json.dumps({"reason": reason, "manifest": manifest.to_dict()}, indent=2))
        os.replace(tmp, failed)
        _warn_torch_only(p, manifest, reason)
        return None, manifest, reason
    return onnx_path, manifest, ""


def _warn_torch_only(path: Path, manifest: Manifest, reason: str) -> None:
    warnings.warn(
        f"{path.name}: the {manifest.config.get('name', manifest.family)} model does not export to ONNX "
        f"cleanly, so it runs on the torch backend ({reason})",
        stacklevel=3,
    )
