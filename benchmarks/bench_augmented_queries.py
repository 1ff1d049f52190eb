"""Issue 18's augmented-queries claim on the image CNN: LiRA over the un-augmented image and its
four one-pixel shifts against LiRA over the image alone, on the same models and pairs.

One plan of 18 small CNNs (9 complementary pairs) on digits, trained with random one-pixel
shifts, so the engine records 5 queries per record; every model takes a turn as the target
with 8 reference pairs (leave-one-model-out). The single-query attack is the same store cut to
its first query. Paired record-resampling intervals (200 replicates, docs/method.md §0).
The cost: one query is one forward pass of the target per record; the figure is measured on
the trained CNN (seconds per 1,000 queries, batch inference on this machine's CPU).
"""

from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path

from benchmarks._schema import BenchResult
from benchmarks._schema import fmt_signed as _fmt

CLAIM = "Augmented queries on the image CNN (digits, shifts): LiRA's TPR@1 %FPR over 5 queries above the single-query attack (paired interval above 0), at a stated cost per query"

ATTACKS = ("lira_online", "lira_offline")


def _store(size: str) -> tuple[object, object, float]:
    from miaudit.audit import parse_audit_config
    from miaudit.engine import train

    pairs = 9 if size == "full" else 3
    raw = {
        "data": {"dataset": "digits"},
        "model": {
            "kind": "torch-cnn",
            "channels": [16, 32],
            "hidden": 64,
            "augment": ["shift"],
            "epochs": 40 if size == "full" else 8,
            "batch_size": 32,
        },
        "seed": 20261206,
        "plan": {"pool_fraction": 0.8},
        "engine": {"workers": 2, "threads": 1, "progress": False},
        "audit": {"references": pairs - 1, "attacks": list(ATTACKS)},
    }
    cfg = parse_audit_config(raw)
    root = os.environ.get("MIAUDIT_BENCH_CACHE")
    where = (
        Path(root) / f"digits-cnn-{size}"
        if root
        else Path(tempfile.mkdtemp(prefix="miaudit-augq-"))
    )
    t0 = time.perf_counter()
    store = train(cfg.train_config(), where).signals
    return store, cfg, time.perf_counter() - t0


def _seconds_per_1000_queries(cfg: object) -> float:
    """Forward passes of one CNN of the recipe over every record (fresh weights: a query's
    cost does not depend on them), in seconds per 1,000 queries."""
    import numpy as np
    import torch

    from miaudit.datasets import load_dataset
    from miaudit.models import build_net

    data = load_dataset(cfg.data)  # type: ignore[attr-defined]
    net = build_net(cfg.model, data, [torch.Generator().manual_seed(0)])  # type: ignore[attr-defined]
    x = torch.as_tensor(np.asarray(data.features, dtype=np.float32))[None]
    t0 = time.perf_counter()
    with torch.no_grad():
        for _ in range(5):
            net.forward(x)
    return (time.perf_counter() - t0) / (5 * x.shape[1]) * 1000


def run(size: str) -> BenchResult:
    import numpy as np

    from miaudit.attacks import LiraAttack, leave_one_model_out, paired_reference_sets
    from miaudit.data import SignalsStore
    from miaudit.metrics import evaluate

    store, cfg, t_train = _store(size)
    k = store.n_models // 2 - 1  # type: ignore[attr-defined]
    refs = paired_reference_sets(store, k)  # type: ignore[arg-type]
    single = SignalsStore.from_arrays(
        logits=np.ascontiguousarray(store.logits[:, :, :1, :]),  # type: ignore[attr-defined]
        label=store.label,  # type: ignore[attr-defined]
        keep=store.keep,  # type: ignore[attr-defined]
        population=store.population,  # type: ignore[attr-defined]
        record_id=store.record_id,  # type: ignore[attr-defined]
    )
    scores, member, records = {}, None, None
    for mode in ("online", "offline"):
        for label, st in (("5 queries", store), ("1 query", single)):
            p = leave_one_model_out(st, LiraAttack(mode=mode), reference_sets=refs)  # type: ignore[arg-type]
            scores[f"lira_{mode}, {label}"] = p.scores.reshape(-1)
            member, records = p.member.reshape(-1).astype(np.int8), p.records
    assert member is not None and records is not None
    ev = evaluate(
        member,
        scores,
        n_resamples=200,
        groups=np.tile(records, store.n_models),
        rng=1,  # type: ignore[attr-defined]
    )
    rows, figures, ok = [], {}, True
    for mode in ("online", "offline"):
        d = ev.difference(f"lira_{mode}, 5 queries", f"lira_{mode}, 1 query", "tpr@1%fpr")
        ok &= d.lower is not None and d.lower > 0
        multi = ev.estimate(f"lira_{mode}, 5 queries", "tpr@1%fpr").point or 0.0
        one = ev.estimate(f"lira_{mode}, 1 query", "tpr@1%fpr").point or 0.0
        figures[mode] = {"tpr1_5q": multi, "tpr1_1q": one, "difference": d.model_dump()}
        rows.append(f"| lira_{mode} | {100 * multi:.2f} | {100 * one:.2f} | {_fmt(d)} |")
    per_1000 = _seconds_per_1000_queries(cfg)
    figures["train_s"] = round(t_train, 1)
    figures["models"] = store.n_models  # type: ignore[attr-defined]
    figures["seconds_per_1000_queries"] = per_1000
    table = "\n".join(
        [
            "| attack | TPR@1%FPR, 5 queries (%) | TPR@1%FPR, 1 query (%) | Δ paired |",
            "|---|---:|---:|---|",
            *rows,
        ]
    )
    return BenchResult(
        name="augmented_queries",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=ok if size == "full" else None,
        notes=[
            f"{store.n_models} CNNs on digits trained with one-pixel shifts; k = {k} reference pairs per target, leave-one-model-out.",  # type: ignore[attr-defined]
            f"Cost: 5 queries per record instead of 1, i.e. 5 forward passes of the target; one query ≈ {per_1000:.3g} s per 1,000 records on this CPU (batch inference).",
        ],
    )
