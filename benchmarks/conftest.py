"""Collects each benchmark's mean time under a (case, method) key and prints the ratios against
the baseline of every case at the end of the run."""

from __future__ import annotations

import json
import os
from collections import defaultdict
from typing import Any

import pytest

_TIMES: dict[str, dict[str, float]] = defaultdict(dict)
_BASELINES: dict[str, str] = {}


class RatioRecorder:
    def record(self, benchmark: Any, case: str, method: str, baseline: str) -> None:
        stats = benchmark.stats
        if stats is None:  # --benchmark-disable
            return
        _TIMES[case][method] = float(stats.stats.mean)
        _BASELINES[case] = baseline
        benchmark.extra_info.update({"case": case, "method": method, "baseline": baseline})


@pytest.fixture(scope="session")
def ratios() -> RatioRecorder:
    return RatioRecorder()


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
