"""Exposure of a secret (Carlini et al. 2019, "The Secret Sharer"), from log-likelihoods.

A canary's secret s is one candidate of a space R (every n-digit string). Its rank is its place
when R is sorted by the model's likelihood, most likely first; exposure is
``log2 |R| − log2 rank``: 0 for the least likely candidate, log2 |R| when the model ranks the
secret first. With every candidate's log-likelihood (exact enumeration) the rank is counted;
otherwise the paper's estimate fits a skew-normal distribution to the log-perplexities of
candidates drawn at random and reads exposure off its CDF (docs/method.md, "Secrets and
exposure"). The fit is an extrapolation into the tail, where a memorised secret lies: on
miaudit's LM it under-stated every memorised canary by 0.4–2.8 bits against the exact rank (a
red team, 10 canaries over two seeds). :func:`sampled_exposure_bound` reads a bound off the
same draws that rests on no model of their distribution.
"""

from __future__ import annotations

import math

import numpy as np


def exact_rank(candidate_ll: np.ndarray, secret: int, exclude: np.ndarray | None = None) -> int:
    """The paper's rank: the number of candidates at least as likely as ``secret`` (an index
    into ``candidate_ll``), the secret included, so 1 when it is the most likely. Candidates in
    ``exclude`` (the other inserted canaries' secrets, which compete with it only because
    miaudit inserts several at once) are left out. Ties count against the secret."""
    ll = np.asarray(candidate_ll, dtype=np.float64)
    at_least = ll >= ll[secret]
    if exclude is not None and len(exclude):
        others = np.asarray(exclude, dtype=np.int64)
        at_least[others[others != secret]] = False
    return int(np.count_nonzero(at_least))


def exact_exposure(space: int, rank: int) -> float:
    """``log2 space − log2 rank`` (bits)."""
    if not 1 <= rank <= space:
        raise ValueError(f"rank must lie in [1, {space}], got {rank}")
    return math.log2(space) - math.log2(rank)


def skewnorm_exposure(sample_ll: np.ndarray, secret_ll: float, space: int) -> float:
    """The paper's distribution-fit estimate (§4.3): ``−log2 F(−ll(s))``, F the CDF of a
    skew-normal fitted to the log-perplexities ``−ll`` of candidates drawn uniformly from the
    space; capped at ``log2 space`` (a rank below 1 is not possible)."""
    from scipy import stats

    perplexity = -np.asarray(sample_ll, dtype=np.float64)
    if perplexity.size < 10:
        raise ValueError("the skew-normal fit needs at least 10 sampled candidates")
    a, loc, scale = stats.skewnorm.fit(perplexity)
    log_cdf = float(stats.skewnorm.logcdf(-secret_ll, a, loc, scale))
    bits = -log_cdf / math.log(2.0)
    return float(min(max(bits, 0.0), math.log2(space)))


#: Confidence of :func:`sampled_exposure_bound`.
BOUND_CONFIDENCE = 0.95


def sampled_exposure_bound(
    sample_ll: np.ndarray, secret_ll: float, space: int, confidence: float = BOUND_CONFIDENCE
) -> tuple[float, int]:
    """(bits, k): a lower confidence bound on the exact exposure from ``m`` candidates drawn
    uniformly (with replacement) from the space, ``k`` of them at least as likely as the secret.

    The secret's rank r among the ``space`` candidates makes q = r / space the chance that one
    draw is at least as likely as it (ties against the secret, as :func:`exact_rank` counts
    them), so k ~ Binomial(m, q), and the exact exposure is −log2 q. With q_U the one-sided
    Clopper–Pearson upper limit for q at ``confidence``, P(q ≤ q_U) ≥ ``confidence`` whatever
    the log-likelihoods' distribution, so −log2 q_U is a lower bound on the exposure with that
    confidence (over the draws). It is capped by the sample, not the model: k = 0 gives
    log2(1 / (1 − (1 − confidence)^{1/m})), about log2(m / 3) bits at 95 % (10.4 at m = 4,000),
    and by ``log2 space``."""
    from scipy import stats

    ll = np.asarray(sample_ll, dtype=np.float64)
    m = int(ll.size)
    if m < 1:  # no draw: no information, the trivial bound
        return 0.0, 0
    k = int(np.count_nonzero(ll >= secret_ll))
    upper = 1.0 if k >= m else float(stats.beta.ppf(confidence, k + 1, m - k))
    bits = -math.log2(upper) if upper > 0 else math.inf
    return float(min(max(bits, 0.0), math.log2(space))), k
