"""Black-box DP-audit canaries (issue 19): out-of-distribution inputs with wrong labels chosen
and calibrated on reference runs, against today's mislabelled records, on the same seeds (paired).

Recipe: bench_dp_audit's (Purchase-like, 3,000 records, MLP 100-128-10, 30 epochs, batch 64),
correct DP-SGD claiming ε = 4 (δ = 1e-5). Design: 500 canaries of each kind, guesses from the
guess rule (the same for every kind: it sees only the claim), significance 0.05. Five designs on
each seed, the audited run's canaries, coins and model the same for a kind with and without
calibration (the references draw from their own stream):

- ``input``: today's black-box canaries, records given a random wrong label, minus their loss;
- ``ood``: inputs drawn from the held-out records' column marginals, with random labels;
- ``input_calibrated``: today's canaries, each score centred by its mean over 8 reference runs;
- ``ood_calibrated``: OOD canaries whose input scale (×1, 2, 4, 8 away from the held-out mean) is
  chosen on 4 reference runs per scale by the audit's own statistic (leave-one-out right
  guesses), scores centred over 8 reference runs of the chosen scale (``--reference-runs 8``);
- ``input_x21`` (added after the first run, on the reviewer's point that the comparison is not
  compute-matched; reported, not claimed): today's canaries over 21 pooled runs (``--runs 21``:
  the 21 trainings a calibrated OOD audit makes), fresh canaries and guesses in each run.

Pre-declared (before this benchmark first ran): seeds 5–9 at full size — a prototype of the
calibration looked at seeds 0 and 1, so they are left out — and the claim is ``ood_calibrated``
against ``input``: median bound ≥ 2× today's, and above today's on every seed (the paired
reading; a ratio of medians alone was met before by canaries that lost on 2 of 5 seeds).
Small size: seed 5, 1,500 records, 10 epochs, 2 reference runs.
"""

from __future__ import annotations

import statistics
import time
from typing import Any

from benchmarks._schema import BenchResult

CLAIM = (
    "black-box dp-audit: OOD canaries chosen and calibrated on 8 reference runs — median bound "
    "≥ 2× today's mislabelled records' and above it on every seed (paired; correct DP-SGD, claim ε = 4)"
)
KINDS = ("input", "ood", "input_calibrated", "ood_calibrated", "input_x21")


def _design(kind: str, references: int) -> Any:
    from miaudit.audit import DpAuditDesign

    if kind == "input_x21":
        return DpAuditDesign(canary_kind="input", canaries=500, runs=21)
    base, calibrated = kind.removesuffix("_calibrated"), kind.endswith("_calibrated")
    return DpAuditDesign(
        canary_kind=base,
        canaries=500,
        reference_runs=references if calibrated else 0,
    )


def _row(seed: int, n: int, epochs: int, references: int) -> dict:
    from benchmarks.bench_dp_audit import _cfg
    from miaudit.audit import dp_audit

    row: dict = {"seed": seed}
    for kind in KINDS:
        t0 = time.perf_counter()
        r = dp_audit(_cfg({}, seed, n, epochs, 4.0), design=_design(kind, references))
        row[kind] = round(r.empirical_epsilon_lower_bound, 4)
        row[f"{kind}_right"] = [r.v, r.r]
        row[f"{kind}_seconds"] = round(time.perf_counter() - t0, 1)
        if r.calibration is not None and r.calibration.scales:
            row[f"{kind}_scale"] = r.calibration.chosen_scale[0]
            row[f"{kind}_selection"] = r.calibration.selection[0]
        row[f"{kind}_k"] = [r.design.k_plus, r.design.k_minus]  # per run
        row["claim"] = round(r.claimed_epsilon, 4)
    return row


def _table(rows: list[dict], medians: dict[str, float]) -> str:
    head = "| seed | claim | " + " | ".join(KINDS) + " | ood_calibrated − input | scale kept |"
    lines = [head, "|---:|---:|" + "---:|" * (len(KINDS) + 2)]
    for r in rows:
        cells = " | ".join(f"{r[k]:.3f} ({r[k + '_right'][0]}/{r[k + '_right'][1]})" for k in KINDS)
        scale = r.get("ood_calibrated_scale")
        lines.append(
            f"| {r['seed']} | {r['claim']:.3f} | {cells} | {r['ood_calibrated'] - r['input']:+.3f} | "
            f"{'×' + format(scale, 'g') if scale else '—'} |"
        )
    lines.append("| median | | " + " | ".join(f"{medians[k]:.3f}" for k in KINDS) + " | | |")
    return "\n".join(lines)


def run(size: str) -> BenchResult:
    full = size == "full"
    n, epochs, seeds, references = (
        (3000, 30, range(5, 10), 8) if full else (1500, 10, range(5, 6), 2)
    )
    rows = []
    for seed in seeds:
        rows.append(_row(seed, n, epochs, references))
        print(rows[-1], flush=True)
    medians = {k: statistics.median(r[k] for r in rows) for k in KINDS}
    diffs = [r["ood_calibrated"] - r["input"] for r in rows]
    today = medians["input"]
    figures = {
        "rows": rows,
        "medians": medians,
        "paired_differences": diffs,
        "ratio_of_medians": (medians["ood_calibrated"] / today) if today > 0 else None,
        "paired_differences_vs_compute_matched": [
            r["ood_calibrated"] - r["input_x21"] for r in rows
        ],
        "reference_runs": references,
    }
    passed = (
        medians["ood_calibrated"] >= 2 * today
        and medians["ood_calibrated"] > 0
        and all(d > 0 for d in diffs)
    )
    return BenchResult(
        name="dp_blackbox",
        claim=CLAIM,
        figures=figures,
        table=_table(rows, medians),
        passed=passed,
        notes=[
            f"{n} records, {epochs} epochs; 500 canaries per design; guesses by the guess rule "
            f"(sees only the claim); ties broken at random; {references} reference runs per "
            "calibrated audit; seeds 5–9 (a prototype looked at seeds 0–1).",
            "Pass: ood_calibrated's median ≥ 2× input's (today's) and ood_calibrated − input > 0 on every seed.",
            "Cost: a calibrated OOD audit trains 4 × 4 scale-choice runs + 4 more references + the audited run "
            "(21 trainings), a calibrated input audit 9: the seconds per design are in the rows.",
            "input_x21 spends the same 21 trainings on today's canaries, pooled over runs (reported, not claimed): "
            "ood_calibrated − input_x21 per seed is in the figures.",
        ],
    )
