"""DP audit statistics: one training run (Steinke et al.) and many runs (Jagielski et al.).

docs/method.md §6. Both turn *guesses about canaries whose inclusion was an independent coin flip
made before training* into a lower bound on ε at a stated significance. They are test
statistics, not DP accounting: the ε a DP-SGD run spends comes from a maintained accountant.

- :func:`one_run_epsilon_lower_bound`: Steinke, Nasr & Jagielski, "Privacy Auditing with One (1)
  Training Run", NeurIPS 2023. m canaries, each included with probability ½; one model; guess IN
  for the k₊ highest-scoring canaries and OUT for the k₋ lowest; r guesses, v right. For a
  claimed ε with q = e^ε/(1+e^ε):

      β  = P[Bin(r, q) ≥ v],
      α' = max_{i=1..v} P[v > Bin(r, q) ≥ v − i] / i,
      p  = β + 2mδ·α',

  and ε_LB is the largest ε with p < significance (bisection, as in the paper's Algorithm).
  :func:`pooled_one_run_audit` pools several runs, each with fresh canaries, into one test.
- :func:`multi_run_audit`: Jagielski, Ullman & Oprea, "Auditing Differentially Private Machine
  Learning: How Private is Private SGD?", NeurIPS 2020, and Nasr et al., S&P 2021: one canary,
  N independent training runs each with or without it, one guess per run from a threshold fixed
  beforehand; :func:`~miaudit.metrics.epsilon_lower_bound` on the 2×2 counts.

This module lives in ``metrics`` (not a ``dp`` package) because both are statistics on scores and
labels, like every other metric, and the multi-run bound reuses ``epsilon_lower_bound``. Running
the canary experiment (training, inserting canaries) belongs to the audit layer above.

k₊ and k₋ (or the threshold) must be fixed before the scores are seen. Trying several and keeping
the best inflates the bound and can accuse a correct implementation; the ``*_grid`` variants try
a grid fixed in advance at a Bonferroni-corrected significance (significance / grid size).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy.stats import binom

from miaudit.errors import InputError
from miaudit.metrics._epsilon import epsilon_lower_bound

_BISECTION_STEPS = 60  # halves an interval of width ≤ 64 to below 1e-16
_EPS_CEILING = 64.0  # q = e^ε/(1+e^ε) is 1.0 in float64 long before this: every β is 1 there


def _check_counts(m: int, r: int, v: int) -> None:
    for name, value in (("m", m), ("r", r), ("v", v)):
        if isinstance(value, bool) or int(value) != value:
            raise InputError(name, f"must be an integer, got {name}={value!r}")
    if m < 1:
        raise InputError("m", f"must be at least 1, got m={m}")
    if not 0 <= r <= m:
        raise InputError("r", f"must be in [0, m={m}], got r={r}")
    if not 0 <= v <= r:
        raise InputError("v", f"must be in [0, r={r}], got v={v}")


def _check_delta_significance(delta: float, significance: float) -> None:
    if not (0.0 <= delta <= 1.0):
        raise InputError("delta", f"must be in [0, 1], got delta={delta}")
    if not (0.0 < significance < 1.0):
        raise InputError("significance", f"must be in (0, 1), got significance={significance}")


def _p_value(m: int, r: int, v: int, epsilon: float, delta: float) -> float:
    q = 1.0 / (1.0 + math.exp(-epsilon))
    beta = float(binom.sf(v - 1, r, q))  # P[Bin(r, q) ≥ v]
    alpha = 0.0
    if delta > 0 and v > 0:
        # P[v > Bin ≥ v − i] = Σ_{j=1..i} pmf(v − j): a cumulative sum, then the best i.
        tail = np.cumsum(binom.pmf(np.arange(v - 1, -1, -1), r, q))
        alpha = float(np.max(tail / np.arange(1, v + 1)))
    return min(1.0, beta + 2.0 * m * delta * alpha)


def one_run_p_value(m: int, r: int, v: int, epsilon: float, *, delta: float = 0.0) -> float:
    """p-value of "the training run is (ε, δ)-DP" given v right out of r guesses on m canaries.

    Parameters
    ----------
    m : int
        Number of canaries (each included by its own fair coin before training).
    r : int
        Number of guesses made (k₊ + k₋, or fewer when some were abstained on).
    v : int
        Number of correct guesses.
    epsilon : float
        The claimed ε (≥ 0).
    delta : float
        The claimed δ.

    Returns
    -------
    float
        p = min(1, β + 2mδ·α') from Steinke, Nasr & Jagielski (NeurIPS 2023).

    Examples
    --------
    >>> round(one_run_p_value(10, 10, 10, 1.0), 4)  # q^10 with q = e/(1+e)
    0.0436
    """
    _check_counts(m, r, v)
    _check_delta_significance(delta, 0.5)
    if not (epsilon >= 0 and math.isfinite(epsilon)):
        raise InputError("epsilon", f"must be finite and ≥ 0, got epsilon={epsilon}")
    return _p_value(int(m), int(r), int(v), float(epsilon), float(delta))


def one_run_epsilon_lower_bound(
    m: int, r: int, v: int, *, delta: float = 0.0, significance: float = 0.05
) -> float:
    """The largest ε whose DP claim the guesses reject at ``significance`` (0 if none).

    Bisection on ε ∈ [0, ε_max] where p(ε_max) ≥ significance, as in Steinke et al.'s
    ``get_eps_audit``; returns the lower end, so the returned ε is always rejected.

    Parameters
    ----------
    m, r, v : int
        Canaries, guesses and correct guesses (0 ≤ v ≤ r ≤ m).
    delta : float
        The claimed δ.
    significance : float
        Probability of reporting a bound above the true ε of a correct implementation.

    Returns
    -------
    float
        ε_LB ≥ 0.

    Examples
    --------
    docs/method.md §6 reference values:

    >>> round(one_run_epsilon_lower_bound(100, 100, 100), 3)
    3.493
    >>> round(one_run_epsilon_lower_bound(1000, 100, 90, delta=1e-5), 3)
    1.626
    """
    _check_counts(m, r, v)
    _check_delta_significance(delta, significance)
    m, r, v = int(m), int(r), int(v)
    if _p_value(m, r, v, 0.0, delta) >= significance:
        return 0.0
    lo, hi = 0.0, 1.0
    while _p_value(m, r, v, hi, delta) < significance:
        lo, hi = hi, hi * 2.0
        if hi > _EPS_CEILING:  # unreachable for v ≤ r: β → 1 as ε grows
            return lo
    for _ in range(_BISECTION_STEPS):
        mid = 0.5 * (lo + hi)
        if _p_value(m, r, v, mid, delta) < significance:
            lo = mid
        else:
            hi = mid
        if hi - lo < 1e-12:
            break
    return lo


def one_run_max_certifiable_epsilon(
    m: int, r: int, *, delta: float = 0.0, significance: float = 0.05
) -> float:
    """The largest ε a one-run design can certify: the bound when every one of the r guesses is right.

    A claimed ε above this cannot be refuted by the design whatever the attack: state it before
    auditing and report such a claim as "not testable by this audit".

    Examples
    --------
    >>> round(one_run_max_certifiable_epsilon(1000, 1000, delta=1e-5), 3)
    5.782
    """
    return one_run_epsilon_lower_bound(m, r, r, delta=delta, significance=significance)


@dataclass(frozen=True)
class OneRunAudit:
    """The outcome of a one-run audit (Steinke, Nasr & Jagielski, NeurIPS 2023).

    ``k_plus``/``k_minus`` are the design (fixed before scoring); ``r`` can be below
    k₊ + k₋ when tied scores straddle a cut (those canaries are abstained on).
    ``epsilon_lower_bound`` is at ``significance`` / ``n_designs`` when a grid was tried.
    With ``n_runs`` > 1 (:func:`pooled_one_run_audit`), m, r and v are totals over the runs and
    k₊, k₋ are per run.
    """

    m: int
    k_plus: int
    k_minus: int
    r: int
    v: int
    delta: float
    significance: float
    n_designs: int
    epsilon_lower_bound: float
    max_certifiable_epsilon: float
    method: str = "one run (Steinke, Nasr & Jagielski, NeurIPS 2023)"
    n_runs: int = 1

    def testable(self, claimed_epsilon: float) -> bool:
        """False when the claim is above what the design could ever certify."""
        return claimed_epsilon <= self.max_certifiable_epsilon


def _check_canaries(scores: np.ndarray, included: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    s = np.asarray(scores, dtype=np.float64)
    inc = np.asarray(included)
    if s.ndim != 1 or s.size == 0:
        raise InputError("scores", f"must be a non-empty 1-D array, got shape {s.shape}")
    if inc.shape != s.shape:
        raise InputError(
            "included", f"has shape {inc.shape}, expected {s.shape} (one coin flip per canary)"
        )
    if not np.all(np.isfinite(s)):
        raise InputError("scores", "contains NaN or infinite values")
    if inc.dtype != bool:
        if not np.all((inc == 0) | (inc == 1)):
            raise InputError("included", "must be 0/1 or boolean")
        inc = inc.astype(bool)
    return s, inc


def one_run_guesses(s: np.ndarray, inc: np.ndarray, k_plus: int, k_minus: int) -> tuple[int, int]:
    """(r, v) for IN on the top k₊ and OUT on the bottom k₋ of ``s`` (float scores) given the
    coin flips ``inc`` (bool): guesses made and right; ties across a cut are abstained on.

    Breaking such ties by row order would let the order in which canaries were written (often
    members first) leak into the guesses; abstaining keeps the guesses a function of the scores.
    """
    m = s.size
    order = np.sort(s)
    r = v = 0
    if k_plus > 0:
        cut = order[m - k_plus]  # the k₊-th largest
        sure = s > cut
        if np.count_nonzero(s >= cut) == k_plus:  # no tie straddles the cut
            sure = s >= cut
        r += int(sure.sum())
        v += int((sure & inc).sum())
    if k_minus > 0:
        cut = order[k_minus - 1]  # the k₋-th smallest
        sure = s < cut
        if np.count_nonzero(s <= cut) == k_minus:
            sure = s <= cut
        r += int(sure.sum())
        v += int((sure & ~inc).sum())
    return r, v


def _check_design(m: int, k_plus: int, k_minus: int) -> None:
    for name, k in (("k_plus", k_plus), ("k_minus", k_minus)):
        if isinstance(k, bool) or int(k) != k or k < 0:
            raise InputError(name, f"must be a non-negative integer, got {name}={k!r}")
    if k_plus + k_minus == 0:
        raise InputError("k_plus", "k_plus + k_minus must be at least 1 (no guesses, no audit)")
    if k_plus + k_minus > m:
        raise InputError(
            "k_plus", f"k_plus + k_minus = {k_plus + k_minus} exceeds the {m} canaries"
        )


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 33 lines.
def one_run_audit_grid(
    scores: np.ndarray,
    included: np.ndarray,
    designs: Sequence[tuple[int, int]],
    *,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAudit:
    """One-run audit over a grid of (k₊, k₋) designs fixed in advance, Bonferroni-corrected.

    Each design is tested at ``significance / len(designs)``; the design with the largest bound
    is reported (with the corrected significance's ceiling as ``max_certifiable_epsilon``).

    Parameters
    ----------
    scores : ndarray of shape (m,)
        Attack score of each canary, higher = more likely included.
    included : ndarray of shape (m,)
        Whether each canary was included (its coin flip, made before training).
    designs : sequence of (k_plus, k_minus)
        Numbers of IN and OUT guesses, fixed before the scores were seen.
    delta, significance : float
        The claimed δ and the audit's significance.

    Returns
    -------
    OneRunAudit
    """
    s, inc = _check_canaries(scores, included)
    _check_delta_significance(delta, significance)
    if len(designs) == 0:
        raise InputError("designs", "needs at least one (k_plus, k_minus) pair")
    for kp, km in designs:
        _check_design(s.size, kp, km)
    level = significance / len(designs)
    best: OneRunAudit | None = None
    for kp, km in designs:
        r, v = one_run_guesses(s, inc, int(kp), int(km))
        lb = (
            one_run_epsilon_lower_bound(s.size, r, v, delta=delta, significance=level)
            if r > 0
            else 0.0
        )
        audit = OneRunAudit(
            m=s.size,
            k_plus=int(kp),
            k_minus=int(km),
            r=r,
            v=v,
            delta=float(delta),
            significance=float(significance),
            n_designs=len(designs),
            epsilon_lower_bound=lb,
            max_certifiable_epsilon=one_run_max_certifiable_epsilon(
                s.size, int(kp) + int(km), delta=delta, significance=level
            ),
        )
        if best is None or audit.epsilon_lower_bound > best.epsilon_lower_bound:
            best = audit
    assert best is not None
    return best


def one_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    *,
    k_plus: int,
    k_minus: int,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAudit:
    """One-run audit with one (k₊, k₋) design fixed before scoring.

    Examples
    --------
    >>> inc = np.arange(1000) % 2 == 0  # perfectly separated canaries, no ties
    >>> a = one_run_audit(inc + np.linspace(0, 0.5, 1000), inc, k_plus=50, k_minus=50)
    >>> (a.r, a.v, round(a.epsilon_lower_bound, 3))
    (100, 100, 3.493)
    """
    return one_run_audit_grid(
        scores, included, [(k_plus, k_minus)], delta=delta, significance=significance
    )


def pooled_one_run_audit(
    runs: Sequence[tuple[np.ndarray, np.ndarray]],
    *,
    k_plus: int,
    k_minus: int,
    delta: float = 0.0,
    significance: float = 0.05,
) -> OneRunAudit:
    """One-run audit pooled over several training runs, each with its own fresh canaries.

    Each canary is in exactly one run, so the runs together are one mechanism that is (ε, δ)-DP
    in every canary's inclusion whenever each run is: Steinke et al.'s theorem applies to it with
    m = Σ mᵢ canaries, r = Σ rᵢ guesses and v = Σ vᵢ correct (guessing IN for the top k₊ and OUT
    for the bottom k₋ of each run, fixed before scoring).

    Parameters
    ----------
    runs : sequence of (scores, included)
        Per run: (mᵢ,) canary scores and (mᵢ,) coin flips.
    k_plus, k_minus : int
        Guesses per run.
    delta, significance : float

    Returns
    -------
    OneRunAudit
        Totals over the runs, ``n_runs`` = len(runs).
    """
    if len(runs) == 0:
        raise InputError("runs", "needs at least one run")
    m = r = v = 0
    for scores, included in runs:
        s, inc = _check_canaries(scores, included)
        _check_design(s.size, k_plus, k_minus)
        ri, vi = one_run_guesses(s, inc, int(k_plus), int(k_minus))
        m, r, v = m + s.size, r + ri, v + vi
    _check_delta_significance(delta, significance)
    return OneRunAudit(
        m=m,
        k_plus=int(k_plus),
        k_minus=int(k_minus),
        r=r,
        v=v,
        delta=float(delta),
        significance=float(significance),
        n_designs=1,
        epsilon_lower_bound=one_run_epsilon_lower_bound(
            m, r, v, delta=delta, significance=significance
        )
        if r
        else 0.0,
        max_certifiable_epsilon=one_run_max_certifiable_epsilon(
            m, len(runs) * (int(k_plus) + int(k_minus)), delta=delta, significance=significance
        ),
        n_runs=len(runs),
    )


@dataclass(frozen=True)
class MultiRunAudit:
    """The outcome of a multi-run audit (Jagielski et al. 2020; Nasr et al. 2021).

    ``alpha`` is the two-sided Clopper–Pearson level before the Bonferroni split over
    ``n_thresholds``; the reported bound is the best threshold's at ``alpha / n_thresholds``.
    """

    n_runs: int
    threshold: float
    tp: int
    fn: int
    fp: int
    tn: int
    alpha: float
    delta: float
    n_thresholds: int
    epsilon_lower_bound: float
    max_certifiable_epsilon: float
    method: str = (
        "independent training runs (Jagielski et al., NeurIPS 2020; Nasr et al., S&P 2021)"
    )

    def testable(self, claimed_epsilon: float) -> bool:
        return claimed_epsilon <= self.max_certifiable_epsilon


# Long: over 60 lines only through its numpydoc docstring (parameters, returns, the method);
# the code itself is 40 lines.
def multi_run_audit(
    scores: np.ndarray,
    included: np.ndarray,
    thresholds: float | Sequence[float],
    *,
    alpha: float = 0.05,
    delta: float = 0.0,
) -> MultiRunAudit:
    """ε lower bound from N independent training runs, one guess each: IN iff score ≥ threshold.

    Parameters
    ----------
    scores : ndarray of shape (N,)
        The canary's attack score on each run's model (higher = included).
    included : ndarray of shape (N,)
        Whether run i trained with the canary (a coin flip per run, made before training).
    thresholds : float or sequence of float
        Fixed before these runs were scored (chosen on other runs). A sequence is a grid tried at
        the Bonferroni-corrected level alpha / len(thresholds).
    alpha : float
        Two-sided Clopper–Pearson level (α/2 per side), as in
        :func:`~miaudit.metrics.epsilon_lower_bound`.
    delta : float
        The claimed δ.

    Returns
    -------
    MultiRunAudit

    Examples
    --------
    >>> inc = np.arange(20) % 2 == 0  # 10 runs with, 10 without; a perfect attack
    >>> round(multi_run_audit(inc.astype(float), inc, 0.5).epsilon_lower_bound, 2)
    0.81
    """
    s, inc = _check_canaries(scores, included)
    grid = (
        [float(thresholds)]
        if isinstance(thresholds, (int, float, np.number))
        else [float(t) for t in thresholds]
    )
    if not grid:
        raise InputError("thresholds", "needs at least one threshold")
    if not all(math.isfinite(t) for t in grid):
        raise InputError("thresholds", "must be finite")
    if not 0 < alpha < 1:
        raise InputError("alpha", f"must be in (0, 1), got alpha={alpha}")
    n_in, n_out = int(inc.sum()), int((~inc).sum())
    if n_in == 0 or n_out == 0:
        raise InputError("included", "needs runs both with and without the canary")
    level = alpha / len(grid)
    best: MultiRunAudit | None = None
    for t in grid:
        guess = s >= t
        tp, fp = int((guess & inc).sum()), int((guess & ~inc).sum())
        lb = epsilon_lower_bound(tp, n_in - tp, fp, n_out - fp, alpha=level, delta=delta)
        audit = MultiRunAudit(
            n_runs=s.size,
            threshold=t,
            tp=tp,
            fn=n_in - tp,
            fp=fp,
            tn=n_out - fp,
            alpha=float(alpha),
            delta=float(delta),
            n_thresholds=len(grid),
            epsilon_lower_bound=lb,
            max_certifiable_epsilon=epsilon_lower_bound(
                n_in, 0, 0, n_out, alpha=level, delta=delta
            ),
        )
        if best is None or audit.epsilon_lower_bound > best.epsilon_lower_bound:
            best = audit
    assert best is not None
    return best
