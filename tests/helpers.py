"""Shared test helpers. Tests run on CPU-only machines; GPU tests skip with a reason."""

from __future__ import annotations

import pytest

from pyfill._core import _C


def cuda_skip_reason() -> str | None:
    """None when pyfill's CUDA kernels can run here, else why not."""
    if not _C.build_config()["cuda"]:
        return "pyfill was built without CUDA kernels"
    devices, reason = _C.cuda_devices()
    if not devices:
        return f"no CUDA device: {reason}"
    return None


requires_cuda = pytest.mark.skipif(cuda_skip_reason() is not None, reason=cuda_skip_reason() or "")
