"""Seeded degradation pipelines that make (degraded, clean) training pairs on the fly.

>>> import numpy as np
>>> from pyfill.degrade import Pipeline
>>> clean = np.zeros((4, 64, 64, 3), np.uint8)
>>> degraded, records = Pipeline("seed", seed=0)(clean)
>>> degraded.shape, len(records)
((4, 64, 64, 3), 4)

Each record is the list of steps applied to one image, in order, as dicts ``{"op": name,
**parameters}``; :func:`apply_steps` re-applies such a list with the individual ops of
:mod:`pyfill.ops` and reproduces the pipeline's output exactly.
"""

from __future__ import annotations

import sys
from typing import Any

import numpy as np

from pyfill import ops
from pyfill._core import _C
from pyfill.ops import _arrays
from pyfill.ops import degrade as _ops

__all__ = ["PRESETS", "Pipeline", "apply_steps"]

Step = dict[str, Any]
Record = list[Step]

#: Default parameters of each preset; any of them can be overridden by keyword in Pipeline().
PRESETS: dict[str, dict[str, Any]] = {
    # SPEC S3: blur -> downsample (area) -> upscale (random filter) -> noise -> JPEG, each with
    # its own probability, at least one step applied.
    "seed": {
        "blur_prob": 0.7,
        "blur_kinds": ("gaussian", "motion", "both"),
        "gaussian_ksize_range": (3, 13),
        "gaussian_sigma_range": None,  # None: OpenCV's rule from the kernel size
        "motion_length_range": (0.0, 12.0),
        "motion_angle_range": (0.0, 90.0),
        "resize_prob": 0.7,
        "downscale_range": (1.0, 4.0),
        "upscale_interpolations": ("bilinear", "bicubic", "nearest"),
        "noise_prob": 0.7,
        "noise_kinds": ("gaussian", "poisson", "salt_pepper"),
        "gray_noise_prob": 0.5,
        "gaussian_noise_sigma_range": (1.0, 30.0),
        "gaussian_noise_mean_range": (-5.0, 5.0),
        "poisson_scale_range": (0.05, 3.0),
        "salt_pepper_snr_range": (0.9, 1.0),  # fraction of untouched pixels
        "jpeg_prob": 0.7,
        "jpeg_quality_range": (50, 100),
        "jpeg_subsampling": "4:2:0",
    },
    # Real-ESRGAN's second-order degradation (Wang et al. 2021), with this library's blur
    # kernels (isotropic Gaussian and motion blur) in place of its generalised/sinc kernels,
    # and the output kept at the input size.
    "realesrgan": {
        "blur_prob": 1.0,
        "blur_prob2": 0.8,
        "blur_sigma_range": (0.2, 3.0),
        "blur_sigma_range2": (0.2, 1.5),
        "blur_ksize_range": (7, 21),
        "motion_prob": 0.1,
        "motion_length_range": (1.0, 12.0),
        "motion_angle_range": (0.0, 180.0),
        "resize_mode_probs": (0.2, 0.7, 0.1),  # up, down, keep
        "resize_range": (0.15, 1.5),
        "resize_range2": (0.3, 1.2),
        "resize_interpolations": ("area", "bilinear", "bicubic"),
        "gaussian_noise_prob": 0.5,
        "noise_sigma_range": (1.0, 30.0),
        "noise_sigma_range2": (1.0, 25.0),
        "poisson_scale_range": (0.05, 3.0),
        "poisson_scale_range2": (0.05, 2.5),
        "gray_noise_prob": 0.4,
        "jpeg_quality_range": (30, 95),
        "jpeg_quality_range2": (30, 95),
        "jpeg_subsampling": "4:2:0",
    },
}

_OPS = {
    "gaussian_blur": lambda x, s: ops.gaussian_blur(x, s["ksize"], s["sigma"]),
    "motion_blur": lambda x, s: ops.motion_blur(x, s["length"], s["angle"]),
    "resize": lambda x, s: ops.resize(x, tuple(s["size"]), s["interpolation"]),
    "gaussian_noise": lambda x, s: ops.add_gaussian_noise(x, s["sigma"], s["mean"], s["gray"], s["seed"]),
    "poisson_noise": lambda x, s: ops.add_poisson_noise(x, s["scale"], s["gray"], s["seed"]),
    "salt_pepper": lambda x, s: ops.add_salt_pepper(x, s["amount"], s["seed"]),
    "jpeg": lambda x, s: ops.jpeg(x, s["quality"], s["subsampling"]),
}


# Step codes of the compiled whole-record path (_C.degrade_apply_pipeline).
_CODES = {"gaussian_blur": 0, "motion_blur": 1, "resize": 2, "gaussian_noise": 3, "poisson_noise": 4,
          "salt_pepper": 5, "jpeg": 6}


def _encode(records: list[Record]) -> tuple[np.ndarray, ...]:
    """Flatten records into the arrays of ``_C.degrade_apply_pipeline``: steps int64 (S, 6),
    params float32 (S, 2), seeds uint64 (S,), kernels float32 (N,), offsets int64 (B + 1,).
    Parameters go through the same validation and kernel construction as the individual ops."""
    ints: list[list[int]] = []
    floats: list[tuple[float, float]] = []
    seeds: list[int] = []
    kernels: list[np.ndarray] = []
    offsets, nk = [0], 0
    for rec in records:
        for s in rec:
            op = s.get("op")
            if op not in _CODES:
                raise ValueError(f"unknown degradation step {op!r}")
            i, f, seed, kernel = [0, 0, 0], (0.0, 0.0), 0, None
            if op == "gaussian_blur":
                kernel = ops.gaussian_kernel(s["ksize"], s["sigma"])
            elif op == "motion_blur":
                kernel = ops.motion_kernel(s["length"], s["angle"]).ravel()
            elif op == "resize":
                i = list(_ops._resize_args(tuple(s["size"]), s["interpolation"]))
            elif op == "gaussian_noise":
                f = (_ops._check_number(s["sigma"], "sigma", low=0.0), _ops._check_number(s["mean"], "mean"))
                i[0], seed = int(bool(s["gray"])), _ops._check_seed(s["seed"])
            elif op == "poisson_noise":
                f = (_ops._check_number(s["scale"], "scale", low=0.0), 0.0)
                i[0], seed = int(bool(s["gray"])), _ops._check_seed(s["seed"])
            elif op == "salt_pepper":
                f = (_ops._check_number(s["amount"], "amount", low=0.0, high=1.0), 0.0)
                seed = _ops._check_seed(s["seed"])
            else:  # jpeg
                if s["subsampling"] not in _ops._SUBSAMPLING:
                    raise ValueError(f"jpeg: subsampling must be '4:2:0' or '4:4:4', got {s['subsampling']!r}")
                i = [_ops._check_int(s["quality"], "quality", low=1, high=100), int(_ops._SUBSAMPLING[s["subsampling"]]), 0]
            klen = 0 if kernel is None else kernel.size
            if kernel is not None:
                kernels.append(kernel)
            ints.append([_CODES[op], *i, nk, klen])
            floats.append(f)
            seeds.append(seed)
            nk += klen
        offsets.append(len(ints))
    return (np.asarray(ints, np.int64).reshape(-1, 6), np.asarray(floats, np.float32).reshape(-1, 2),
            np.asarray(seeds, np.uint64), np.concatenate(kernels) if kernels else np.zeros(0, np.float32),
            np.asarray(offsets, np.int64))


def apply_steps(img: Any, steps: Record) -> Any:
    """Apply a record's steps, in order, to one image (H, W, 3) uint8 or float32 in [0, 1]
    (NumPy, torch CPU or CUDA); returns the degraded image of the same kind and size."""
    for step in steps:
        if step.get("op") not in _OPS:
            raise ValueError(f"unknown degradation step {step.get('op')!r}")
        img = _OPS[step["op"]](img, step)
    return img


def _odd_in(rng: np.random.Generator, low: int, high: int) -> int:
    odds = [k for k in range(low, high + 1) if k % 2 == 1]
    if not odds:
        raise ValueError(f"no odd kernel size in [{low}, {high}]")
    return int(rng.choice(odds))


def _uniform(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    return float(rng.uniform(bounds[0], bounds[1]))


def _new_seed(rng: np.random.Generator) -> int:
    return int(rng.integers(0, 2**63))


class Pipeline:
    """A seeded degradation pipeline over batches (B, H, W, 3), uint8 or float32 in [0, 1],
    NumPy or torch (CPU or CUDA).

    ``preset``: ``"seed"`` (SPEC S3's order: blur, area downsample, upscale back with a random
    filter, noise, JPEG; each with a probability, at least one applied) or ``"realesrgan"`` (a
    second-order variant). ``seed``: the parameter stream; a pipeline built with the same seed and
    settings draws the same parameters, hence the same batches, on CPU and CUDA. Keyword
    overrides replace entries of :data:`PRESETS` (unknown names raise TypeError).

    ``pipeline(batch)`` returns ``(degraded, records)``: a batch of the input's shape, dtype and
    library, and one record per image (see :func:`apply_steps`). ``pipeline.sample(n, size)``
    draws records without applying them, ``pipeline.apply(batch, records)`` applies them.
    """

    def __init__(self, preset: str = "seed", seed: int = 0, **overrides: Any) -> None:
        if preset not in PRESETS:
            raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
        unknown = sorted(set(overrides) - set(PRESETS[preset]))
        if unknown:
            raise TypeError(f"unknown option(s) for preset {preset!r}: {', '.join(unknown)}")
        seed = _arrays.check_seed(seed)
        self.preset = preset
        self.config: dict[str, Any] = {**PRESETS[preset], **overrides}
        for key, value in self.config.items():
            if key.endswith("_prob") or key.endswith("_prob2"):
                if not 0.0 <= float(value) <= 1.0:
                    raise ValueError(f"{key} must be in [0, 1], got {value}")
        self._rng = np.random.default_rng(int(seed))

    # ---- sampling ---------------------------------------------------------------------------

    def sample(self, n: int, size: tuple[int, int]) -> list[Record]:
        """Draw the steps of ``n`` images of ``size`` = (height, width) without applying them."""
        if n < 0:
            raise ValueError(f"n must be >= 0, got {n}")
        h, w = int(size[0]), int(size[1])
        if h < 1 or w < 1:
            raise ValueError(f"size must be positive, got {size}")
        draw = self._sample_seed if self.preset == "seed" else self._sample_realesrgan
        return [draw(h, w) for _ in range(n)]

    def _sample_seed(self, h: int, w: int) -> Record:
        c, rng = self.config, self._rng
        names = ("blur", "resize", "noise", "jpeg")
        enabled = {k: bool(rng.random() < c[f"{k}_prob"]) for k in names}
        if not any(enabled.values()):
            enabled[names[int(rng.integers(len(names)))]] = True
        steps: Record = []
        if enabled["blur"]:
            kind = str(rng.choice(c["blur_kinds"]))
            if kind in ("gaussian", "both"):
                sigma_range = c["gaussian_sigma_range"]
                steps.append({"op": "gaussian_blur", "ksize": _odd_in(rng, *c["gaussian_ksize_range"]),
                              "sigma": 0.0 if sigma_range is None else _uniform(rng, sigma_range)})
            if kind in ("motion", "both"):
                steps.append({"op": "motion_blur", "length": _uniform(rng, c["motion_length_range"]),
                              "angle": _uniform(rng, c["motion_angle_range"])})
        if enabled["resize"]:
            s = _uniform(rng, c["downscale_range"])
            small = (max(1, round(h / s)), max(1, round(w / s)))
            steps.append({"op": "resize", "size": small, "interpolation": "area", "factor": s})
            steps.append({"op": "resize", "size": (h, w),
                          "interpolation": str(rng.choice(c["upscale_interpolations"]))})
        if enabled["noise"]:
            steps.append(self._noise_step(str(rng.choice(c["noise_kinds"])), c["gaussian_noise_sigma_range"],
                                          c["poisson_scale_range"]))
        if enabled["jpeg"]:
            steps.append(self._jpeg_step(c["jpeg_quality_range"]))
        return steps

    def _noise_step(self, kind: str, sigma_range: tuple[float, float], scale_range: tuple[float, float]) -> Step:
        c, rng = self.config, self._rng
        if kind == "salt_pepper":
            snr = _uniform(rng, c["salt_pepper_snr_range"])
            return {"op": "salt_pepper", "snr": snr, "amount": 1.0 - snr, "seed": _new_seed(rng)}
        gray = bool(rng.random() < c["gray_noise_prob"])
        if kind == "gaussian":
            mean_range = c.get("gaussian_noise_mean_range", (0.0, 0.0))
            return {"op": "gaussian_noise", "sigma": _uniform(rng, sigma_range), "mean": _uniform(rng, mean_range),
                    "gray": gray, "seed": _new_seed(rng)}
        if kind == "poisson":
            return {"op": "poisson_noise", "scale": _uniform(rng, scale_range), "gray": gray, "seed": _new_seed(rng)}
        raise ValueError(f"unknown noise kind {kind!r}")

    def _jpeg_step(self, quality_range: tuple[int, int]) -> Step:
        quality = int(self._rng.integers(quality_range[0], quality_range[1] + 1))
        return {"op": "jpeg", "quality": quality, "subsampling": self.config["jpeg_subsampling"]}

    def _realesrgan_order(self, cur: tuple[int, int], stage: str) -> Record:
        """One order: blur (probability), random resize, Gaussian or Poisson noise, JPEG."""
        c, rng = self.config, self._rng
        steps: Record = []
        suffix = "" if stage == "1" else "2"
        if rng.random() < c[f"blur_prob{suffix}"]:
            if rng.random() < c["motion_prob"]:
                steps.append({"op": "motion_blur", "length": _uniform(rng, c["motion_length_range"]),
                              "angle": _uniform(rng, c["motion_angle_range"])})
            else:
                steps.append({"op": "gaussian_blur", "ksize": _odd_in(rng, *c["blur_ksize_range"]),
                              "sigma": _uniform(rng, c[f"blur_sigma_range{suffix}"])})
        mode = int(rng.choice(3, p=np.asarray(c["resize_mode_probs"], dtype=np.float64)))
        low, high = c[f"resize_range{suffix}"]
        scale = [_uniform(rng, (1.0, high)), _uniform(rng, (low, 1.0)), 1.0][mode]
        interp = str(rng.choice(c["resize_interpolations"]))
        new = (max(1, round(cur[0] * scale)), max(1, round(cur[1] * scale)))
        steps.append({"op": "resize", "size": new, "interpolation": interp, "factor": scale})
        kind = "gaussian" if rng.random() < c["gaussian_noise_prob"] else "poisson"
        steps.append(self._noise_step(kind, c[f"noise_sigma_range{suffix}"], c[f"poisson_scale_range{suffix}"]))
        steps.append(self._jpeg_step(c[f"jpeg_quality_range{suffix}"]))
        return steps

    def _sample_realesrgan(self, h: int, w: int) -> Record:
        first = self._realesrgan_order((h, w), "1")
        second = self._realesrgan_order(first[-3]["size"], "2")  # steps end resize, noise, jpeg
        back = {"op": "resize", "size": (h, w), "interpolation": str(self._rng.choice(self.config["resize_interpolations"]))}
        jpeg = second.pop()  # the last JPEG goes before or after the final resize, at random
        tail = [back, jpeg] if self._rng.random() < 0.5 else [jpeg, back]
        return first + second + tail

    # ---- applying ---------------------------------------------------------------------------

    def apply(self, batch: Any, records: list[Record]) -> Any:
        """Apply one record per image of ``batch`` (B, H, W, 3), uint8 or float32 in [0, 1];
        returns the degraded batch (same shape, dtype and library). Every record must end at
        the input size. NumPy arrays and CPU tensors run all records in one compiled call (each
        image's whole chain on one thread, images in parallel, the same results as
        :func:`apply_steps`); CUDA inputs apply the steps with the CUDA ops."""
        shape = tuple(batch.shape)
        if len(shape) != 4 or shape[-1] != 3:
            raise ValueError(f"batch must have shape (B, H, W, 3), got {shape}")
        if len(records) != shape[0]:
            raise ValueError(f"got {len(records)} records for a batch of {shape[0]} images")
        if not _arrays.is_cuda_array(batch):
            arr, back = _arrays.to_host(batch, "Pipeline.apply")
            _ops._check_layout(arr.shape, arr.dtype, "Pipeline.apply")
            if arr.dtype == np.float32 and np.isnan(arr).any():
                raise ValueError("Pipeline.apply: float input contains NaN")
            arr = np.ascontiguousarray(arr)
            return back(_C.degrade_apply_pipeline(arr, *_encode(records)))
        _ops._check_layout(shape, np.dtype(str(batch.dtype).replace("torch.", "")), "Pipeline.apply")
        if str(batch.dtype).endswith("float32") and _ops.has_nan(batch):
            raise ValueError("Pipeline.apply: float input contains NaN")
        with _ops.assume_finite():  # checked once above: no host synchronisation per step
            out = [apply_steps(batch[i], records[i]) for i in range(shape[0])]
        torch = sys.modules.get("torch")
        if torch is not None and isinstance(batch, torch.Tensor):
            return torch.stack(out)
        return np.stack(out)

    def __call__(self, batch: Any) -> tuple[Any, list[Record]]:
        """Sample parameters for every image of ``batch`` (B, H, W, 3), uint8 or float32 in
        [0, 1], and apply them: returns (degraded batch, records)."""
        shape = tuple(batch.shape)
        if len(shape) != 4:
            raise ValueError(f"batch must have shape (B, H, W, 3), got {shape}")
        records = self.sample(shape[0], (shape[1], shape[2]))
        return self.apply(batch, records), records

