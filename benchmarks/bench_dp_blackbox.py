"""Black-box DP-audit canaries (issue 19): out-of-distribution inputs with wrong labels against
today's mislabelled records, on the same seeds (paired).

Recipe: bench_dp_audit's (Purchase-like, 3,000 records, MLP 100-128-10, 30 epochs, batch 64),
correct DP-SGD claiming ε = 4 (δ = 1e-5). Design: 500 canaries of each kind, guesses from the
guess rule (the same for both: it sees only the claim), significance 0.05. Seeds 0–4 (small:
seed 0, 1,500 records, 10 epochs). Claim of the issue: the OOD median bound ≥ 2× today's.
OOD canaries here are drawn from the held-out records' column marginals, not chosen on
reference runs (the issue's suggestion; not built).
"""

from __future__ import annotations

import statistics

from benchmarks._schema import BenchResult

CLAIM = "black-box dp-audit: OOD canaries' median bound ≥ 2× mislabelled records' on the same seeds (correct DP-SGD, claim ε = 4)"


def run(size: str) -> BenchResult:
    from benchmarks.bench_dp_audit import _cfg
    from miaudit.audit import DpAuditDesign, dp_audit

    full = size == "full"
    n, epochs, seeds = (3000, 30, range(5)) if full else (1500, 10, range(1))
    rows = []
    for seed in seeds:
        row: dict = {"seed": seed}
        for kind in ("input", "ood"):
            r = dp_audit(
                _cfg({}, seed, n, epochs, 4.0),
                design=DpAuditDesign(canary_kind=kind, canaries=500),
            )
            row[kind] = round(r.empirical_epsilon_lower_bound, 4)
            row[f"{kind}_right"] = [r.v, r.r]
            row["k"] = [r.design.k_plus, r.design.k_minus]
            row["claim"] = round(r.claimed_epsilon, 4)
        rows.append(row)
        print(row, flush=True)
    med_in = statistics.median(r["input"] for r in rows)
    med_ood = statistics.median(r["ood"] for r in rows)
    diffs = [r["ood"] - r["input"] for r in rows]
    figures = {
        "rows": rows,
        "median_input": med_in,
        "median_ood": med_ood,
        "paired_differences": diffs,
        "ratio_of_medians": (med_ood / med_in) if med_in > 0 else None,
    }
    table = "\n".join(
        [
            "| seed | claim | mislabelled records (today) | OOD inputs | OOD − today |",
            "|---:|---:|---:|---:|---:|",
            *(
                f"| {r['seed']} | {r['claim']:.3f} | {r['input']:.3f} ({r['input_right'][0]}/{r['input_right'][1]}) | "
                f"{r['ood']:.3f} ({r['ood_right'][0]}/{r['ood_right'][1]}) | {r['ood'] - r['input']:+.3f} |"
                for r in rows
            ),
            f"| median | | {med_in:.3f} | {med_ood:.3f} | |",
        ]
    )
    passed = med_ood >= 2 * med_in and med_ood > 0
    return BenchResult(
        name="dp_blackbox",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=passed,
        notes=[
            f"{n} records, {epochs} epochs; 500 canaries per kind; guesses by the guess rule; ties broken at random.",
            "A median of 0 for today's canaries makes the ratio undefined: the paired differences are the comparison then.",
        ],
    )
