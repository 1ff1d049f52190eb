"""A Gaussian-DP (f-DP) estimate beside the one-run bound (docs/method.md, "DP audit power").

Assumption, stated wherever the figure is shown: the mechanism's trade-off curve is Gaussian
(μ-GDP, Dong, Roth & Su 2022), as in Nasr et al. (USENIX Security 2023) and, for one run,
Mahloujifar, Melis & Chaudhuri (2024). Under μ-GDP an attacker's TPR at FPR is at most
Φ(Φ⁻¹(FPR) + μ), so the guesses at the design's fixed cut give μ ≥ Φ⁻¹(TPR_lo) − Φ⁻¹(FPR_hi)
(Clopper–Pearson, each side at significance/2, the canaries treated as independent trials),
and the ε of that μ at the claimed δ is Opacus's ``eps_from_mu`` (no new accounting).

It is an *estimate*, never the verdict: a mechanism that is exactly (ε, 0)-DP (randomized
response) is not μ-GDP for the μ its ROC point suggests, and this figure then exceeds ε
(tests/dp/test_validity.py shows it). The verdict is the one-run test alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.stats import norm

from miaudit.metrics._epsilon import clopper_pearson
from miaudit.metrics._one_run import _check_canaries

GDP_LABEL = "Gaussian-DP estimate (assumes a Gaussian trade-off curve, μ-GDP; never the verdict)"


@dataclass(frozen=True)
class GaussianDpEstimate:
    """μ lower estimate from the design's cut and the ε it means at δ (Opacus's conversion)."""

    mu: float
    epsilon: float
    tpr_lower: float
    fpr_upper: float
    label: str = GDP_LABEL


def _eps_from_mu(mu: float, delta: float) -> float:
    if mu <= 0:
        return 0.0
    if delta <= 0:
        return math.inf
    from opacus.accountants.analysis.gdp import eps_from_mu

    try:
        return float(eps_from_mu(mu=mu, delta=delta))
    except ValueError:  # beyond Opacus's bracket [0, 500]
        return math.inf


def gaussian_dp_estimate(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    delta: float,
    significance: float = 0.05,
) -> GaussianDpEstimate:
    """μ-GDP estimate from the IN guesses (the top k₊ scores; the bottom k₋ when k₊ = 0):
    a fixed side, never the better of two."""
    s, inc = _check_canaries(scores, included)
    if k_plus > 0:
        guessed = s >= np.sort(s)[s.size - k_plus]
        pos, neg = inc, ~inc
    else:
        guessed = s <= np.sort(s)[k_minus - 1]
        pos, neg = ~inc, inc
    tp, fp = int((guessed & pos).sum()), int((guessed & neg).sum())
    n_pos, n_neg = int(pos.sum()), int(neg.sum())
    if n_pos == 0 or n_neg == 0:
        return GaussianDpEstimate(0.0, 0.0, 0.0, 1.0)
    tpr_lo = float(clopper_pearson(tp, n_pos, significance)[0])
    fpr_hi = float(clopper_pearson(fp, n_neg, significance)[1])
    if tpr_lo <= 0 or fpr_hi >= 1:
        return GaussianDpEstimate(0.0, 0.0, tpr_lo, fpr_hi)
    mu = max(0.0, float(norm.ppf(tpr_lo) - norm.ppf(fpr_hi)))
    return GaussianDpEstimate(mu, _eps_from_mu(mu, delta), tpr_lo, fpr_hi)
