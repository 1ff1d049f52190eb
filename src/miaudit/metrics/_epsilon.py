"""ε from a membership test: Clopper–Pearson bounds (docs/method.md §6).

:func:`epsilon_lower_bound` is the one-threshold bound of Jagielski et al. (NeurIPS 2020) and
Nasr et al. (S&P 2021). Applied to one model's saved outputs it is *not* a DP audit (records
scored by one model are not independent trials): :func:`implied_epsilon` reports it only as a
descriptive "ε implied by the ROC", with the threshold chosen on a separate split.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import beta

from miaudit.errors import InputError
from miaudit.metrics._roc import check_targets


def clopper_pearson(
    k: int | np.ndarray, n: int | np.ndarray, alpha: float
) -> tuple[np.ndarray, np.ndarray]:
    """Exact two-sided (1 − α) binomial interval; each side has probability α/2."""
    k = np.asarray(k, dtype=np.float64)
    n = np.asarray(n, dtype=np.float64)
    with np.errstate(invalid="ignore"):
        lo = np.where(k > 0, beta.ppf(alpha / 2, k, n - k + 1), 0.0)
        hi = np.where(k < n, beta.ppf(1 - alpha / 2, k + 1, n - k), 1.0)
    return lo, hi


def epsilon_lower_bound(
    tp: int, fn: int, fp: int, tn: int, *, alpha: float = 0.05, delta: float = 0.0
) -> float:
    """ε ≥ max(ln((TPR_lo − δ)/FPR_hi), ln((TNR_lo − δ)/FNR_hi)) at confidence 1 − α.

    Example (docs/method.md §6: 1000 members all flagged, 1000 non-members none):
        >>> round(epsilon_lower_bound(1000, 0, 0, 1000), 2)
        5.6
    """
    for name, value in (("tp", tp), ("fn", fn), ("fp", fp), ("tn", tn)):
        if value < 0:
            raise InputError(name, f"must be non-negative, got {name}={value}")
    if tp + fn == 0 or fp + tn == 0:
        raise InputError("counts", "need at least one member and one non-member")
    if not 0 < alpha < 1:
        raise InputError("alpha", f"must be in (0, 1), got alpha={alpha}")
    return float(
        _bounds(np.array([tp]), np.array([fn]), np.array([fp]), np.array([tn]), alpha, delta)[0]
    )


def _bounds(
    tp: np.ndarray, fn: np.ndarray, fp: np.ndarray, tn: np.ndarray, alpha: float, delta: float
) -> np.ndarray:
    """Vectorised :func:`epsilon_lower_bound` over arrays of counts."""
    tpr_lo, fnr_hi = clopper_pearson(tp, tp + fn, alpha)[0], clopper_pearson(fn, tp + fn, alpha)[1]
    tnr_lo, fpr_hi = clopper_pearson(tn, fp + tn, alpha)[0], clopper_pearson(fp, fp + tn, alpha)[1]
    best = np.zeros(np.shape(tp))
    with np.errstate(divide="ignore", invalid="ignore"):
        for num, den in ((tpr_lo - delta, fpr_hi), (tnr_lo - delta, fnr_hi)):
            ok = (num > 0) & (den > 0)
            best = np.where(
                ok, np.maximum(best, np.log(np.where(ok, num, 1.0) / np.where(ok, den, 1.0))), best
            )
    return best


@dataclass(frozen=True)
class ImpliedEpsilon:
    """ε implied by one model's ROC; descriptive, never a DP audit."""

    point: float | None  # max(ln(TPR/FPR), ln(TNR/FNR)) on the evaluation half
    lower_bound: float  # Clopper–Pearson bound on the evaluation half
    threshold: float
    alpha: float
    note: str = "descriptive: ε implied by one model's outputs (threshold chosen on a separate half); not a DP audit"


def implied_epsilon(
    y_true: np.ndarray,
    y_score: np.ndarray,
    *,
    alpha: float = 0.05,
    candidates: int = 512,
    rng: np.random.Generator | int | None = 0,
) -> ImpliedEpsilon:
    """Choose the threshold that maximises the ε bound on a random half, report it on the other half."""
    y, s = check_targets(y_true, y_score)
    gen = np.random.default_rng(rng)
    half = np.zeros(y.size, dtype=bool)
    for cls in (0, 1):  # stratified split: both halves keep members and non-members
        idx = np.flatnonzero(y == cls)
        half[gen.permutation(idx)[: idx.size // 2]] = True
    sel_y, sel_s = y[half], s[half]
    if sel_y.size == 0:  # one member and one non-member: no half to choose a threshold on
        raise InputError("y_true", "too few members or non-members to split for the implied ε")
    cand = np.unique(np.quantile(sel_s, np.linspace(0, 1, candidates)))
    order = np.sort(sel_s[sel_y == 1]), np.sort(sel_s[sel_y == 0])
    tp = order[0].size - np.searchsorted(order[0], cand, side="left")
    fp = order[1].size - np.searchsorted(order[1], cand, side="left")
    bounds = _bounds(tp, order[0].size - tp, fp, order[1].size - fp, alpha, 0.0)
    thr = float(cand[int(np.argmax(bounds))])
    ev_y, ev_s = y[~half], s[~half]
    if ev_y.min() == ev_y.max():
        raise InputError("y_true", "too few members or non-members to split for the implied ε")
    tp_e = int(((ev_s >= thr) & (ev_y == 1)).sum())
    fp_e = int(((ev_s >= thr) & (ev_y == 0)).sum())
    n1, n0 = int((ev_y == 1).sum()), int((ev_y == 0).sum())
    lb = epsilon_lower_bound(tp_e, n1 - tp_e, fp_e, n0 - fp_e, alpha=alpha)
    tpr, fpr = tp_e / n1, fp_e / n0
    ratios = [a / b for a, b in ((tpr, fpr), (1 - fpr, 1 - tpr)) if a > 0 and b > 0]
    point = max(0.0, math.log(max(ratios))) if ratios else None
    return ImpliedEpsilon(point=point, lower_bound=lb, threshold=thr, alpha=alpha)
