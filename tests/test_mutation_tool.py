"""tools/mutation.py's sampling (the sampled figures in docs/testing.md rest on it)."""

from __future__ import annotations

import sys
from pathlib import Path


sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tools"))
import mutation  # noqa: E402


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
