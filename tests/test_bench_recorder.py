"""The benchmarks' recorder (benchmarks/conftest.py): outputs checked against the baseline's in
either order, and stated speed-ups asserted only when asked for."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

SPEC = importlib.util.spec_from_file_location("bench_conftest", Path(__file__).resolve().parents[1] / "benchmarks" / "conftest.py")
bench = importlib.util.module_from_spec(SPEC)
SPEC.loader.exec_module(bench)


def timed(mean: float | None) -> SimpleNamespace:
    """A stand-in for pytest-benchmark's fixture after a run of the given mean time (None: the
    run had --benchmark-disable)."""
    stats = None if mean is None else SimpleNamespace(stats=SimpleNamespace(mean=mean))
    return SimpleNamespace(stats=stats, extra_info={})


@pytest.fixture(autouse=True)
def fresh_state():
    for table in (bench._TIMES, bench._BASELINES, bench._OUTPUTS, bench._MIN_RATIOS):
        table.clear()


def test_outputs_differ_names_shape_and_size_of_the_difference() -> None:
    a = np.zeros((2, 3))
    assert bench.outputs_differ(a, a + 0.01, 0.02) is None
    assert bench.outputs_differ(a, a + 0.03, 0.02) == "max difference 0.03 > 0.02"
    assert bench.outputs_differ(a, np.zeros((3, 2)), 1.0) == "shape (2, 3) vs the baseline's (3, 2)"


@pytest.mark.parametrize("baseline_first", [True, False])
def test_a_method_computing_something_else_fails_in_either_order(baseline_first: bool) -> None:
    rec = bench.RatioRecorder(enforce=False)
    want = np.linspace(0, 1, 12).reshape(3, 4)
    calls = [("base", want, 0.0), ("good", want + 1e-3, 2e-3), ("bad", want[::-1], 2e-3)]
    if not baseline_first:
        calls = calls[1:] + calls[:1]
    failures = []
    for method, out, atol in calls:
        try:
            rec.record(timed(None), "case", method, "base", output=out, atol=atol)
        except AssertionError as exc:
            failures.append(str(exc))
    assert len(failures) == 1 and "bad: max difference" in failures[0] and "good" not in failures[0]


def test_min_ratios_are_asserted_only_when_enforced() -> None:
    for enforce in (False, True):
        bench._TIMES.clear()
        rec = bench.RatioRecorder(enforce=enforce)
        rec.record(timed(1.0), "case", "base", "base")
        rec.record(timed(0.5), "case", "fast", "base", min_ratio=1.5)  # x2.00
        if enforce:
            with pytest.raises(AssertionError, match=r"slow: x1.25 < x1.50"):
                rec.record(timed(0.8), "case", "slow", "base", min_ratio=1.5)
        else:
            rec.record(timed(0.8), "case", "slow", "base", min_ratio=1.5)
    assert bench._TIMES["case"] == {"base": 1.0, "fast": 0.5, "slow": 0.8}


def test_a_baseline_recorded_last_checks_the_ratios_recorded_before_it() -> None:
    rec = bench.RatioRecorder(enforce=True)
    rec.record(timed(0.9), "case", "slow", "base", min_ratio=2.0)
    with pytest.raises(AssertionError, match=r"slow: x1.11 < x2.00"):
        rec.record(timed(1.0), "case", "base", "base")
