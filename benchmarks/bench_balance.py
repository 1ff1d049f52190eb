"""Balanced references (docs/method.md §3, "Balanced references"): where the design fixes how
many models train on each record (each record in exactly K/2 of K models, the LiRA and RMIA
papers' design), a member of the target has one IN reference fewer and one OUT reference more
than a non-member. Unbalanced, online LiRA then reads below chance on models that leak
nothing, and offline LiRA/RMIA understate the low-FPR tail; the reference audit detects the
design (``count_dependence``) and fits those attacks on as many IN as OUT references per
record (``balanced_use``). This benchmark measures both, on simulated signals stores.

Stores (the simulation of tests/audit/test_reference_balance.py, written out here): two-class
logits N(0, 1), label uniform; ``shift`` added to the true-class logit where the model trained
on the record (0: no signal, the null; 0.5: a real leak); 20 % of the records population
(trained on by no model). Designs: *fixed* (each pool record in exactly K/2 of the K models,
a uniformly random K/2) and *independent halves* (each (model, record) IN with probability
1/2, independently, except that a record IN every model is OUT of the last, as the audit
refuses a record no model is OUT on: the counts do not depend on the target's membership, so
nothing to balance). Every store has its own fixed seed.

- **AUC table** (the doc's design): target model 0, references every other model
  (``references = "all"``), 1,000 records, 60 stores per row (small: 20); the mean AUC over the
  stores ± its standard error (SD over stores / √stores).
- **Offline TPR at 1 % FPR**: no signal, 4 of 8, 2,000 records, every model in turn the
  target (leave-one-model-out, K × pool pairs pooled per store), 30 stores (small: 10).

*Before* (unbalanced) is scored by the public :func:`miaudit.attacks.leave_one_model_out_each`
with the attacks :func:`miaudit.attacks.reference_attack` builds from the audit config's
settings and no ``online_use`` mask, i.e. every reference read; *after* is the public
:func:`miaudit.audit.attack_store`, which balances when the design calls for it (its note in
results.json is checked: on every fixed-design store, on no independent one). Both are read by
the same public metrics (:func:`miaudit.metrics.roc_auc_score`,
:func:`miaudit.metrics.tpr_at_fpr`) on the pooled pairs each attack scored.

The claim was fixed before the full run. Null stores: an unbiased attack's mean AUC is 0.5 and
its TPR at 1 % FPR 0.01; "within 3 SE" is a two-sided test at 0.27 % per figure (the checks on
the balanced figures together: about 2 % chance to fail when nothing is wrong); "more than
3 SE below" says the unbalanced bias is resolved by the same number of stores. The 8-of-16
design's unbalanced bias (half the 4-of-8 one) is reported but not claimed: 20 stores at small
size cannot resolve it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from benchmarks._schema import BenchResult

CLAIM = (
    "On null stores where each record sits in exactly half the models, balanced online LiRA "
    "(plain and shrunk; 4 of 8 and 8 of 16) reads AUC within 3 SE of 0.5 and balanced offline "
    "LiRA/RMIA (4 of 8) TPR@1%FPR within 3 SE of 0.01, where unbalanced (4 of 8) they read more "
    "than 3 SE below; shrunk offline LiRA (never balanced) within 3 SE of 0.01; online RMIA "
    "unchanged; balancing on every fixed-design store and no independent one"
)

SIZES = {
    "full": {"auc_stores": 60, "auc_records": 1000, "tpr_stores": 30, "tpr_records": 2000},
    "small": {"auc_stores": 20, "auc_records": 1000, "tpr_stores": 10, "tpr_records": 2000},
}
SEED = 20261208
POPULATION = 0.2
FPR = 0.01
Z = 3.0  # tolerance, in standard errors of the mean over stores
#: The AUC table's rows: (key, models K, true-class logit shift where IN, words).
DESIGNS = (
    ("k8_null", 8, 0.0, "each record in 4 of 8 models", "no signal"),
    ("k16_null", 16, 0.0, "each record in 8 of 16 models", "no signal"),
    ("k8_signal", 8, 0.5, "each record in 4 of 8 models", "IN: true-class logit + 0.5"),
)
ONLINE = ("lira_online", "lira_shrunk_online", "rmia_online", "lira_offline")
OFFLINE = ("lira_offline", "rmia_offline", "lira_shrunk_offline")
BALANCED_ONLINE = ("lira_online", "lira_shrunk_online")
BALANCED_OFFLINE = ("lira_offline", "rmia_offline")


def _keep(design: str, k: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(keep, population): 20 % population; pool records IN a uniformly random k/2 of the k
    models (``fixed``) or each model independently with probability 1/2 (``independent``)."""
    pop = rng.random(n) < POPULATION
    if design == "fixed":
        keep = rng.random((k, n)).argsort(axis=0) < k // 2
    else:
        keep = rng.random((k, n)) < 0.5
        keep[-1, keep.all(axis=0)] = False  # the audit refuses a record IN every model
    return keep & ~pop, pop


def _store(keep: np.ndarray, pop: np.ndarray, rng: np.random.Generator, shift: float) -> Any:
    """Two-class logits N(0, 1), ``shift`` added to the true class where the model trained on
    the record."""
    from miaudit.data import SignalsStore

    k, n = keep.shape
    label = rng.integers(0, 2, n)
    logits = rng.normal(size=(k, n, 2))
    logits[:, np.arange(n), label] += shift * keep
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=label, keep=keep, population=pop
    )


def _figures(member: np.ndarray, scores: np.ndarray) -> tuple[float, float]:
    """(AUC, TPR at 1 % FPR) of the pairs the attack scored."""
    from miaudit.metrics import roc_auc_score, tpr_at_fpr

    ok = ~np.isnan(scores)
    m, s = member[ok], scores[ok]
    return roc_auc_score(m, s), tpr_at_fpr(m, s, fpr=FPR)


def _measure(
    store: Any, seed: int, attacks: Sequence[str], target: int | None
) -> tuple[dict[str, dict[str, tuple[float, float]]], bool]:
    """attack → {"before": (AUC, TPR), "after": (AUC, TPR)}, and whether the audit balanced.

    ``target`` None: every model in turn (leave-one-model-out)."""
    from miaudit.attacks import ReferenceSettings, leave_one_model_out_each, reference_attack
    from miaudit.audit import SignalsAuditConfig, attack_store

    cfg = SignalsAuditConfig.model_validate(
        {"seed": seed, "audit": {"attacks": list(attacks), "resamples": 0}}
    )
    run = attack_store(store, cfg, target=target)
    a = cfg.audit
    settings = ReferenceSettings(
        variance=a.lira_variance, gamma=a.rmia_gamma, a=a.rmia_a, seed=cfg.seed
    )
    before = leave_one_model_out_each(
        store,
        {name: reference_attack(name, settings) for name in attacks},
        targets=None if target is None else [target],
    )
    out = {}
    for name in attacks:
        scores, member, _ = before[name].pooled()
        out[name] = {
            "before": _figures(member, scores),
            "after": _figures(run.member, run.scores[name]),
        }
    balanced = any(n.startswith("Balanced references") for n in run.result.notes)
    return out, balanced


def _mean_se(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray(values, dtype=np.float64)
    return float(v.mean()), float(v.std(ddof=1) / np.sqrt(v.size))


def _series(
    design: str,
    k: int,
    shift: float,
    stores: int,
    n: int,
    stream: int,
    attacks: Sequence[str],
    target: int | None = 0,
) -> tuple[dict[str, dict[str, list[tuple[float, float]]]], int]:
    """Per attack and side, the (AUC, TPR) of each store (target 0 on the AUC design, every
    model on the offline one), and on how many stores the audit balanced."""
    per: dict[str, dict[str, list[tuple[float, float]]]] = {
        a: {"before": [], "after": []} for a in attacks
    }
    balanced = 0
    for s in range(stores):
        rng = np.random.default_rng([SEED, stream, k, s])
        keep, pop = _keep(design, k, n, rng)
        got, did = _measure(_store(keep, pop, rng, shift), s, attacks, target)
        balanced += did
        for a in attacks:
            for side in ("before", "after"):
                per[a][side].append(got[a][side])
    return per, balanced


def _summary(per: dict[str, dict[str, list[tuple[float, float]]]], which: int) -> dict:
    """attack → side → [mean, SE] of figure ``which`` (0: AUC, 1: TPR at 1 % FPR), plus
    whether before and after agreed exactly on every store."""
    return {
        a: {
            **{side: list(_mean_se([v[which] for v in sides[side]])) for side in sides},
            "identical": sides["before"] == sides["after"],
        }
        for a, sides in per.items()
    }


def _fmt(ms: Sequence[float]) -> str:
    return f"{ms[0]:.4f} ± {ms[1]:.4f}"


def _within(ms: Sequence[float], centre: float) -> bool:
    return abs(ms[0] - centre) <= Z * ms[1]


def _below(ms: Sequence[float], centre: float) -> bool:
    return ms[0] < centre - Z * ms[1]


def _auc_table(stores: int, n: int) -> tuple[dict[str, Any], list[str]]:
    figures: dict[str, Any] = {}
    rows = []
    for stream, (key, k, shift, words, logits) in enumerate(DESIGNS):
        fixed, balanced = _series("fixed", k, shift, stores, n, stream, ONLINE)
        indep, indep_balanced = _series("independent", k, shift, stores, n, stream, ONLINE)
        fig = _summary(fixed, 0)
        ind = _summary(indep, 0)
        for a in ONLINE:
            fig[a]["independent"] = ind[a]["after"]
        figures[key] = {
            "auc": fig,
            "balanced_stores": balanced,
            "independent_balanced_stores": indep_balanced,
        }
        rows += [
            f"| {words} | {logits} | {a} | {_fmt(fig[a]['before'])} | {_fmt(fig[a]['after'])} | {_fmt(fig[a]['independent'])} |"
            for a in ONLINE
        ]
    return figures, rows


def _tpr_table(stores: int, n: int) -> tuple[dict[str, Any], list[str], int]:
    per, balanced = _series("fixed", 8, 0.0, stores, n, 10, OFFLINE, target=None)
    tpr, auc = _summary(per, 1), _summary(per, 0)
    rows = [
        f"| {a} | {_fmt(tpr[a]['before'])} | {_fmt(tpr[a]['after'])} | {_fmt(auc[a]['before'])} | {_fmt(auc[a]['after'])} |"
        for a in OFFLINE
    ]
    return {"tpr": tpr, "auc": auc}, rows, balanced


def _test_stores() -> dict[str, list[float]]:
    """tests/audit/test_reference_balance.py::test_offline_attacks_no_longer_understate_the_low_fpr_tail's
    3 stores (its seeds and simulation): balanced TPR at 1 % FPR of each."""
    out: dict[str, list[float]] = {a: [] for a in BALANCED_OFFLINE}
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        pop = rng.random(2000) < POPULATION
        keep = (rng.random((8, 2000)).argsort(axis=0) < 4) & ~pop
        got, _ = _measure(_store(keep, pop, rng, 0.0), seed, BALANCED_OFFLINE, None)
        for a in BALANCED_OFFLINE:
            out[a].append(got[a]["after"][1])
    return out


def _verdict(auc: dict[str, Any], off: dict[str, Any], tpr_balanced: int, s: dict) -> list[str]:
    """The claim's checks that failed (empty: met)."""
    failed = []
    for key in ("k8_null", "k16_null"):
        for a in BALANCED_ONLINE:
            if not _within(auc[key]["auc"][a]["after"], 0.5):
                failed.append(f"{key} {a} balanced AUC not within {Z:g} SE of 0.5")
            if key == "k8_null" and not _below(auc[key]["auc"][a]["before"], 0.5):
                failed.append(f"{key} {a} unbalanced AUC not {Z:g} SE below 0.5")
    for key, _, _, _, _ in DESIGNS:
        if not auc[key]["auc"]["rmia_online"]["identical"]:
            failed.append(f"{key} rmia_online changed")
        if auc[key]["balanced_stores"] != s["auc_stores"]:
            failed.append(f"{key}: balanced on {auc[key]['balanced_stores']} stores")
        if auc[key]["independent_balanced_stores"]:
            failed.append(f"{key}: independent halves balanced")
    for a in BALANCED_OFFLINE:
        if not _within(off["tpr"][a]["after"], FPR):
            failed.append(f"{a} balanced TPR not within {Z:g} SE of {FPR}")
        if not _below(off["tpr"][a]["before"], FPR):
            failed.append(f"{a} unbalanced TPR not {Z:g} SE below {FPR}")
    if not _within(off["tpr"]["lira_shrunk_offline"]["after"], FPR):
        failed.append(f"lira_shrunk_offline TPR not within {Z:g} SE of {FPR}")
    if tpr_balanced != s["tpr_stores"]:
        failed.append(f"offline design balanced on {tpr_balanced} stores")
    return failed


def run(size: str) -> BenchResult:
    s = SIZES[size]
    t0 = time.perf_counter()
    auc, auc_rows = _auc_table(s["auc_stores"], s["auc_records"])
    off, tpr_rows, tpr_balanced = _tpr_table(s["tpr_stores"], s["tpr_records"])
    test_stores = _test_stores()
    wall = time.perf_counter() - t0
    failed = _verdict(auc, off, tpr_balanced, s)
    table = "\n".join(
        [
            f"Online, target model 0, references all 7 (15) others, {s['auc_records']:,} records (20 % population), {s['auc_stores']} stores; mean AUC ± SE:",
            "",
            "| design | logits | attack | unbalanced (before) | balanced (after) | independent halves |",
            "|---|---|---|---|---|---|",
            *auc_rows,
            "",
            f"No signal, each record in 4 of 8 models, {s['tpr_records']:,} records (20 % population), every model in turn the target, {s['tpr_stores']} stores; mean ± SE:",
            "",
            "| attack | TPR@1%FPR unbalanced | TPR@1%FPR balanced | AUC unbalanced | AUC balanced |",
            "|---|---|---|---|---|",
            *tpr_rows,
        ]
    )
    notes = [
        "unbalanced: leave_one_model_out_each without a use mask (every reference read); "
        "balanced: attack_store, whose note says it balanced (online RMIA and shrunk offline "
        "LiRA read every reference there too: their two columns agree); independent halves: "
        "attack_store on stores of the same size and seeds' stream whose keep is independent "
        "halves (never balanced)",
        "the 3 null stores of tests/audit/test_reference_balance.py (2,000 records, leave-one-out "
        "over 8 models), balanced TPR@1%FPR: "
        + ", ".join(f"{a} {np.mean(v):.4f}" for a, v in test_stores.items()),
        f"wall {wall:.0f} s",
        *(f"claim check failed: {f}" for f in failed),
    ]
    return BenchResult(
        name="balance",
        claim=CLAIM,
        figures={
            **s,
            "seed": SEED,
            "tolerance_se": Z,
            "auc": auc,
            "offline": off,
            "offline_balanced_stores": tpr_balanced,
            "test_stores_tpr": test_stores,
            "wall_s": wall,
        },
        table=table,
        passed=not failed,
        notes=notes,
    )
