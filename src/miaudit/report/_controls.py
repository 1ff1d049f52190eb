"""Recommended controls, each tied to the measurement that motivates it.

Every control says, in plain language, what it does, what it cannot do, and which number in
this audit makes it worth (or not worth) the cost.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from miaudit.audit import AuditResult
from miaudit.audit._results import AttackResult
from miaudit.report._format import _num
from miaudit.report._inputs import DpAuditSummary, TradeoffVariant
from miaudit.report._verdict import RiskAssessment

Priority = Literal["recommended", "consider", "lower priority"]


@dataclass(frozen=True)
class AttackerProfile:
    """What an attack needs: the simulated attacker's knowledge and queries per record."""

    knows: str
    queries: str
    query_hungry: bool = False


_THRESHOLD = AttackerProfile(
    "the model's output probabilities on the record and its true label; no training data", "1"
)
_PROFILES: tuple[tuple[str, AttackerProfile], ...] = (
    (
        r"^gap(_by_class)?$",
        AttackerProfile(
            "only whether the model labels the record correctly (works through label-only APIs)",
            "1",
        ),
    ),
    (
        r"_by_class$",
        AttackerProfile(
            "the model's outputs and true label, plus a per-class threshold fitted on records of known membership",
            "1",
        ),
    ),
    (r"^(loss|confidence|entropy|modified_entropy)$", _THRESHOLD),
    (
        r"^(lira|rmia)_online$",
        AttackerProfile(
            "the training recipe and population data from the same distribution: trains reference models with and without each record (2k models)",
            "1 (plus offline training)",
        ),
    ),
    (
        r"^(lira|rmia)_offline$",
        AttackerProfile(
            "the training recipe and population data from the same distribution: trains k reference models without the record",
            "1 (plus offline training)",
        ),
    ),
    (
        r"^(shadow|ml_leaks)$",
        AttackerProfile(
            "population data: trains shadow models and an attack classifier on their outputs",
            "1 (plus offline training)",
        ),
    ),
    (
        r"augmentation|noise",
        AttackerProfile(
            "predicted labels of perturbed copies of the record",
            "tens (one per perturbed copy)",
            query_hungry=True,
        ),
    ),
    (
        r"boundary",
        AttackerProfile(
            "predicted labels only, searching for the nearest label flip",
            "about 1,000–10,000",
            query_hungry=True,
        ),
    ),
)


def attacker_profile(name: str) -> AttackerProfile | None:
    for pattern, profile in _PROFILES:
        if re.search(pattern, name):
            return profile
    return None


@dataclass(frozen=True)
class Control:
    key: str
    title: str
    priority: Priority
    because: str
    does: str
    cannot: str


def _pct(v: float | None) -> str:
    return "n/a" if v is None else f"{v * 100:.1f}%"


def _get(result: AuditResult, name: str) -> AttackResult | None:
    return next((a for a in result.attacks if a.name == name), None)


def _judged(tradeoff: Sequence[TradeoffVariant] | None, kind: str) -> tuple[Priority | None, str]:
    """The trade-off run's verdict (audit/_tradeoff.py :func:`recommendation`) for the variants
    of one kind of control: "recommended" when one of them met the rule, else a note on why not."""

    def is_kind(v: TradeoffVariant) -> bool:
        if kind == "dp":
            return v.epsilon is not None
        if kind == "output":
            return v.name.startswith("policy-")
        return v.epsilon is None and not v.name.startswith("policy-")

    judged = [v for v in tradeoff or [] if not v.baseline and v.recommendation and is_kind(v)]
    if not judged:
        return None, ""
    good = [v for v in judged if v.recommendation in ("best", "recommended")]
    if good:
        v = next((g for g in good if g.recommendation == "best"), good[0])
        return "recommended", f" In the trade-off run, {v.name} is {v.recommendation}: {v.reason}."
    flagged = [v.name for v in judged if v.recommendation == "flagged"]
    why = "; ".join(f"{v.name}: {v.reason}" for v in judged)
    return (
        "consider" if not flagged or len(flagged) < len(judged) else "lower priority"
    ), f" In the trade-off run no variant of this kind met the rule ({why})."


def recommend(
    result: AuditResult,
    risk: RiskAssessment,
    *,
    tradeoff: Sequence[TradeoffVariant] | None = None,
    dp: DpAuditSummary | None = None,
) -> list[Control]:
    """The six controls in a fixed order, with a priority that follows from this audit's numbers."""
    serious = risk.level in ("high", "moderate")
    strongest = max(result.attacks, key=lambda a: a.auc.point or 0.0) if result.attacks else None
    s_auc = f"{strongest.auc.point:.3f}" if strongest and strongest.auc.point is not None else "n/a"
    tpr1 = strongest.tpr_at_fpr.get("tpr@1%fpr") if strongest else None
    tpr1_text = "not measurable" if tpr1 is None or tpr1.point is None else _pct(tpr1.point)
    controls: list[Control] = []

    # Regularisation: the generalisation gap (or the loss attack, its proxy).
    if result.utility is not None:
        gap = result.utility.generalization_gap
        because = (
            f"Train accuracy {_pct(result.utility.train_accuracy)} against test accuracy {_pct(result.utility.test_accuracy)}: "
            f"a generalisation gap of {gap * 100:.1f} points. Members are recognisable partly because the model fits them better."
        )
        prio: Priority = (
            "recommended"
            if gap >= 0.05 or serious
            else "consider"
            if gap >= 0.01
            else "lower priority"
        )
    else:
        loss = _get(result, "loss")
        because = (
            f"The loss attack, which only exploits how much better the model fits its training records, reaches AUC "
            f"{loss.auc.point:.3f}."
            if loss is not None and loss.auc.point is not None
            else "This audit recorded no train/test accuracy; the average-case leakage above is what regularisation reduces."
        )
        prio = "recommended" if serious else "consider"
    judged, note = _judged(tradeoff, "regularisation")
    prio, because = judged or prio, because + note
    controls.append(
        Control(
            "regularisation",
            "Regularise: weight decay, dropout, early stopping, label smoothing",
            prio,
            because,
            "Shrinks the gap between how the model treats training and unseen records, which lowers average-case leakage, usually at little accuracy cost.",
            "Gives no guarantee and does not stop the memorisation of rare, duplicated or outlying records: the most exposed records listed above can stay exposed.",
        )
    )

    # DP training.
    if dp is not None:
        because = (
            f"The model was trained with a claimed ε = {dp.claimed_epsilon:g} (δ = {_num(dp.delta)}, {dp.accountant} accountant); the audit "
            f"measured a lower bound of {_num(dp.empirical_epsilon_lower_bound)}: {dp.verdict}."
        )
        prio = "recommended" if dp.verdict == "FAILED" else "consider"
    else:
        eps = [
            a.implied_epsilon.point
            for a in result.attacks
            if a.implied_epsilon is not None and a.implied_epsilon.point is not None
        ]
        because = f"The strongest attack ({strongest.name if strongest else 'n/a'}) reaches AUC {s_auc} and TPR {tpr1_text} at 1% FPR"
        because += (
            f"; its ROC implies ε ≈ {max(eps):.2g} (descriptive, not a DP audit)." if eps else "."
        )
        prio = (
            "recommended" if risk.level == "high" else "consider" if serious else "lower priority"
        )
    judged, tradeoff_note = _judged(tradeoff, "dp")
    prio = judged or prio
    controls.append(
        Control(
            "dp",
            "Train with differential privacy (DP-SGD) at a stated budget",
            prio,
            because + tradeoff_note,
            "The only control with a guarantee: every attack, including ones not yet invented, is bounded by TPR ≤ e^ε·FPR + δ.",
            "Costs accuracy (more at small ε and on small or rare groups), and the guarantee covers only what the accountant assumed (sampling, clipping, the number of steps); a bug in any of them voids it.",
        )
    )

    # Output restriction: confidence attacks vs the label-only floor.
    gap_attack = _get(result, "gap") or _get(result, "gap_by_class")
    conf = [
        a
        for a in result.attacks
        if a.name in ("loss", "confidence", "entropy", "modified_entropy")
        and a.auc.point is not None
    ]
    if gap_attack is not None and gap_attack.auc.point is not None and conf:
        top = max(conf, key=lambda a: a.auc.point or 0.0)
        because = (
            f"Attacks reading confidence scores reach AUC {top.auc.point:.3f} ({top.name}); the gap attack, which needs only "
            f"the predicted label, still reaches {gap_attack.auc.point:.3f}. Restricting outputs can remove at most the difference."
        )
        prio = (
            "recommended"
            if (top.auc.point or 0) - (gap_attack.auc.point or 0) >= 0.02 and serious
            else "consider"
        )
    else:
        because = "This audit did not compare confidence-based with label-only attacks; the label-only attacks of miaudit measure what restriction leaves."
        prio = "consider"
    judged, note = _judged(tradeoff, "output")
    prio, because = judged or prio, because + note
    controls.append(
        Control(
            "output",
            "Restrict what the API returns: top-1 label, rounded or top-k probabilities",
            prio,
            because,
            "Cheap and costs no accuracy: attacks that read confidence scores lose most of their signal.",
            "Label-only attacks (correctness, robustness to perturbations, distance to the decision boundary) still work; confidence masking lowers attack success only modestly.",
        )
    )

    # Access control and query budgets: queries per record.
    profiles = [(a.name, attacker_profile(a.name)) for a in result.attacks]
    cheap = [n for n, p in profiles if p is not None and not p.query_hungry]
    hungry = [n for n, p in profiles if p is not None and p.query_hungry]
    offline = [n for n in cheap if "online" in n or "offline" in n or n in ("shadow", "ml_leaks")]
    listed = f" ({', '.join(cheap[:4])}{'…' if len(cheap) > 4 else ''})" if cheap else ""
    because = f"{len(cheap)} of the {len(result.attacks)} attacks measured here need a single query per record{listed}"
    because += (
        f"; {', '.join(hungry)} need many queries per record."
        if hungry
        else "; none of them is query-hungry."
    )
    who = (
        "which is what the reference-model attacks here do"
        if offline
        else "which is what every attack measured here does"
    )
    controls.append(
        Control(
            "access",
            "Control access and budget queries per account",
            "consider" if serious else "lower priority",
            because,
            "Authenticated keys, roles and per-account query and record budgets make query-hungry attacks (boundary search needs thousands of queries per record) slow, costly and attributable.",
            f"They barely affect attacks that need one query per record (after training reference models offline, if any), {who}: a budget large enough for normal use is large enough for them.",
        )
    )

    # Monitoring: it sees repeated, near-identical queries, not one query per record.
    if hungry:
        watch = f"{', '.join(hungry)} send many near-identical queries per record: the kind of traffic monitoring catches. The other {len(cheap)} attacks here would look like normal use."
    else:
        watch = f"Every attack measured here needs one query per record{listed}: monitoring would not have seen any of them. It still catches the query-hungry label-only attacks this audit did not run."
    controls.append(
        Control(
            "monitoring",
            "Monitor queries for probing",
            "consider" if hungry or serious else "lower priority",
            watch,
            "Stateful detectors flag accounts that send many near-identical queries (boundary search, noise-robustness probes), and an audit log makes misuse attributable.",
            "Query monitoring does not see attacks that need one query per record: each such query looks like normal use. It detects; it does not prevent.",
        )
    )

    # Data minimisation: the most exposed records and the most exposed slices.
    parts = []
    if result.most_exposed:
        first, n = result.most_exposed[0], len(result.most_exposed)
        if first.flagged_by_percent is None:
            reach = f"reach score percentile {first.score_percentile:g}"
        else:
            reach = f"are flagged by up to {first.flagged_by_percent:g}% of the models that trained on them"
        parts.append(
            f"The {n} most exposed records {reach} at the strongest attack ({result.exposure_attack})."
        )
    measured = [
        (s, a)
        for s in result.slices
        for a in s.attacks
        if a.attack == result.exposure_attack and a.auc.point is not None
    ]
    if measured:
        s, a = max(measured, key=lambda sa: sa[1].auc.point or 0.0)
        parts.append(
            f"The most exposed group is {s.column} = {s.value} ({s.n_members} members) with AUC {a.auc.point:.3f}."
        )
    controls.append(
        Control(
            "minimisation",
            "Minimise the data: deduplicate, drop identifiers and unneeded features, review outliers",
            "consider" if parts else "lower priority",
            " ".join(parts) or "This audit listed no most-exposed records or groups.",
            "Duplicated and outlying records are the most exposed; removing duplicates, identifiers and features the task does not need shrinks what can leak.",
            "Does not protect the records that must stay, and dropping rare records can hurt the groups they represent; it lowers risk without bounding it.",
        )
    )
    return controls
