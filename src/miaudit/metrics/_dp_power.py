"""The power of a one-run DP audit (docs/method.md §6 and §"DP audit power"): what an ideal
attacker reaches under the *claimed* mechanism, which guesses to make, and how large a true ε a
bug must have to be caught.

None of this is DP accounting: the mechanism's parameters (σ, sampling rate, steps) are what
Opacus's accountant recorded, and the statistics are Steinke, Nasr & Jagielski's one-run test
(:mod:`miaudit.metrics._one_run`) applied to simulated guesses.

- :func:`dirac_canary_llr`: the log-likelihood ratio of one DP-SGD step's observation of a Dirac
  gradient canary's coordinate, once the other records' clipped sum is removed:
  x = b + N(0, σ²) in units of C, b ~ Bernoulli(q) when the canary is included, 0 when not:
  log[(1 − q) + q·exp((2x − 1) / (2σ²))]. Summed over steps it is the Neyman–Pearson score of
  "included" against "excluded": the strongest score any attacker can compute.
- :func:`simulated_ideal_bounds`: that attacker's one-run bounds under the claimed subsampled
  Gaussian mechanism, one per simulation seed (its median is "the simulated ideal bound").
- :func:`choose_guesses`: (k₊, k₋) from a fixed grid maximising the mean simulated ideal
  bound under a given mechanism (the guess rule passes the mechanism of a violation of the
  claim); it sees only that mechanism, never the audit's scores or coin flips, so the guesses
  are fixed before scoring as the test requires.
- :func:`min_detectable_epsilon`: the smallest true ε at which an ideal attacker whose r guesses
  are each right with probability e^ε/(1 + e^ε) (ε-DP randomized response, the case the test is
  tight for) makes the test reject the claim with probability ``power``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import numpy as np
from scipy.stats import binom

from miaudit.errors import InputError
from miaudit.metrics._one_run import _p_value, one_run_epsilon_lower_bound, one_run_guesses

#: (share of the m canaries guessed on, share of those guesses that are IN): the grid
#: :func:`choose_guesses` searches. Fixed here, never adapted to a run.
GUESS_GRID: tuple[tuple[float, float], ...] = tuple(
    (share, split) for share in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4) for split in (1.0, 0.5)
)
_CHUNK_ELEMENTS = 4_000_000  # canaries × steps drawn at once (32 MB of float64)


def dirac_canary_llr(x: np.ndarray, noise_multiplier: float, sample_rate: float) -> np.ndarray:
    """Per-step log-likelihood ratio of a Dirac canary's observation ``x`` (in units of C,
    the other records' clipped sum removed): included (b ~ Bernoulli(q)) against excluded (b = 0).

    >>> float(np.round(dirac_canary_llr(np.array([1.0]), 1.0, 1.0), 3)[0])  # q = 1: (2x−1)/(2σ²)
    0.5
    """
    sigma2 = float(noise_multiplier) ** 2
    q = float(sample_rate)
    z = (2.0 * np.asarray(x, dtype=np.float64) - 1.0) / (2.0 * sigma2)
    if q >= 1.0:
        return z
    return np.asarray(np.logaddexp(math.log1p(-q), math.log(q) + z))


def _check_mechanism(noise_multiplier: float, sample_rate: float, steps: int) -> None:
    if not (noise_multiplier > 0 and math.isfinite(noise_multiplier)):
        raise InputError("noise_multiplier", f"must be positive and finite, got {noise_multiplier}")
    if not 0 < sample_rate <= 1:
        raise InputError("sample_rate", f"must lie in (0, 1], got {sample_rate}")
    if steps < 1:
        raise InputError("steps", f"must be at least 1, got {steps}")


def ideal_scores(
    included: np.ndarray,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """Likelihood-ratio scores of Dirac canaries under the subsampled Gaussian mechanism
    (``steps`` steps, rate q, noise σ·C): what an observer of every step computes."""
    _check_mechanism(noise_multiplier, sample_rate, steps)
    inc = np.asarray(included, dtype=bool)
    scores = np.zeros(inc.size)
    per_chunk = max(1, _CHUNK_ELEMENTS // max(inc.size, 1))
    done = 0
    while done < steps:
        t = min(per_chunk, steps - done)
        b = inc[:, None] & (rng.random((inc.size, t)) < sample_rate)
        x = b + rng.normal(0.0, noise_multiplier, size=(inc.size, t))
        scores += dirac_canary_llr(x, noise_multiplier, sample_rate).sum(axis=1)
        done += t
    return scores


def _bounds_for_designs(
    scores: np.ndarray,
    included: np.ndarray,
    designs: Sequence[tuple[int, int]],
    delta: float,
    significance: float,
) -> list[float]:
    out = []
    for kp, km in designs:
        r, v = one_run_guesses(scores, included, kp, km)
        out.append(
            one_run_epsilon_lower_bound(scores.size, r, v, delta=delta, significance=significance)
            if r
            else 0.0
        )
    return out


def simulated_ideal_bounds(
    m: int,
    designs: Sequence[tuple[int, int]],
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    significance: float,
    seeds: Sequence[int],
) -> np.ndarray:
    """One-run bounds of the ideal attacker (likelihood-ratio scores of m Dirac canaries, each
    included by a fair coin) under the claimed mechanism: shape (len(seeds), len(designs))."""
    rows = []
    for seed in seeds:
        rng = np.random.default_rng(seed)
        inc = rng.random(m) < 0.5
        s = ideal_scores(
            inc,
            noise_multiplier=noise_multiplier,
            sample_rate=sample_rate,
            steps=steps,
            rng=rng,
        )
        s = s + rng.random(m) * 1e-12  # ties broken by independent noise, never by order
        rows.append(_bounds_for_designs(s, inc, designs, delta, significance))
    return np.asarray(rows, dtype=np.float64)


def grid_designs(m: int) -> list[tuple[int, int]]:
    """The (k₊, k₋) of :data:`GUESS_GRID` for m canaries (duplicates and empty designs dropped)."""
    seen: list[tuple[int, int]] = []
    for share, split in GUESS_GRID:
        total = max(1, round(share * m))
        kp = max(1, round(total * split))
        design = (kp, min(total - kp, m - kp))
        if design not in seen and sum(design) <= m:
            seen.append(design)
    return seen


def choose_guesses(
    m: int,
    *,
    noise_multiplier: float,
    sample_rate: float,
    steps: int,
    delta: float,
    significance: float,
    seeds: Sequence[int] = (0, 1, 2),
    admissible: Callable[[tuple[int, int]], bool] | None = None,
) -> tuple[tuple[int, int], float]:
    """((k₊, k₋), its mean simulated ideal bound): the grid design an ideal attacker does best
    with under the given mechanism, among the ``admissible`` ones (all when none is). The mean,
    not the median: it moves less from one set of simulations to another, and every design is
    scored on the same simulations (paired). Uses no audit data: fixed before scoring."""
    designs = grid_designs(m)
    if admissible is not None:
        designs = [d for d in designs if admissible(d)] or designs
    bounds = simulated_ideal_bounds(
        m,
        designs,
        noise_multiplier=noise_multiplier,
        sample_rate=sample_rate,
        steps=steps,
        delta=delta,
        significance=significance,
        seeds=seeds,
    )
    mean = bounds.mean(axis=0)
    best = int(np.argmax(mean))  # first of equals: the fewest guesses
    return designs[best], float(mean[best])


def _reject_threshold(m: int, r: int, claim: float, delta: float, significance: float) -> int:
    """The fewest right guesses out of r that reject the claim (r + 1 when none do); the
    p-value falls as v grows, so bisection finds it."""
    if _p_value(m, r, r, claim, delta) >= significance:
        return r + 1
    lo, hi = -1, r  # p(lo) ≥ significance (or lo = −1), p(hi) < significance
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if _p_value(m, r, mid, claim, delta) < significance:
            hi = mid
        else:
            lo = mid
    return hi


def min_detectable_epsilon(
    m: int,
    r: int,
    claim: float,
    *,
    delta: float,
    significance: float,
    power: float = 0.9,
) -> float:
    """The smallest true ε whose ideal attacker (each of r guesses right with probability
    e^ε/(1 + e^ε)) rejects ``claim`` with probability ≥ ``power``; ∞ when no ε can.

    >>> round(min_detectable_epsilon(1000, 200, 1.0, delta=1e-5, significance=0.05), 2)
    1.5
    """
    if r < 1 or not math.isfinite(claim):
        return math.inf
    v_star = _reject_threshold(m, r, claim, delta, significance)
    if v_star > r:
        return math.inf

    def caught(eps: float) -> float:
        return float(binom.sf(v_star - 1, r, 1.0 / (1.0 + math.exp(-eps))))

    lo, hi = 0.0, 1.0
    while caught(hi) < power:
        lo, hi = hi, hi * 2.0
        if hi > 64.0:
            return math.inf
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        lo, hi = (lo, mid) if caught(mid) >= power else (mid, hi)
    return hi
