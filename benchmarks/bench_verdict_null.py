"""How often the report's verdict calls membership detectable on models that leak nothing.

Null data: members' and non-members' scores from one distribution, for several attacks (their
scores correlated by ``rho``: independent attacks, and attacks that mostly agree). Each
dataset is evaluated as an audit is (record bootstrap, 200 replicates) and judged as the
report's verdict judges (``miaudit.report`` thresholds: "low" when an AUC lower bound is above
0.5 or a TPR at 1 % FPR lower bound above 1 %): with the family's simultaneous bounds
(``Evaluation.simultaneous_lower``, what the verdict reads) and, beside it, with each attack's
own 95 % bounds (what it read before). Nominal: 2.5 % (a one-sided 97.5 % bound).
"""

from __future__ import annotations

import math

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "On null data the verdict calls membership detectable for no more than the nominal 2.5 % of "
    "models plus its Monte-Carlo allowance (one-sided binomial test at 1 %, per setting), small "
    "classes included (with the permutation test); separate bounds and the family's bounds "
    "alone reported beside"
)

SIZES = {
    "full": {"trials": 1000, "n": 300, "attacks": 10, "resamples": 200, "allowance": 0.02},
    "small": {"trials": 60, "n": 150, "attacks": 6, "resamples": 200, "allowance": 0.05},
}
#: Small classes (members, non-members), independent attacks: the family's bounds alone, and
#: the verdict's rule with the permutation test of the largest AUC beside them (docs/method.md
#: §0). Trials per setting: full, small.
SMALL_CLASSES = ((300, 5), (300, 10), (300, 30), (30, 30), (50, 50))
SMALL_TRIALS = {"full": 400, "small": 20}
SETTINGS = (0.0, 0.8)  # correlation of the attacks' scores
NOMINAL = 0.025


def _flags(rng: np.random.Generator, n: int, attacks: int, rho: float, seed: int, b: int):
    from miaudit.metrics import evaluate

    y = np.r_[np.ones(n), np.zeros(n)].astype(np.int64)
    common = rng.normal(size=2 * n)
    scores = {
        f"attack{j}": math.sqrt(rho) * common + math.sqrt(1 - rho) * rng.normal(size=2 * n)
        for j in range(attacks)
    }
    ev = evaluate(y, scores, n_resamples=b, rng=seed)
    separate = False
    for name in scores:
        auc, tpr = ev.estimate(name, "auc"), ev.estimate(name, "tpr@1%fpr")
        separate |= auc.lower is not None and auc.lower > 0.5
        separate |= tpr.status == "ok" and tpr.lower is not None and tpr.lower > 0.01
    family = ev.simultaneous_lower(["auc", "tpr@1%fpr"]).values()
    together = any(f.get("auc", 0.0) > 0.5 or f.get("tpr@1%fpr", 0.0) > 0.01 for f in family)
    return separate, together


def _small_class_flags(
    rng: np.random.Generator, n1: int, n0: int, attacks: int, seed: int, b: int
) -> tuple[bool, bool]:
    """(flagged by the family's bounds alone, flagged by the verdict's rule: bounds and the
    permutation test) on one null dataset of ``n1`` members and ``n0`` non-members."""
    from miaudit.metrics import evaluate, max_auc_permutation_p

    y = np.r_[np.ones(n1), np.zeros(n0)].astype(np.int64)
    scores = {f"attack{j}": rng.normal(size=n1 + n0) for j in range(attacks)}
    ev = evaluate(y, scores, n_resamples=b, rng=seed)
    family = ev.simultaneous_lower(["auc", "tpr@1%fpr"]).values()
    bounds = any(f.get("auc", 0.0) > 0.5 or f.get("tpr@1%fpr", 0.0) > 0.01 for f in family)
    if not bounds:
        return False, False
    p = max_auc_permutation_p(y, scores, rng=np.random.default_rng([seed, 1]))
    return True, p <= NOMINAL


def _p_above(k: int, n: int, p: float) -> float:
    """One-sided binomial p-value of k or more in n at rate p."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def run(size: str) -> BenchResult:
    s = SIZES[size]
    trials, n, attacks, b = s["trials"], s["n"], s["attacks"], s["resamples"]
    rows, figures, passed = [], {}, True
    for rho in SETTINGS:
        rng = np.random.default_rng([20261207, int(rho * 10)])
        sep = tog = 0
        for t in range(int(trials)):
            a, f = _flags(rng, int(n), int(attacks), rho, t, int(b))
            sep, tog = sep + a, tog + f
        p_tog = _p_above(tog, int(trials), NOMINAL + float(s["allowance"]))
        ok = p_tog > 0.01
        passed &= ok
        figures[f"rho{rho:g}"] = {"separate": sep, "family": tog, "trials": trials, "p": p_tog}
        rows.append(
            f"| {rho:g} | {sep} / {trials} ({sep / trials:.1%}) | {tog} / {trials} ({tog / trials:.1%}) | {p_tog:.3f} |"
        )
    small_rows = []
    trials_small = SMALL_TRIALS[size]
    for n1, n0 in SMALL_CLASSES:
        rng = np.random.default_rng([20261207, n1, n0])
        alone = gated = 0
        for t in range(trials_small):
            a, g = _small_class_flags(rng, n1, n0, int(attacks), t, int(b))
            alone, gated = alone + a, gated + g
        p_gated = _p_above(gated, trials_small, NOMINAL + float(s["allowance"]))
        passed &= p_gated > 0.01
        figures[f"small{n1}_{n0}"] = {
            "bounds": alone,
            "verdict": gated,
            "trials": trials_small,
            "p": p_gated,
        }
        small_rows.append(
            f"| {n1} + {n0} | {alone} / {trials_small} ({alone / trials_small:.1%}) | {gated} / {trials_small} ({gated / trials_small:.1%}) | {p_gated:.3f} |"
        )
    table = "\n".join(
        [
            f"| attacks' correlation | detectable, separate 95 % bounds | detectable, the family's (the verdict) | p (family ≤ {NOMINAL:.1%} + {float(s['allowance']):.0%}) |",
            "|---|---|---|---|",
            *rows,
            "",
            f"| members + non-members ({attacks} independent attacks) | detectable, the family's bounds alone | detectable, the verdict (bounds and permutation test) | p (verdict ≤ {NOMINAL:.1%} + {float(s['allowance']):.0%}) |",
            "|---|---|---|---|",
            *small_rows,
        ]
    )
    return BenchResult(
        name="verdict_null",
        claim=CLAIM,
        figures={"attacks": attacks, "n_per_class": n, "resamples": b, **figures},
        table=table,
        passed=passed,
        notes=[
            f"{attacks} attacks, {n} members + {n} non-members per dataset, {b} bootstrap replicates; "
            "the allowance covers the critical value of a maximum estimated from 200 replicates "
            "(a tail quantile: 1,000 replicates bring it to nominal)",
        ],
    )
