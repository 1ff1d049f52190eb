"""A clipping bug (fault injection "no_clipping") against black-box DP-audit canaries at their
default design (issue 19): gradient canaries are added already clipped and cannot see it.

Recipe: bench_dp_audit's (Purchase-like, 3,000 records, MLP 100-128-10, 30 epochs, batch 64,
claim ε = 1, δ = 1e-5; hooks, since the fault needs per-sample clipping). Design: the defaults
for input canaries (1,000 mislabelled records, guesses by the guess rule) and the same for OOD
canaries; seeds 0–4 (small: seed 0, 1,500 records, 10 epochs). Claim of the issue: the planted
bug FAILED on every seed.
"""

from __future__ import annotations

from benchmarks._schema import BenchResult

CLAIM = "no-clipping bug FAILED on every seed by black-box canaries at the default design (1,000 input canaries; OOD beside)"


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
                _cfg({"fault": "no_clipping", "ghost_clipping": False}, seed, n, epochs, 1.0),
                design=DpAuditDesign(canary_kind=kind),
            )
            row[kind] = {
                "verdict": r.verdict,
                "bound": round(r.empirical_epsilon_lower_bound, 4),
                "right": [r.v, r.r],
                "k": [r.design.k_plus, r.design.k_minus],
                "canaries": r.design.canaries,
            }
            row["claim"] = round(r.claimed_epsilon, 4)
        rows.append(row)
        print(row, flush=True)
    failed = {k: sum(r[k]["verdict"] == "FAILED" for r in rows) for k in ("input", "ood")}
    table = "\n".join(
        [
            "| seed | claim | input canaries (1,000): bound, verdict | OOD canaries (1,000): bound, verdict |",
            "|---:|---:|---|---|",
            *(
                f"| {r['seed']} | {r['claim']:.3f} | {r['input']['bound']:.3f} ({r['input']['right'][0]}/{r['input']['right'][1]}), {r['input']['verdict']} | "
                f"{r['ood']['bound']:.3f} ({r['ood']['right'][0]}/{r['ood']['right'][1]}), {r['ood']['verdict']} |"
                for r in rows
            ),
            f"| FAILED | | {failed['input']}/{len(rows)} | {failed['ood']}/{len(rows)} |",
        ]
    )
    return BenchResult(
        name="dp_clipping",
        claim=CLAIM,
        figures={"rows": rows, "failed": failed, "seeds": len(rows)},
        table=table,
        passed=failed["input"] == len(rows),
        notes=[
            f"{n} records, {epochs} epochs, per-sample clipping hooks (the fault needs them); guesses by the guess rule."
        ],
    )
