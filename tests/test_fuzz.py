"""A short, seeded fuzz run of every target in fuzz_targets (every pyfill.ops function, the
Engine's input conversion, the image reader, the manifest reader, the board's request parser):
no input may raise anything but ValueError/TypeError, and none may take longer than the hang
limit. The long run is benchmarks/fuzz.py."""

from __future__ import annotations

import time

import pytest

pytest.importorskip("hypothesis")
from fuzz_targets import HANG_SECONDS, check, targets  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402

# About 3,800 inputs in all; the targets that build larger inputs get fewer.
EXAMPLES = {"images.read_image": 300, "board.request": 250, "manifest": 300, "engine.inputs": 300}
DEFAULT_EXAMPLES = 170


@pytest.mark.parametrize("target", targets(), ids=lambda t: t.name)
def test_fuzz_target(target) -> None:
    slowest = [0.0]
    seen = [0]

    @settings(max_examples=EXAMPLES.get(target.name, DEFAULT_EXAMPLES), derandomize=True, deadline=None,
              database=None, suppress_health_check=list(HealthCheck), print_blob=True)
    @given(target.strategy)
    def run(case) -> None:
        start = time.perf_counter()
        check(target, case)
        slowest[0] = max(slowest[0], time.perf_counter() - start)
        seen[0] += 1

    run()
    assert seen[0] >= 50
    assert slowest[0] < HANG_SECONDS, f"{target.name}: an input took {slowest[0]:.1f} s"


def test_gaussian_kernel_refuses_sizes_no_image_needs() -> None:
    """Found by fuzzing: gaussian_kernel(2**31 + 1) tried to allocate 16 GiB."""
    import numpy as np

    from pyfill.ops import gaussian_blur, gaussian_kernel

    for ksize in (65537, 2**31 + 1, 2**64 + 1):
        with pytest.raises(ValueError, match=r"ksize must be <= 65535"):
            gaussian_kernel(ksize)
        with pytest.raises(ValueError, match=r"ksize must be <= 65535"):
            gaussian_blur(np.zeros((4, 4, 3), np.uint8), ksize)
    k = gaussian_kernel(65535, 3.0)
    x = np.arange(65535) - 32767
    want = np.exp(-(x * x) / 18.0)
    np.testing.assert_allclose(k, want / want.sum(), atol=1e-7)
