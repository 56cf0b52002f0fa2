"""Degraded / clean pairs for restoration (SPEC S3), made with :class:`pyfill.degrade.Pipeline`.

- :func:`degrade` runs a pipeline over an (N, 3, H, W) torch batch in [0, 1] on its own device.
- :data:`LEVELS`: light / medium / heavy settings of the seed preset (narrowed parameter
  ranges), used by the evaluation.
- :func:`strength_overrides`: pipeline settings pinned to one degradation strength t in [0, 1]
  for the quality classifier's self-labelled mode; :func:`quality_of_strength` maps t to the
  0-100 quality scale (100 (1 - t)).
"""

from __future__ import annotations

from typing import Any

import torch

from pyfill.degrade import Pipeline

#: Overrides of the seed preset for the evaluation levels (probabilities stay the preset's).
LEVELS: dict[str, dict[str, Any]] = {
    "light": {"gaussian_ksize_range": (3, 5), "motion_length_range": (0.0, 3.0), "downscale_range": (1.0, 1.5),
              "gaussian_noise_sigma_range": (1.0, 5.0), "poisson_scale_range": (0.05, 0.5),
              "salt_pepper_snr_range": (0.995, 1.0), "jpeg_quality_range": (85, 100)},
    "medium": {"gaussian_ksize_range": (3, 7), "motion_length_range": (2.0, 6.0), "downscale_range": (1.5, 2.5),
               "gaussian_noise_sigma_range": (5.0, 15.0), "poisson_scale_range": (0.5, 1.5),
               "salt_pepper_snr_range": (0.98, 0.995), "jpeg_quality_range": (65, 85)},
    "heavy": {"gaussian_ksize_range": (7, 13), "motion_length_range": (6.0, 12.0), "downscale_range": (2.5, 4.0),
              "gaussian_noise_sigma_range": (15.0, 30.0), "poisson_scale_range": (1.5, 3.0),
              "salt_pepper_snr_range": (0.9, 0.98), "jpeg_quality_range": (50, 65)},
}


def level_pipeline(level: str, seed: int) -> Pipeline:
    """The seed preset at an evaluation level (``light`` | ``medium`` | ``heavy``)."""
    if level not in LEVELS:
        raise ValueError(f"level must be one of {sorted(LEVELS)}, got {level!r}")
    return Pipeline("seed", seed=seed, **LEVELS[level])


def degrade(pipeline: Pipeline, clean: torch.Tensor) -> torch.Tensor:
    """Degrade a batch: clean (N, 3, H, W) float32 in [0, 1] (CPU or CUDA) -> degraded batch of
    the same shape, dtype and device."""
    if clean.ndim != 4 or clean.shape[1] != 3:
        raise ValueError(f"expected an (N, 3, H, W) batch, got shape {tuple(clean.shape)}")
    nhwc = clean.permute(0, 2, 3, 1).contiguous()
    out, _ = pipeline(nhwc)
    return out.permute(0, 3, 1, 2).contiguous()


def strength_overrides(t: float) -> dict[str, Any]:
    """Seed-preset settings that apply every step at strength ``t`` in [0, 1] with fixed
    parameters: Gaussian blur kernel 3 + 10 t (odd, OpenCV sigma rule), area downsampling by
    1 + 3 t then bicubic back, Gaussian noise of sigma 30 t, JPEG quality 100 - 50 t."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {t}")
    ksize = 3 + 2 * round(5 * t)
    scale = 1.0 + 3.0 * t
    sigma = 30.0 * t
    quality = round(100 - 50 * t)
    return {"blur_prob": 1.0, "blur_kinds": ("gaussian",), "gaussian_ksize_range": (ksize, ksize),
            "resize_prob": 1.0, "downscale_range": (scale, scale), "upscale_interpolations": ("bicubic",),
            "noise_prob": 1.0, "noise_kinds": ("gaussian",), "gray_noise_prob": 0.0,
            "gaussian_noise_sigma_range": (sigma, sigma), "gaussian_noise_mean_range": (0.0, 0.0),
            "jpeg_prob": 1.0, "jpeg_quality_range": (quality, quality)}


def quality_of_strength(t: float) -> float:
    """Self-labelled quality on the 0-100 scale of an image degraded at strength ``t``: 100 (1 - t)
    (poor below 30, i.e. t > 0.7; good from 60, i.e. t <= 0.4)."""
    if not 0.0 <= t <= 1.0:
        raise ValueError(f"strength must be in [0, 1], got {t}")
    return 100.0 * (1.0 - t)
