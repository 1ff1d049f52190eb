"""Multi-run mode of dp-audit (issue 19): R runs of a small DP-SGD recipe with one Dirac
gradient canary each, Clopper–Pearson over runs, against the ideal for the same count.

Recipe: Purchase-like, 20 features, 4 classes, 1,000 records (800 trained on, 200 held out);
MLP 20-16-4 (404 coordinates), 10 epochs, batch 50 (q = 1/16, 160 steps), Adam 3e-3; DP-SGD
claiming ε = 4, δ = 1e-5 (σ found and ε recorded by Opacus's PRV accountant). Full: R = 1,000
runs, seeds 0–2; small: R = 100, 3 epochs, seed 0. The ideal: the Clopper–Pearson bound of an ideal
attacker (likelihood-ratio scores of the claimed mechanism, the same threshold rule) with R
runs at the claim, median of 21 seeded simulations. Wall time with the machine's load beside.
"""

from __future__ import annotations

import os
import time
from typing import Any

from benchmarks._schema import BenchResult

CLAIM = "multi-run, 1,000 runs of a small recipe at claimed ε = 4: median bound over the seeds ≥ 80 % of the ideal for that count (a single run scatters widely), in ≤ 30 min"


def _cfg(seed: int, epochs: int, fault: str = "none") -> Any:
    from miaudit.audit import parse_audit_config

    dp: dict[str, Any] = {"epsilon": 4.0, "delta": 1e-5}
    if fault != "none":
        dp["fault"] = fault
    return parse_audit_config(
        {
            "data": {
                "dataset": "purchase",
                "purchase": {"n_records": 1000, "n_features": 20, "n_classes": 4, "flip_rate": 0.1},
            },
            "model": {
                "kind": "torch-mlp",
                "hidden": [16],
                "epochs": epochs,
                "batch_size": 50,
                "lr": 0.003,
                "dp": dp,
            },
            "seed": seed,
            "engine": {"threads": 1, "progress": False},
        }
    )


def _load() -> str:
    try:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())
    except OSError:
        return "unknown"


def _one(seed: int, runs: int, epochs: int) -> dict[str, Any]:
    from miaudit.audit import DpAuditDesign, dp_audit

    load_before = _load()
    t0 = time.perf_counter()
    r = dp_audit(_cfg(seed, epochs), design=DpAuditDesign(runs=runs, multi_run=True))
    wall = time.perf_counter() - t0
    mr = r.multi_run
    assert mr is not None
    share = r.empirical_epsilon_lower_bound / mr.ideal_bound if mr.ideal_bound > 0 else None
    row = {
        "seed": seed,
        "claim": round(r.claimed_epsilon, 4),
        "bound": round(r.empirical_epsilon_lower_bound, 4),
        "p_value": r.p_value,
        "verdict": r.verdict,
        "ceiling": round(mr.ceiling, 4),
        "ideal_bound": round(mr.ideal_bound, 4),
        "ideal_range": [round(mr.ideal_bound_low, 4), round(mr.ideal_bound_high, 4)],
        "share_of_ideal": None if share is None else round(share, 3),
        "counts": {
            "in": mr.runs_in,
            "tp": mr.true_positives,
            "out": mr.runs_out,
            "fp": mr.false_positives,
        },
        "threshold_fpr": mr.planned_false_positive_rate,
        "training_seconds": mr.seconds,
        "wall_seconds": round(wall, 1),
        "load_before": load_before,
        "load_after": _load(),
    }
    print(row, flush=True)
    return row


def run(size: str) -> BenchResult:
    import statistics

    full = size == "full"
    runs, epochs, seeds = (1000, 10, range(3)) if full else (100, 3, range(1))
    rows = [_one(seed, runs, epochs) for seed in seeds]
    shares = [r["share_of_ideal"] or 0.0 for r in rows]
    figures: dict[str, Any] = {
        "runs": runs,
        "rows": rows,
        "median_share_of_ideal": statistics.median(shares),
        "max_wall_seconds": max(r["wall_seconds"] for r in rows),
    }
    checks = {
        "median bound over seeds ≥ 80 % of the ideal": figures["median_share_of_ideal"] >= 0.8,
        "each seed ≤ 30 min (wall, this machine's load)": figures["max_wall_seconds"] <= 1800,
        "correct recipe FAILED on no seed": all(r["verdict"] != "FAILED" for r in rows),
    }
    figures["checks"] = checks
    table = "\n".join(
        [
            "| seed | runs | claim | bound | ideal (range) | share | ceiling | TP/in, FP/out | wall s (load before → after) |",
            "|---:|---:|---:|---:|---|---:|---:|---|---|",
            *(
                f"| {r['seed']} | {runs} | {r['claim']:.3f} | {r['bound']:.3f} | {r['ideal_bound']:.3f} "
                f"({r['ideal_range'][0]:.3f}–{r['ideal_range'][1]:.3f}) | "
                f"{'—' if r['share_of_ideal'] is None else format(r['share_of_ideal'], '.0%')} | {r['ceiling']:.3f} | "
                f"{r['counts']['tp']}/{r['counts']['in']}, {r['counts']['fp']}/{r['counts']['out']} | "
                f"{r['wall_seconds']:.0f} ({r['load_before']} → {r['load_after']}) |"
                for r in rows
            ),
            "",
            "| check | holds |",
            "|---|---|",
            *(f"| {k} | {'yes' if ok else 'NO'} |" for k, ok in checks.items()),
        ]
    )
    return BenchResult(
        name="dp_multirun",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=all(checks.values()),
        notes=[
            f"1,000 Purchase-like records (800 trained on), MLP 20-16-4, {epochs} epochs, batch 50, Adam 3e-3; "
            f"runs trained 100 at a time with torch.func per-sample gradients; one torch thread; seeds {list(seeds)}.",
            "Ideal: median of 21 simulations of R ideal runs under the claimed mechanism at the same threshold; "
            "a single audit's bound scatters across the ideal's range, so the check is on the median over seeds.",
            "Timing on a shared 2-core machine: load averages (1, 5, 15 min) before → after are beside each seed.",
        ],
    )
