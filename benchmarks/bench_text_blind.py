"""The blind baseline's calibration: at chance on miaudit's own splits, and it flags a shifted one.

The blind baseline (``miaudit.attacks.blind_baseline``: a character n-gram ridge classifier on
the texts alone, 5-fold cross-fitted, its interval from a permutation test; docs/method.md
§13.3) is printed beside every text audit, and when its AUC interval excludes 0.5 the results
say the split is shifted. That
warning is only worth printing if (a) on a fair split it fires at its nominal rate and (b) on a
shifted split it fires. This benchmark measures both, with no language model at all:

- **Fair splits.** For each seed s, ``pool`` synthetic personal records (``synthetic_records``,
  the four template families mixed, seed s) are split into members and non-members the way
  ``miaudit exposure`` draws the target's members (a uniformly random half,
  ``default_rng([s, 29])``). The blind baseline's AUC and its 95 % interval are computed exactly
  as the text audit does (199 within-fold permutations; the interval by test inversion). The
  first version's interval, a percentile bootstrap over records, excluded 0.5 on 41 of 200 fair
  seeds (20.5 % [15.1 %, 26.8 %]): a cross-fitted AUC varies more than resampling records shows. The share of seeds whose interval excludes 0.5 is
  compared with the nominal 5 % through its exact (Clopper–Pearson) 95 % interval.
- **Shifted splits.** For each of the first ``shifted_seeds`` seeds, members are clinical notes
  and non-members discharge summaries (two clinical families, the least different pair of the
  four), the same pool size; the interval must exclude 0.5 on every seed.

Pass: the exclusion share's Clopper–Pearson interval contains 5 % (neither detectably more nor
detectably fewer false alarms than nominal), and every shifted seed is flagged.
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "the blind baseline's 95 % AUC interval excludes chance on 5 % of ≥ 100 fair random splits "
    "(Clopper–Pearson interval of the share contains 5 %) and excludes it on every shifted split "
    "(members and non-members from different template families)"
)
NOMINAL = 0.05
SHIFT = ("clinical_note", "discharge_summary")  # members, non-members


def sizes(size: str) -> dict[str, int]:
    if size == "full":
        return {"seeds": 200, "shifted_seeds": 20, "pool": 500}
    return {"seeds": 12, "shifted_seeds": 4, "pool": 200}


def fair_split(seed: int, pool: int) -> tuple[list[str], np.ndarray]:
    """Seed ``seed``'s texts (all families mixed) and membership (a random half)."""
    from miaudit.data import synthetic_records

    texts = list(synthetic_records(pool, seed=seed).texts)
    member = np.zeros(pool, dtype=np.int8)
    member[np.random.default_rng([seed, 29]).permutation(pool)[: pool // 2]] = 1
    return texts, member


def shifted_split(seed: int, pool: int) -> tuple[list[str], np.ndarray]:
    """Members from one template family, non-members from another (seeds apart)."""
    from miaudit.data import synthetic_records

    half = pool // 2
    members = synthetic_records(half, seed=seed, families=[SHIFT[0]]).texts
    others = synthetic_records(pool - half, seed=seed + 1_000_003, families=[SHIFT[1]]).texts
    member = np.r_[np.ones(half), np.zeros(pool - half)].astype(np.int8)
    return [*members, *others], member


def blind_auc(texts: list[str], member: np.ndarray, seed: int) -> tuple[float, float, float]:
    """(AUC, lower, upper) of the blind baseline, as the text audit computes them."""
    from miaudit.attacks import blind_baseline

    b = blind_baseline(texts, member, seed=np.random.SeedSequence(seed))
    return b.auc, b.lower, b.upper


def run(size: str) -> BenchResult:
    from miaudit.metrics import clopper_pearson

    n = sizes(size)
    t0 = time.perf_counter()
    fair = [blind_auc(*fair_split(s, n["pool"]), seed=s) for s in range(n["seeds"])]
    fair_s = time.perf_counter() - t0
    shifted = [blind_auc(*shifted_split(s, n["pool"]), seed=s) for s in range(n["shifted_seeds"])]
    excluded = [lo > 0.5 or hi < 0.5 for _, lo, hi in fair]
    above = sum(lo > 0.5 for _, lo, _ in fair)
    k, m = int(sum(excluded)), len(fair)
    lo, hi = (float(v) for v in clopper_pearson(k, m, 0.05))
    flagged = sum(lo_s > 0.5 for _, lo_s, _ in shifted)
    aucs = np.array([a for a, _, _ in fair])
    passed = bool(lo <= NOMINAL <= hi and flagged == len(shifted))
    table = "\n".join(
        [
            "| split | seeds | blind AUC (mean; min–max) | interval excludes 0.5 |",
            "| --- | ---: | --- | --- |",
            f"| fair (random half, families mixed) | {m} | {aucs.mean():.3f}; "
            f"{aucs.min():.3f}–{aucs.max():.3f} | {k}/{m} = {k / m:.1%} "
            f"[{lo:.1%}, {hi:.1%}] (nominal 5 %; {above} above, {k - above} below) |",
            f"| shifted ({SHIFT[0]} vs {SHIFT[1]}) | {len(shifted)} | "
            f"{np.mean([a for a, _, _ in shifted]):.3f}; {min(a for a, _, _ in shifted):.3f}–"
            f"{max(a for a, _, _ in shifted):.3f} | {flagged}/{len(shifted)} flagged |",
        ]
    )
    figures: dict[str, Any] = {
        **n,
        "fair_excluded": k,
        "fair_excluded_share": k / m,
        "fair_excluded_share_interval": [lo, hi],
        "fair_excluded_above": int(above),
        "fair_auc_mean": float(aucs.mean()),
        "fair_auc_sd": float(aucs.std(ddof=1)) if m > 1 else 0.0,
        "fair_mean_interval_width": float(np.mean([hi_ - lo_ for _, lo_, hi_ in fair])),
        "shifted_flagged": int(flagged),
        "shifted_auc_min": float(min(a for a, _, _ in shifted)),
        "fair_seconds_per_seed": fair_s / m,
        "fair": [list(t) for t in fair],
        "shifted": [list(t) for t in shifted],
    }
    return BenchResult(
        name="text_blind",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=passed,
        notes=[
            f"size {size}: {m} fair seeds and {len(shifted)} shifted, {n['pool']} records each "
            f"(half members); intervals: the blind baseline's permutation test (199 "
            "within-fold permutations, 95 % by test inversion); the share's interval is Clopper–Pearson, 95 %",
        ],
    )
