"""Issue 4's null audit: a target trained outside the pool looks like chance.

Each seed trains k = 2 complementary reference pairs on a pool of digits records and a target
on records outside the pool, calls a random half of the pool its members, and attacks it. An
honest attack's 95 % AUC interval then contains 0.5 in about 95 % of seeds. The issue asks
≥ 90 of 100 seeds for every attack; a binomial(100, 0.95) still falls below 90 with probability
≈ 1.2 % per attack (≈ 8 % for at least one of seven independent attacks), so the full run uses
1,000 seeds: the claim is every attack's coverage ≥ 90 % over all of them, reported with a
Wilson interval, and the 100-seed criterion is also applied to each of the ten blocks of 100
seeds (seeds 0–99 first, the block the issue describes).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = (
    "null audit (target trained outside the pool): every attack's 95 % AUC interval contains 0.5 in ≥ 90 % of seeds "
    "(1,000 seeds; the issue's ≥ 90 of 100 also reported per block of 100)"
)
#: Percentile intervals from 200 replicates cover ~1 point less than from 1000 (their quantiles are
#: noisy; measured on tied scores: 93.3 % vs 94.3 % over 300 null datasets); cheap at this size.
REPLICATES = 1000
ATTACKS = [
    "loss",
    "lira_online",
    "lira_offline",
    "rmia_online",
    "rmia_offline",
    "shadow",
    "ml_leaks",
]
BLOCK = 100


def _config():
    from miaudit.audit import parse_audit_config

    return parse_audit_config(
        {
            "seed": 20261128,
            "data": {"dataset": "digits"},
            "model": {"kind": "torch-mlp", "hidden": [128], "epochs": 30, "batch_size": 32},
            "plan": {"pool_fraction": 0.7},
            "engine": {"workers": 0, "progress": False},
            "audit": {"references": 2, "attacks": ATTACKS},
        }
    )


def _one_seed(seed: int) -> tuple[int, dict[str, bool], dict[str, float]]:
    """(seed, does each attack's interval contain 0.5, each attack's AUC) for one null audit."""
    import torch

    from miaudit.audit._power import null_audit

    torch.set_num_threads(1)  # one thread per worker process (PERFORMANCE.md)
    with tempfile.TemporaryDirectory(prefix="miaudit-null-") as tmp:
        res = null_audit(_config(), Path(tmp), seed=seed, bonferroni=False, n_resamples=REPLICATES)
    return seed, res.covers_chance(), {a: float(res.auc[a].point or 0.0) for a in ATTACKS}


def run(size: str) -> BenchResult:
    from scipy.stats import binomtest

    seeds = 1000 if size == "full" else 4
    workers = max(1, min(os.cpu_count() or 1, 4))
    with mp.get_context("spawn").Pool(workers) as pool:
        rows = sorted(pool.map(_one_seed, range(seeds), chunksize=1))
    covered = {a: sum(r[1][a] for r in rows) for a in ATTACKS}
    mean_auc = {a: sum(r[2][a] for r in rows) / seeds for a in ATTACKS}
    blocks = [rows[lo : lo + BLOCK] for lo in range(0, seeds, BLOCK)]
    per_block = {a: [sum(r[1][a] for r in b) for b in blocks] for a in ATTACKS}
    wilson = {}
    for a in ATTACKS:
        ci = binomtest(covered[a], seeds).proportion_ci(confidence_level=0.95, method="wilson")
        wilson[a] = [round(ci.low, 4), round(ci.high, 4)]
    passed = all(c >= 0.9 * seeds for c in covered.values()) if size == "full" else None
    full_blocks = len(blocks) if seeds % BLOCK == 0 else 0
    table = "\n".join(
        [
            f"| attack | seeds whose 95 % interval contains 0.5 | coverage [Wilson 95 %] | mean AUC | seeds 0–99 | blocks of {BLOCK} with ≥ 90 |",
            "|---|---:|---:|---:|---:|---:|",
            *(
                f"| {a} | {covered[a]} / {seeds} | {covered[a] / seeds:.3f} [{wilson[a][0]:.3f}, {wilson[a][1]:.3f}] | {mean_auc[a]:.3f} | "
                f"{per_block[a][0] if full_blocks else '—'} | {sum(c >= 90 for c in per_block[a]) if full_blocks else '—'} / {full_blocks or '—'} |"
                for a in ATTACKS
            ),
        ]
    )
    return BenchResult(
        name="null_audit",
        claim=CLAIM,
        figures={
            "seeds": seeds,
            "covered": covered,
            "coverage_wilson95": wilson,
            "mean_auc": mean_auc,
            "covered_per_block_of_100": per_block,
        },
        table=table,
        passed=passed,
        notes=[
            f"digits, MLP 128, 30 epochs; k = 2 reference pairs; target trained on 25 % of the records outside the pool; {REPLICATES} bootstrap replicates per interval; "
            f"{workers} worker processes × 1 thread, seeds independent of the worker that ran them.",
            "The interval itself was checked on exact-null data of this size (n1 = n0 = 472, 2,000–2,400 datasets per case, continuous and heavily tied "
            "scores, and real ML-Leaks / shadow / loss scores with permuted labels): coverage 0.940–0.955, bootstrap SD within 0.2 % of the exact permutation SD.",
        ],
    )
