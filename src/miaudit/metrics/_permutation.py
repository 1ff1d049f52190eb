"""A permutation test of "the scores carry no membership", exact at any sample size."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from miaudit.errors import InputError

#: Relabellings of the permutation test: its p-value resolves 1/1,000, and its Monte Carlo error
#: at a true p of 2.5 % is 0.5 points.
PERMUTATIONS = 999
#: Relabellings scored at once: (chunk, records) floats in memory.
_CHUNK = 64


def max_auc_permutation_p(
    y: np.ndarray,
    scores: Mapping[str, np.ndarray],
    *,
    n_permutations: int = PERMUTATIONS,
    rng: np.random.Generator,
) -> float:
    """One-sided p-value of the null hypothesis that members and non-members are exchangeable
    under every attack's scores (nothing leaks), for the largest AUC over the attacks: the share
    of random relabellings with the same numbers of members whose largest AUC reaches the
    observed one, (1 + k) / (1 + ``n_permutations``) (Phipson & Smyth 2010: never 0).

    The family's bootstrap bounds are too narrow with few records of a class (10 attacks on
    null data called membership detectable for 36.0 % of models with 300 members and 5
    non-members, 14.5 % with 10, 4.5 % with 50 of each: ``verdict_null``); this test holds its
    level at any size, ties included (AUC from
    average ranks, the tie structure kept by every relabelling). The statistic is the largest
    rank sum of members, which orders relabellings as the largest AUC does: every attack is
    scored on the same records.

    Examples
    --------
    >>> y = np.r_[np.ones(20), np.zeros(20)].astype(int)
    >>> s = {"a": np.r_[np.arange(20.0) + 20, np.arange(20.0)]}  # members all on top
    >>> max_auc_permutation_p(y, s, rng=np.random.default_rng(0))
    0.001
    """
    from scipy.stats import rankdata

    member = np.asarray(y).astype(bool)
    for name, v in scores.items():  # a NaN rank read as no relabelling reaching it
        if np.isnan(np.asarray(v, dtype=np.float64)).any():
            raise InputError(name, "scores contain NaN")
    n, n1 = member.size, int(member.sum())
    if not scores or n1 == 0 or n1 == n:
        return 1.0
    ranks = np.column_stack([rankdata(np.asarray(v, dtype=np.float64)) for v in scores.values()])
    # Ranks sum to n(n + 1)/2 under every attack, so the members' largest rank sum is that less
    # the non-members' smallest: draw the smaller class (a relabelling costs its size).
    small, sign = (member, 1.0) if n1 <= n - n1 else (~member, -1.0)
    size = int(small.sum())
    observed = float((sign * ranks[small].sum(axis=0)).max())
    reach = 0
    left = n_permutations
    while left > 0:
        k = min(_CHUNK, left)
        # each relabelling draws the smaller class alone, in O(its size) (Floyd-like sampling
        # without replacement): drawing a key per record cost O(n) each, 11 s and 0.8 GB at
        # 5,000 + 400,000 records (red team)
        picked = np.stack([rng.choice(n, size, replace=False, shuffle=False) for _ in range(k)])
        sums = sign * ranks[picked].sum(axis=1)  # (k, attacks)
        # rank sums are sums of halves: a tolerance far below their resolution
        reach += int((sums.max(axis=1) >= observed - 1e-6).sum())
        left -= k
    return (1 + reach) / (1 + n_permutations)


# Long: one loop over relabellings, each group drawn alone; the max-T counting in three lines.
def group_auc_permutation_p(
    y: np.ndarray,
    score: np.ndarray,
    groups: Sequence[np.ndarray],
    *,
    n_permutations: int = PERMUTATIONS,
    rng: np.random.Generator,
) -> np.ndarray:
    """One-sided p-values, adjusted over ``groups``, that each group's AUC lies above chance:
    Westfall & Young's single-step max-T over the groups' standardised rank sums, the records
    relabelled within each group (its numbers of members kept).

    ``groups`` are disjoint index arrays into ``y`` and ``score`` (the values of one column).
    Group g's p-value is the share of relabellings, (1 + k) / (1 + ``n_permutations``), whose
    largest standardised rank sum over all groups reaches g's observed one: every group's
    p-value holds at once, family-wise, at any group size and with ties (average ranks within
    the group, the permutation variance of their sum). A group of one class, or whose scores
    all tie, cannot lie above chance: p = 1.

    Examples
    --------
    >>> y = np.r_[np.ones(20), np.zeros(20), np.ones(20), np.zeros(20)].astype(int)
    >>> s = np.r_[np.arange(20.0) + 20, np.arange(20.0), np.zeros(40)]  # group 0 leaks
    >>> p = group_auc_permutation_p(
    ...     y, s, [np.arange(40), np.arange(40, 80)], rng=np.random.default_rng(0)
    ... )
    >>> p.tolist()
    [0.001, 1.0]
    """
    from scipy.stats import rankdata

    y, score = np.asarray(y).astype(bool), np.asarray(score, dtype=np.float64)
    if np.isnan(score).any():  # one group's NaN made every other group's p the smallest (red team)
        raise InputError("scores", "contain NaN")
    # per group: (ranks, size drawn, sign, base, mean, sd, observed z); None: cannot lie above
    parts: list[tuple[np.ndarray, int, float, float, float, float, float] | None] = []
    for idx in groups:
        m, r = y[idx], rankdata(score[idx])
        n, n1 = m.size, int(m.sum())
        var = n1 * (n - n1) / (n * (n - 1)) * float(((r - (n + 1) / 2) ** 2).sum()) if n > 1 else 0
        if n1 == 0 or n1 == n or var <= 0:
            parts.append(None)
            continue
        small, sign = (m, 1.0) if n1 <= n - n1 else (~m, -1.0)
        # the members' rank sum is the total less the non-members': draw the smaller class
        base = 0.0 if sign > 0 else float(r.sum())
        mean, sd = n1 * (n + 1) / 2, math.sqrt(var)
        observed = (base + sign * float(r[small].sum()) - mean) / sd
        parts.append((r, int(small.sum()), sign, base, mean, sd, observed))
    observed = np.array([-math.inf if p is None else p[6] for p in parts])
    live = [p for p in parts if p is not None]
    if not live:
        return np.ones(len(parts))
    reach = np.zeros(len(parts), dtype=np.int64)
    left = n_permutations
    while left > 0:
        k = min(_CHUNK, left)
        z = np.empty((k, len(live)))
        for j, (r, size, sign, base, mean, sd, _) in enumerate(live):
            picked = np.stack(
                [rng.choice(r.size, size, replace=False, shuffle=False) for _ in range(k)]
            )
            z[:, j] = (base + sign * r[picked].sum(axis=1) - mean) / sd
        top = z.max(axis=1)  # (k,)
        reach += (top[:, None] >= observed[None, :] - 1e-9).sum(axis=0)
        left -= k
    p = (1 + reach) / (1 + n_permutations)
    return np.where(np.isfinite(observed), p, 1.0)
