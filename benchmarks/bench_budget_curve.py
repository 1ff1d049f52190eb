"""Issue 18's reference-budget curve: what each extra pair of reference models buys.

The 34-model plans of bench_shrinkage (digits, Adult, Purchase-like; cached, so no training
when that benchmark ran first) and, at full size, a 34-MLP Fashion-MNIST plan (``MLP_IMAGES``)
and the 12-CNN Fashion-MNIST plans of bench_augmented_queries (two recipes, k ≤ 5; every attack
reads their 10 augmented queries). Every model takes a turn as the target with its first k
complementary pairs of 16 (one set of trained references, subsampled), k = 0, 1, 2, 4, 8, 16;
at each k the attack with the highest TPR at 1 % FPR among the candidates (k = 0: threshold
attacks and QMIA on the target's own outputs; k ≥ 1: LiRA, RMIA and shrunk LiRA), with its AUC and TPR
at 1 % and 0.1 % FPR and intervals resampling records (one set of replicates for every k), by
the audit's own :func:`miaudit.audit._budget.budget_curve`.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks._schema import BenchResult
from benchmarks.bench_shrinkage import BASE, SHRUNK, trained_stores

CLAIM = "The reference-budget curve (k = 0…16 pairs, one set of trained references): the best attack's AUC and TPR at 1 % and 0.1 % FPR with intervals — digits, Adult, Purchase, a Fashion-MNIST MLP; the Fashion-MNIST CNN (k ≤ 5)"

#: k = 0 candidates: thresholds and QMIA (fitted on the plan's population records).
ZERO = ["loss", "gap", "confidence", "entropy", "modified_entropy", "qmia"]


def _fmt(e: dict, pct: bool) -> str:
    if e["point"] is None:
        return "n/m"
    s, f = (100.0, ".2f") if pct else (1.0, ".3f")
    lo, hi = e.get("lower"), e.get("upper")
    text = f"{e['point'] * s:{f}}"
    return text + (f" [{lo * s:{f}}, {hi * s:{f}}]" if lo is not None and hi is not None else "")


#: The Fashion-MNIST MLP plan (stated 2026-12-06 18:50 UTC, before it was trained; no claim):
#: 34 MLPs (17 pairs, k ≤ 16) on 3,000 images drawn once, 80 % in the pool (2,400 training images
#: per MLP), the digits MLP recipe of bench_attack_power with 40 epochs.
MLP_IMAGES = {
    "data": {"dataset": "fashion-mnist", "max_records": 3000},
    "model": {"kind": "torch-mlp", "hidden": [256], "epochs": 40, "batch_size": 32},
}


def image_stores(size: str) -> dict[str, tuple[object, object, float]]:
    """The Fashion-MNIST CNN plans of bench_augmented_queries (12 models, 6 pairs: k ≤ 5;
    cached by that benchmark, so no training when it ran first) and the MLP plan."""
    from benchmarks.bench_augmented_queries import CLAIM_DATASETS, image_store

    out = {f"{name} (CNN)": image_store(name, size) for name in CLAIM_DATASETS}
    out["fashion-mnist (MLP)"] = mlp_image_store(size)
    return out


def mlp_image_store(size: str) -> tuple[object, object, float]:
    """(signals store, audit config, training seconds) of the Fashion-MNIST MLP plan, cached
    as bench_shrinkage's plans are."""
    from benchmarks.bench_shrinkage import PAIRS_FULL, trained_plan

    return trained_plan(
        f"fashion-mnist-mlp-{size}", MLP_IMAGES, PAIRS_FULL if size == "full" else 3
    )


def one_curve(name: str, store: Any, cfg: Any, resamples: int = 200) -> tuple[dict, list[str]]:
    """The curve of one leave-one-model-out plan (every model a target, up to all its other
    pairs): its figure and its table rows."""
    from miaudit.attacks import ReferenceSettings, attack_spec, paired_reference_sets
    from miaudit.audit._budget import budget_curve
    from miaudit.audit._config import runs_on_target_outputs
    from miaudit.audit._reference_audit import _score_target_outputs, record_features

    k_max = store.n_models // 2 - 1
    targets = list(range(store.n_models))
    refs = paired_reference_sets(store, k_max, targets=targets)
    zero = [z for z in ZERO if runs_on_target_outputs(attack_spec(z))]
    features = record_features(cfg)
    t0 = time.perf_counter()
    curve = budget_curve(
        store,
        ReferenceSettings(seed=cfg.seed),
        [*BASE, *SHRUNK],
        targets,
        refs,
        zero=(
            zero,
            lambda st, nm, t, rec: _score_target_outputs(st, nm, t, rec, features, cfg.seed)[0],
        ),
        resamples=resamples,
        seed=1,
    )
    assert curve is not None
    figure = {"curve": curve.model_dump(), "rescoring_s": round(time.perf_counter() - t0, 1)}
    rows = []
    for p in curve.points:
        d = p.model_dump()
        rows.append(
            f"| {name} | {p.references} | {p.attack} | {_fmt(d['auc'], False)} | "
            f"{_fmt(d['tpr_at_fpr']['tpr@1%fpr'], True)} | {_fmt(d['tpr_at_fpr']['tpr@0.1%fpr'], True)} |"
        )
    return figure, rows


def run(size: str) -> BenchResult:
    rows, figures = [], {}
    stores = trained_stores(size)
    if size == "full":
        stores.update(image_stores(size))
    for name, (store, cfg, _) in stores.items():
        figures[name], r = one_curve(name, store, cfg)
        rows += r
    table = "\n".join(
        [
            "| dataset | k | best attack | AUC | TPR@1%FPR (%) | TPR@0.1%FPR (%) |",
            "|---|---:|---|---|---|---|",
            *rows,
        ]
    )
    return BenchResult(
        name="budget_curve",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=None,
        notes=[
            "Each target's references: its first k of the 16 pairs that follow its own (paired_reference_sets, cyclic); nothing retrained.",
            "k = 0: threshold attacks and QMIA on the target's own outputs, QMIA fitted per target on the plan's population records (20 %, no model trained on them; gradient boosting, a small CNN for images — digits and Fashion-MNIST — over every query view of the CNN plans).",
            "The best attack at each k is chosen by its point TPR at 1 % FPR; the interval is that attack's.",
        ],
    )
