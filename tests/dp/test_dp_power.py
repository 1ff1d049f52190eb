"""Issue 19: the DP audit's power, guess rule and Gaussian-DP estimate (metrics/_dp_power.py,
metrics/_fdp.py); simulations only, no training."""

from __future__ import annotations

import math

import numpy as np
import pytest

from miaudit.metrics import (
    choose_guesses,
    dirac_canary_llr,
    gaussian_dp_estimate,
    grid_designs,
    ideal_scores,
    min_detectable_epsilon,
    one_run_epsilon_lower_bound,
    one_run_max_certifiable_epsilon,
    one_run_p_value,
    simulated_ideal_bounds,
)

MECH = {"noise_multiplier": 1.0, "sample_rate": 0.1, "steps": 100}


def test_llr_is_the_likelihood_ratio_of_the_mixture():
    """log[(1 − q)φ(x/σ) + qφ((x − 1)/σ)] − log φ(x/σ), computed directly."""
    x, sigma, q = np.array([-1.0, 0.3, 2.5]), 1.7, 0.2
    phi = lambda t: np.exp(-(t**2) / 2)  # noqa: E731
    direct = np.log((1 - q) * phi(x / sigma) + q * phi((x - 1) / sigma)) - np.log(phi(x / sigma))
    assert dirac_canary_llr(x, sigma, q) == pytest.approx(direct, rel=1e-12)


def test_ideal_scores_separate_included_canaries_and_are_seeded():
    inc = np.arange(400) % 2 == 0
    a = ideal_scores(inc, rng=np.random.default_rng(1), **MECH)
    b = ideal_scores(inc, rng=np.random.default_rng(1), **MECH)
    assert np.array_equal(a, b)
    assert a[inc].mean() > a[~inc].mean() + 1.0  # σ = 1, 10 expected hits: far apart


def test_ideal_bound_grows_with_the_mechanisms_leakage():
    designs = [(50, 50)]
    kw = {"delta": 1e-5, "significance": 0.05, "seeds": [0, 1, 2]}
    weak = simulated_ideal_bounds(
        2000, designs, noise_multiplier=4.0, sample_rate=0.1, steps=100, **kw
    )
    strong = simulated_ideal_bounds(
        2000, designs, noise_multiplier=0.8, sample_rate=0.1, steps=100, **kw
    )
    assert np.median(strong) > np.median(weak) + 0.5
    assert strong.max() <= one_run_max_certifiable_epsilon(2000, 100, delta=1e-5) + 1e-12


def test_guess_rule_uses_the_claim_alone_and_is_reproducible():
    kw = {"delta": 1e-5, "significance": 0.05, "seeds": (0, 1, 2)}
    a = choose_guesses(1000, **MECH, **kw)
    assert a == choose_guesses(1000, **MECH, **kw)
    assert a[0] in grid_designs(1000)
    only_large = choose_guesses(1000, **MECH, **kw, admissible=lambda d: sum(d) >= 200)
    assert sum(only_large[0]) >= 200


def test_guess_rule_is_fixed_by_the_design_alone_and_aims_at_a_violation():
    """Issue 19: the audit's seed never moves the guesses (the old rule's choice at ε ≈ 1 changed
    with it); the rule simulates the mechanism whose accountant records twice the claim."""
    from miaudit.audit._dp_audit_power import Mechanism, guess_rule, violation_mechanism

    mech = Mechanism(noise_multiplier=3.0, sample_rate=0.05, steps=60)
    violation = violation_mechanism(mech, 1.0, 1e-5, "rdp")
    assert violation.noise_multiplier < mech.noise_multiplier
    assert (violation.sample_rate, violation.steps) == (mech.sample_rate, mech.steps)
    from opacus.accountants import create_accountant

    acc = create_accountant("rdp")
    acc.history = [(violation.noise_multiplier, violation.sample_rate, violation.steps)]
    assert acc.get_epsilon(1e-5) == pytest.approx(2.0, abs=0.05)
    design = guess_rule(200, mech, 1.0, 1e-5, 0.05, "rdp")
    assert design in grid_designs(200)
    assert guess_rule(200, mech, 1.0, 1e-5, 0.05, "rdp") == design


def test_min_detectable_epsilon_is_where_the_test_rejects_nine_times_in_ten():
    m, r, claim = 1000, 200, 1.0
    eps = min_detectable_epsilon(m, r, claim, delta=1e-5, significance=0.05)
    assert claim < eps < math.inf
    # at that ε, an ideal attacker's v ~ Bin(r, q) rejects the claim with probability 0.9
    q = 1 / (1 + math.exp(-eps))
    rng = np.random.default_rng(0)
    vs = rng.binomial(r, q, size=400)
    share = np.mean([one_run_p_value(m, r, int(v), claim, delta=1e-5) < 0.05 for v in vs])
    assert share == pytest.approx(0.9, abs=0.05)
    # above the design's ceiling nothing can be caught
    ceiling = one_run_max_certifiable_epsilon(m, 20, delta=1e-5)
    assert min_detectable_epsilon(m, 20, ceiling + 0.1, delta=1e-5, significance=0.05) == math.inf


def test_gaussian_dp_estimate_on_a_gaussian_mechanism_is_below_its_mu():
    """On the family it assumes (x = b + N(0, 1): μ = 1) the lower estimate stays below μ."""
    rng = np.random.default_rng(3)
    inc = rng.random(20000) < 0.5
    est = gaussian_dp_estimate(
        inc + rng.normal(size=inc.size), inc, k_plus=1000, k_minus=0, delta=1e-5
    )
    assert 0.6 < est.mu < 1.0 and "never the verdict" in est.label
    assert est.epsilon == pytest.approx(
        __import__("opacus.accountants.analysis.gdp", fromlist=["eps_from_mu"]).eps_from_mu(
            mu=est.mu, delta=1e-5
        )
    )


def test_one_run_bound_and_p_value_agree():
    """FAILED by p-value at the claim ⇔ bound above the claim (one test, two readings)."""
    for v in (60, 80, 95):
        lb = one_run_epsilon_lower_bound(1000, 100, v, delta=1e-5)
        for claim in (0.2, 0.8, 1.5):
            assert (one_run_p_value(1000, 100, v, claim, delta=1e-5) < 0.05) == (lb > claim)
