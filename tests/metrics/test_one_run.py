"""DP audit statistics: docs/method.md §6 reference values, brute-force p-values, validity, designs."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy.stats import binom

from miaudit.errors import InputError
from miaudit.metrics._one_run import (
    multi_run_audit,
    one_run_audit,
    one_run_audit_grid,
    one_run_epsilon_lower_bound,
    one_run_max_certifiable_epsilon,
    one_run_p_value,
    pooled_one_run_audit,
)

REF_TOL = 5e-4  # the sheet states 3 decimals: |ours − stated| ≤ half a unit of the last place


@pytest.mark.parametrize(
    "m,r,v,delta,expected",
    [
        (10, 10, 10, 0.0, 1.052),
        (100, 100, 100, 0.0, 3.493),
        (1000, 1000, 1000, 0.0, 5.809),
        (1000, 1000, 1000, 1e-5, 5.782),
        (1000, 100, 90, 0.0, 1.631),
        (1000, 100, 90, 1e-5, 1.626),
        (1000, 100, 75, 0.0, 0.702),
    ],
)
def test_reference_values(m, r, v, delta, expected):
    assert one_run_epsilon_lower_bound(m, r, v, delta=delta, significance=0.05) == pytest.approx(
        expected, abs=REF_TOL
    )


def _p_brute(m: int, r: int, v: int, eps: float, delta: float) -> float:
    """The paper's formula written out term by term (no cumulative sums)."""
    q = math.exp(eps) / (1 + math.exp(eps))
    beta = sum(binom.pmf(j, r, q) for j in range(v, r + 1))
    alpha = max(
        (sum(binom.pmf(j, r, q) for j in range(v - i, v)) / i for i in range(1, v + 1)), default=0.0
    )
    return min(1.0, beta + 2 * m * delta * alpha)


@pytest.mark.parametrize(
    "m,r,v,eps,delta",
    [
        (50, 20, 15, 0.7, 1e-3),
        (1000, 100, 90, 1.6, 1e-5),
        (30, 30, 30, 2.0, 0.0),
        (40, 10, 0, 0.3, 1e-2),
    ],
)
def test_p_value_matches_brute_force(m, r, v, eps, delta):
    assert one_run_p_value(m, r, v, eps, delta=delta) == pytest.approx(
        _p_brute(m, r, v, eps, delta), rel=1e-9, abs=1e-15
    )


def test_all_right_closed_form_and_bisection_edge():
    # v = r, δ = 0: p = q^r, so ε_LB solves q^r = significance exactly.
    q = 0.05 ** (1 / 10)
    assert one_run_epsilon_lower_bound(10, 10, 10) == pytest.approx(math.log(q / (1 - q)), abs=1e-9)
    lb = one_run_epsilon_lower_bound(1000, 100, 90, delta=1e-5)
    assert (
        one_run_p_value(1000, 100, 90, lb, delta=1e-5)
        < 0.05
        <= one_run_p_value(1000, 100, 90, lb + 1e-6, delta=1e-5)
    )


def test_bound_moves_the_right_way():
    assert one_run_epsilon_lower_bound(1000, 100, 95) > one_run_epsilon_lower_bound(1000, 100, 90)
    assert one_run_epsilon_lower_bound(1000, 100, 90, delta=1e-3) < one_run_epsilon_lower_bound(
        1000, 100, 90, delta=1e-5
    )
    assert one_run_epsilon_lower_bound(
        1000, 100, 90, significance=0.01
    ) < one_run_epsilon_lower_bound(1000, 100, 90)
    assert one_run_epsilon_lower_bound(1000, 100, 50) == 0.0  # chance accuracy certifies nothing
    assert one_run_epsilon_lower_bound(10, 0, 0) == 0.0


def test_max_certifiable_is_the_all_right_bound():
    assert one_run_max_certifiable_epsilon(1000, 1000, delta=1e-5) == pytest.approx(
        5.782, abs=REF_TOL
    )
    assert one_run_max_certifiable_epsilon(1000, 200) == one_run_epsilon_lower_bound(1000, 200, 200)


def test_randomized_response_is_not_accused():
    """A mechanism that is exactly ε-DP per canary (randomized response) is rejected at ε ≤ 5 % of the time.

    ε_LB > ε_true ⟺ p(ε_true) < 0.05 (p is increasing in ε). 400 trials: the rejection rate's
    standard error at 5 % is 1.1 %, so the bound 0.05 + 3·SE = 0.083 fails a correct test with
    probability ≈ 0.1 %.
    """
    eps, m, k = 1.0, 1000, 100
    q = math.exp(eps) / (1 + math.exp(eps))
    rng = np.random.default_rng(7)
    rejected = 0
    trials = 400
    for _ in range(trials):
        inc = rng.random(m) < 0.5
        bit = np.where(rng.random(m) < q, inc, ~inc)
        score = (
            bit + rng.random(m) * 0.5
        )  # the randomized-response bit, ties broken by independent noise
        a = one_run_audit(score, inc, k_plus=k, k_minus=k)
        rejected += one_run_p_value(m, a.r, a.v, eps) < 0.05
    assert rejected / trials <= 0.083


def test_audit_counts_and_perfect_attack_reaches_the_ceiling():
    rng = np.random.default_rng(0)
    inc = rng.random(1000) < 0.5
    score = inc + rng.random(1000) * 0.5
    a = one_run_audit(score, inc, k_plus=100, k_minus=100, delta=1e-5)
    assert (a.r, a.v) == (200, 200)
    assert a.epsilon_lower_bound == pytest.approx(a.max_certifiable_epsilon, abs=1e-9)
    assert a.testable(a.max_certifiable_epsilon) and not a.testable(
        a.max_certifiable_epsilon + 0.01
    )
    # Brute-force (r, v): sort, take the ends.
    order = np.argsort(score)
    v = inc[order[-100:]].sum() + (~inc[order[:100]]).sum()
    assert a.v == v


def test_ties_across_a_cut_are_abstained_on_and_order_does_not_matter():
    inc = np.array([1, 1, 0, 1, 0, 0, 1, 0], dtype=bool)
    score = np.array([3.0, 2.0, 2.0, 2.0, 1.0, 0.0, 5.0, 0.0])
    # Top 2 = {5, 3}: no tie. Top 3 would cut through the three 2.0s: abstain on all three.
    a = one_run_audit(score, inc, k_plus=3, k_minus=1)
    assert (a.r, a.v) == (2, 2)  # two IN guesses right; the bottom-1 cut splits the two 0.0s
    perm = np.random.default_rng(3).permutation(8)
    b = one_run_audit(score[perm], inc[perm], k_plus=3, k_minus=1)
    assert (b.r, b.v, b.epsilon_lower_bound) == (a.r, a.v, a.epsilon_lower_bound)
    flat = one_run_audit(np.zeros(8), inc, k_plus=2, k_minus=2)
    assert (flat.r, flat.epsilon_lower_bound) == (0, 0.0)


def test_grid_is_bonferroni_corrected():
    rng = np.random.default_rng(1)
    inc = rng.random(1000) < 0.5
    score = inc * 0.8 + rng.normal(size=1000)
    designs = [(50, 50), (100, 100), (200, 0)]
    g = one_run_audit_grid(score, inc, designs)
    assert g.n_designs == 3
    chosen = one_run_audit(score, inc, k_plus=g.k_plus, k_minus=g.k_minus)
    assert g.epsilon_lower_bound == pytest.approx(
        one_run_epsilon_lower_bound(1000, chosen.r, chosen.v, significance=0.05 / 3), abs=1e-9
    )
    assert g.epsilon_lower_bound <= chosen.epsilon_lower_bound
    assert one_run_audit_grid(score, inc, [(100, 100)]) == one_run_audit(
        score, inc, k_plus=100, k_minus=100
    )


@pytest.mark.parametrize("runs,expected", [(20, 0.81), (100, 2.57), (1000, 4.91)])
def test_multi_run_ceiling(runs, expected):
    # docs/method.md §6: N runs (half with the canary), a perfect attack: ε ≈ 0.81, 2.57, 4.91.
    inc = np.arange(runs) % 2 == 0
    a = multi_run_audit(inc.astype(float), inc, 0.5)
    assert a.epsilon_lower_bound == pytest.approx(expected, abs=0.005)
    assert a.epsilon_lower_bound == pytest.approx(a.max_certifiable_epsilon, abs=1e-12)


def test_multi_run_counts_and_grid():
    rng = np.random.default_rng(2)
    inc = rng.random(200) < 0.5
    score = inc + rng.normal(scale=0.7, size=200)
    a = multi_run_audit(score, inc, 0.5, alpha=0.05, delta=1e-5)
    tp, fp = int(((score >= 0.5) & inc).sum()), int(((score >= 0.5) & ~inc).sum())
    assert (a.tp, a.fp, a.fn + a.tp, a.fp + a.tn) == (tp, fp, inc.sum(), (~inc).sum())
    assert a.epsilon_lower_bound == pytest.approx(
        _cp_epsilon(tp, int(inc.sum()) - tp, fp, int((~inc).sum()) - fp, 0.05, 1e-5), abs=1e-9
    )
    g = multi_run_audit(score, inc, [0.0, 0.5, 1.0])
    assert g.n_thresholds == 3 and g.max_certifiable_epsilon < a.max_certifiable_epsilon


@pytest.mark.parametrize(
    "call,field",
    [
        (lambda: one_run_epsilon_lower_bound(10, 11, 5), "r"),
        (lambda: one_run_epsilon_lower_bound(10, 5, 6), "v"),
        (lambda: one_run_epsilon_lower_bound(0, 0, 0), "m"),
        (lambda: one_run_epsilon_lower_bound(10, 5, 5, delta=2.0), "delta"),
        (lambda: one_run_epsilon_lower_bound(10, 5, 5, significance=0.0), "significance"),
        (lambda: one_run_p_value(10, 5, 5, -1.0), "epsilon"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(3), k_plus=1, k_minus=1), "included"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(4), k_plus=3, k_minus=2), "k_plus"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(4), k_plus=0, k_minus=0), "k_plus"),
        (lambda: one_run_audit(np.zeros(4), np.zeros(4), k_plus=-1, k_minus=2), "k_plus"),
        (lambda: one_run_audit(np.array([0, np.nan]), np.zeros(2), k_plus=1, k_minus=0), "scores"),
        (lambda: one_run_audit_grid(np.zeros(4), np.zeros(4), []), "designs"),
        (lambda: multi_run_audit(np.zeros(4), np.ones(4), 0.5), "included"),
        (lambda: multi_run_audit(np.zeros(4), np.array([0, 1, 0, 2]), 0.5), "included"),
        (lambda: multi_run_audit(np.zeros(4), np.array([0, 1, 0, 1]), []), "thresholds"),
    ],
)
def test_bad_inputs_name_the_field(call, field):
    with pytest.raises(InputError) as err:
        call()
    assert err.value.field == field


def _cp_epsilon(tp: int, fn: int, fp: int, tn: int, alpha: float, delta: float) -> float:
    """The one-threshold bound written out with scipy's exact binomial test intervals (not the
    code's Clopper–Pearson): max(ln((TPR_lo − δ)/FPR_hi), ln((TNR_lo − δ)/FNR_hi), 0)."""
    from scipy.stats import binomtest

    def ci(k: int, n: int) -> tuple[float, float]:
        c = binomtest(k, n).proportion_ci(confidence_level=1 - alpha, method="exact")
        return c.low, c.high

    (tpr_lo, _), (_, fpr_hi) = ci(tp, tp + fn), ci(fp, fp + tn)
    (tnr_lo, _), (_, fnr_hi) = ci(tn, fp + tn), ci(fn, tp + fn)
    best = 0.0
    for num, den in ((tpr_lo - delta, fpr_hi), (tnr_lo - delta, fnr_hi)):
        if num > 0 and den > 0:
            best = max(best, math.log(num / den))
    return best


def _largest_rejected(m: int, r: int, v: int, delta: float, significance: float = 0.05) -> float:
    """The largest ε whose claim the guesses reject (p ≤ significance), by bisection on the
    paper's p-value written out in the test (pmf array, partial sums by slicing)."""
    from scipy.stats import binom

    def p(eps: float) -> float:
        q = math.exp(eps) / (1 + math.exp(eps))
        pmf = binom.pmf(np.arange(r + 1), r, q)
        tail = pmf[v:].sum()
        alpha = max((pmf[v - i : v].sum() / i for i in range(1, v + 1)), default=0.0)
        return min(1.0, tail + 2 * m * delta * alpha)

    if p(0.0) > significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while p(hi) <= significance:
        hi *= 2
    for _ in range(60):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if p(mid) <= significance else (lo, mid)
    return lo


def test_pooled_runs_sum_the_counts():
    rng = np.random.default_rng(9)
    runs = []
    for _ in range(3):
        inc = rng.random(400) < 0.5
        runs.append((inc * 1.0 + rng.normal(size=400), inc))
    pooled = pooled_one_run_audit(runs, k_plus=40, k_minus=40, delta=1e-5)
    single = [one_run_audit(s, i, k_plus=40, k_minus=40) for s, i in runs]
    assert (pooled.m, pooled.r, pooled.v, pooled.n_runs) == (
        1200,
        sum(a.r for a in single),
        sum(a.v for a in single),
        3,
    )
    assert pooled.epsilon_lower_bound == pytest.approx(
        _largest_rejected(1200, pooled.r, pooled.v, 1e-5), abs=1e-6
    )
    assert pooled.max_certifiable_epsilon == pytest.approx(
        _largest_rejected(1200, 240, 240, 1e-5), abs=1e-6
    )
    assert (
        pooled.max_certifiable_epsilon > single[0].max_certifiable_epsilon
    )  # more runs, higher ceiling
    with pytest.raises(InputError, match="runs"):
        pooled_one_run_audit([], k_plus=1, k_minus=1)
