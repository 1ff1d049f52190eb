"""The reference-budget curve: what each extra pair of reference models buys (docs/method.md §12).

From one set of trained references, each audited model is attacked again with its first k
complementary pairs only, k = 1, 2, 4, 8, 16 (up to the audit's own k), and with no reference
at all (k = 0: attacks on the target's own outputs). Nothing is trained: the curve rescoring the
same signals costs a few seconds, and at the audit's own k (every reference) it takes the
audit's scores as they are. At each k the attack with the highest TPR at 1 % FPR (ties:
AUC) among those configured is shown, with its AUC and TPR at 1 % and 0.1 % FPR and intervals
that resample records on the same pairs as the audit (all k share one set of replicates).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict

from miaudit.attacks import (
    Family,
    ReferenceAttack,
    ReferenceSettings,
    attack_spec,
    leave_one_model_out_each,
    reference_attack,
)
from miaudit.data import SignalsStore
from miaudit.metrics import Estimate, evaluate, roc_auc_score, tpr_at_fpr, tpr_key

#: The numbers of reference pairs the curve visits (those up to the audit's own k).
BUDGET_KS = (1, 2, 4, 8, 16)
BUDGET_FPRS = (0.01, 0.001)


@dataclass(frozen=True, eq=False)
class AuditScores:
    """The audit's own scores with all its references: name → (T, m), membership (T, m) and
    the scored records (m,) — the curve's largest k when its references are the audit's."""

    scores: Mapping[str, np.ndarray]
    member: np.ndarray
    records: np.ndarray


#: Scores of the k = 0 candidates: (store, attack names, targets, records) → name → (T, m).
ZeroReferenceScorer = Callable[
    [SignalsStore, Sequence[str], list[int], np.ndarray], Mapping[str, np.ndarray]
]


class BudgetPoint(BaseModel):
    """The best attack with k reference pairs per target (k = 0: none)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    references: int
    attack: str
    auc: Estimate
    tpr_at_fpr: dict[str, Estimate]


class BudgetCurve(BaseModel):
    """The reference-budget curve of an audit: one :class:`BudgetPoint` per k."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    method: str
    candidates: dict[str, list[str]]
    points: list[BudgetPoint]


def _budget_ks(k: int) -> list[int]:
    return sorted({kk for kk in BUDGET_KS if kk < k} | {k})


def _best(y: np.ndarray, scores: Mapping[str, np.ndarray]) -> str:
    """The name with the highest TPR at 1 % FPR, then AUC (points only, no bootstrap)."""

    def key(name: str) -> tuple[float, float]:
        tpr = tpr_at_fpr(y, scores[name], fpr=0.01)
        return (-1.0 if np.isnan(tpr) else float(tpr), float(roc_auc_score(y, scores[name])))

    return max(scores, key=key)


def _reference_candidates(names: Sequence[str]) -> list[str]:
    """Reference attacks that rescore cheaply: LiRA/RMIA-like, not shadow classifiers (which
    train a classifier per target and k)."""
    out = []
    for name in names:
        spec = attack_spec(name)
        if spec.family == Family.REFERENCE:
            out.append(name)
    return out


def _scores_at(
    store: SignalsStore,
    made: Mapping[str, ReferenceAttack],
    targets: list[int],
    subset: list[list[int]],
    own: AuditScores | None,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """(name → flat scores, flat membership, records) with the references ``subset``: the
    audit's own scores when it scored these very attacks with these very references (the same
    settings give the same numbers), else a rescoring."""
    if own is not None and all(n in own.scores for n in made):
        return (
            {n: np.asarray(own.scores[n]).reshape(-1) for n in made},
            np.asarray(own.member).reshape(-1).astype(np.int8),
            np.asarray(own.records),
        )
    scored = leave_one_model_out_each(store, made, targets=targets, reference_sets=subset)
    first = next(iter(scored.values()))
    return (
        {n: p.scores.reshape(-1) for n, p in scored.items()},
        first.member.reshape(-1).astype(np.int8),
        first.records,
    )


# Long: one pass over k, each step three lines (score, check, pick); split, the state
# (member, scores, chosen) would travel through four helpers.
def budget_curve(
    store: SignalsStore,
    settings: ReferenceSettings,
    attacks: Sequence[str],
    targets: list[int],
    refs: list[list[int]],
    *,
    zero: tuple[Sequence[str], ZeroReferenceScorer] | None,
    resamples: int,
    seed: np.random.Generator | int,
    own: AuditScores | None = None,
) -> BudgetCurve | None:
    """The curve for an audit whose targets each have k complementary pairs ``refs[t]`` (the
    models of pair 1, then pair 2, …); None without a reference attack to rescore.

    ``zero``: the k = 0 candidates and how to score them on the targets' own outputs
    (thresholds today; QMIA joins here when registered as a target-output attack).
    ``own``: the audit's scores with all of ``refs``, taken as they are at the largest k
    when that k uses every reference of every target (not rescored).
    """
    names = _reference_candidates(attacks)
    if not names or not refs or any(len(r) % 2 for r in refs):
        return None
    k_max = min(len(r) for r in refs) // 2
    made = {n: reference_attack(n, settings) for n in names}
    chosen: dict[str, np.ndarray] = {}
    picked: dict[str, str] = {}
    member = records = None
    for k in _budget_ks(k_max):
        subset = [r[: 2 * k] for r in refs]
        reuse = own if subset == refs else None
        flat, member, records = _scores_at(store, made, targets, subset, reuse)
        if any(np.isnan(s).any() for s in flat.values()):
            return None  # some pair is undefined: the k would not share pairs
        best = _best(member, flat)
        chosen[f"k={k}"], picked[f"k={k}"] = flat[best], best
    assert member is not None and records is not None
    if zero is not None and zero[0]:
        at_zero = zero[1](store, zero[0], targets, records)
        flat = {n: np.asarray(s).reshape(-1) for n, s in at_zero.items()}
        best = _best(member, flat)
        chosen = {"k=0": flat[best], **chosen}
        picked["k=0"] = best
    return _curve(member, chosen, picked, names, zero, records, len(targets), resamples, seed)


def _curve(
    member: np.ndarray,
    chosen: dict[str, np.ndarray],
    picked: dict[str, str],
    names: list[str],
    zero: tuple[Sequence[str], ZeroReferenceScorer] | None,
    records: np.ndarray,
    n_targets: int,
    resamples: int,
    seed: np.random.Generator | int,
) -> BudgetCurve:
    ev = evaluate(
        member,
        chosen,
        fprs=BUDGET_FPRS,
        n_resamples=resamples,
        groups=np.tile(records, n_targets),
        rng=seed,
    )
    points = [
        BudgetPoint(
            references=int(label.split("=")[1]),
            attack=picked[label],
            auc=ev.estimate(label, "auc"),
            tpr_at_fpr={tpr_key(f): ev.estimate(label, tpr_key(f)) for f in BUDGET_FPRS},
        )
        for label in chosen
    ]
    zero_names = list(zero[0]) if zero is not None else []
    return BudgetCurve(
        method=(
            "each audited model rescored with its first k complementary pairs of the audit's references (nothing retrained); "
            "at each k the attack with the highest TPR at 1 % FPR among the candidates; intervals resample records, one set of replicates for all k"
        ),
        candidates={"k=0": zero_names, "k≥1": names},
        points=points,
    )
