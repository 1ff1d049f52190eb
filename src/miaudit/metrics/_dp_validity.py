"""The DP audit's validity, by simulation (docs/dp.md, "Validity"; tests/dp/test_validity.py and
benchmarks/bench_dp_validity.py).

The one-run test must reject a true claim at most as often as its significance says. Three
designs where the truth is known, each over many seeds, give the share of rejections of the
claim (the verdict FAILED) with its Clopper–Pearson interval:

- **null**: canaries never included (scores independent of the coin flips): any claim, ε = 0
  included, is true;
- **randomized response at ε**: each canary's released bit is its coin flip, kept with
  probability e^ε/(1 + e^ε) — exactly (ε, 0)-DP;
- **the Gaussian mechanism at (ε, δ)**: each canary released as b + N(0, σ²) with σ such that
  it is exactly (ε, δ)-DP (σ = 1/μ for the μ-GDP curve through (ε, δ), Opacus's
  ``delta_eps_mu``: the Gaussian mechanism's own curve, no new accounting).

Ties are broken by independent noise, never by canary order, as the audit does.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from scipy.optimize import brentq

from miaudit.metrics._epsilon import clopper_pearson
from miaudit.metrics._fdp import gaussian_dp_estimate
from miaudit.metrics._one_run import _p_value, one_run_guesses


@dataclass(frozen=True)
class RejectionRate:
    """How often the test rejected a true claim over ``seeds`` simulations."""

    design: str
    claim_epsilon: float
    claim_delta: float
    seeds: int
    rejections: int
    share: float
    interval: tuple[float, float]  # two-sided 95 % Clopper–Pearson
    significance: float

    @classmethod
    def of(
        cls,
        design: str,
        epsilon: float,
        delta: float,
        seeds: int,
        rejected: int,
        significance: float,
    ) -> RejectionRate:
        """``rejected`` of ``seeds`` simulations, with the share's Clopper–Pearson interval."""
        lo, hi = clopper_pearson(rejected, seeds, 0.05)
        return cls(
            design,
            epsilon,
            delta,
            seeds,
            rejected,
            rejected / seeds,
            (float(lo), float(hi)),
            significance,
        )

    @property
    def within_nominal(self) -> bool:
        """The one-sided check: the share is not significantly above the significance."""
        return self.interval[0] <= self.significance


Draw = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _rate(
    name: str,
    draw: Draw,
    *,
    epsilon: float,
    delta: float,
    m: int,
    k_plus: int,
    k_minus: int,
    seeds: int,
    significance: float,
    seed: int,
) -> RejectionRate:
    rejected = 0
    for ss in np.random.SeedSequence(seed).spawn(seeds):
        rng = np.random.default_rng(ss)
        inc = rng.random(m) < 0.5
        scores = draw(inc, rng) + rng.random(m) * 1e-9  # ties: independent noise
        r, v = one_run_guesses(scores, inc, k_plus, k_minus)
        rejected += bool(r) and _p_value(m, r, v, epsilon, delta) < significance
    return RejectionRate.of(name, epsilon, delta, seeds, rejected, significance)


def gaussian_sigma_at(epsilon: float, delta: float) -> float:
    """σ of the Gaussian mechanism (sensitivity 1) that is exactly (ε, δ)-DP."""
    from opacus.accountants.analysis.gdp import delta_eps_mu

    mu = brentq(lambda mu: delta_eps_mu(eps=epsilon, mu=mu) - delta, 1e-6, 50.0)
    return float(1.0 / mu)


def _rr(epsilon: float) -> Draw:
    keep = float(np.exp(epsilon) / (1.0 + np.exp(epsilon)))
    return lambda inc, rng: np.where(rng.random(inc.size) < keep, inc, ~inc).astype(np.float64)


def _gauss(sigma: float) -> Draw:
    return lambda inc, rng: inc + rng.normal(0.0, sigma, inc.size)


def null_rate(
    m: int, k_plus: int, k_minus: int, *, seeds: int, significance: float = 0.05, seed: int = 0
) -> RejectionRate:
    """Canaries never included: the claim ε = 0, δ = 0 is true."""
    return _rate(
        "null (canaries never included)",
        lambda inc, rng: rng.normal(size=inc.size),
        epsilon=0.0,
        delta=0.0,
        m=m,
        k_plus=k_plus,
        k_minus=k_minus,
        seeds=seeds,
        significance=significance,
        seed=seed,
    )


def randomized_response_rate(
    epsilon: float,
    m: int,
    k_plus: int,
    k_minus: int,
    *,
    seeds: int,
    significance: float = 0.05,
    seed: int = 0,
) -> RejectionRate:
    """ε-DP randomized response: the claim (ε, 0) is exactly true."""
    return _rate(
        f"randomized response at ε = {epsilon:g}",
        _rr(epsilon),
        epsilon=epsilon,
        delta=0.0,
        m=m,
        k_plus=k_plus,
        k_minus=k_minus,
        seeds=seeds,
        significance=significance,
        seed=seed,
    )


def gaussian_mechanism_rate(
    epsilon: float,
    delta: float,
    m: int,
    k_plus: int,
    k_minus: int,
    *,
    seeds: int,
    significance: float = 0.05,
    seed: int = 0,
) -> RejectionRate:
    """The Gaussian mechanism exactly at (ε, δ): the claim is exactly true."""
    sigma = gaussian_sigma_at(epsilon, delta)
    return _rate(
        f"Gaussian mechanism at (ε = {epsilon:g}, δ = {delta:g}), σ = {sigma:.3f}",
        _gauss(sigma),
        epsilon=epsilon,
        delta=delta,
        m=m,
        k_plus=k_plus,
        k_minus=k_minus,
        seeds=seeds,
        significance=significance,
        seed=seed,
    )


def gdp_estimates_on_randomized_response(
    epsilon: float, delta: float, m: int, k_plus: int, *, seeds: int, seed: int = 0
) -> np.ndarray:
    """The Gaussian-DP estimate's ε on ε-DP randomized response, per seed: the family assumption
    fails there, and the estimate can exceed the true ε (why it never decides the verdict)."""
    out = []
    for ss in np.random.SeedSequence(seed).spawn(seeds):
        rng = np.random.default_rng(ss)
        inc = rng.random(m) < 0.5
        scores = _rr(epsilon)(inc, rng) + rng.random(m) * 1e-9
        out.append(gaussian_dp_estimate(scores, inc, k_plus=k_plus, k_minus=0, delta=delta).epsilon)
    return np.asarray(out)


def multi_run_rate(
    name: str,
    draw: Draw,
    threshold: float,
    *,
    epsilon: float,
    delta: float,
    runs: int,
    seeds: int,
    significance: float = 0.05,
    seed: int = 0,
) -> RejectionRate:
    """The multi-run test's rejections of a true claim: ``runs`` runs per seed, one canary each
    (fair coins), guess IN when the drawn score exceeds ``threshold``; rejected when the
    Clopper–Pearson bound (metrics' ``multi_run_epsilon_lower_bound``) exceeds the claim."""
    from miaudit.metrics._multi_run import bound_at_threshold

    rejected = 0
    for ss in np.random.SeedSequence([seed, 43]).spawn(seeds):
        rng = np.random.default_rng(ss)
        inc = rng.random(runs) < 0.5
        if inc.all() or not inc.any():
            continue
        bound, _, _ = bound_at_threshold(
            draw(inc, rng), inc, threshold, delta=delta, significance=significance
        )
        rejected += bound > epsilon
    return RejectionRate.of(name, epsilon, delta, seeds, rejected, significance)


def multi_run_rr_rate(epsilon: float, runs: int, *, seeds: int, seed: int = 0) -> RejectionRate:
    """Multi-run on ε-DP randomized response (each run releases its coin, kept with probability
    e^ε/(1 + e^ε)): the claim (ε, 0) is exactly true, and its test is tight there."""
    return multi_run_rate(
        f"multi-run, randomized response at ε = {epsilon:g}",
        _rr(epsilon),
        0.5,
        epsilon=epsilon,
        delta=0.0,
        runs=runs,
        seeds=seeds,
        seed=seed,
    )


def multi_run_gaussian_rate(
    epsilon: float, delta: float, runs: int, *, seeds: int, seed: int = 0
) -> RejectionRate:
    """Multi-run on the Gaussian mechanism exactly at (ε, δ), threshold at its mid-point."""
    sigma = gaussian_sigma_at(epsilon, delta)
    return multi_run_rate(
        f"multi-run, Gaussian mechanism at (ε = {epsilon:g}, δ = {delta:g})",
        _gauss(sigma),
        0.5 + 2.0 * sigma,
        epsilon=epsilon,
        delta=delta,
        runs=runs,
        seeds=seeds,
        seed=seed,
    )
