"""What every task shares: one cached Engine per (model, options), the model-task check, and
user images brought to NumPy with their alpha split off."""

from __future__ import annotations

import threading
from typing import Any

import numpy as np

from pyfill.engine import Engine
from pyfill.engine.processing import is_pil

_ENGINES: dict[tuple, Engine] = {}
_LOCK = threading.Lock()


def get_engine(model: str | Any, tasks: tuple[str, ...], command: str, **options: Any) -> Engine:
    """The Engine for ``model`` (a name, a path, or an Engine given as it is), cached per model
    and options, after checking that its manifest's task is one of ``tasks``."""
    if isinstance(model, Engine):
        engine = model
    else:
        key = (str(model), tuple(sorted(options.items())))
        with _LOCK:
            if key not in _ENGINES:
                _ENGINES[key] = Engine(model, **options)
            engine = _ENGINES[key]
    check_task(engine, tasks, command)
    return engine


def check_task(engine: Engine, tasks: tuple[str, ...], command: str) -> None:
    task = engine.manifest.task
    if task not in tasks:
        raise ValueError(f"{engine.path.name} is a {task} model; {command} takes a model for "
                         f"{' or '.join(tasks)}")


def to_array(image: Any, name: str = "image") -> np.ndarray:
    """A NumPy array as it is, or a PIL image decoded like an image file."""
    if is_pil(image):
        from pyfill.images import pil_to_array

        return pil_to_array(image)
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name}: expected a NumPy array or a PIL image, got {type(image).__name__}")
    return image


def split_alpha(arr: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """(colour or gray part, alpha (H, W, 1) or None) of an (H, W), (H, W, 3) or (H, W, 4) image."""
    if arr.ndim == 3 and arr.shape[-1] == 4:
        return arr[..., :3], arr[..., 3:]
    return arr, None


def join_alpha(colour: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    if alpha is None:
        return colour
    if alpha.dtype != colour.dtype:
        raise TypeError(f"alpha dtype {alpha.dtype} differs from the image's {colour.dtype}")
    return np.concatenate([colour, alpha], axis=-1)


def face_rgb(image: Any, name: str, task: str) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """For the face tasks: (the array as given, its uint8 RGB (H, W, 3) view for face analysis,
    its alpha or None). ``task`` names the task in the error for non-uint8 input."""
    arr = to_array(image, name)
    if arr.dtype != np.uint8:
        raise TypeError(f"{name}: {task} takes uint8 images, got {arr.dtype}")
    colour, alpha = split_alpha(arr)
    if colour.ndim == 3 and colour.shape[-1] == 1:
        colour = colour[..., 0]
    if colour.ndim == 2:
        rgb = np.repeat(colour[..., None], 3, axis=-1)
    elif colour.ndim == 3 and colour.shape[-1] == 3:
        rgb = np.ascontiguousarray(colour)
    else:
        raise ValueError(f"{name}: expected an (H, W) gray, (H, W, 3) RGB or (H, W, 4) RGBA image, got shape {arr.shape}")
    return arr, rgb, alpha


def back_to_form(given: np.ndarray, rgb: np.ndarray, alpha: np.ndarray | None) -> np.ndarray:
    """A face task's RGB result in the form ``given`` came in: gray stays gray (channel mean),
    alpha is joined back."""
    colour = split_alpha(given)[0]
    if colour.ndim == 2 or colour.shape[-1] == 1:
        gray = np.rint(rgb.astype(np.float64).mean(axis=-1)).astype(np.uint8)
        rgb = gray if colour.ndim == 2 else gray[..., None]
    return join_alpha(rgb, alpha)
