"""Every scalar ROC metric from one sort, for any weighting of the records.

Bootstrap replicates re-weight records (counts of a resample); the order of the scores never
changes, so each attack's members and non-members are sorted once and every index a metric
needs is precomputed. A replicate then costs two gathers and two cumulative sums of the
weights plus a few gathers: O(n) with small constants, no sort, no pass over tie groups.

Conventions (docs/method.md §0): a threshold t flags scores ≥ t; tied scores share a threshold;
TPR at FPR α is the largest TPR over thresholds with FPR ≤ α; the PPV at α is taken at the
threshold that reaches that TPR with the smallest FPR.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

#: Comparisons of a (weighted) count of false positives with α·N allow this relative slack,
#: so that FPR = α exactly (10 of 1,000 at α = 1 %) is not lost to rounding of α·N.
RATE_SLACK = 1e-9


class SortedScores:
    """One attack's scores, split by membership and sorted (descending) once.

    Args:
        y_true: (n,) 0/1 membership (validated by the caller).
        y_score: (n,) float scores.

    Weights passed to :meth:`metrics` are ``w1`` for members and ``w0`` for non-members, each
    in the order the records have in ``y_score[y_true == 1]`` / ``[y_true == 0]``.
    """

    def __init__(self, y_true: np.ndarray, y_score: np.ndarray) -> None:
        member = np.asarray(y_true).astype(bool)
        s = np.asarray(y_score, dtype=np.float64)
        s1, s0 = s[member], s[~member]
        self.o1 = np.argsort(-s1, kind="stable")
        self.o0 = np.argsort(-s0, kind="stable")
        neg1, neg0 = -s1[self.o1], -s0[self.o0]  # ascending
        self.n1, self.n0 = s1.size, s0.size
        self._work: dict[str, np.ndarray] | None = None
        # per member j (descending): non-members scoring ≥ and > it; members scoring ≥ it
        # (int32 indices halve the memory traffic of every replicate's gathers)
        idx = np.int32 if max(self.n0, self.n1) < 2**31 - 1 else np.int64
        self.o1, self.o0 = self.o1.astype(idx), self.o0.astype(idx)
        self.ge = np.searchsorted(neg0, neg1, side="right").astype(idx)
        gt = np.searchsorted(neg0, neg1, side="left").astype(idx)
        self.gt = None if np.array_equal(gt, self.ge) else gt  # no member/non-member ties
        self.end = np.searchsorted(neg1, neg1, side="right").astype(idx)
        # per non-member k (descending): members scoring strictly above it
        self.m_gt = np.searchsorted(neg1, neg0, side="left").astype(idx)
        self._neg = (neg1, neg0)
        self._curve: tuple[np.ndarray, np.ndarray] | None = None
        self._point_gap: np.ndarray | None = None

    def _gap_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """For every threshold a score can set (each member's and each non-member's score):
        how many members and how many non-members (prefix lengths, descending) score ≥ it."""
        if self._curve is None:
            neg1, neg0 = self._neg
            idx = self.end.dtype
            m_ge = np.searchsorted(neg1, neg0, side="right").astype(
                idx
            )  # members scoring ≥ each non-member
            nm_end = np.searchsorted(neg0, neg0, side="right").astype(
                idx
            )  # non-members scoring ≥ each non-member
            self._curve = (np.concatenate((self.end, m_ge)), np.concatenate((self.ge, nm_end)))
        return self._curve

    def _gap_curve(
        self, d1: np.ndarray, d0: np.ndarray, out: np.ndarray, tmp: np.ndarray
    ) -> np.ndarray:
        """TPR − FPR at every threshold, from the prefix sums of the weights (into ``out``)."""
        pos1, pos0 = self._gap_positions()
        np.take(d1, pos1, out=out, mode="clip")
        out *= 1.0 / d1[-1]
        np.take(d0, pos0, out=tmp, mode="clip")
        tmp *= 1.0 / d0[-1]
        out -= tmp
        return out

    def advantage_deviation(self, w1: np.ndarray | None, w0: np.ndarray | None) -> float:
        """sup over thresholds of |(TPR − FPR) under these weights − (TPR − FPR) of the data|.

        Its bootstrap distribution gives a uniform confidence band for the curve TPR − FPR and
        so an interval for its maximum, the advantage, that holds under the null too (a
        percentile interval of a maximum over thresholds is biased upwards: on pure noise it
        excludes chance most of the time). Call it right after :meth:`metrics` with the same
        weights: it reuses that call's prefix sums.
        """
        b = self._buffers()
        if "curve" not in b:
            b["curve"], b["tmp"] = np.empty(self.n1 + self.n0), np.empty(self.n1 + self.n0)
        if self._point_gap is None:
            ones1, ones0 = (
                np.arange(self.n1 + 1, dtype=np.float64),
                np.arange(self.n0 + 1, dtype=np.float64),
            )
            self._point_gap = self._gap_curve(ones1, ones0, np.empty(self.n1 + self.n0), b["tmp"])
        if w1 is None or w0 is None:
            return 0.0
        curve = self._gap_curve(b["d1"], b["d0"], b["curve"], b["tmp"])
        curve -= self._point_gap
        return float(max(curve.max(initial=0.0), -curve.min(initial=0.0)))

    def _buffers(self) -> dict[str, np.ndarray]:
        """Work arrays reused by every call: fresh multi-MB arrays per replicate cost page faults."""
        if self._work is None:
            self._work = {
                "w1d": np.empty(self.n1),
                "w0d": np.empty(self.n0),
                "ge": np.empty(self.n1),
                "gap": np.empty(self.n1),
                "d1": np.zeros(self.n1 + 1),
                "d0": np.zeros(self.n0 + 1),
            }
        return self._work

    def metrics(
        self,
        w1: np.ndarray | None,
        w0: np.ndarray | None,
        alphas: Sequence[float],
        prior: float,
        ppv_alpha: float,
    ) -> np.ndarray:
        """[AUC, advantage, PPV at ``ppv_alpha``, TPR at each of ``alphas``] for these weights."""
        b = (
            self._buffers()
        )  # (np.take with out= and mode="clip": unbuffered; indices are valid by construction)
        w1d, w0d, d1, d0, at_or_above, gap = b["w1d"], b["w0d"], b["d1"], b["d0"], b["ge"], b["gap"]
        if w1 is None or w0 is None:
            w1d.fill(1.0)
            w0d.fill(1.0)
        else:
            np.take(np.asarray(w1, dtype=np.float64), self.o1, out=w1d, mode="clip")
            np.take(np.asarray(w0, dtype=np.float64), self.o0, out=w0d, mode="clip")
        np.cumsum(w1d, out=d1[1:])
        np.cumsum(w0d, out=d0[1:])
        tot1, tot0 = d1[-1], d0[-1]
        np.take(
            d0, self.ge, out=at_or_above, mode="clip"
        )  # non-member weight scoring ≥ each member
        below = at_or_above if self.gt is None else 0.5 * (at_or_above + d0[self.gt])
        auc = (tot1 * tot0 - float(np.dot(below, w1d))) / (tot1 * tot0)
        # advantage = max_j TP_j/W1 − FP_j/W0, computed in place (scaled by W1·W0)
        np.take(d1, self.end, out=gap, mode="clip")
        gap *= tot0
        at_or_above *= tot1
        gap -= at_or_above
        advantage = max(0.0, float(gap.max()) / (tot1 * tot0))
        a = np.asarray([ppv_alpha, *alphas], dtype=np.float64)
        k = np.searchsorted(d0, a * tot0 * (1 + RATE_SLACK), side="right") - 1
        inside = k < self.n0
        cnt = np.where(inside, self.m_gt[np.minimum(k, self.n0 - 1)], self.n1)
        tpr = d1[cnt] / tot1
        # PPV: the lowest member flagged fixes the threshold; count non-members at or above it
        c = int(cnt[0])
        if d1[c] == 0:
            ppv = float("nan")
        else:
            lowest = (
                int(np.searchsorted(d1, d1[c], side="left")) - 1
            )  # lowest flagged member with weight
            fpr = d0[self.ge[lowest]] / tot0
            denom = prior * tpr[0] + (1 - prior) * fpr
            ppv = float(prior * tpr[0] / denom) if denom > 0 else float("nan")
        return np.concatenate(([auc, advantage, ppv], tpr[1:]))
