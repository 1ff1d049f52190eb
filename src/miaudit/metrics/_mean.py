"""A mean over (model, record) pairs with a percentile interval resampling records."""

from __future__ import annotations

import numpy as np

from miaudit.metrics._estimate import Estimate


def grouped_mean(
    values: np.ndarray,
    groups: np.ndarray,
    *,
    n_resamples: int,
    confidence: float,
    rng: np.random.Generator,
) -> Estimate:
    """Mean of ``values`` over pairs, with a percentile interval that resamples the records in
    ``groups`` (all pairs of one record drawn together), as every interval of an audit does: an
    accuracy over several models' answers on the same records is no more certain than those
    records make it.

    Examples
    --------
    >>> e = grouped_mean(
    ...     np.array([1.0, 0.0, 1.0, 1.0]),
    ...     np.array([0, 0, 1, 2]),
    ...     n_resamples=0,
    ...     confidence=0.95,
    ...     rng=np.random.default_rng(0),
    ... )
    >>> e.point
    0.75
    """
    _, g = np.unique(np.asarray(groups), return_inverse=True)
    d = np.bincount(g, weights=np.asarray(values, dtype=np.float64))
    n = np.bincount(g).astype(np.float64)
    if n.sum() == 0:
        return Estimate(point=None, status="not_measurable")
    point = float(d.sum() / n.sum())
    if n_resamples == 0:
        return Estimate(point=point)
    reps = np.empty(n_resamples)
    for b in range(n_resamples):
        w = np.bincount(rng.integers(0, n.size, n.size), minlength=n.size)
        reps[b] = float(w @ d) / max(float(w @ n), 1.0)
    tail = (1 - confidence) / 2
    lo, hi = np.quantile(reps, [tail, 1 - tail])
    return Estimate(point=point, lower=float(lo), upper=float(hi))
