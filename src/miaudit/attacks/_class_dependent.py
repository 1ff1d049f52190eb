"""Class-dependent threshold attacks (Song & Mittal, USENIX Security 2021; docs/method.md §2).

Song and Mittal choose one threshold per class. A set of thresholds is one decision rule (one
ROC point), so to get a score with a whole ROC each record's score becomes a per-class p-value:
the fraction of non-member calibration records *of its class* whose score is ≤ its own. The
calibration records come from the other folds (cross-fitting), so no record is scored by a rule
fitted on itself; the per-class Song–Mittal thresholds, fitted the same way, give the operating
point.

A p-value has only as many values as there are calibration records, and every record scoring
above all of its class's calibration non-members gets p = 1: at low FPR such a tie hides the
members the base score ranks above the rest (TPR 0 % at 1 % FPR where the plain score finds
members). Ties of the p-value are therefore broken by the base score: the score is
p + δ·u, with u ∈ (0, 1) the record's rank by base score and δ smaller than the smallest gap
between two distinct p-values, so the p-value order is kept and only its ties are split.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError


@dataclass(frozen=True, eq=False)
class ClassDependentResult:
    """Cross-fitted per-class p-value scores and the Song–Mittal operating point."""

    score: (
        np.ndarray
    )  # (n,) p-value in [0, 1] plus a tie-break below its resolution, higher = member
    operating_tpr: float
    operating_fpr: float
    n_folds: int


def _best_threshold(s: np.ndarray, m: np.ndarray) -> float:
    """Threshold (flag s ≥ t) maximising ½(TPR + TNR) on one class's records."""
    pos, neg = s[m == 1], s[m == 0]
    if pos.size == 0 or neg.size == 0:
        return np.inf if pos.size == 0 else -np.inf
    cand = np.unique(s)
    pos_sorted, neg_sorted = np.sort(pos), np.sort(neg)
    tpr = (pos.size - np.searchsorted(pos_sorted, cand, side="left")) / pos.size
    tnr = np.searchsorted(neg_sorted, cand, side="left") / neg.size
    return float(cand[int(np.argmax(tpr + tnr))])


def _assign_folds(
    labels: np.ndarray,
    member: np.ndarray,
    n_folds: int,
    rng: np.random.Generator | int | None,
    folds: np.ndarray | None,
) -> np.ndarray:
    """The given folds (checked), else folds drawn within each (class, membership) stratum."""
    n = labels.shape[0]
    if folds is not None:
        fold = np.asarray(folds, dtype=np.int64)
        if fold.shape != (n,) or fold.min(initial=0) < 0 or fold.max(initial=0) >= n_folds:
            raise InputError("folds", f"must hold ({n},) fold numbers in 0..{n_folds - 1}")
        return fold
    gen = np.random.default_rng(rng)
    fold = np.empty(n, dtype=np.int64)
    strata = labels.astype(np.int64) * 2 + member
    for key in np.unique(strata):
        idx = np.flatnonzero(strata == key)
        fold[gen.permutation(idx)] = np.arange(idx.size) % n_folds
    return fold


def class_dependent_scores(
    score: np.ndarray,
    labels: np.ndarray,
    member: np.ndarray,
    *,
    n_folds: int = 5,
    rng: np.random.Generator | int | None = 0,
    folds: np.ndarray | None = None,
) -> ClassDependentResult:
    """Turn a threshold attack's score into cross-fitted per-class p-values.

    Args:
        score: (n,) base attack score, higher = member.
        labels: (n,) true class of each record.
        member: (n,) 1 = member; used only on calibration folds, never on the scored fold.
        n_folds: folds of the cross-fitting (stratified by class and membership).
        rng: seed or Generator for the fold assignment.
        folds: (n,) fold of each record in 0..n_folds−1, instead of the random assignment
            (stratified by class and membership) that ``rng`` draws.

    Returns:
        :class:`ClassDependentResult`. A class with no non-member calibration records in the
        other folds falls back to all classes' non-members for that fold.
    """
    score = np.asarray(score, dtype=np.float64)
    labels = np.asarray(labels)
    member = np.asarray(member).astype(np.int8)
    n = score.shape[0]
    if labels.shape != (n,) or member.shape != (n,):
        raise InputError("labels/member", f"must have shape ({n},)")
    if n_folds < 2:
        raise InputError("n_folds", f"must be ≥ 2, got {n_folds}")
    fold = _assign_folds(labels, member, n_folds, rng, folds)
    out = np.empty(n, dtype=np.float64)
    flagged = np.zeros(n, dtype=bool)
    classes = np.unique(labels)
    largest_ref = 1
    for f in range(n_folds):
        test = fold == f
        train = ~test
        calib_all = np.sort(score[train & (member == 0)])
        for c in classes:
            rows = test & (labels == c)
            if not rows.any():
                continue
            calib = np.sort(score[train & (member == 0) & (labels == c)])
            ref = calib if calib.size else calib_all
            out[rows] = np.searchsorted(ref, score[rows], side="right") / max(ref.size, 1)
            largest_ref = max(largest_ref, ref.size)
            cls_train = train & (labels == c)
            t = _best_threshold(score[cls_train], member[cls_train])
            flagged[rows] = score[rows] >= t
    # Distinct p-values i/a and j/b differ by at least 1/(a·b) ≥ 1/largest_ref²: a tie-break
    # of at most half that never reorders them.
    from scipy.stats import rankdata

    out += rankdata(score) / (n + 1) * (0.5 / largest_ref**2)
    tpr = float(flagged[member == 1].mean()) if (member == 1).any() else float("nan")
    fpr = float(flagged[member == 0].mean()) if (member == 0).any() else float("nan")
    return ClassDependentResult(out, tpr, fpr, n_folds)
