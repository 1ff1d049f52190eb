"""Intervals by resampling records, and paired comparisons of attacks (docs/method.md §0).

Each bootstrap replicate draws records with replacement and re-weights them by their counts;
because resampling never changes the order of the scores, every attack is sorted once
(:class:`~miaudit.metrics._sorted.SortedScores`) and a replicate costs O(n) per attack. The same
replicate weights serve every attack, so differences between attacks are paired.

Without ``groups`` members and non-members are resampled separately (stratified), so n1 and
n0 stay fixed. With ``groups`` (several scored pairs per record, e.g. leave-one-model-out)
whole records are resampled and keep all their pairs together.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from miaudit.errors import InputError
from miaudit.metrics._estimate import Estimate, ppv_key, tpr_key
from miaudit.metrics._roc import check_targets
from miaudit.metrics._sorted import RATE_SLACK as _RATE_SLACK
from miaudit.metrics._sorted import SortedScores

DEFAULT_FPRS = (0.1, 0.01, 0.001)
#: FPRs of the stored ROC grid: log-spaced from 1e-5 to 1 (enough for a log–log plot).
ROC_GRID = tuple(float(x) for x in np.logspace(-5, 0, 51))
#: A TPR (or PPV) at FPR α is reported only when at least this many non-members lie at that
#: rate (n0·α ≥ 10): with fewer, one or two non-members decide the threshold and the figure is
#: noise. Below it the metric is "not measurable at this size" and says how many would do.
MIN_NEGATIVES_AT_RATE = 10
#: The ROC curve published in results.json starts where at least this many non-members lie
#: above the threshold: its first points resolved single records, and beside the ranked
#: most-exposed list (which never lists a tie of 20) the TPR there told that every listed
#: record of a top tie of 19 was a member (red team). The AUC and the TPRs at the configured
#: FPRs are computed from every record as before.
ROC_MIN_NEGATIVES = 20
#: Metrics that are maxima over thresholds: their intervals come from a uniform band (below).
MAX_METRICS = ("advantage", "balanced_accuracy")


def _metrics(
    ss: SortedScores,
    w1: np.ndarray | None,
    w0: np.ndarray | None,
    fprs: Sequence[float],
    prior: float,
    ppv_fpr: float,
) -> np.ndarray:
    """[auc, advantage, ppv, tpr@fprs..., roc grid...] for one weighting of the records."""
    return ss.metrics(w1, w0, [*fprs, *ROC_GRID], prior, ppv_fpr)


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Point values and bootstrap replicates of every metric for several attacks on the same records."""

    names: tuple[str, ...]
    fprs: tuple[float, ...]
    prior: float
    ppv_fpr: float
    n_members: int
    n_nonmembers: int
    n_resamples: int
    confidence: float
    points: dict[str, np.ndarray]
    replicates: dict[str, np.ndarray]  # (B, metrics)
    resampling: str = "records, stratified by membership"
    #: per attack, (B,): sup over thresholds of |replicate's TPR − FPR − the data's| (see
    #: SortedScores.advantage_deviation): the band that gives the advantage its interval.
    deviations: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def columns(self) -> tuple[str, ...]:
        return (
            "auc",
            "advantage",
            ppv_key(self.ppv_fpr),
            *(tpr_key(f) for f in self.fprs),
            *(f"roc@{f:.3g}" for f in ROC_GRID),
        )

    def _col(self, metric: str) -> int:
        aliases = {"balanced_accuracy": "advantage"}
        try:
            return self.columns.index(aliases.get(metric, metric))
        except ValueError:
            raise InputError(
                "metric",
                f"unknown metric {metric!r}; known: {', '.join(self.columns[: 3 + len(self.fprs)])}, balanced_accuracy",
            ) from None

    def _rate_of(self, metric: str) -> float | None:
        if metric.startswith("tpr@"):
            return self.fprs[self.columns.index(metric) - 3]
        if metric.startswith("ppv@"):
            return self.ppv_fpr
        return None

    def _status_for(self, metric: str) -> str:
        alpha = self._rate_of(metric)
        if alpha is not None and alpha * self.n_nonmembers < MIN_NEGATIVES_AT_RATE - _RATE_SLACK:
            return "not_measurable"
        return "ok"

    def _interval(self, point: float, reps: np.ndarray, status: str, metric: str = "") -> Estimate:
        if status == "not_measurable":
            alpha = self._rate_of(metric)
            needs = math.ceil(MIN_NEGATIVES_AT_RATE / alpha * (1 - _RATE_SLACK)) if alpha else None
            return Estimate(point=None, status="not_measurable", needs_nonmembers=needs)
        value = (
            float(point) if np.isfinite(point) else None
        )  # undefined (e.g. PPV with nothing flagged): null, never NaN
        if self.n_resamples == 0:
            return Estimate(point=value, status=status)
        reps = reps[np.isfinite(reps)]
        if reps.size == 0:
            return Estimate(point=value)
        tail = (1 - self.confidence) / 2
        lo, hi = np.quantile(reps, [tail, 1 - tail])
        return Estimate(point=value, lower=float(lo), upper=float(hi))

    def _band(
        self, point: float, deviation: np.ndarray, scale: float, lo_clip: float, hi_clip: float
    ) -> Estimate:
        """point ± the ``confidence`` quantile of the sup deviation (scaled), clipped."""
        dev = deviation[np.isfinite(deviation)]
        if self.n_resamples == 0 or dev.size == 0:
            return Estimate(point=point)
        c = scale * float(np.quantile(dev, self.confidence))
        return Estimate(point=point, lower=max(lo_clip, point - c), upper=min(hi_clip, point + c))

    def estimate(self, name: str, metric: str) -> Estimate:
        """Point and interval of ``metric`` for attack ``name``: percentile bootstrap, except for
        maxima over thresholds (advantage, balanced accuracy), whose interval is point ± the
        bootstrap quantile of the sup deviation of the TPR − FPR curve (a uniform band)."""
        j = self._col(metric)
        point, reps = self.points[name][j], self.replicates[name][:, j]
        if metric in MAX_METRICS and name in self.deviations:
            if metric == "balanced_accuracy":
                return self._band(0.5 * (1 + float(point)), self.deviations[name], 0.5, 0.5, 1.0)
            return self._band(float(point), self.deviations[name], 1.0, 0.0, 1.0)
        if metric == "balanced_accuracy":
            point, reps = 0.5 * (1 + point), 0.5 * (1 + reps)
        base = "balanced_accuracy" if metric == "balanced_accuracy" else self.columns[j]
        return self._interval(float(point), reps, self._status_for(base), base)

    def simultaneous_lower(
        self, metrics: Sequence[str], names: Sequence[str] | None = None
    ) -> dict[str, dict[str, float]]:
        """Lower bounds holding together, at ``confidence``'s lower tail, for every attack and
        each of ``metrics`` that it measures (status ok): a max-t bootstrap over the family.

        The verdict asks whether *any* attack on *any* of these metrics lies above chance; one
        95 % bound each, over 10 attacks and 2 metrics, says so on about 12 % of models that
        leak nothing (a learner's 60 null models: 7), not 2.5 %. Each replicate's deviations
        (replicate − point) / SD are maximised over the family; the ``confidence`` quantile c of
        that maximum gives every member the bound point − c · SD at once (Westfall & Young's
        max-T, studentised as in Romano & Wolf). Replicates that drew no member or no
        non-member are left out, as in every interval; a metric that did not vary is its point.
        ``names``: the attacks in the family (default: every attack evaluated).
        """
        if self.n_resamples == 0:
            return {}
        family: list[tuple[str, str, float, np.ndarray]] = []
        for name in self.names if names is None else names:
            for metric in metrics:
                j = self._col(metric)
                point = float(self.points[name][j])
                if self._status_for(self.columns[j]) != "ok" or not np.isfinite(point):
                    continue
                family.append((name, metric, point, self.replicates[name][:, j]))
        if not family:
            return {}
        reps = np.stack([r for *_, r in family], axis=1)  # (B, family)
        reps = reps[np.isfinite(reps).all(axis=1)]
        out: dict[str, dict[str, float]] = {}
        if reps.shape[0] == 0:
            return out
        points = np.array([p for _, _, p, _ in family])
        sd = reps.std(axis=0, ddof=1) if reps.shape[0] > 1 else np.zeros(len(family))
        varies = sd > 0
        c = 0.0
        if varies.any():
            t = np.sort(((reps[:, varies] - points[varies]) / sd[varies]).max(axis=1))
            # The ceil((B + 1) q)-th smallest of B maxima: the quantile whose exceedance is q
            # in expectation (interpolating between order statistics called a 2.5 % tail 3 %).
            q = 1 - (1 - self.confidence) / 2
            c = float(t[min(len(t), math.ceil((len(t) + 1) * q)) - 1])
        for (name, metric, point, _), s in zip(family, sd, strict=True):
            out.setdefault(name, {})[metric] = point - c * float(s)
        return out

    def difference(self, a: str, b: str, metric: str) -> Estimate:
        """Paired estimate of metric(a) − metric(b): same resampled records for both. For
        maxima over thresholds the band is the sum of both attacks' sup deviations."""
        j = self._col(metric)
        point = float(self.points[a][j] - self.points[b][j])
        reps = self.replicates[a][:, j] - self.replicates[b][:, j]
        if metric in MAX_METRICS and a in self.deviations and b in self.deviations:
            scale = 0.5 if metric == "balanced_accuracy" else 1.0
            return self._band(
                scale * point, self.deviations[a] + self.deviations[b], scale, -scale, scale
            )
        if metric == "balanced_accuracy":
            point, reps = point / 2, reps / 2
        base = self.columns[j] if metric != "balanced_accuracy" else metric
        return self._interval(point, reps, self._status_for(base), base)

    def difference_lower(self, a: str, b: str, metric: str, tail: float) -> float | None:
        """Lower bound of the paired metric(a) − metric(b) at the one-sided ``tail``, by the
        normal approximation with the replicates' standard deviation: point − z₁₋ₜₐᵢₗ · SD.

        For tails that B replicates cannot resolve as a percentile — a Bonferroni split over
        several comparisons (0.025 / 9 = 0.28 % of 200 replicates lies between the smallest
        two, and the interpolated bound was looser than nominal: 6.1 % family-wise instead of
        2.5 %, red team) — while their SD is estimated well. None where the difference is not
        measurable or has fewer than two usable replicates. Maxima over thresholds (advantage,
        balanced accuracy) have no such bound here: their bands are uniform ones (§11)."""
        from scipy.stats import norm

        if metric in MAX_METRICS:
            raise ValueError(
                f"difference_lower does not bound a maximum over thresholds ({metric})"
            )
        if not 0 < tail < 0.5:
            raise ValueError(f"tail must be in (0, 0.5), got {tail}")
        j = self._col(metric)
        point = float(self.points[a][j] - self.points[b][j])
        reps = self.replicates[a][:, j] - self.replicates[b][:, j]
        reps = reps[np.isfinite(reps)]
        if self._status_for(self.columns[j]) != "ok" or not np.isfinite(point) or reps.size < 2:
            return None
        return point - float(norm.ppf(1 - tail)) * float(reps.std(ddof=1))

    def roc_grid(self, name: str) -> tuple[list[float], list[float], list[float], list[float]]:
        """(fpr grid, tpr, lower, upper) on :data:`ROC_GRID`, grid points below
        :data:`ROC_MIN_NEGATIVES` / n0 dropped.

        The band comes from the replicates that drew members and non-members both (as every
        interval's does; a grouped resample of a tiny pool can draw none of one): NaN bands
        were written into results.json, which then did not read back (red team, 4 non-members).
        No such replicate at all: no band."""
        k = 3 + len(self.fprs)
        fpr, tpr, lo, hi = [], [], [], []
        tail = (1 - self.confidence) / 2
        for i, f in enumerate(ROC_GRID):
            if f * self.n_nonmembers < ROC_MIN_NEGATIVES * (1 - _RATE_SLACK):
                continue
            fpr.append(f)
            tpr.append(float(self.points[name][k + i]))
            reps = self.replicates[name][:, k + i] if self.n_resamples else np.empty(0)
            reps = reps[np.isfinite(reps)]
            if reps.size:
                q = np.quantile(reps, [tail, 1 - tail])
                lo.append(float(q[0]))
                hi.append(float(q[1]))
        if len(lo) != len(fpr):  # a band at some points only would not line up with the grid
            lo, hi = [], []
        return fpr, tpr, lo, hi


def _resampler(
    y: np.ndarray, groups: np.ndarray | None
) -> Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]]:
    """One bootstrap replicate's weights of the members and of the non-members: records drawn
    with replacement within each class, or (``groups``) records drawn with all their pairs."""
    yb = y.astype(bool)
    n1, n0 = int(yb.sum()), int((~yb).sum())
    if groups is None:

        def stratified(gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
            w1 = np.bincount(gen.integers(0, n1, n1), minlength=n1).astype(np.float64)
            w0 = np.bincount(gen.integers(0, n0, n0), minlength=n0).astype(np.float64)
            return w1, w0

        return stratified
    groups = np.asarray(groups)
    if groups.shape != y.shape:
        raise InputError("groups", f"has shape {groups.shape}, expected {y.shape}")
    _, gidx = np.unique(groups, return_inverse=True)
    n_rec = int(gidx.max()) + 1
    g1, g0 = gidx[yb], gidx[~yb]

    def grouped(gen: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
        counts = np.bincount(gen.integers(0, n_rec, n_rec), minlength=n_rec).astype(np.float64)
        return counts[g1], counts[g0]

    return grouped


def _replicates(
    splits: dict[str, SortedScores],
    draw: Callable[[np.random.Generator], tuple[np.ndarray, np.ndarray]],
    gen: np.random.Generator,
    n_resamples: int,
    width: int,
    metrics: Callable[[SortedScores, np.ndarray, np.ndarray], np.ndarray],
) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
    """Every attack's metrics and advantage deviation in each bootstrap replicate."""
    reps = {name: np.empty((n_resamples, width)) for name in splits}
    devs = {name: np.empty(n_resamples) for name in splits}
    for b in range(n_resamples):
        w1, w0 = draw(gen)
        if w1.sum() == 0 or w0.sum() == 0:  # possible only with tiny grouped inputs
            for name in splits:
                reps[name][b] = np.nan
                devs[name][b] = np.nan
            continue
        for name, split in splits.items():
            reps[name][b] = metrics(split, w1, w0)
            # reuses the prefix sums just computed
            devs[name][b] = split.advantage_deviation(w1, w0)
    return reps, devs


def evaluate(
    y_true: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    fprs: Sequence[float] = DEFAULT_FPRS,
    prior: float = 0.5,
    ppv_fpr: float = 0.01,
    n_resamples: int = 200,
    confidence: float = 0.95,
    groups: np.ndarray | None = None,
    rng: np.random.Generator | int | None = 0,
) -> Evaluation:
    """Every metric of every attack with record-resampling bootstrap replicates.

    Args:
        y_true: (n,) 1 = member.
        scores: attack name → (n,) scores, higher = more likely a member.
        fprs: FPRs at which to report the TPR.
        prior: member prior for the PPV.
        n_resamples: bootstrap replicates (0: points only).
        groups: (n,) record index of each scored pair when records are scored several times.
        rng: seed or Generator; replicates are reproducible bit for bit.
    """
    if not scores:
        raise InputError("attacks", "no attack scores to evaluate")
    if not 0 < prior < 1:
        raise InputError("prior", f"must be in (0, 1), got {prior}")
    if n_resamples < 0:
        raise InputError("n_resamples", f"must be ≥ 0, got {n_resamples}")
    y = None
    splits: dict[str, SortedScores] = {}
    for name, s in scores.items():
        y, s64 = check_targets(y_true, s, name)
        splits[name] = SortedScores(y, s64)
    assert y is not None
    n1, n0 = int(y.astype(bool).sum()), int((~y.astype(bool)).sum())
    gen = np.random.default_rng(rng)
    names = tuple(scores)
    points = {name: _metrics(splits[name], None, None, fprs, prior, ppv_fpr) for name in names}
    width = len(next(iter(points.values())))
    metrics = partial(_metrics, fprs=fprs, prior=prior, ppv_fpr=ppv_fpr)
    reps, devs = _replicates(splits, _resampler(y, groups), gen, n_resamples, width, metrics)
    return Evaluation(
        names=names,
        fprs=tuple(float(f) for f in fprs),
        prior=prior,
        ppv_fpr=ppv_fpr,
        n_members=n1,
        n_nonmembers=n0,
        n_resamples=n_resamples,
        confidence=confidence,
        points=points,
        replicates=reps,
        deviations=devs,
        resampling="records, stratified by membership"
        if groups is None
        else "records (all pairs of a record together)",
    )


def paired_difference(
    y_true: np.ndarray,
    score_a: np.ndarray,
    score_b: np.ndarray,
    *,
    metric: str = "auc",
    n_resamples: int = 200,
    confidence: float = 0.95,
    groups: np.ndarray | None = None,
    rng: np.random.Generator | int | None = 0,
) -> Estimate:
    """metric(a) − metric(b) with a paired record-resampling interval.

    Example:
        >>> y = np.array([0, 0, 1, 1] * 50)
        >>> a = y + 0.1 * np.arange(200) % 1
        >>> paired_difference(y, a, a).point
        0.0
    """
    fprs: tuple[float, ...] = DEFAULT_FPRS
    if metric.startswith("tpr@"):
        fprs = tuple(
            sorted(set(DEFAULT_FPRS) | {float(metric[4:].split("%")[0]) / 100}, reverse=True)
        )
    ev = evaluate(
        y_true,
        {"a": score_a, "b": score_b},
        fprs=fprs,
        n_resamples=n_resamples,
        confidence=confidence,
        groups=groups,
        rng=rng,
    )
    return ev.difference("a", "b", metric)
