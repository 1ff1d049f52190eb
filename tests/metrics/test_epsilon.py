"""ε bounds: docs/method.md §6 reference values and the descriptive implied ε."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binomtest

from miaudit.errors import InputError
from miaudit.metrics import clopper_pearson, epsilon_lower_bound, implied_epsilon


@pytest.mark.parametrize("tp,expected", [(1000, 5.60), (500, 4.85)])
def test_reference_values(tp, expected):
    # α = 0.05 two-sided split, δ = 0, 1000 positives and 1000 negatives, FP = 0 (§6).
    assert epsilon_lower_bound(tp, 1000 - tp, 0, 1000, alpha=0.05) == pytest.approx(
        expected, abs=0.005
    )


@pytest.mark.parametrize("k,n", [(0, 10), (3, 10), (10, 10), (57, 1000)])
def test_clopper_pearson_matches_scipy(k, n):
    lo, hi = clopper_pearson(k, n, 0.05)
    ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    assert float(lo) == pytest.approx(ci.low, abs=1e-10)
    assert float(hi) == pytest.approx(ci.high, abs=1e-10)


def test_delta_lowers_the_bound_and_symmetric_direction_counts():
    assert epsilon_lower_bound(1000, 0, 0, 1000, delta=1e-2) < epsilon_lower_bound(1000, 0, 0, 1000)
    # Perfect "non-member" recognition alone (TNR side) also certifies a bound.
    assert epsilon_lower_bound(500, 500, 0, 1000) == pytest.approx(
        epsilon_lower_bound(1000, 0, 500, 500), abs=1e-12
    )


def test_bad_counts():
    with pytest.raises(InputError, match="tp"):
        epsilon_lower_bound(-1, 0, 0, 1)
    with pytest.raises(InputError, match="alpha"):
        epsilon_lower_bound(1, 1, 1, 1, alpha=1.5)


def test_implied_epsilon_is_small_without_signal_and_large_with_perfect_signal():
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 2000)
    null = implied_epsilon(y, rng.normal(size=4000), rng=1)
    assert (
        null.lower_bound < 0.5
    )  # a bound from noise alone stays small (threshold from the other half)
    perfect = implied_epsilon(y, y + 0.01 * rng.normal(size=4000), rng=1)
    assert perfect.lower_bound > 4.0  # 1000/1000 per half at α = 0.05: ≈ 4.9
    assert "not a DP audit" in perfect.note
    assert math.isfinite(perfect.lower_bound)
