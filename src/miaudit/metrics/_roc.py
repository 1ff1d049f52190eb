"""ROC-based membership metrics (ALGORITHMS.md §0), ``sklearn.metrics`` style, 1 = member.

All metrics are computed from one ranking of the scores: records with equal scores form one
threshold (one ROC point), no point is dropped, and weights (bootstrap counts) enter as
per-record multiplicities. :class:`Ranking` holds the sort, so many weightings of the same
scores (bootstrap replicates) never sort again: resampling records never changes the order.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError

#: Comparisons of a count of false positives with α·N allow this relative slack, so that
#: FPR = α exactly (e.g. 10 of 1000 at α = 1 %) is not lost to rounding of α·N.
_RATE_SLACK = 1e-9


def check_targets(y_true: np.ndarray, y_score: np.ndarray, name: str = "y_score") -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise InputError(name, f"y_true and y_score must be 1-D, got shapes {y.shape} and {s.shape}")
    if y.shape != s.shape:
        raise InputError(name, f"y_true has {y.shape[0]} records but {name} has {s.shape[0]}")
    if y.size == 0:
        raise InputError(name, "no records (empty input)")
    if not np.isin(y, (0, 1)).all():
        raise InputError("y_true", "membership labels must be 0 or 1")
    if y.min() == y.max():
        raise InputError("y_true", "only one membership class present; need members (1) and non-members (0)")
    if np.isnan(s).any():
        raise InputError(name, "scores contain NaN")
    return y.astype(np.int8), s


@dataclass(frozen=True, eq=False)
class Ranking:
    """Scores reduced to tie groups: ``group[i]`` is record i's rank among distinct scores."""

    group: np.ndarray
    n_groups: int
    thresholds: np.ndarray  # distinct scores, ascending

    @classmethod
    def of(cls, y_score: np.ndarray) -> Ranking:
        thresholds, inverse = np.unique(np.asarray(y_score, dtype=np.float64), return_inverse=True)
        return cls(inverse.astype(np.int32 if thresholds.size < 2**31 else np.int64), int(thresholds.size), thresholds)


@dataclass(frozen=True, eq=False)
class Curve:
    """Cumulative (weighted) counts at every threshold, from the highest score down.

    ``tp[j]``/``fp[j]``: members/non-members with score ≥ the j-th highest distinct score;
    index 0 is the threshold +inf (nothing flagged).
    """

    tp: np.ndarray
    fp: np.ndarray
    w1: np.ndarray  # per tie group (ascending score): member weight
    w0: np.ndarray

    @property
    def positives(self) -> float:
        return float(self.tp[-1])

    @property
    def negatives(self) -> float:
        return float(self.fp[-1])

    @classmethod
    def from_groups(cls, w1: np.ndarray, w0: np.ndarray) -> Curve:
        tp = np.concatenate(([0.0], np.cumsum(w1[::-1], dtype=np.float64)))
        fp = np.concatenate(([0.0], np.cumsum(w0[::-1], dtype=np.float64)))
        return cls(tp, fp, w1, w0)

    def auc(self) -> float:
        below = np.cumsum(self.w0, dtype=np.float64) - self.w0
        return float(np.dot(self.w1, below + 0.5 * self.w0) / (self.positives * self.negatives))

    def tpr_at(self, fpr: float) -> float:
        j = int(np.searchsorted(self.fp, fpr * self.negatives * (1 + _RATE_SLACK), side="right")) - 1
        return float(self.tp[j] / self.positives)

    def fpr_index(self, fpr: float) -> int:
        return int(np.searchsorted(self.fp, fpr * self.negatives * (1 + _RATE_SLACK), side="right")) - 1

    def max_gap(self) -> float:
        """max over thresholds of TPR − FPR (membership advantage)."""
        return float(np.max(self.tp / self.positives - self.fp / self.negatives))

    def ppv_at(self, fpr: float, prior: float) -> float:
        j = self.fpr_index(fpr)
        tpr, fpr_j = self.tp[j] / self.positives, self.fp[j] / self.negatives
        denom = prior * tpr + (1 - prior) * fpr_j
        return float(prior * tpr / denom) if denom > 0 else float("nan")


def curve(y_true: np.ndarray, ranking: Ranking, weights: np.ndarray | None = None) -> Curve:
    y = np.asarray(y_true).astype(bool)
    g = ranking.group
    if weights is None:
        w1 = np.bincount(g[y], minlength=ranking.n_groups).astype(np.float64)
        w0 = np.bincount(g[~y], minlength=ranking.n_groups).astype(np.float64)
    else:
        w1 = np.bincount(g[y], weights=weights[y], minlength=ranking.n_groups)
        w0 = np.bincount(g[~y], weights=weights[~y], minlength=ranking.n_groups)
    return Curve.from_groups(w1, w0)


def _curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[Curve, Ranking]:
    y, s = check_targets(y_true, y_score)
    r = Ranking.of(s)
    return curve(y, r), r


def roc_curve(y_true: np.ndarray, y_score: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """ROC at every threshold (tied scores are one threshold; no point dropped).

    Returns:
        fpr, tpr, thresholds — arrays of length (distinct scores + 1), the first point being
        threshold +inf (FPR = TPR = 0). Same convention as
        ``sklearn.metrics.roc_curve(..., drop_intermediate=False)``.

    Example:
        >>> fpr, tpr, thr = roc_curve(np.array([0, 1, 1]), np.array([0.1, 0.1, 0.9]))
        >>> fpr.tolist(), tpr.tolist()
        ([0.0, 0.0, 1.0], [0.0, 0.5, 1.0])
    """
    c, r = _curve(y_true, y_score)
    thresholds = np.concatenate(([np.inf], r.thresholds[::-1]))
    return c.fp / c.negatives, c.tp / c.positives, thresholds


def roc_auc_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC; a tie between a member and a non-member counts ½."""
    return _curve(y_true, y_score)[0].auc()


def tpr_at_fpr(y_true: np.ndarray, y_score: np.ndarray, *, fpr: float) -> float:
    """Largest TPR over thresholds with FPR ≤ ``fpr``; NaN when ``fpr`` < 1/n0 (not measurable)."""
    c, _ = _curve(y_true, y_score)
    if fpr * c.negatives < 1 - _RATE_SLACK:
        return float("nan")
    return c.tpr_at(fpr)


def membership_advantage(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """max over thresholds of TPR − FPR (Yeom et al. 2018)."""
    return _curve(y_true, y_score)[0].max_gap()


def balanced_accuracy_best(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Balanced accuracy ½(TPR + TNR) at the best threshold = ½(1 + advantage)."""
    return 0.5 * (1.0 + membership_advantage(y_true, y_score))


def ppv_at_fpr(y_true: np.ndarray, y_score: np.ndarray, *, fpr: float, prior: float) -> float:
    """Precision of the "member" guess at the TPR-at-``fpr`` threshold, for a member ``prior``.

    PPV = π·TPR / (π·TPR + (1 − π)·FPR): how often a flagged record really is a member when a
    fraction π of the people the attacker looks at are members. NaN when nothing is flagged.
    """
    if not 0 < prior < 1:
        raise InputError("prior", f"must be in (0, 1), got {prior}")
    return _curve(y_true, y_score)[0].ppv_at(fpr, prior)


def log_grid_roc(c: Curve, points: Sequence[float]) -> list[float]:
    """TPR at each FPR of ``points`` (the step function's upper envelope): a lossless plot grid."""
    return [c.tpr_at(f) for f in points]
