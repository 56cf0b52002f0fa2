"""Typed wrappers over pyfill's compiled kernels (C++ on the CPU, CUDA on the GPU).

Every op accepts NumPy arrays and torch tensors; CUDA inputs run the CUDA kernels and return
arrays of the same library. Each op has a NumPy reference in ``pyfill.ops.reference`` (one module per op family) that the
tests compare both kernels against.
"""

from __future__ import annotations

from pyfill.ops.convert import chw_to_image, image_to_chw
from pyfill.ops.degrade import (
    add_gaussian_noise,
    add_poisson_noise,
    add_salt_pepper,
    assume_finite,
    filter2d,
    gaussian_blur,
    gaussian_kernel,
    jpeg,
    motion_blur,
    motion_kernel,
    resize,
)
from pyfill.ops.stroke_grid import stroke_grid, stroke_grid_from_image, stroke_grid_latent

__all__: list[str] = [
    "chw_to_image",
    "image_to_chw",
    "add_gaussian_noise",
    "add_poisson_noise",
    "add_salt_pepper",
    "assume_finite",
    "filter2d",
    "gaussian_blur",
    "gaussian_kernel",
    "jpeg",
    "motion_blur",
    "motion_kernel",
    "resize",
    "stroke_grid",
    "stroke_grid_from_image",
    "stroke_grid_latent",
]
