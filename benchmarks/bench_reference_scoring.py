"""RMIA and LiRA at scale: 1,000,000 target records × 100,000 population records, K = 64 references.

Signals are generated directly as float32 arrays (the attacks' inputs): φ (scaled logit) and
p_y = sigmoid(φ) of 64 reference models on 1.1 M records, the keep matrix (32 complementary
pairs over the targets; population records in no model), and the audited model's φ and p_y.
Records carry a difficulty, members a φ shift of +1. The generator works row by row, so the
process's peak resident memory is that of the inputs plus the attacks' working memory.

Timed, each on the full arrays through the public functions (input validation included):
offline RMIA (a = 0.3, γ = 1), online RMIA, online LiRA (per-record variance: medians by
sorting each record's references) and offline LiRA. The dense baseline compares every x with
every z, in row chunks of 1,000, for 10,000 × 10,000 ratios (what the public RMIA tool does),
and the sorted form is timed on the same ratios for the ratio of the two.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from functools import partial
from typing import TypeVar

import numpy as np

from benchmarks._schema import BenchResult, peak_rss_gb

CLAIM = (
    "RMIA (offline and online) and LiRA (online per-record and offline) together score 1,000,000 targets "
    "against 100,000 population records with K = 64 reference signals in ≤ 10 s and ≤ 2 GB peak memory; "
    "so does each attack issue 18 added, alone (QMIA's scoring, shrunk LiRA online and offline)"
)
SIZES = {
    # (targets, population, references, dense baseline side)
    "full": (1_000_000, 100_000, 64, 10_000),
    "small": (10_000, 1_000, 64, 1_000),
}
T = TypeVar("T")
TIME_LIMIT_S = 10.0
MEMORY_LIMIT_GB = 2.0
#: QMIA (issue 18): features per record; its regressors are fitted on the population records
#: (reported apart), and scoring the targets is held to the same 10 s / 2 GB.
QMIA_FEATURES = 8


def _generate(n_targets: int, n_pop: int, k: int, seed: int = 20261128) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    n = n_targets + n_pop
    difficulty = rng.normal(2.0, 2.0, n).astype(np.float32)
    keep = np.zeros((k, n), dtype=bool)
    phi = np.empty((k, n), dtype=np.float32)
    p = np.empty((k, n), dtype=np.float32)
    for j in range(0, k, 2):
        half = rng.random(n_targets) < 0.5
        keep[j, :n_targets], keep[j + 1, :n_targets] = half, ~half
    for j in range(k):
        row = rng.standard_normal(n, dtype=np.float32)
        row += difficulty
        row[keep[j]] += 1.0
        phi[j] = row
        np.negative(row, out=row)
        np.exp(row, out=row)
        row += 1.0
        np.reciprocal(row, out=row)
        p[j] = row
    member = np.zeros(n, dtype=bool)
    member[:n_targets] = rng.random(n_targets) < 0.5
    t_phi = rng.standard_normal(n, dtype=np.float32) + difficulty
    t_phi[member] += 1.0
    t_p = (1.0 / (1.0 + np.exp(-t_phi))).astype(np.float32)
    population = np.zeros(n, dtype=bool)
    population[n_targets:] = True
    # QMIA's features: the first carries the record's difficulty (noisily), the rest are noise.
    features = rng.standard_normal((n, QMIA_FEATURES), dtype=np.float32)
    features[:, 0] = difficulty + 0.5 * features[:, 0]
    return {
        "features": features,
        "label": rng.integers(0, 10, n),
        "phi": phi,
        "p": p,
        "keep": keep,
        "t_phi": t_phi,
        "t_p": t_p,
        "population": population,
        "member": member,
    }


def dense_counts(rx: np.ndarray, rz: np.ndarray, gamma: float, chunk: int = 1_000) -> np.ndarray:
    """The public tool's comparison, chunked over x: #{z : ratio_x / ratio_z ≥ γ}."""
    out = np.empty(rx.size, dtype=np.int64)
    for lo in range(0, rx.size, chunk):
        out[lo : lo + chunk] = (rx[lo : lo + chunk, None] / rz[None, :] >= gamma).sum(axis=1)
    return out


def _qmia(d: dict[str, np.ndarray], targets: slice) -> dict[str, float]:
    """QMIA on the audited model's φ: fitted on the population records, scoring the targets."""
    from sklearn.metrics import roc_auc_score

    from miaudit.attacks import fit_qmia

    pop = d["population"]
    model, fit_s = _timed(lambda: fit_qmia(d["t_phi"][pop], d["features"][pop], d["label"][pop]))
    score, score_s = _timed(
        lambda: model.score(d["t_phi"][targets], d["features"][targets], d["label"][targets])
    )
    return {
        "fit_seconds": round(fit_s, 3),
        "score_seconds": round(score_s, 3),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "auc": round(float(roc_auc_score(d["member"][targets], score)), 4),
        "auc_raw_phi": round(float(roc_auc_score(d["member"][targets], d["t_phi"][targets])), 4),
    }


def _shrunk(d: dict[str, np.ndarray], targets: slice) -> dict[str, dict[str, float]]:
    """Shrunk LiRA (docs/method.md §12), each mode alone on the targets, with the population's
    reference φ for the OUT prior and the records' classes as groups."""
    from sklearn.metrics import roc_auc_score

    from miaudit.attacks import lira_shrunk_offline, lira_shrunk_online

    pop = d["population"]
    args = (d["t_phi"][targets], d["phi"][:, targets], d["keep"][:, targets])
    kwargs = {
        "labels": d["label"][targets],
        "population_phi": d["phi"][:, pop],
        "population_labels": d["label"][pop],
    }
    out: dict[str, dict[str, float]] = {}
    for name, attack in (("online", lira_shrunk_online), ("offline", lira_shrunk_offline)):
        score, seconds = _timed(partial(attack, *args, **kwargs))
        out[name] = {
            "seconds": round(seconds, 3),
            "peak_rss_gb": round(peak_rss_gb(), 3),
            "auc": round(float(roc_auc_score(d["member"][targets], score)), 4),
        }
    return out


def _timed(fn: Callable[[], T]) -> tuple[T, float]:
    t0 = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0


def run(size: str) -> BenchResult:
    from sklearn.metrics import roc_auc_score

    from miaudit.attacks._lira import lira_offline, lira_online
    from miaudit.attacks._rmia import rmia_offline, rmia_online, rmia_scores_from_ratios

    n_t, n_z, k, side = SIZES[size]
    d = _generate(n_t, n_z, k)
    targets = slice(0, n_t)
    mem_inputs = peak_rss_gb()

    times: dict[str, float] = {}
    scores: dict[str, np.ndarray] = {}
    scores["rmia_offline"], times["rmia_offline"] = _timed(
        lambda: rmia_offline(d["t_p"], d["p"], d["keep"], d["population"], a=0.3)
    )
    scores["rmia_online"], times["rmia_online"] = _timed(
        lambda: rmia_online(d["t_p"], d["p"], d["population"])
    )
    phi_t, keep_t = d["phi"][:, targets], d["keep"][:, targets]
    scores["lira_online"], times["lira_online"] = _timed(
        lambda: lira_online(d["t_phi"][targets], phi_t, keep_t, variance="per_record")
    )
    scores["lira_offline"], times["lira_offline"] = _timed(
        lambda: lira_offline(d["t_phi"][targets], phi_t, keep_t, variance="per_record")
    )
    peak = peak_rss_gb()
    total = sum(times.values())
    qmia = _qmia(d, targets)
    shrunk = _shrunk(d, targets)

    # Dense baseline against the sorted form on the same side × side ratios.
    rng = np.random.default_rng(7)
    rx, rz = rng.lognormal(size=side), rng.lognormal(size=side)
    dense, t_dense = _timed(lambda: dense_counts(rx, rz, 1.0))
    sorted_scores, t_sorted = _timed(lambda: rmia_scores_from_ratios(rx, rz))
    agree = bool(np.array_equal(np.floor(sorted_scores * side).astype(np.int64), dense))
    pairs_full, pairs_dense = n_t * n_z, side * side
    dense_full_s = t_dense * pairs_full / pairs_dense

    member = d["member"][targets]
    aucs = {
        name: float(roc_auc_score(member, s[targets] if s.size > n_t else s))
        for name, s in scores.items()
    }
    added_ok = qmia["score_seconds"] <= TIME_LIMIT_S and qmia["peak_rss_gb"] <= MEMORY_LIMIT_GB
    added_ok = added_ok and all(
        s["seconds"] <= TIME_LIMIT_S and s["peak_rss_gb"] <= MEMORY_LIMIT_GB
        for s in shrunk.values()
    )
    passed = (
        total <= TIME_LIMIT_S and peak <= MEMORY_LIMIT_GB and added_ok if size == "full" else None
    )
    figures = {
        "targets": n_t,
        "population": n_z,
        "references": k,
        "seconds": {name: round(t, 3) for name, t in times.items()},
        "seconds_total": round(total, 3),
        "peak_rss_gb": round(peak, 3),
        "peak_rss_after_inputs_gb": round(mem_inputs, 3),
        "auc": {name: round(a, 4) for name, a in aucs.items()},
        "qmia": qmia,
        "lira_shrunk": shrunk,
        "dense_baseline": {
            "side": side,
            "dense_seconds": round(t_dense, 4),
            "sorted_seconds": round(t_sorted, 4),
            "speedup_same_size": round(t_dense / t_sorted, 1),
            "counts_agree": agree,
            "dense_extrapolated_full_seconds": round(dense_full_s, 3),
            "speedup_full_vs_dense_extrapolated": round(
                dense_full_s / max(times["rmia_offline"], 1e-9), 1
            ),
        },
    }
    table = "\n".join(
        [
            "| step | seconds | AUC (simulated members) |",
            "|---|---:|---:|",
            *[
                f"| {name.replace('_', ' ')} | {times[name]:.2f} | {aucs[name]:.3f} |"
                for name in times
            ],
            f"| **total** | **{total:.2f}** | |",
            f"| QMIA: scoring the targets (k = 0) | {qmia['score_seconds']:.2f} | {qmia['auc']:.3f} |",
            f"| QMIA: fitting its regressors on the population (apart) | {qmia['fit_seconds']:.2f} | |",
            *[
                f"| shrunk LiRA {mode} (alone; prior fitted with the population) | {s['seconds']:.2f} | {s['auc']:.3f} |"
                for mode, s in shrunk.items()
            ],
            "",
            f"Peak resident memory {peak:.2f} GB after LiRA and RMIA (inputs alone {mem_inputs:.2f} GB), {max(s['peak_rss_gb'] for s in shrunk.values()):.2f} GB after QMIA and shrunk LiRA; {n_t:,} targets × {n_z:,} population, K = {k}.",
            "",
            "| RMIA comparison | seconds |",
            "|---|---:|",
            f"| dense, {side:,} × {side:,} (chunks of 1,000 rows) | {t_dense:.3f} |",
            f"| sorted, same ratios | {t_sorted:.4f} |",
            f"| speed-up at this size | {t_dense / t_sorted:.0f}× |",
            f"| dense extrapolated to {n_t:,} × {n_z:,} | {dense_full_s:,.4g} |",
            f"| sorted offline RMIA at that size (whole attack) | {times['rmia_offline']:.2f} |",
        ]
    )
    notes = [
        "Inputs are float32 signals (φ and p_y), not logits: computing them from logits is the signals module's cost.",
        "The dense extrapolation assumes linear cost in pairs; the dense form needs the n × |z| comparisons that the sorted form replaces by one sort and n binary searches.",
        f"Sorted and dense counts agree exactly on the baseline ratios: {agree}.",
        "Peak memory is the process's high-water mark, so each later row's peak includes every earlier one's.",
        "The combined attack reads a signals store, not arrays: bench_million times it on a million records of 64 models (its stacker fitted on K leave-one-out audits of the references, each on at most 20,000 pool records, then scoring like its components).",
    ]
    return BenchResult(
        name="reference_scoring",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=passed,
        notes=notes,
    )
