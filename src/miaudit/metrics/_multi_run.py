"""The multi-run DP audit's statistics (docs/method.md §18; docs/dp.md, "Multi-run mode").

R training runs, each with one canary included by a fair coin; each run's canary gets a score
and the guess "included" when the score exceeds a threshold t fixed before scoring. With TP of
the n_in included runs and FP of the n_out excluded runs above t, (ε, δ)-DP bounds every test:
TPR ≤ e^ε·FPR + δ. With TPR ≥ TPR_lo and FPR ≤ FPR_hi (one-sided Clopper–Pearson bounds, each
at significance / 2, so both hold together with probability ≥ 1 − significance):

    ε ≥ log((TPR_lo − δ) / FPR_hi)        (0 when TPR_lo ≤ δ)

One test, in one direction fixed in advance: never the better of two. The **ceiling** is the
bound with every guess right (TP = n_in, FP = 0), the most R runs could ever show.

The threshold rule (:func:`choose_threshold`) works like the one-run guess rule: t is the
claimed mechanism's false-positive quantile f of a fixed grid, f chosen by the mean simulated
bound under a violation of the claim (the mechanism whose accountant records twice the claim),
seeded by the design alone. The scores are the per-step likelihood ratios of a Dirac gradient
canary under the *claimed* σ and q, whatever the true mechanism.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from scipy.stats import beta

from miaudit.errors import InputError
from miaudit.metrics._dp_power import dirac_canary_llr

#: False-positive rates (under the claimed mechanism) whose score quantiles the threshold
#: rule considers. Fixed here, never adapted to a run.
FPR_GRID: tuple[float, ...] = (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5)
#: Simulated excluded runs behind each quantile (the quantiles' own error is far below a run's).
_QUANTILE_DRAWS = 20_000


def clopper_pearson_lower(k: int, n: int, alpha: float) -> float:
    """One-sided lower (1 − alpha) bound on a binomial rate, k of n (0 when k = 0)."""
    return 0.0 if k <= 0 else float(beta.ppf(alpha, k, n - k + 1))


def clopper_pearson_upper(k: int, n: int, alpha: float) -> float:
    """One-sided upper (1 − alpha) bound on a binomial rate, k of n (1 when k = n)."""
    return 1.0 if k >= n else float(beta.isf(alpha, k + 1, n - k))


def multi_run_epsilon_lower_bound(
    tp: int, n_in: int, fp: int, n_out: int, *, delta: float, significance: float
) -> float:
    """ε ≥ log((TPR_lo − δ) / FPR_hi), Clopper–Pearson at significance / 2 each (module doc).

    >>> round(multi_run_epsilon_lower_bound(500, 500, 0, 500, delta=1e-5, significance=0.05), 2)
    4.91
    """
    if n_in < 1 or n_out < 1:
        raise InputError("runs", "need at least one included and one excluded run")
    if not 0 < significance < 1:
        raise InputError("significance", f"must lie in (0, 1), got {significance}")
    tpr = clopper_pearson_lower(tp, n_in, significance / 2)
    fpr = clopper_pearson_upper(fp, n_out, significance / 2)
    return max(0.0, math.log((tpr - delta) / fpr)) if tpr > delta else 0.0


def multi_run_ceiling(n_in: int, n_out: int, *, delta: float, significance: float) -> float:
    """The bound with every guess right: the most these runs could ever show."""
    return multi_run_epsilon_lower_bound(
        n_in, n_in, 0, n_out, delta=delta, significance=significance
    )


def bound_at_threshold(
    scores: np.ndarray, included: np.ndarray, threshold: float, *, delta: float, significance: float
) -> tuple[float, int, int]:
    """(bound, TP, FP) of the guesses "included iff score > threshold"."""
    inc = np.asarray(included, dtype=bool)
    above = np.asarray(scores) > threshold
    tp, fp = int((above & inc).sum()), int((above & ~inc).sum())
    bound = multi_run_epsilon_lower_bound(
        tp, int(inc.sum()), fp, int((~inc).sum()), delta=delta, significance=significance
    )
    return bound, tp, fp


def simulated_scores(
    included: np.ndarray,
    *,
    true_sigma: float,
    claimed_sigma: float,
    sample_rate: float,
    steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Each run's Dirac-canary score when the training adds noise ``true_sigma`` but the score
    is the likelihood ratio under the claimed ``claimed_sigma`` (both in units of C)."""
    inc = np.asarray(included, dtype=bool)
    out = np.zeros(inc.size)
    per = max(1, 2_000_000 // max(1, inc.size))
    for start in range(0, steps, per):
        t = min(per, steps - start)
        b = inc[:, None] & (rng.random((inc.size, t)) < sample_rate)
        x = b + rng.normal(0.0, true_sigma, size=(inc.size, t))
        out += dirac_canary_llr(x, claimed_sigma, sample_rate).sum(axis=1)
    return out


def null_thresholds(
    *, claimed_sigma: float, sample_rate: float, steps: int, seed: int
) -> np.ndarray:
    """The score quantiles of excluded runs under the claimed mechanism, one per FPR_GRID rate."""
    s = simulated_scores(
        np.zeros(_QUANTILE_DRAWS, dtype=bool),
        true_sigma=claimed_sigma,
        claimed_sigma=claimed_sigma,
        sample_rate=sample_rate,
        steps=steps,
        rng=np.random.default_rng(seed),
    )
    return np.asarray(np.quantile(s, 1.0 - np.asarray(FPR_GRID)), dtype=np.float64)


def simulated_multi_run_bounds(
    runs: int,
    thresholds: Sequence[float] | np.ndarray,
    *,
    true_sigma: float,
    claimed_sigma: float,
    sample_rate: float,
    steps: int,
    delta: float,
    significance: float,
    seeds: Sequence[int],
) -> np.ndarray:
    """Bounds of ``runs`` simulated runs (fair coins) at each threshold: (len(seeds), len(thresholds))."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        inc = rng.random(runs) < 0.5
        if inc.all() or not inc.any():
            inc[0] = not inc[0]
        s = simulated_scores(
            inc,
            true_sigma=true_sigma,
            claimed_sigma=claimed_sigma,
            sample_rate=sample_rate,
            steps=steps,
            rng=rng,
        )
        rows.append(
            [
                bound_at_threshold(s, inc, t, delta=delta, significance=significance)[0]
                for t in thresholds
            ]
        )
    return np.asarray(rows, dtype=np.float64)
