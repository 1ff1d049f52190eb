"""The report's verdict: a risk level from stated thresholds on the strongest evidence.

The level rests on interval **lower bounds** only, so that it states what the measurement
shows beyond sampling noise; a TPR without a reliable interval does not count towards it.
The bounds hold together for every attack and metric the verdict reads (``family`` in
results.json): the best of 20 separate 95 % bounds is above chance for about 12 % of models
that leak nothing.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from miaudit.audit import AttackResult, AuditResult, too_few_records, why_not_judged

RiskLevel = Literal["high", "moderate", "low", "not detected", "not assessed"]


@dataclass(frozen=True)
class RiskThreshold:
    """Level ``level`` holds when any attack's AUC lower bound ≥ ``auc`` or TPR@1 % FPR lower bound ≥ ``tpr``."""

    level: RiskLevel
    auc: float
    tpr: float
    meaning: str


#: Checked from the top; the first that holds is the level. Chance is AUC 0.5 and TPR 1 % at 1 % FPR.
RISK_THRESHOLDS: tuple[RiskThreshold, ...] = (
    RiskThreshold(
        "high",
        0.80,
        0.10,
        "at 1 in 100 false alarms an attacker finds at least 10 times more members than guessing",
    ),
    RiskThreshold(
        "moderate",
        0.60,
        0.03,
        "at 1 in 100 false alarms an attacker finds at least 3 times more members than guessing",
    ),
    RiskThreshold(
        "low", 0.50, 0.01, "membership is detectable beyond noise, but barely above guessing"
    ),
)


@dataclass(frozen=True)
class RiskAssessment:
    level: RiskLevel
    attack: str | None
    metric: str | None
    lower_bound: float | None
    explanation: str


def _attack_level(
    a: AttackResult, family: dict[str, float] | None, *, read_auc: bool = True
) -> tuple[int, str, float] | None:
    """(rank in RISK_THRESHOLDS, metric, lower bound) of the highest level one attack reaches;
    ``family``: its bounds simultaneous over every attack (results written before them: None,
    and the attack's own 95 % bounds); ``read_auc`` False: the TPR alone decides."""
    auc, tpr = a.verdict_lowers(family)
    if not read_auc:
        auc = None
    for rank, t in enumerate(RISK_THRESHOLDS):
        strict = t.level == "low"
        if auc is not None and (auc > t.auc if strict else auc >= t.auc):
            return rank, "AUC", auc
        if tpr is not None and (tpr > t.tpr if strict else tpr >= t.tpr):
            return rank, "TPR at 1% FPR", tpr
    return None


def _not_detected(result: AuditResult, permutation_p: float | None = None) -> RiskAssessment:
    """No attack above chance: say how much leakage the intervals leave room for
    (``permutation_p``: the bounds reached above chance, the permutation test did not)."""
    aucs = [a.auc.upper for a in result.attacks if a.auc.status == "ok" and a.auc.upper is not None]
    tprs = [
        e.upper
        for a in result.attacks
        if (e := a.tpr_at_fpr.get("tpr@1%fpr")) is not None
        and e.status == "ok"
        and e.upper is not None
    ]
    bounds = []
    if aucs:
        bounds.append(f"AUC up to {max(aucs):.3f}")
    if tprs:
        bounds.append(f"TPR at 1% FPR up to {max(tprs) * 100:.1f}%")
    missed = f" ({' and '.join(bounds)} at the upper ends of the intervals)" if bounds else ""
    alone = [a.name for a in result.attacks if _attack_level(a, None) is not None]
    if permutation_p is not None:
        first = (
            f"A permutation test of the largest AUC over the attacks finds no membership signal "
            f"(p = {permutation_p:.3g}, exact at any sample size), though some bounds lie above "
            f"chance: with {result.input.n_members:,} members and {result.input.n_nonmembers:,} "
            "non-members the bootstrap bounds are too narrow to be read alone. "
        )
    elif result.family is not None and alone:
        pairs = result.family.pairs
        first = (
            "No attack lies above chance once the bounds hold together for all "
            f"{pairs} attack and metric pairs. On its own {_pct(result)} interval, {_listed(alone)} "
            f"{'is' if len(alone) == 1 else 'each is'} above chance, as some of {pairs} separate "
            "intervals often are for a model that leaks nothing. "
        )
    else:
        first = "No attack's interval lies above chance. "
    return RiskAssessment(
        "not detected",
        None,
        None,
        None,
        first + "This is not proof of safety: the intervals bound how much "
        f"leakage this audit could have missed{missed}, and stronger attacks or more reference models may find more.",
    )


def _listed(names: list[str]) -> str:
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


def _pct(result: AuditResult) -> str:
    return f"{result.bootstrap.confidence * 100:g}%"


# Long: the level's rule in one place (not judged, judged by the permutation test alone, the
# highest level any bound reaches), each branch with its reason.
def assess_risk(result: AuditResult) -> RiskAssessment:
    """The risk level of an audit: the highest level any attack's interval lower bound reaches.

    ``low`` needs a lower bound strictly above chance (AUC > 0.5 or TPR > 1 % at 1 % FPR).
    Among attacks at the same level, the largest bound on the same metric names the attack.
    Results that cannot be judged (:func:`~miaudit.audit.why_not_judged`: too few replicates
    or records, inputs that rank non-members above members) are "not assessed", saying why.
    Where the results hold a permutation test of the largest AUC (``family.permutation_p``),
    AUC bounds count only when it too lies within the bounds' one-sided tail.
    """
    family = result.family
    p = family.permutation_p if family is not None else None
    # with a permutation test, small classes are judged by it alone (it holds at any size)
    why = why_not_judged(result, small_classes=p is None)
    if why is not None:  # no level, not even "not detected": that wording assumes bounds
        return RiskAssessment("not assessed", None, None, None, f"Not assessed: {why}.")
    small = too_few_records(result) if p is not None else None
    if small is not None and p is not None:
        return _ungraded(result, p, small)
    best: tuple[int, str, str, float] | None = None  # (rank, attack, metric, lower bound)
    # AUC bounds the permutation test does not back are too narrow to read (few records of a
    # class: 10 null attacks, 5 non-members, 36.0 % flagged); a TPR bound is measured only with
    # ≥ 1,000 non-members, where the bootstrap holds, and still counts (leakage at low FPR
    # alone, beside an AUC near 0.5, is what the strongest attacks find)
    auc_backed = p is None or p <= (1 - result.bootstrap.confidence) / 2
    for a in result.attacks:
        level = _attack_level(
            a, family.lower.get(a.name, {}) if family is not None else None, read_auc=auc_backed
        )
        if level is None:
            continue
        rank, metric, value = level
        if (
            best is None
            or rank < best[0]
            or (rank == best[0] and metric == best[2] and value > best[3])
        ):
            best = (rank, a.name, metric, value)
    if best is None:
        doubted = not auc_backed and any(
            _attack_level(a, family.lower.get(a.name, {}) if family is not None else None)
            for a in result.attacks
        )
        return _not_detected(result, permutation_p=p if doubted else None)
    rank, attack, metric, value = best
    t = RISK_THRESHOLDS[rank]
    conf = _pct(result)
    shown = f"{value * 100:.1f}%" if metric.startswith("TPR") else f"{value:.3f}"
    if family is not None:
        bound = (
            f"{conf} lower bound holding together for all {family.pairs} attack and metric pairs"
        )
    else:
        bound = f"{conf} lower bound, not corrected for the number of attacks"
    return RiskAssessment(
        t.level,
        attack,
        metric,
        value,
        f"{attack}: {metric} is at least {shown} ({bound}); {_meaning(t, metric)}.",
    )


def _ungraded(result: AuditResult, p: float, small: str) -> RiskAssessment:
    """Too few records of a class for bootstrap bounds, but a permutation test: it alone says
    whether anything is detected (29 memorised members, p = 0.001 and TPR 100 % at 1 % FPR,
    were "not assessed": red team), and the level is not graded above "low"."""
    if p > (1 - result.bootstrap.confidence) / 2:
        return RiskAssessment(
            "not detected",
            None,
            None,
            None,
            f"A permutation test of the largest AUC over the attacks finds no membership signal "
            f"(p = {p:.3g}, exact at any sample size); with {small}, no bound is read. This is "
            "not proof of safety: so few records leave room for much leakage.",
        )
    top = max(result.attacks, key=lambda a: a.auc.point or 0.0)
    return RiskAssessment(
        "low",
        top.name,
        "AUC",
        None,
        f"Membership is detectable: a permutation test of the largest AUC over the attacks gives "
        f"p = {p:.3g} (exact at any sample size; {top.name} reads AUC {top.auc.point:.3f}). With "
        f"{small}, the level is not graded above low: it may be higher.",
    )


def _meaning(t: RiskThreshold, metric: str) -> str:
    """What the level means, stated only from the metric whose reliable interval set it: a
    claim about members found at 1 in 100 false alarms needs a reliable TPR interval there."""
    if metric.startswith("TPR") or t.level == "low":
        return t.meaning
    return f"AUC at least {t.auc:.2f} marks {t.level} risk: a random member outscores a random non-member at least {t.auc * 100:.0f}% of the time"
