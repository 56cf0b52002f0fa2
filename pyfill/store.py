"""The local model store: models too large for the wheel, kept in ``$PYFILL_HOME/models``.

``PYFILL_HOME`` defaults to ``$XDG_DATA_HOME/pyfill`` (``~/.local/share/pyfill``). A stored model
is a file (``NAME.onnx``, ``NAME.engine``/``.plan`` with its ``NAME.json``, ``NAME.safetensors``
with its ``NAME.json``, or another project's ``NAME.pth``/``.pt``/``.ckpt``) under that folder. Nothing is ever downloaded: files come in through
:func:`add_model` (``pyfill models add FILE --name NAME``).

Name resolution, used by the CLI, the board, ``pyfill info``, the tasks and training scripts
alike (:func:`resolve_model`): an existing path wins; otherwise a name is looked up in the
package's shipped models, then in the store.
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

PRETRAINED_DIR = Path(__file__).resolve().parent / "models" / "pretrained"
MODEL_SUFFIXES = (".onnx", ".safetensors", ".engine", ".plan", ".trt", ".pth", ".pt", ".ckpt")
# Files that travel with a model file of the same stem.
_COMPANIONS = {".safetensors": (".json",), ".engine": (".json",), ".plan": (".json",), ".trt": (".json",)}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def pyfill_home() -> Path:
    """``$PYFILL_HOME``, or ``$XDG_DATA_HOME/pyfill``, or ``~/.local/share/pyfill``."""
    if os.environ.get("PYFILL_HOME"):
        return Path(os.environ["PYFILL_HOME"]).expanduser()
    data = os.environ.get("XDG_DATA_HOME") or str(Path.home() / ".local" / "share")
    return Path(data).expanduser() / "pyfill"


def store_dir() -> Path:
    return pyfill_home() / "models"


def _models_in(folder: Path) -> dict[str, Path]:
    if not folder.is_dir():
        return {}
    found: dict[str, Path] = {}
    for suffix in MODEL_SUFFIXES:
        for p in sorted(folder.glob(f"*{suffix}")):
            found.setdefault(p.stem, p)
    return found


def shipped_models() -> dict[str, Path]:
    """{name: file} of the models inside the package."""
    return _models_in(PRETRAINED_DIR)


def stored_models() -> dict[str, Path]:
    """{name: file} of the models in the local store."""
    return _models_in(store_dir())


def available_models() -> dict[str, tuple[Path, str]]:
    """{name: (file, "package" | "store")}; a shipped model hides a stored one of the same name."""
    out = {n: (p, "store") for n, p in stored_models().items()}
    out.update({n: (p, "package") for n, p in shipped_models().items()})
    return dict(sorted(out.items()))


def _missing_message(name: str) -> str:
    names = ", ".join(available_models()) or "none"
    return (f"no model file or model named {name!r}; available models: {names}. Add a file to the "
            f"store with: pyfill models add FILE --name NAME (store: {store_dir()})")


def resolve_model(name_or_path: str | os.PathLike[str]) -> Path:
    """A model file for a path or a model name: an existing path as it is, else the shipped
    model of that name, else the stored one. Raises FileNotFoundError listing what exists."""
    path = Path(name_or_path)
    if path.exists():
        return path
    name = str(name_or_path)
    if path.suffix.lower() in MODEL_SUFFIXES or os.sep in name or "/" in name:
        raise FileNotFoundError(f"model file not found: {path}")
    found = available_models().get(name)
    if found is None:
        raise FileNotFoundError(_missing_message(name))
    return found[0]


def add_model(file: str | os.PathLike[str], name: str | None = None, *, overwrite: bool = False) -> Path:
    """Copy a model file (and the ``.json`` manifest a checkpoint or engine needs) into the store
    as ``NAME``; returns the stored model file."""
    src = Path(file)
    if not src.is_file():
        raise FileNotFoundError(f"model file not found: {src}")
    suffix = src.suffix.lower()
    if suffix not in MODEL_SUFFIXES:
        raise ValueError(f"{src}: not a model file pyfill knows (expected one of {MODEL_SUFFIXES})")
    name = name or src.stem
    if not _NAME.match(name):
        raise ValueError(f"model name {name!r}: use letters, digits, '.', '_' and '-' (at most 128)")
    companions = [src.with_suffix(s) for s in _COMPANIONS.get(suffix, ())]
    for c in companions:
        if not c.is_file():
            raise FileNotFoundError(f"{src.name} needs its manifest beside it: {c}")
    if name in stored_models() and not overwrite:
        raise FileExistsError(f"the store already has a model named {name!r}; remove it first or pass overwrite")
    folder = store_dir()
    folder.mkdir(parents=True, exist_ok=True)
    if name in stored_models():
        remove_model(name)
    for c in companions:
        shutil.copyfile(c, folder / f"{name}{c.suffix}")
    target = folder / f"{name}{suffix}"
    tmp = target.with_name(f".{target.name}.partial")
    shutil.copyfile(src, tmp)
    os.replace(tmp, target)
    return target


def remove_model(name: str) -> list[Path]:
    """Delete a stored model's files; returns them. Shipped models cannot be removed."""
    path = stored_models().get(name)
    if path is None:
        where = " (it ships in the package and cannot be removed)" if name in shipped_models() else ""
        raise FileNotFoundError(f"the store has no model named {name!r}{where}")
    removed = [p for p in (path, *(path.with_suffix(s) for s in _COMPANIONS.get(path.suffix.lower(), ())))
               if p.is_file()]
    for p in removed:
        p.unlink()
    return removed
