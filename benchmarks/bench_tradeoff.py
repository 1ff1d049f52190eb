"""Issue 5's trade-off claims on overfit MLPs over Adult and Purchase-like data (``miaudit tradeoff``).

For each dataset one tradeoff run: the baseline recipe (ε = ∞), DP-SGD at ε = 8, 4, 1 (Opacus,
PRV accountant, δ = 1e-5, ghost clipping; references trained with the same recipe), and the
label-only output policy on the baseline's models (at full size also a weight-decay grid, early
stopping, top-1 and rounding). Every comparison is paired on the same (target, record) pairs with
record-resampling intervals (200 replicates):

1. AUC(strongest attack, ε = ∞) − AUC(strongest attack, ε = 1): interval above 0 (ε = 8 and 4
   reported, not asserted);
2. under label-only: AUC(noise robustness) − AUC(gap): interval above 0; its TPR at 1 % FPR
   reported.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from benchmarks._schema import BenchResult
from benchmarks._schema import fmt_signed as _fmt

CLAIM = "ε = ∞ vs ε = 1: paired ΔAUC of the strongest attack above 0; label-only: noise robustness beats the gap attack (paired ΔAUC above 0) — Adult, Purchase"

DATASETS = {
    "adult": {
        "data": {"dataset": "adult", "max_records": 8000},
        "model": {"kind": "torch-mlp", "hidden": [256, 256], "epochs": 40, "batch_size": 64},
    },
    "purchase": {
        "data": {"dataset": "purchase", "purchase": {"n_records": 6000, "flip_rate": 0.15}},
        "model": {"kind": "torch-mlp", "hidden": [256], "epochs": 30, "batch_size": 64},
    },
}
ATTACKS = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline"]
#: Noise-robustness σ (per-column standard deviations), fixed from a pilot on another seed (99,
#: one reference pair, two targets): Adult σ ∈ {0.03, 0.1, 0.25, 0.5, 1} → 0.1 (larger σ lose to the
#: gap attack: the numeric columns are heavy-tailed); Purchase σ ∈ {0.1, …, 4} → 4 (below 2 no
#: label ever flips: the model classifies every record correctly).
NOISE_SIGMA = {"adult": 0.1, "purchase": 4.0}


def run(size: str) -> BenchResult:
    from miaudit.audit import RobustnessComparison, default_variants, parse_audit_config, tradeoff

    full = size == "full"
    rows, figures, ok, notes = [], {}, True, []
    for name, spec in DATASETS.items():
        raw = {
            **spec,
            "seed": 20261128,
            "plan": {"pool_fraction": 0.8, "unit_size": 3},
            "engine": {"workers": 2, "threads": 1, "progress": False},
            "audit": {"references": 2, "attacks": ATTACKS, "resamples": 200},
        }
        if not full:
            raw["model"] = {**spec["model"], "epochs": max(10, spec["model"]["epochs"] // 3)}
            raw["data"] = (
                {**spec["data"], "max_records": 3000}
                if name == "adult"
                else {"dataset": "purchase", "purchase": {"n_records": 3000, "flip_rate": 0.15}}
            )
        variants = default_variants(
            epsilons=[8.0, 4.0, 1.0],
            weight_decays=[1e-3, 1e-2] if full else [],
            early_stopping=full,
            policies=["top-1", "round:1", "label-only"] if full else ["label-only"],
        )
        cfg = parse_audit_config(raw)
        with tempfile.TemporaryDirectory(prefix=f"miaudit-tradeoff-{name}-") as tmp:
            t0 = time.perf_counter()
            res = tradeoff(
                cfg,
                Path(tmp),
                variants=variants,
                policy_targets=cfg.n_models(),
                noise_sigma=NOISE_SIGMA[name],
            )
            seconds = time.perf_counter() - t0
        comp = {(c.kind, c.variant): c for c in res.comparisons}
        d_inf_1 = comp[("baseline_vs_variant", "dp-eps1")].difference
        rob = comp[("robustness_vs_gap", "policy-label-only")]
        assert isinstance(rob, RobustnessComparison)
        rt = rob.tpr_at_1pct_fpr
        c1 = d_inf_1.lower is not None and d_inf_1.lower > 0
        c2 = rob.difference.lower is not None and rob.difference.lower > 0
        ok &= c1 and c2
        figures[name] = {
            "seconds": round(seconds, 1),
            "models_per_variant": cfg.n_models(),
            "variants": {
                v.name: {
                    "epsilon": v.epsilon,
                    "test_accuracy": v.test_accuracy,
                    "gap": v.generalization_gap,
                    "strongest": v.strongest_attack,
                    "auc": v.auc.model_dump(),
                    "tpr@1%fpr": v.tpr_at_1pct_fpr.model_dump(),
                }
                for v in res.variants
            },
            "auc_inf_minus": {
                c.variant: c.difference.model_dump()
                for c in res.comparisons
                if c.kind == "baseline_vs_variant"
            },
            "label_only_robustness_minus_gap": rob.difference.model_dump(),
            "label_only_robustness_tpr@1%fpr": rt.model_dump(),
        }
        for v in res.variants:
            eps = "∞" if v.epsilon is None else f"{v.epsilon:.2f}"
            d = comp.get(("baseline_vs_variant", v.name))
            rows.append(
                f"| {name} | {v.name} | {eps} | {v.test_accuracy:.3f} | {v.generalization_gap:+.3f} | {v.strongest_attack} | {v.auc.point:.3f} [{v.auc.lower:.3f}, {v.auc.upper:.3f}] | "
                f"{v.tpr_at_1pct_fpr.point:.3f} | {_fmt(d.difference) if d else ''} |"
            )
        notes.append(
            f"{name}: label-only, noise robustness − gap AUC {_fmt(rob.difference)}; noise robustness TPR@1%FPR {rt.point:.3f}"
            + (f" [{rt.lower:.3f}, {rt.upper:.3f}]" if rt.lower is not None else "")
            + f"; claims {'met' if c1 and c2 else 'NOT MET'}"
        )
    table = "\n".join(
        [
            "| dataset | variant | ε (accountant) | test acc | train−test gap | strongest attack | AUC [95 %] | TPR@1%FPR | ΔAUC ∞ − variant (paired) |",
            "|---|---|---:|---:|---:|---|---|---:|---|",
            *rows,
        ]
    )
    return BenchResult(
        name="tradeoff", claim=CLAIM, figures=figures, table=table, passed=ok, notes=notes
    )
