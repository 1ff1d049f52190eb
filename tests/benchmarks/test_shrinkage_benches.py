"""bench_shrinkage and bench_budget_curve at small size, on a simulated 6-model store (the
benchmarks' own training is exercised by their full runs; this checks their arithmetic)."""

from __future__ import annotations

import numpy as np
import pytest

import benchmarks.bench_budget_curve as budget_bench
import benchmarks.bench_shrinkage as shrink_bench
from miaudit.audit import parse_audit_config
from miaudit.data import SignalsStore
from tests.simulate import complementary_keep


@pytest.fixture
def simulated(monkeypatch):
    rng = np.random.default_rng(0)
    n, k = 900, 6
    keep = complementary_keep(rng, k, n)
    pop = np.zeros(n, dtype=bool)
    pop[:150] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(k, n, 3))
    logits[np.arange(k)[:, None], np.arange(n)[None], y[None]] += (
        2.0 + rng.normal(0, 1, n) + 1.5 * keep
    )
    store = SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )
    cfg = parse_audit_config({"data": {"dataset": "digits"}, "seed": 1, "audit": {"references": 2}})
    monkeypatch.setattr(shrink_bench, "trained_stores", lambda size: {"sim": (store, cfg, 0.0)})
    monkeypatch.setattr(budget_bench, "trained_stores", lambda size: {"sim": (store, cfg, 0.0)})


def test_shrinkage_bench_compares_with_the_best_at_each_k(simulated):
    result = shrink_bench.run("small")
    per_k = result.figures["sim"]["per_k"]
    assert sorted(per_k) == [1, 2]
    for k, row in per_k.items():
        best = max(shrink_bench.BASE, key=lambda a: result.figures["sim"]["tpr1"][f"{a}@k={k}"])
        assert row["best"] == best
        assert row["ratio"] == pytest.approx(row["shrunk_tpr1"] / row["best_tpr1"])
    assert result.passed is None  # small size states no verdict


def test_budget_bench_gives_one_point_per_k(simulated):
    result = budget_bench.run("small")
    points = result.figures["sim"]["curve"]["points"]
    assert [p["references"] for p in points] == [0, 1, 2]
    assert points[0]["attack"] in budget_bench.ZERO
