"""Oracles: records in, what an output policy lets out, with a query counter.

Query attacks (label-only attacks, docs/method.md §5) see a model only through an :class:`Oracle`.
:class:`LocalOracle` wraps a local model's ``predict_proba`` and an output policy; the prediction
service's HTTP client implements the same protocol (sending records, parsing the policy's answer,
counting with a :class:`QueryCounter`), so every attack runs unchanged against a served model.

Counting: ``queries`` is the number of records sent (one query = one row). An attack tags each
row with the index of the record it is probing (``tags``), so that the oracle also counts queries
per record: the cost that API budgets and probing detectors (§7, §10) see.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Protocol, runtime_checkable

import numpy as np

from miaudit.defenses import (
    Exposed,
    OutputPolicy,
    apply_policy,
    concat_exposed,
    parse_policy,
)
from miaudit.errors import InputError


class QueryCounter:
    """Counts queries in total and per tag (the index of the record a query probes)."""

    def __init__(self) -> None:
        self._total = 0
        self._per_tag = np.zeros(0, dtype=np.int64)

    @property
    def total(self) -> int:
        return self._total

    def add(self, n_rows: int, tags: np.ndarray | None = None) -> None:
        """Record ``n_rows`` queries; ``tags`` (n_rows,) non-negative ints, or None (untagged)."""
        if tags is None:
            self._total += int(n_rows)
            return
        t = np.asarray(tags)
        if t.shape != (n_rows,) or (t.size and (t.dtype.kind not in "iu" or t.min() < 0)):
            raise InputError(
                "tags", f"must be ({n_rows},) non-negative integers, one per queried row"
            )
        self._total += int(n_rows)
        if t.size == 0:
            return
        top = int(t.max()) + 1
        if top > self._per_tag.size:
            self._per_tag = np.concatenate(
                [self._per_tag, np.zeros(top - self._per_tag.size, dtype=np.int64)]
            )
        np.add.at(self._per_tag, t, 1)

    def per_record(self, n: int) -> np.ndarray:
        """(n,) queries tagged with each record index 0..n−1 so far."""
        out = np.zeros(n, dtype=np.int64)
        m = min(n, self._per_tag.size)
        out[:m] = self._per_tag[:m]
        return out


@runtime_checkable
class Oracle(Protocol):
    """A model behind an output policy: ``query`` returns only what the policy exposes.

    Implementations: :class:`LocalOracle` (a local model), the prediction service's HTTP client.
    """

    @property
    def policy(self) -> OutputPolicy:
        """The output policy the answers follow."""
        ...

    @property
    def queries(self) -> int:
        """Rows queried so far."""
        ...

    def queries_per_record(self, n: int) -> np.ndarray:
        """(n,) queries tagged with each record index 0..n−1 so far."""
        ...

    def query(self, records: np.ndarray, *, tags: np.ndarray | None = None) -> Exposed:
        """Answer for each row of ``records`` (n, ...) under the policy.

        ``tags``: (n,) index of the record each row is about, for per-record counting.
        """
        ...


class CountingOracle:
    """What every oracle shares: its policy and its query counter (subclasses set both)."""

    _policy: OutputPolicy
    _counter: QueryCounter

    @property
    def policy(self) -> OutputPolicy:
        return self._policy

    @property
    def queries(self) -> int:
        return self._counter.total

    def queries_per_record(self, n: int) -> np.ndarray:
        return self._counter.per_record(n)


class LocalOracle(CountingOracle):
    """A local model's ``predict_proba`` behind an output policy.

    Parameters
    ----------
    predict_proba : callable
        (n, ...) records → (n, C) probabilities (an sklearn estimator's ``predict_proba``, or a
        torch model wrapped to return softmax outputs as numpy).
    policy : OutputPolicy or str
        What the oracle lets out (see :func:`miaudit.defenses.parse_policy`).
    rng : Generator or int, optional
        Source of the ``noise`` policy's noise (fresh noise on every query); unused otherwise.
    batch_size : int
        Rows per ``predict_proba`` call.

    Examples
    --------
    >>> oracle = LocalOracle(lambda x: np.column_stack([1 - x[:, 0], x[:, 0]]), "label-only")
    >>> oracle.query(np.array([[0.9], [0.2]]), tags=np.array([0, 0])).labels
    array([1, 0])
    >>> oracle.queries, oracle.queries_per_record(2).tolist()
    (2, [2, 0])
    """

    def __init__(
        self,
        predict_proba: Callable[[np.ndarray], np.ndarray],
        policy: OutputPolicy | str = "full",
        *,
        rng: np.random.Generator | int | None = None,
        batch_size: int = 8192,
    ) -> None:
        self._predict = predict_proba
        self._policy = parse_policy(policy, field="policy")
        self._rng = None if rng is None else np.random.default_rng(rng)
        if batch_size < 1:
            raise InputError("batch_size", f"must be ≥ 1, got {batch_size}")
        self._batch = int(batch_size)
        self._counter = QueryCounter()

    def query(self, records: np.ndarray, *, tags: np.ndarray | None = None) -> Exposed:
        x = np.asarray(records)
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError("records", f"need at least one record, got shape {x.shape}")
        self._counter.add(x.shape[0], tags)
        parts = []
        for start in range(0, x.shape[0], self._batch):
            probs = np.asarray(self._predict(x[start : start + self._batch]))
            parts.append(apply_policy(self._policy, probs, rng=self._rng))
        return parts[0] if len(parts) == 1 else concat_exposed(parts)
