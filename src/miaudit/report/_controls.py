"""Recommended controls, each tied to the measurement that motivates it.

Every control says, in plain language, what it does, what it cannot do, and which number in
this audit makes it worth (or not worth) the cost.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from miaudit.attacks import BASELINE_ATTACK, AttackSpec, Family, Need, attack_spec
from miaudit.audit import AttackResult, AuditResult, SliceAttack, SliceResult
from miaudit.errors import InputError
from miaudit.report._format import _num, format_estimate, share
from miaudit.report._inputs import DpAuditSummary, TradeoffVariant
from miaudit.report._verdict import RiskAssessment

Priority = Literal["recommended", "consider", "lower priority"]


@dataclass(frozen=True)
class AttackerProfile:
    """What an attack needs: the simulated attacker's knowledge and queries per record."""

    knows: str
    queries: str
    query_hungry: bool = False


def attacker_profile(name: str) -> AttackerProfile | None:
    """What the registered attack ``name`` needs (None for a name no attack is registered under)."""
    try:
        spec = attack_spec(name)
    except InputError:
        return None
    queries = spec.query_cost.per_record
    if spec.trains_offline:
        queries += " (plus offline training)"
    return AttackerProfile(spec.attacker_knows, queries, query_hungry=spec.query_cost.hungry)


def _spec(name: str) -> AttackSpec | None:
    try:
        return attack_spec(name)
    except InputError:
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

    # A DP baseline's other rows keep its ε: DP variants are then those that set their own.
    dp_base = any(v.baseline and v.epsilon is not None for v in tradeoff or [])

    def is_dp(v: TradeoffVariant) -> bool:
        return v.name.startswith("dp-") or (v.epsilon is not None and not dp_base)

    def is_kind(v: TradeoffVariant) -> bool:
        if kind == "output":
            return v.name.startswith("policy-")
        if kind == "dp":
            return is_dp(v) and not v.name.startswith("policy-")
        return not is_dp(v) and not v.name.startswith("policy-")

    judged = [v for v in tradeoff or [] if not v.baseline and v.recommendation and is_kind(v)]
    if not judged:
        return None, ""
    good = [
        v
        for v in judged
        if v.recommendation.startswith("best") or v.recommendation == "recommended"
    ]
    if good:
        v = next((g for g in good if g.recommendation.startswith("best")), good[0])
        return "recommended", f" In the trade-off run, {v.name} is {v.recommendation}: {v.reason}."
    flagged = [v.name for v in judged if v.recommendation == "flagged"]
    why = "; ".join(f"{v.name}: {v.reason}" for v in judged)
    return (
        "consider" if not flagged or len(flagged) < len(judged) else "lower priority"
    ), f" In the trade-off run no variant of this kind met the rule ({why})."


@dataclass(frozen=True)
class _Strongest:
    """The strongest attack's name and headline numbers, as the controls quote them."""

    name: str
    auc: str
    tpr1: str

    @classmethod
    def of(cls, result: AuditResult) -> _Strongest:
        best = max(result.attacks, key=lambda a: a.auc.point or 0.0) if result.attacks else None
        auc = format_estimate(best.auc) if best else "n/a"
        tpr1 = best.tpr_at_fpr.get("tpr@1%fpr") if best else None
        tpr1_text = "not measurable" if tpr1 is None else format_estimate(tpr1, pct=True)
        return cls(best.name if best else "n/a", auc, tpr1_text)


def _regularisation(
    result: AuditResult, serious: bool, tradeoff: Sequence[TradeoffVariant] | None
) -> Control:
    """Regularisation: the generalisation gap (or the loss attack, its proxy)."""
    prio: Priority
    if result.utility is not None:
        gap = result.utility.generalization_gap
        because = (
            f"Train accuracy {_pct(result.utility.train_accuracy)} against test accuracy {_pct(result.utility.test_accuracy)}: "
            f"a generalisation gap of {gap * 100:.1f} points. Members are recognisable partly because the model fits them better."
        )
        prio = (
            "recommended"
            if gap >= 0.05 or serious
            else "consider"
            if gap >= 0.01
            else "lower priority"
        )
    else:
        loss = _get(result, BASELINE_ATTACK)
        because = (
            f"The loss attack, which only exploits how much better the model fits its training records, reaches AUC "
            f"{format_estimate(loss.auc)}."
            if loss is not None and loss.auc.point is not None
            else "This audit recorded no train/test accuracy; the average-case leakage above is what regularisation reduces."
        )
        prio = "recommended" if serious else "consider"
    judged, note = _judged(tradeoff, "regularisation")
    return Control(
        "regularisation",
        "Regularise: weight decay, dropout, early stopping, label smoothing",
        judged or prio,
        because + note,
        "Shrinks the gap between how the model treats training and unseen records, which lowers average-case leakage, usually at little accuracy cost.",
        "Gives no guarantee and does not stop the memorisation of rare, duplicated or outlying records: the most exposed records listed above can stay exposed.",
    )


def _dp(
    result: AuditResult,
    risk: RiskAssessment,
    strongest: _Strongest,
    tradeoff: Sequence[TradeoffVariant] | None,
    dp: DpAuditSummary | None,
) -> Control:
    """DP training: the DP audit's verdict, else the strongest attack and its implied ε."""
    prio: Priority
    if dp is not None and not dp.of_baseline:  # an audit of a DP variant, not of this model
        because = (
            f"A DP audit of {f'variant {dp.variant}' if dp.variant else 'this recipe with other DP settings'} "
            f"(claimed ε = {dp.claimed_epsilon:g}, δ = {_num(dp.delta)}): lower bound "
            f"{_num(dp.empirical_epsilon_lower_bound)}, {dp.verdict}."
        )
        prio = "consider"
    elif dp is not None:
        because = (
            f"The model was trained with a claimed ε = {dp.claimed_epsilon:g} (δ = {_num(dp.delta)}, {dp.accountant} accountant); the audit "
            f"measured a lower bound of {_num(dp.empirical_epsilon_lower_bound)}: {dp.verdict}."
        )
        prio = "recommended" if dp.verdict == "FAILED" else "consider"
    else:
        implied = [
            (a.implied_epsilon.point, a.name)
            for a in result.attacks
            if a.implied_epsilon is not None and a.implied_epsilon.point is not None
        ]
        because = f"The strongest attack ({strongest.name}) reaches AUC {strongest.auc} and TPR {strongest.tpr1} at 1% FPR"
        # the largest over the attacks, named: "its" gave the gap attack's to the strongest
        if implied:
            eps, whose = max(implied)
            because += f"; the largest ε an attack's ROC implies is ≈ {eps:.2g} ({whose}; descriptive, not a DP audit)."
        else:
            because += "."
        serious = risk.level in ("high", "moderate")
        prio = (
            "recommended" if risk.level == "high" else "consider" if serious else "lower priority"
        )
    judged, tradeoff_note = _judged(tradeoff, "dp")
    base = next((v for v in tradeoff or [] if v.baseline and v.epsilon is not None), None)
    if base is not None:  # the recipe audited is already DP-SGD: say so before suggesting it
        void = (
            f", VOID: fault injection on ({base.fault_injection})" if base.fault_injection else ""
        )
        because = (
            f"The baseline recipe is already trained with DP-SGD (recorded ε = {_num(base.epsilon)}{void}). "
            + because
        )
    return Control(
        "dp",
        "Train with differential privacy (DP-SGD) at a stated budget",
        judged or prio,
        because + tradeoff_note,
        "The only control with a guarantee: every attack, including ones not yet invented, is bounded by TPR ≤ e^ε·FPR + δ.",
        "Costs accuracy (more at small ε and on small or rare groups), and the guarantee covers only what the accountant assumed (sampling, clipping, the number of steps); a bug in any of them voids it.",
    )


def _label_only_floor(result: AuditResult) -> AttackResult | None:
    """The single-model label-only attack (the gap attack), preferring the plain threshold."""
    found = [
        (Need.KNOWN_MEMBERS in spec.needs, i, a)
        for i, a in enumerate(result.attacks)
        if (spec := _spec(a.name)) is not None
        and spec.family is Family.THRESHOLD
        and spec.label_only
    ]
    return min(found, key=lambda t: t[:2])[2] if found else None


def _reads_confidence(name: str) -> bool:
    """A plain threshold attack on the confidence scores (not on the label alone)."""
    spec = _spec(name)
    return (
        spec is not None
        and spec.family is Family.THRESHOLD
        and not spec.label_only
        and Need.KNOWN_MEMBERS not in spec.needs
    )


def _output(
    result: AuditResult, serious: bool, tradeoff: Sequence[TradeoffVariant] | None
) -> Control:
    """Output restriction: confidence attacks against the label-only floor."""
    prio: Priority
    gap_attack = _label_only_floor(result)
    conf = [a for a in result.attacks if _reads_confidence(a.name) and a.auc.point is not None]
    if gap_attack is not None and gap_attack.auc.point is not None and conf:
        top = max(conf, key=lambda a: a.auc.point or 0.0)
        because = (
            f"Attacks reading confidence scores reach AUC {format_estimate(top.auc)} ({top.name}); the gap attack, which needs only "
            f"the predicted label, still reaches {format_estimate(gap_attack.auc)}. Restricting outputs can remove at most the difference."
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
    return Control(
        "output",
        "Restrict what the API returns: top-1 label, rounded or top-k probabilities",
        judged or prio,
        because + note,
        "Cheap and costs no accuracy. Only a top-1 label takes the confidence scores away; rounding and top-k remove little (docs/lessons/2-confidence-and-output.md measures it), and on two classes the top-1 probability tells both.",
        "Label-only attacks (correctness, robustness to perturbations, distance to the decision boundary) still work; confidence masking lowers attack success only modestly.",
    )


@dataclass(frozen=True)
class _QueryProfile:
    """The measured attacks split by queries per record."""

    cheap: list[str]
    hungry: list[str]
    offline: list[str]

    @classmethod
    def of(cls, result: AuditResult) -> _QueryProfile:
        profiles = [(a.name, attacker_profile(a.name)) for a in result.attacks]
        cheap = [n for n, p in profiles if p is not None and not p.query_hungry]
        hungry = [n for n, p in profiles if p is not None and p.query_hungry]
        offline = [n for n in cheap if (spec := _spec(n)) is not None and spec.trains_offline]
        return cls(cheap, hungry, offline)

    def listed(self) -> str:
        c = self.cheap
        return f" ({', '.join(c[:4])}{'…' if len(c) > 4 else ''})" if c else ""


def _access(result: AuditResult, serious: bool, q: _QueryProfile) -> Control:
    """Access control and query budgets: queries per record."""
    because = f"{len(q.cheap)} of the {len(result.attacks)} attacks measured here need a single query per record{q.listed()}"
    because += (
        f"; {', '.join(q.hungry)} need many queries per record."
        if q.hungry
        else "; none of them is query-hungry."
    )
    who = (
        "which is what the reference-model attacks here do"
        if q.offline
        else "which is what every attack measured here does"
    )
    return Control(
        "access",
        "Control access and budget queries per account",
        "consider" if serious else "lower priority",
        because,
        "Authenticated keys, roles and per-account query and record budgets make query-hungry attacks (boundary search needs thousands of queries per record) slow, costly and attributable.",
        f"They barely affect attacks that need one query per record (after training reference models offline, if any), {who}: a budget large enough for normal use is large enough for them.",
    )


def _monitoring(serious: bool, q: _QueryProfile) -> Control:
    """Monitoring: it sees repeated, near-identical queries, not one query per record."""
    if q.hungry:
        watch = f"{', '.join(q.hungry)} send many near-identical queries per record: the kind of traffic monitoring catches. The other {len(q.cheap)} attacks here would look like normal use."
    else:
        watch = f"Every attack measured here needs one query per record{q.listed()}: monitoring would not have seen any of them. It still catches the query-hungry label-only attacks this audit did not run."
    return Control(
        "monitoring",
        "Monitor queries for probing",
        "consider" if q.hungry or serious else "lower priority",
        watch,
        "Stateful detectors flag accounts that send many near-identical queries (boundary search, noise-robustness probes), and an audit log makes misuse attributable.",
        "Query monitoring does not see attacks that need one query per record: each such query looks like normal use. It detects; it does not prevent.",
    )


def exposure_evidence(result: AuditResult) -> tuple[str, bool] | None:
    """What the most-exposed list shows, and whether it is evidence that records are exposed:
    its attack (``exposure_attack``) must rank members above non-members beyond noise (a lower
    bound above chance, the verdict's: AUC > 0.5 or TPR > 1 % at 1 % FPR). None without a list.

    An audit of saved outputs lists the top scores, so its first record is always at the 100th
    percentile: the report said so of every run, a null model's too (red team). What carries
    information is how many records share that top score and whether the attack beats chance."""
    if not result.most_exposed:
        return None
    name = result.exposure_attack or ""
    a = _get(result, name)
    family = None if result.family is None else result.family.lower.get(name, {})
    auc, tpr = a.verdict_lowers(family) if a is not None else (None, None)
    beyond = (auc is not None and auc > 0.5) or (tpr is not None and tpr > 0.01)
    first = result.most_exposed[0]
    if first.flagged_by_percent is not None:
        shown = (
            f"The most exposed record is flagged by {share(first.flagged_by_percent)}% of the models "
            f"that trained on it at {name}'s 1% FPR threshold."
        )
    else:
        tied, n = first.ties + 1, result.input.n_records
        shown = (
            f"{tied:,} of {n:,} records ({tied / max(n, 1):.1%}) share {name}'s top score: "
            f"the {len(result.most_exposed)} listed are not told apart from the others by it."
            if tied > 1
            else f"One record of {n:,} holds {name}'s top score."
        )
    if not beyond:
        return (
            f"{name} does not rank members above non-members beyond noise (no lower bound above "
            f"chance), so its most-exposed list is no evidence that any record is exposed. {shown}",
            False,
        )
    return f"{name} ranks members above non-members beyond noise. {shown}", True


# Long: the rule (bound, test) and its three outcomes, each with its own sentence.
def most_exposed_group(
    groups: Sequence[SliceResult], focus: str, confidence: float
) -> tuple[str, bool] | None:
    """(sentence, whether it stands out) on the group whose ``focus`` attack reads the highest
    AUC bound holding together over the groups compared (Bonferroni from each group's own
    interval, normal approximation: SD ≈ width / 3.92), or None without per-group figures.

    The highest of 40 groups with its own 95 % interval lay above chance for 24 of 30 models
    that leak nothing, and was quoted as "the most exposed group" and as a reason to minimise
    data (red team): a group stands out only when its corrected bound lies above 0.5 and, where
    the audit tested it by relabelling (``auc_permutation_p``, adjusted over its column's
    groups; small groups, whose bootstrap bounds are too narrow), the test agrees at the same
    one-sided level split over the columns tested."""
    rows = [
        (s, a) for s in groups for a in s.attacks if a.attack == focus and a.auc.point is not None
    ]
    if not rows:
        return None

    def bound(a: SliceAttack) -> float:
        e = a.auc
        half = e.bonferroni_half_width(len(rows), confidence)
        if half is None or e.lower is None or e.point is None:
            return -math.inf
        # never above the group's own lower end (a percentile interval may be asymmetric)
        return min(e.lower, e.point - half)

    tested = {s.column for s, a in rows if a.auc_permutation_p is not None}
    level = (1 - confidence) / 2 / max(len(tested), 1)

    def agrees(a: SliceAttack) -> bool:
        return a.auc_permutation_p is None or a.auc_permutation_p <= level

    standing = [(s, a) for s, a in rows if bound(a) > 0.5 and agrees(a)]
    if standing:
        s, a = max(standing, key=lambda r: (bound(r[1]), r[1].auc.point or 0.0))
        test = (
            f"; the permutation test over the groups of {s.column} agrees, p = {a.auc_permutation_p:.3g}"
            if a.auc_permutation_p is not None
            else ""
        )
        return (
            f"Most exposed group: {s.column} = {s.value} ({s.size:,} records), {focus} AUC "
            f"{format_estimate(a.auc)}: above chance even bounded together over the {len(rows)} "
            f"groups compared (at least {bound(a):.3f}){test}.",
            True,
        )
    s, a = max(rows, key=lambda r: (bound(r[1]), r[1].auc.point or 0.0))
    named = f"{s.column} = {s.value} ({s.size:,} records)"
    if bound(a) > 0.5:  # the bound alone: a small group, which the test does not confirm
        return (
            f"No group's {focus} AUC is shown above chance: the highest, {named}, AUC "
            f"{format_estimate(a.auc)}, has its bound above 0.5 but not the permutation test "
            f"over the groups of {s.column} (p = {a.auc_permutation_p:.3g}); a group this small "
            "gets too narrow a bootstrap interval to be read alone.",
            False,
        )
    return (
        f"No group's {focus} AUC lies above chance once bounded together over the {len(rows)} "
        f"groups compared; the highest reading is {named}, AUC {format_estimate(a.auc)}.",
        False,
    )


def _minimisation(result: AuditResult, classes: Sequence[SliceResult] = ()) -> Control:
    """Data minimisation: the most exposed records and the most exposed groups (the slices and
    the per-class rows, as the assessment reads them: the two named different groups)."""
    parts = []
    exposure = exposure_evidence(result)
    if exposure is not None and exposure[1]:
        parts.append(exposure[0])
    group = most_exposed_group(
        [*result.slices, *classes], result.exposure_attack or "", result.bootstrap.confidence
    )
    if group is not None and group[1]:  # a group that stands out only by selection is no reason
        parts.append(group[0])
    return Control(
        "minimisation",
        "Minimise the data: deduplicate, drop identifiers and unneeded features, review outliers",
        "consider" if parts else "lower priority",
        " ".join(parts)
        or (exposure[0] if exposure else "This audit listed no most-exposed records or groups."),
        "Duplicated and outlying records are the most exposed; removing duplicates, identifiers and features the task does not need shrinks what can leak.",
        "Does not protect the records that must stay, and dropping rare records can hurt the groups they represent; it lowers risk without bounding it.",
    )


def recommend(
    result: AuditResult,
    risk: RiskAssessment,
    *,
    tradeoff: Sequence[TradeoffVariant] | None = None,
    dp: DpAuditSummary | None = None,
    classes: Sequence[SliceResult] = (),
) -> list[Control]:
    """The six controls in a fixed order, with a priority that follows from this audit's numbers
    (``classes``: the report's per-class rows, from the run's restricted scores)."""
    serious = risk.level in ("high", "moderate")
    queries = _QueryProfile.of(result)
    return [
        _regularisation(result, serious, tradeoff),
        _dp(result, risk, _Strongest.of(result), tradeoff, dp),
        _output(result, serious, tradeoff),
        _access(result, serious, queries),
        _monitoring(serious, queries),
        _minimisation(result, classes),
    ]
