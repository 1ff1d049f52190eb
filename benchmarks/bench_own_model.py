"""Issue 17's claim: reference attacks with the user's own models as references.

Two recipes of the user's own code on digits, each a plan of 2·k + 2 models (complementary
pairs) trained once: a ``torch-module`` recipe (a small CNN of the user's, trained by the
generic per-model trainer) and a ``python`` recipe (the user's XGBoost function; logits from
its raw margins). Every model takes a turn as the target (leave-one-model-out) and the best of
LiRA and RMIA (online and offline, k references) is compared with the loss attack on the same
(target, record) pairs: TPR at 1 % FPR, paired record-resampling interval (200 replicates, 95 %)
above 0.
"""

from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks._schema import BenchResult
from benchmarks._schema import fmt_signed as _fmt

CLAIM = "LiRA/RMIA with the user's own models as references beat the loss attack at 1 % FPR (paired interval above 0): a torch-module CNN and an XGBoost python recipe — digits"

#: The user's code: a folder beside this file, as a user's project would have it.
CODE = Path(__file__).resolve().parent / "own_model"

RECIPES: dict[str, dict[str, Any]] = {
    "torch-module (user's CNN)": {
        "kind": "torch-module",
        "factory": "user_nets:build",
        "params": {"channels": 16, "hidden": 128},
        "epochs": 40,
        "batch_size": 32,
        "lr": 1e-3,
    },
    "python (user's XGBoost)": {
        "kind": "python",
        "train": "user_boosting:fit",
        "params": {"n_estimators": 200, "max_depth": 6, "learning_rate": 0.3},
    },
}
ATTACKS = ["lira_online", "lira_offline", "rmia_online", "rmia_offline"]


def run(size: str) -> BenchResult:
    from miaudit.audit import parse_audit_config
    from miaudit.audit._power import reference_power
    from miaudit.engine import train

    k = 16 if size == "full" else 2
    rows, figures, ok = [], {}, True
    for name, recipe in RECIPES.items():
        model = {**recipe, "path": str(CODE)}
        if size != "full":
            model = _smaller(model)
        raw = {
            "seed": 20261206,
            "trust_code": True,
            "data": {"dataset": "digits"},
            "model": model,
            "plan": {"pool_fraction": 0.8, "unit_size": max(1, k + 1)},
            "engine": {"workers": 2, "threads": 1, "progress": False},
            "audit": {"references": k, "attacks": ["loss", *ATTACKS]},
        }
        cfg = parse_audit_config(raw)
        with tempfile.TemporaryDirectory(prefix="miaudit-own-model-") as tmp:
            t0 = time.perf_counter()
            store = train(cfg.train_config(), Path(tmp)).signals
            t_train = time.perf_counter() - t0
            ev = reference_power(store, cfg, [k], ["loss", *ATTACKS], n_resamples=200, seed=1)
        best = max(
            (f"{a}@k={k}" for a in ATTACKS), key=lambda n: ev.estimate(n, "tpr@1%fpr").point or 0
        )
        d_tpr = ev.difference(best, "loss", "tpr@1%fpr")
        met = d_tpr.lower is not None and d_tpr.lower > 0
        ok &= met
        tpr = {n: ev.estimate(n, "tpr@1%fpr").point for n in ev.names}
        auc = {n: ev.estimate(n, "auc").point for n in ev.names}
        figures[name] = {
            "models": store.n_models,
            "records": store.n_records,
            "train_s": round(t_train, 1),
            "best": best,
            "tpr1_best_minus_loss": d_tpr.model_dump(),
            "tpr1": tpr,
            "auc": auc,
        }
        rows.append(
            f"| {name} | {store.n_models} × {store.n_records:,} | {t_train:.0f} | {tpr['loss']:.2%} | "
            f"{tpr[best]:.2%} ({best}) | {_fmt(d_tpr)} | {auc['loss']:.3f} / {auc[best]:.3f} | {'met' if met else 'NOT MET'} |"
        )
    table = "\n".join(
        [
            "| recipe | models × records | training s | loss TPR@1%FPR | best TPR@1%FPR | ΔTPR@1%FPR best − loss | AUC loss / best | claim |",
            "|---|---|---:|---:|---:|---|---|---|",
            *rows,
        ]
    )
    return BenchResult(
        name="own_model",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=ok if size == "full" else None,
        notes=[
            f"k = {k} reference pairs; leave-one-model-out over every model; paired record-resampling intervals (200 replicates, 95 %).",
            "The user's code is in benchmarks/own_model/ (a CNN factory; an XGBoost training function with n_jobs = 1).",
            "XGBoost's logits are its raw margins (predict(..., output_margin=True)), checked to reproduce predict_proba.",
        ],
    )


def _smaller(model: dict[str, Any]) -> dict[str, Any]:
    """The small size: fewer epochs or trees (the instance CI keeps runnable)."""
    if model["kind"] == "torch-module":
        return {**model, "epochs": 5, "params": {"channels": 4, "hidden": 32}}
    return {**model, "params": {**model["params"], "n_estimators": 20}}
