"""bench_augmented_queries' arithmetic on simulated 8-model stores with a query axis (its
training is exercised by its full run): every attack compared over all queries and over the
first, the claim's verdict stated at full size only, and the single-query view exact."""

from __future__ import annotations

import numpy as np
import pytest

import benchmarks.bench_augmented_queries as bench
import benchmarks.bench_budget_curve as budget_bench
from miaudit.data import SignalsStore
from tests.simulate import complementary_keep


def _store(queries: int, seed: int) -> SignalsStore:
    """Each query sees the member boost through its own noise, so averaging queries helps."""
    rng = np.random.default_rng(seed)
    n, k, c = 600, 8, 4
    keep = complementary_keep(rng, k, n)
    pop = np.zeros(n, dtype=bool)
    pop[:100] = True
    keep[:, pop] = False
    y = rng.integers(0, c, n)
    logits = rng.normal(size=(k, n, queries, c))
    boost = 1.0 + rng.normal(0, 1, n)[None, :, None] + 1.5 * keep[:, :, None]
    logits[np.arange(k)[:, None], np.arange(n)[None], :, y[None]] += boost + rng.normal(
        0, 3.0, (k, n, queries)
    )
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )


def _planted_qmia(store: SignalsStore, cfg: object, records: np.ndarray) -> dict[str, np.ndarray]:
    """QMIA's place (its regressor is tested in tests/attacks/test_qmia.py): the target's own
    true-class logit less the record's mean over models (standing in for the regressor's
    prediction), averaged over the queries or the first query's."""
    lab = store.label[records][None, :, None, None]
    z = np.take_along_axis(store.logits[:, records], lab, axis=3)[..., 0]  # (models, records, Q)
    z = z - z.mean(axis=0)
    return {
        "qmia, all queries": z.mean(axis=2).reshape(-1),
        "qmia, 1 query": z[:, :, 0].reshape(-1),
    }


@pytest.fixture
def simulated(monkeypatch):
    cfg = bench.image_config("digits", "small")  # only its cost figure is read (stubbed below)
    # The claim's dataset only: the other is the same code on another store.
    monkeypatch.setattr(
        bench, "DATASETS", {bench.CLAIM_DATASET: bench.DATASETS[bench.CLAIM_DATASET]}
    )
    stores = {bench.CLAIM_DATASET: _store(5, 0)}
    monkeypatch.setattr(bench, "image_store", lambda name, size: (stores[name], cfg, 0.0))
    monkeypatch.setattr(bench, "seconds_per_1000_queries", lambda cfg: 0.5)
    monkeypatch.setattr(bench, "qmia_scores", _planted_qmia)
    # The curve's own arithmetic is tested in test_shrinkage_benches: one stub row here.
    monkeypatch.setattr(budget_bench, "one_curve", lambda name, st, cfg: ({}, [f"| {name} |"]))
    return stores


def test_first_query_is_the_stores_first_slice(simulated):
    store = simulated[bench.CLAIM_DATASET]
    one = bench.first_query(store, 2)
    assert one.logits.shape == (*store.logits.shape[:2], 1, store.logits.shape[3])
    np.testing.assert_array_equal(one.logits[:, :, 0], store.logits[:, :, 2])
    np.testing.assert_array_equal(one.keep, store.keep)


def test_every_attack_is_compared_and_the_verdict_is_the_claims(simulated, monkeypatch):
    result = bench.run("full")
    for name in bench.DATASETS:
        fig = result.figures[name]
        assert fig["queries"] == 5 and fig["k"] == 3
        for attack in bench.ATTACKS:
            d = fig[attack]["difference"]
            assert d["point"] == pytest.approx(
                fig[attack]["tpr1_multi"] - fig[attack]["tpr1_single"]
            )
    fig = result.figures[bench.CLAIM_DATASET]
    for attack in bench.CLAIM_ATTACKS:
        # Five noisy looks at the same boost beat one: the planted gain is found.
        assert fig[attack]["difference"]["lower"] > 0 and fig[attack]["claim_met"] is True
    assert fig["confidence"] == 0.9875 and fig["claim_met"] is True  # four looks: Bonferroni
    assert result.passed is True
    assert f"| {bench.CLAIM_DATASET} (CNN) |" in result.table
    assert "| fashion-mnist | lira_online | 5 |" in result.table


def test_qmia_scores_read_the_recipes_views_or_the_image_alone():
    """The benchmark's own QMIA path (the full run's): the digits recipe's five shift views of
    each record, or the image alone, scored per (model, record) pair in query_scores' order."""
    from miaudit.datasets import load_dataset

    cfg = bench.image_config("digits", "small")
    ids = load_dataset(cfg.data).record_id[:300]
    base = _store(5, 1)
    keep = base.keep[:2, :300]  # one complementary pair: two targets keep the fits few
    pop = np.zeros(300, dtype=bool)
    pop[:100] = True
    keep[:, pop] = False
    store = SignalsStore.from_arrays(
        logits=base.logits[:2, :300],
        label=base.label[:300],
        keep=keep,
        population=pop,
        record_id=ids,
    )
    records = np.flatnonzero(~pop)
    out = bench.qmia_scores(store, cfg, records)
    assert set(out) == {"qmia, all queries", "qmia, 1 query"}
    for scores in out.values():
        assert scores.shape == (store.n_models * records.size,) and np.isfinite(scores).all()
    assert not np.allclose(out["qmia, all queries"], out["qmia, 1 query"])
