"""Full-size interval-coverage claims (make claims)."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import norm

from miaudit.metrics import evaluate


@pytest.mark.claims
def test_coverage_1000_datasets_auc_and_tpr_at_1pct():
    """1000 binormal datasets, n0 = n1 = 2000: 95 % intervals cover AUC and TPR@1 % in 93–97 %.

    Binomial SD of the coverage over 1000 datasets is 0.7 points; 93 % is ~3 SD below 95 %.
    """
    d = 1.0
    true_auc = norm.cdf(d / np.sqrt(2))
    true_tpr = 1 - norm.cdf(norm.ppf(0.99) - d)
    hits = np.zeros(2)
    trials = 1000
    for t in range(trials):
        rng = np.random.default_rng(10_000 + t)
        y = np.repeat([0, 1], 2000)
        s = rng.normal(size=4000) + d * y
        ev = evaluate(y, {"a": s}, fprs=(0.01,), n_resamples=200, rng=t)
        auc, tpr = ev.estimate("a", "auc"), ev.estimate("a", "tpr@1%fpr")
        hits += [auc.lower <= true_auc <= auc.upper, tpr.lower <= true_tpr <= tpr.upper]
    cover = hits / trials
    assert 0.93 <= cover[0] <= 0.97, cover
    assert 0.92 <= cover[1] <= 0.975, cover
