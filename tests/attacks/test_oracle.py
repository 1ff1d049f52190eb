"""Oracles: the policy is applied, queries are counted in total and per record, batching is invisible."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks._oracle import LocalOracle, Oracle, QueryCounter
from miaudit.defenses import ExposedLabels, ExposedScores, TopK, apply_policy
from miaudit.errors import InputError


class _Model:
    """Softmax of a fixed linear map; counts calls and rows it was asked about."""

    def __init__(self, d: int = 4, c: int = 3) -> None:
        self.w = np.random.default_rng(0).normal(size=(d, c))
        self.calls = 0
        self.rows = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls += 1
        self.rows += x.shape[0]
        z = x @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


X = np.random.default_rng(1).normal(size=(10, 4))


def test_local_oracle_is_an_oracle_and_applies_the_policy():
    m = _Model()
    o = LocalOracle(m.predict_proba, "top-1")
    assert isinstance(o, Oracle)
    assert o.policy == TopK(1)
    out = o.query(X)
    assert isinstance(out, ExposedScores)
    ref = apply_policy("top-1", m.predict_proba(X))
    assert isinstance(ref, ExposedScores)
    np.testing.assert_array_equal(out.values, ref.values)
    assert isinstance(LocalOracle(m.predict_proba, "label-only").query(X), ExposedLabels)


def test_counts_total_and_per_record():
    m = _Model()
    o = LocalOracle(m.predict_proba, "label-only")
    o.query(X[:4], tags=np.array([0, 0, 2, 5]))
    o.query(X[:3])  # untagged: counted in the total only
    o.query(X[:2], tags=np.array([5, 1]))
    assert o.queries == 9 == m.rows
    np.testing.assert_array_equal(o.queries_per_record(7), [2, 1, 1, 0, 0, 2, 0])
    np.testing.assert_array_equal(o.queries_per_record(3), [2, 1, 1])


def test_bad_tags_are_refused_and_not_counted():
    o = LocalOracle(_Model().predict_proba, "full")
    for tags in (np.array([0, 1]), np.array([0, -1, 2]), np.array([0.0, 1.0, 2.0])):
        with pytest.raises(InputError, match="tags"):
            o.query(X[:3], tags=tags)
    assert o.queries == 0
    with pytest.raises(InputError, match="records"):
        o.query(np.zeros((0, 4)))


def test_batching_is_invisible():
    m = _Model()
    small = LocalOracle(m.predict_proba, "round:3", batch_size=3)
    out = small.query(X)
    assert m.calls == 4  # 10 rows in batches of 3
    whole = LocalOracle(_Model().predict_proba, "round:3").query(X)
    assert isinstance(out, ExposedScores) and isinstance(whole, ExposedScores)
    np.testing.assert_array_equal(out.values, whole.values)
    np.testing.assert_array_equal(out.labels, whole.labels)
    labels = LocalOracle(m.predict_proba, "label-only", batch_size=4).query(X)
    assert isinstance(labels, ExposedLabels) and labels.labels.shape == (10,)


def test_noise_oracle_fresh_per_query_reproducible_per_seed():
    a = LocalOracle(_Model().predict_proba, "noise:0.1", rng=3)
    b = LocalOracle(_Model().predict_proba, "noise:0.1", rng=3)
    a1, a2, b1 = a.query(X), a.query(X), b.query(X)
    assert (
        isinstance(a1, ExposedScores)
        and isinstance(a2, ExposedScores)
        and isinstance(b1, ExposedScores)
    )
    assert not np.array_equal(a1.values, a2.values)  # fresh noise each query
    np.testing.assert_array_equal(a1.values, b1.values)
    with pytest.raises(InputError, match="rng"):
        LocalOracle(_Model().predict_proba, "noise:0.1").query(X)


def test_bad_construction():
    with pytest.raises(InputError, match="policy"):
        LocalOracle(_Model().predict_proba, "top-0")
    with pytest.raises(InputError, match="batch_size"):
        LocalOracle(_Model().predict_proba, "full", batch_size=0)


def test_counter_grows_and_reads_past_the_end():
    c = QueryCounter()
    c.add(3, np.array([100, 100, 2]))
    c.add(0, np.zeros(0, dtype=np.int64))
    assert c.total == 3
    counts = c.per_record(200)
    assert counts[100] == 2 and counts[2] == 1 and counts.sum() == 3


def check_oracle_contract(oracle: Oracle, records: np.ndarray, expected_labels: np.ndarray) -> None:
    """What every Oracle must do (LocalOracle here; the service's HttpOracle can call this too).

    ``oracle`` must be fresh (no queries yet); ``records`` has at least 3 rows and
    ``expected_labels`` are the model's predicted labels on them.
    """
    assert isinstance(oracle, Oracle)
    assert oracle.queries == 0
    n = records.shape[0]
    out = oracle.query(records, tags=np.arange(n))
    assert len(out) == n
    assert isinstance(out, ExposedLabels) == (str(oracle.policy) == "label-only")
    assert out.policy == oracle.policy
    np.testing.assert_array_equal(out.labels, expected_labels)
    assert out.labels.dtype == np.int64
    if isinstance(out, ExposedScores):
        assert out.values.shape[0] == n and out.values.dtype == np.float64
    oracle.query(records[:2], tags=np.array([2, 2]))
    oracle.query(records[:1])
    assert oracle.queries == n + 3
    per = oracle.queries_per_record(n)
    assert per[2] == 3 and per.sum() == n + 2


@pytest.mark.parametrize("spec", ["full", "top-2", "round:1", "label-only", "noise:0.1"])
def test_local_oracle_passes_the_contract(spec):
    m = _Model()
    check_oracle_contract(
        LocalOracle(m.predict_proba, spec, rng=0), X, m.predict_proba(X).argmax(axis=1)
    )
