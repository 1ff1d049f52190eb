"""Issue 4's null audit over 100 seeds: a target trained outside the pool looks like chance.

Each seed trains k = 2 complementary reference pairs on a pool of digits records and a target
on records outside the pool, calls a random half of the pool its members, and attacks it. An
honest attack's 95 % AUC interval then contains 0.5 in about 95 of 100 seeds; the claim asks
≥ 90 for every attack (a binomial(100, 0.95) falls below 90 with probability ≈ 2 %).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = "null audit (target trained outside the pool): every attack's 95 % AUC interval contains 0.5 in ≥ 90 of 100 seeds"
#: Percentile intervals from 200 replicates cover ~1 point less than from 1000 (their quantiles are
#: noisy; measured on tied scores: 93.3 % vs 94.3 % over 300 null datasets); cheap at this size.
REPLICATES = 1000
ATTACKS = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline", "shadow", "ml_leaks"]


def run(size: str) -> BenchResult:
    from miaudit.audit import parse_audit_config
    from miaudit.audit._power import null_audit

    seeds = 100 if size == "full" else 5
    cfg = parse_audit_config({
        "seed": 20261128, "data": {"dataset": "digits"},
        "model": {"kind": "torch-mlp", "hidden": [128], "epochs": 30, "batch_size": 32},
        "plan": {"pool_fraction": 0.7}, "engine": {"workers": 0, "progress": False},
        "audit": {"references": 2, "attacks": ATTACKS},
    })
    covered = {a: 0 for a in ATTACKS}
    mean_auc = {a: 0.0 for a in ATTACKS}
    for seed in range(seeds):
        with tempfile.TemporaryDirectory(prefix="miaudit-null-") as tmp:
            res = null_audit(cfg, Path(tmp), seed=seed, bonferroni=False, n_resamples=REPLICATES)
        for a, ok in res.covers_chance().items():
            covered[a] += ok
            mean_auc[a] += (res.auc[a].point or 0.0) / seeds
    passed = all(c >= 90 for c in covered.values()) if size == "full" else None
    table = "\n".join([
        "| attack | seeds whose 95 % interval contains 0.5 | mean AUC |",
        "|---|---:|---:|",
        *(f"| {a} | {covered[a]} / {seeds} | {mean_auc[a]:.3f} |" for a in ATTACKS),
    ])
    return BenchResult(name="null_audit", claim=CLAIM, figures={"seeds": seeds, "covered": covered, "mean_auc": mean_auc}, table=table, passed=passed,
                       notes=[f"digits, MLP 128, 30 epochs; k = 2 reference pairs; target trained on 25 % of the records outside the pool; {REPLICATES} bootstrap replicates per interval."])
