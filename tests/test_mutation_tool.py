"""tools/mutation.py's sampling and its interval (the figures in docs/testing.md rest on them)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import mutation  # noqa: E402


@pytest.mark.parametrize("killed, drawn", [(112, 136), (136, 136), (0, 10), (1, 1), (45, 78)])
def test_the_wilson_interval_equals_scipys(killed: int, drawn: int) -> None:
    stats = pytest.importorskip("scipy.stats")
    want = stats.binomtest(killed, drawn).proportion_ci(confidence_level=0.95, method="wilson")
    lo, hi = mutation.wilson(killed, drawn)
    assert lo == pytest.approx(want.low, abs=1e-6) and hi == pytest.approx(want.high, abs=1e-6)


def test_a_sample_is_a_seeded_uniform_draw_of_the_groups_mutants(monkeypatch) -> None:
    names = [f"pyfill.m.x_f__mutmut_{i}" for i in range(1, 201)]
    monkeypatch.setattr(mutation, "population", lambda folder, group: list(names))
    group = mutation.GROUPS["swap"]
    a, n = mutation.sample(Path("."), group, 0.15, seed=0)
    b, _ = mutation.sample(Path("."), group, 0.15, seed=0)
    c, _ = mutation.sample(Path("."), group, 0.15, seed=1)
    assert n == 200 and len(a) == 30 and len(set(a)) == 30 and set(a) <= set(names)
    assert a == b == sorted(a) and a != c
    # every mutant is about equally likely over many seeds (a uniform draw, not the first ones)
    counts = dict.fromkeys(names, 0)
    for seed in range(400):
        for name in mutation.sample(Path("."), group, 0.15, seed)[0]:
            counts[name] += 1
    assert min(counts.values()) > 30 and max(counts.values()) < 95  # expected 60 each
