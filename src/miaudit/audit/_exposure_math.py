"""Exposure of a secret (Carlini et al. 2019, "The Secret Sharer"), from log-likelihoods.

A canary's secret s is one candidate of a space R (every n-digit string). Its rank is its place
when R is sorted by the model's likelihood, most likely first; exposure is
``log2 |R| − log2 rank``: 0 for the least likely candidate, log2 |R| when the model ranks the
secret first. With every candidate's log-likelihood (exact enumeration) the rank is counted;
otherwise the paper's estimate fits a skew-normal distribution to the log-perplexities of
candidates drawn at random and reads exposure off its CDF (docs/method.md, "Secrets and
exposure").
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
