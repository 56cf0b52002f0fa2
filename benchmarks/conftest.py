"""Collects each benchmark's mean time under a (case, method) key and prints the ratios against
the baseline of every case at the end of the run.

Outputs: a benchmark that passes ``output=`` to :meth:`RatioRecorder.record` has its result
compared with the baseline's result of the same case (``atol`` in the units of the outputs,
float32 HWC images in [0, 1] by convention), whichever of the two runs first; a method that is
fast because it computes something else fails. This also runs under ``--benchmark-disable``.

Ratios: ``min_ratio=`` states the speed-up over the baseline a method is expected to keep
(measured in RESULTS.md). It is asserted only when asked for, with ``--assert-ratios`` or
``PYFILL_BENCH_ASSERT_RATIOS=1``, so a loaded machine does not fail an ordinary run.
"""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import numpy as np
import pytest

_TIMES: dict[str, dict[str, float]] = defaultdict(dict)
_BASELINES: dict[str, str] = {}
_OUTPUTS: dict[str, dict[str, tuple[np.ndarray, float]]] = defaultdict(dict)
_MIN_RATIOS: dict[str, dict[str, float]] = defaultdict(dict)


def pytest_addoption(parser: Any) -> None:
    parser.addoption("--assert-ratios", action="store_true", default=False,
                     help="fail a benchmark whose speed-up over its baseline is below its stated min_ratio")


def outputs_differ(got: np.ndarray, want: np.ndarray, atol: float) -> str | None:
    """Why ``got`` does not match ``want`` within ``atol`` (None when it does)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    if got.shape != want.shape:
        return f"shape {got.shape} vs the baseline's {want.shape}"
    diff = float(np.abs(got - want).max()) if got.size else 0.0
    return None if diff <= atol else f"max difference {diff:.3g} > {atol:.3g}"


class RatioRecorder:
    def __init__(self, enforce: bool) -> None:
        self.enforce = enforce

    def record(self, benchmark: Any, case: str, method: str, baseline: str, output: Any = None,
               atol: float = 0.0, min_ratio: float | None = None) -> None:
        """Record ``method``'s time for ``case``; with ``output``, check it against the
        baseline's (see the module docstring); with ``min_ratio`` and enforcement on, check the
        speed-up once both times are known."""
        _BASELINES[case] = baseline
        if output is not None:
            self._check_output(case, method, baseline, np.asarray(output), atol)
        if min_ratio is not None:
            _MIN_RATIOS[case][method] = min_ratio
        stats = benchmark.stats
        if stats is None:  # --benchmark-disable
            return
        _TIMES[case][method] = float(stats.stats.mean)
        benchmark.extra_info.update({"case": case, "method": method, "baseline": baseline})
        if self.enforce:
            self._check_ratios(case, baseline)

    @staticmethod
    def _check_output(case: str, method: str, baseline: str, output: np.ndarray, atol: float) -> None:
        _OUTPUTS[case][method] = (output, atol)
        if method == baseline:
            failures = [f"{m}: {why}" for m, (out, tol) in _OUTPUTS[case].items()
                        if m != baseline and (why := outputs_differ(out, output, tol))]
        else:
            want = _OUTPUTS[case].get(baseline)
            why = outputs_differ(output, want[0], atol) if want is not None else None
            failures = [f"{method}: {why}"] if why else []
        assert not failures, f"{case}: outputs differ from {baseline}'s: {'; '.join(failures)}"

    @staticmethod
    def _check_ratios(case: str, baseline: str) -> None:
        times = _TIMES[case]
        if baseline not in times:
            return
        slow = [f"{m}: x{times[baseline] / times[m]:.2f} < x{r:.2f}" for m, r in _MIN_RATIOS[case].items()
                if m in times and times[baseline] / times[m] < r]
        assert not slow, f"{case}: below the stated speed-up over {baseline}: {'; '.join(slow)}"


@pytest.fixture(scope="session")
def ratios(request: Any) -> RatioRecorder:
    enforce = request.config.getoption("--assert-ratios") or os.environ.get("PYFILL_BENCH_ASSERT_RATIOS") == "1"
    return RatioRecorder(enforce)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if not _TIMES:
        return
    tr = terminalreporter
    tr.section("pyfill ratios (baseline mean time / method mean time; > 1 = faster than baseline)")
    report: dict[str, Any] = {}
    for case, methods in _TIMES.items():
        base = _BASELINES[case]
        for method, t in sorted(methods.items(), key=lambda kv: kv[1]):
            ratio = methods[base] / t if base in methods else float("nan")
            tr.write_line(f"{case:<40} {method:<28} {t * 1e3:10.2f} ms   x{ratio:6.2f} vs {base}")
            report.setdefault(case, {})[method] = {"mean_s": t, f"speedup_vs_{base}": ratio}
    out = os.environ.get("PYFILL_BENCH_JSON")
    if out:
        with open(out, "w") as f:
            json.dump(report, f, indent=2)
