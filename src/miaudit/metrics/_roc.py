"""ROC-based membership metrics (docs/method.md §0), ``sklearn.metrics`` style, 1 = member.

Records with equal scores form one threshold (one ROC point) and no point is dropped. The
scalar metrics come from :class:`~miaudit.metrics._sorted.SortedScores`, the same code the
bootstrap runs on every replicate.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError
from miaudit.metrics._sorted import RATE_SLACK, SortedScores


def check_targets(
    y_true: np.ndarray, y_score: np.ndarray, name: str = "y_score"
) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(y_true)
    s = np.asarray(y_score, dtype=np.float64)
    if y.ndim != 1 or s.ndim != 1:
        raise InputError(
            name, f"y_true and y_score must be 1-D, got shapes {y.shape} and {s.shape}"
        )
    if y.shape != s.shape:
        raise InputError(name, f"y_true has {y.shape[0]} records but {name} has {s.shape[0]}")
    if y.size == 0:
        raise InputError(name, "no records (empty input)")
    if not np.isin(y, (0, 1)).all():
        raise InputError("y_true", "membership labels must be 0 or 1")
    if y.min() == y.max():
        raise InputError(
            "y_true", "only one membership class present; need members (1) and non-members (0)"
        )
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
        return cls(
            inverse.astype(np.int32 if thresholds.size < 2**31 else np.int64),
            int(thresholds.size),
            thresholds,
        )


def _scalar(
    y_true: np.ndarray, y_score: np.ndarray, fpr: float = 0.01, prior: float = 0.5
) -> np.ndarray:
    y, s = check_targets(y_true, y_score)
    return SortedScores(y, s).metrics(None, None, [fpr], prior, fpr)


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
    y, s = check_targets(y_true, y_score)
    r = Ranking.of(s)
    yb = y.astype(bool)
    w1 = np.bincount(r.group[yb], minlength=r.n_groups)[::-1]
    w0 = np.bincount(r.group[~yb], minlength=r.n_groups)[::-1]
    tp = np.concatenate(([0], np.cumsum(w1)))
    fp = np.concatenate(([0], np.cumsum(w0)))
    thresholds = np.concatenate(([np.inf], r.thresholds[::-1]))
    return fp / fp[-1], tp / tp[-1], thresholds


def roc_auc_score(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Area under the ROC; a tie between a member and a non-member counts ½."""
    return float(_scalar(y_true, y_score)[0])


def tpr_at_fpr(y_true: np.ndarray, y_score: np.ndarray, *, fpr: float) -> float:
    """Largest TPR over thresholds with FPR ≤ ``fpr``; NaN when ``fpr`` < 1/n0 (not measurable)."""
    y, _ = check_targets(y_true, y_score)
    if fpr * int((y == 0).sum()) < 1 - RATE_SLACK:
        return float("nan")
    return float(_scalar(y_true, y_score, fpr)[3])


def membership_advantage(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """max over thresholds of TPR − FPR (Yeom et al. 2018)."""
    return float(_scalar(y_true, y_score)[1])


def balanced_accuracy_best(y_true: np.ndarray, y_score: np.ndarray) -> float:
    """Balanced accuracy ½(TPR + TNR) at the best threshold = ½(1 + advantage)."""
    return 0.5 * (1.0 + membership_advantage(y_true, y_score))


def ppv_at_fpr(y_true: np.ndarray, y_score: np.ndarray, *, fpr: float, prior: float) -> float:
    """Precision of the "member" guess at the TPR-at-``fpr`` operating point, for a member ``prior``.

    PPV = π·TPR / (π·TPR + (1 − π)·FPR): how often a flagged record really is a member when a
    fraction π of the people the attacker looks at are members; the operating point is the
    threshold reaching TPR at ``fpr`` with the smallest FPR. NaN when nothing is flagged.
    """
    if not 0 < prior < 1:
        raise InputError("prior", f"must be in (0, 1), got {prior}")
    return float(_scalar(y_true, y_score, fpr, prior)[2])
