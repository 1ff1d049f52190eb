"""Multi-run DP audit: Clopper–Pearson over runs, its ceiling, the threshold rule and the
batched trainer (docs/dp.md, "Multi-run mode"; docs/method.md §16)."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import beta

from miaudit.errors import InputError
from miaudit.metrics import (
    bound_at_threshold,
    multi_run_ceiling,
    multi_run_epsilon_lower_bound,
    null_thresholds,
    simulated_scores,
)


def test_bound_is_one_direction_of_clopper_pearson_at_half_the_significance_each():
    tp, n_in, fp, n_out = 400, 500, 20, 500
    lo = beta.ppf(0.025, tp, n_in - tp + 1)
    hi = beta.isf(0.025, fp + 1, n_out - fp)
    want = math.log((lo - 1e-5) / hi)
    got = multi_run_epsilon_lower_bound(tp, n_in, fp, n_out, delta=1e-5, significance=0.05)
    assert got == pytest.approx(want, rel=1e-12)
    # the OUT direction is never taken: many right OUT guesses alone certify nothing
    assert multi_run_epsilon_lower_bound(0, 500, 0, 500, delta=1e-5, significance=0.05) == 0.0
    ceiling = multi_run_ceiling(500, 500, delta=1e-5, significance=0.05)
    assert got < ceiling and ceiling == multi_run_epsilon_lower_bound(
        500, 500, 0, 500, delta=1e-5, significance=0.05
    )
    with pytest.raises(InputError, match="runs"):
        multi_run_epsilon_lower_bound(0, 0, 0, 5, delta=0.0, significance=0.05)


def test_null_runs_reject_a_claim_of_zero_within_the_significance():
    """Scores independent of the coins: (0, 0)-DP holds, so the bound exceeds 0 at most at the
    significance (2,000 seeded designs of 60 runs; tolerance: the rate's 99 % binomial band)."""
    rng = np.random.default_rng(0)
    hits = 0
    for _ in range(2000):
        inc = rng.random(60) < 0.5
        if inc.all() or not inc.any():
            continue
        b, _, _ = bound_at_threshold(rng.random(60), inc, 0.7, delta=0.0, significance=0.1)
        hits += b > 0
    assert hits / 2000 <= 0.1 + 2.6 * math.sqrt(0.1 * 0.9 / 2000)


def test_null_thresholds_are_the_claimed_mechanisms_false_positive_quantiles():
    t = null_thresholds(claimed_sigma=1.0, sample_rate=0.2, steps=30, seed=1)
    assert np.all(np.diff(t) < 0)  # FPR grid ascending: thresholds descending
    out = simulated_scores(
        np.zeros(4000, dtype=bool),
        true_sigma=1.0,
        claimed_sigma=1.0,
        sample_rate=0.2,
        steps=30,
        rng=np.random.default_rng(2),
    )
    from miaudit.metrics import FPR_GRID

    for f, th in zip(FPR_GRID, t, strict=True):  # fresh draws: within 4 binomial standard errors
        assert abs((out > th).mean() - f) <= 4 * math.sqrt(f * (1 - f) / 4000) + 1e-3
