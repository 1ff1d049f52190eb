"""How often the verdict calls membership detectable in reference audits of models that leak
nothing, at small pools (the audit runs no permutation test there; the pool minimum is 60).

Null stores: K models in complementary pairs (each pool record in one model of each pair), 20 %
population records, two-class logits drawn independently of membership, plus a per-record
offset shared by every model (records differ in difficulty, as real ones do, so that the
models' scores on a record are correlated). Each store is audited by ``attack_store`` (loss,
LiRA online/offline, RMIA online/offline; 200 bootstrap replicates; every model in turn the
target, or model 0 alone) and judged by the report's verdict (``miaudit.report.assess_risk``):
detected at any level above "not detected", or "not assessed". Nominal: 2.5 % detected (one-sided);
"not assessed" on null data comes mostly from the inverted-input check, itself a test at 2.5 %.

The claim, fixed before the full run: in every setting the detected rate is not above 2.5 % by
a one-sided binomial test at 1 %.
"""

from __future__ import annotations

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "Reference audits of null models at small pools (80 to 800 pool records, K = 4 or 8, every "
    "model or one the target): the verdict calls membership detectable for no more than the "
    "nominal 2.5 % (one-sided binomial test at 1 %, per setting)"
)

#: (models K, records n (80 % pool), targets: "all" leave-one-model-out or "one").
SETTINGS = ((8, 100, "all"), (8, 300, "all"), (8, 1000, "all"), (4, 100, "all"), (8, 100, "one"))
SIZES = {"full": {"trials": 400}, "small": {"trials": 15}}
NOMINAL = 0.025
ATTACKS = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline"]


def _store(rng: np.random.Generator, k: int, n: int):
    from miaudit.data import SignalsStore

    half = rng.random((k // 2, n)) < 0.5
    keep = np.empty((k, n), dtype=bool)
    keep[0::2], keep[1::2] = half, ~half
    population = np.zeros(n, dtype=bool)
    population[: n // 5] = True
    keep[:, population] = False
    logits = rng.normal(size=(k, n, 2)) + rng.normal(size=(1, n, 2))  # shared record offset
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32),
        label=rng.integers(0, 2, n),
        keep=keep,
        population=population,
    )


def _p_above(k: int, n: int, p: float) -> float:
    """P(X ≥ k) for X ~ Binomial(n, p)."""
    from scipy.stats import binom

    return float(binom.sf(k - 1, n, p))


def run(size: str) -> BenchResult:
    from miaudit.audit import SignalsAuditConfig, attack_store
    from miaudit.report import assess_risk

    trials = int(SIZES[size]["trials"])
    rows, figures, passed = [], {}, True
    for k, n, targets in SETTINGS:
        detected = unjudged = 0
        for t in range(trials):
            rng = np.random.default_rng([20261207, k, n, t])
            cfg = SignalsAuditConfig.model_validate(
                {"seed": t, "audit": {"attacks": ATTACKS, "resamples": 200}}
            )
            result = attack_store(
                _store(rng, k, n), cfg, target=0 if targets == "one" else None
            ).result
            level = assess_risk(result).level
            unjudged += level == "not assessed"
            detected += level not in ("not assessed", "not detected")
        p = _p_above(detected, trials, NOMINAL)
        passed &= p > 0.01
        key = f"k{k}_n{n}_{targets}"
        figures[key] = {"detected": detected, "not_assessed": unjudged, "trials": trials, "p": p}
        rows.append(
            f"| {k} | {int(n * 0.8)} | {'every model' if targets == 'all' else 'model 0'} | "
            f"{detected} / {trials} ({detected / trials:.1%}) | {unjudged} / {trials} ({unjudged / trials:.1%}) | {p:.3f} |"
        )
    table = "\n".join(
        [
            "| models K | pool records | targets | detected | not assessed | p (≤ 2.5 %) |",
            "|---:|---:|---|---|---|---|",
            *rows,
        ]
    )
    return BenchResult(
        name="reference_null",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=passed,
        notes=[
            f"{trials} null stores per setting; attacks {', '.join(ATTACKS)}; 200 bootstrap "
            "replicates; complementary pairs, references every other model but the target's "
            "partner; logits N(0, 1) plus a per-record N(0, 1) offset shared by all models.",
        ],
    )
