"""The CI gate: ``--fail-on "tpr@1%fpr.upper>0.05"`` turns results into a pass/fail verdict."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from miaudit.audit._judgeable import MIN_VERDICT_REPLICATES, below_chance, why_not_judged
from miaudit.audit._results import AuditResult
from miaudit.errors import InputError
from miaudit.metrics import tpr_key

SCALAR_METRICS = ("auc", "advantage", "balanced_accuracy", "ppv", "epsilon")
_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_RULE = re.compile(
    r"^\s*(?P<metric>[a-z_]+(?:@[0-9.]+%fpr)?)(?:\.(?P<bound>point|lower|upper))?\s*(?P<op>>=|<=|>|<)\s*(?P<value>[0-9.eE+-]+)\s*$"
)


@dataclass(frozen=True)
class GateRule:
    metric: str
    bound: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}.{self.bound}{self.op}{self.value:g}"


def parse_gate_rule(text: str) -> GateRule:
    """``METRIC[.point|.lower|.upper] OP VALUE``; the bound defaults to ``upper`` (cautious)."""
    m = _RULE.match(text)
    try:
        value = float(m["value"]) if m else None
    except ValueError:
        value = None
    if not m or value is None or value != value:
        raise InputError(
            "--fail-on", f'cannot parse {text!r}; expected e.g. "tpr@1%fpr.upper>0.05" or "auc>0.6"'
        )
    metric = m["metric"]
    tpr = re.fullmatch(r"tpr@([0-9.]+)%fpr", metric)
    known = metric in SCALAR_METRICS or (tpr is not None and _positive_percent(tpr.group(1)))
    if not known:
        raise InputError(
            "--fail-on",
            f"unknown metric {metric!r} in {text!r}; known: {', '.join(SCALAR_METRICS)}, tpr@<X>%fpr",
        )
    if tpr is not None:  # "tpr@1.0%fpr" is the results' "tpr@1%fpr"
        metric = tpr_key(float(tpr.group(1)) / 100)
    _check_value(text, metric, m["op"], value)
    return GateRule(metric, m["bound"] or "upper", m["op"], value)


def _check_value(text: str, metric: str, op: str, value: float) -> None:
    """InputError unless the rule can both hold and fail for values ``metric`` can take: a rule
    written in percent (``tpr@10%fpr.upper>5``) never tripped and turned the gate off without a
    word; ``auc>-1`` always tripped (red team)."""
    # the advantage is a maximum of TPR − FPR over thresholds, which includes 0 at the ends;
    # balanced accuracy is (1 + advantage) / 2
    lo, hi = {"balanced_accuracy": (0.5, 1.0), "epsilon": (0.0, float("inf"))}.get(
        metric, (0.0, 1.0)
    )
    kind = "an ε" if metric == "epsilon" else f"{'a TPR' if metric.startswith('tpr@') else metric}"
    span = f"[{lo:g}, {hi:g}]" if metric != "epsilon" else "[0, ∞)"
    if not (lo <= value <= hi) or value == float("inf"):
        hint = f" ({value:g} % is {value / 100:g})" if hi == 1.0 and 1 < value <= 100 else ""
        raise InputError("--fail-on", f"{text!r}: {kind} lies in {span}{hint}")
    always = (op == ">=" and value <= lo) or (op == "<=" and value >= hi)
    never = (op == ">" and value >= hi) or (op == "<" and value <= lo)
    if always or never:
        raise InputError(
            "--fail-on",
            f"{text!r} {'holds for every' if always else 'holds for no'} value {kind} can take {span}: "
            f"the gate would {'always fail' if always else 'never fail'}",
        )


def check_gate_rules(
    texts: list[str],
    fprs: list[float] | tuple[float, ...],
    *,
    epsilon: bool = True,
    resamples: int | None = None,
) -> list[GateRule]:
    """Every ``--fail-on`` rule parsed and checked against what the audit will report, before
    it runs: a TPR at an FPR the audit does not compute (``fprs``) was refused only after the
    whole audit, its files written (a learner's ``tpr@5%fpr``); ``epsilon`` False: the audit
    reports no ε implied by the ROC (a reference audit), so a rule on it could only fail;
    ``resamples``: the audit's bootstrap replicates, too few of which give no bound to read."""
    rules = [parse_gate_rule(t) for t in texts]
    reported = {tpr_key(f) for f in fprs}
    if resamples is not None and resamples < MIN_VERDICT_REPLICATES:
        bounded = [t for t, r in zip(texts, rules, strict=True) if r.bound != "point"]
        if bounded:
            raise InputError(
                "--fail-on",
                f"{bounded[0]!r} reads a 95 % bound, and {resamples} bootstrap replicates give "
                f"none that holds: use --resamples {MIN_VERDICT_REPLICATES} or more (200 by "
                'default), or a rule on the point (e.g. "auc.point>0.6")',
            )
    for text, rule in zip(texts, rules, strict=True):
        if rule.metric == "epsilon" and not epsilon:
            raise InputError(
                "--fail-on",
                f"{text!r}: this audit reports no epsilon (the ε implied by one model's ROC is "
                "`miaudit attack`'s; a DP claim is tested by `miaudit dp-audit`)",
            )
        if rule.metric.startswith("tpr@") and rule.metric not in reported:
            shown = ", ".join(tpr_key(f) for f in sorted(fprs, reverse=True))
            raise InputError(
                "--fail-on",
                f"{text!r}: this audit reports the TPR at {shown} only (the FPRs it is given, [audit].fprs)",
            )
    return rules


def _positive_percent(text: str) -> bool:
    try:
        return 0 < float(text) < 100
    except ValueError:
        return False


def _confident(rule: GateRule) -> bool:
    """Whether ``rule`` trips on a bound *beyond* its value (``lower>``, ``upper<``): it then
    says some attack is surely past it, a claim about the best of several attacks. A rule that
    trips on a bound that *could* be past it (``upper>``, ``lower<``) passes only when every
    attack's own bound clears it, which each attack's own 95 % bound already makes cautious."""
    return (rule.bound == "lower" and rule.op.startswith(">")) or (
        rule.bound == "upper" and rule.op.startswith("<")
    )


def _family_bound(result: AuditResult, rule: GateRule, attack: str) -> float | None:
    """The verdict's simultaneous lower bound of ``attack`` on ``rule``'s metric, where the
    results hold one (a ``lower>`` rule on AUC or TPR at the family's FPR); None otherwise."""
    family = result.family
    if family is None or rule.bound != "lower" or rule.metric not in family.metrics:
        return None
    return family.lower.get(attack, {}).get(rule.metric)


def gate_failures(result: AuditResult, rules: list[GateRule]) -> list[str]:
    """One line per (rule, attack) that trips, each rule's worst attack first (the largest value
    for ``>`` rules, the smallest for ``<``); a rule on an unmeasurable metric trips too (the
    gate is cautious: what it cannot measure it cannot pass).

    A rule that trips when some attack is *surely* past its value (``auc.lower>0.6``) asks
    about the best of several attacks, and each attack's own 95 % bound, taken over 10 attacks,
    trips on models that leak nothing far more often than 2.5 % (26.6 % with independent
    attacks, ``verdict_null``). Such a ``lower`` rule on AUC or the TPR at the verdict's FPR
    reads the bounds that hold together for every attack (``family``, as the verdict does, with
    one attack too); elsewhere, with several attacks, its line says that its bound is one
    attack's own."""
    out = []
    why = why_not_judged(result)
    if why is not None and (
        any(r.bound != "point" for r in rules) or below_chance(result) is not None
    ):
        # bounds that do not hold, or inputs the audit itself calls wrong (then points mean
        # nothing either): judged as they stand they passed a CI gate (red team: inverted
        # membership, loss AUC 0.20, exit 0; then with a rule on the point)
        out.append(f"the results cannot be judged: {why}")
    for rule in rules:
        tripped = [j for j in _judged(result, rule) if j.tripped]
        out += [j.line for j in sorted(tripped, key=lambda j: -j.worse)]
    return out


def gate_passes(result: AuditResult, rules: list[GateRule]) -> list[str]:
    """For a gate that passed: per rule, the attack closest to tripping it and its value (what
    a CI log should show: by how much the model passed, not only that it did)."""
    lines = []
    for rule in rules:
        judged = [j for j in _judged(result, rule) if j.value is not None]
        if judged:
            j = max(judged, key=lambda j: j.worse)
            nearest = "highest" if rule.op.startswith(">") else "lowest"
            lines.append(
                f"{rule}: {nearest} {j.label} = {_shown(j.value, rule.value)} ({j.attack}){j.how}"  # type: ignore[arg-type]
            )
    return lines


@dataclass(frozen=True)
class _Judged:
    """One attack judged by one rule: the value read, what it is, and whether it trips."""

    attack: str
    value: float | None
    label: str
    how: str
    tripped: bool
    line: str
    sign: float  # +1 for ``>`` rules, −1 for ``<``

    @property
    def worse(self) -> float:
        """Larger is closer to (or further past) tripping; an unmeasurable value is last."""
        return -float("inf") if self.value is None else self.sign * self.value


def _judged(result: AuditResult, rule: GateRule) -> list[_Judged]:
    several = len(result.attacks) > 1
    sign = 1.0 if rule.op.startswith(">") else -1.0
    out = []
    for a in result.attacks:
        est = a.metric(rule.metric)
        value = est.bound(rule.bound)  # type: ignore[arg-type]
        how = ""
        joint = _family_bound(result, rule, a.name) if _confident(rule) else None
        if joint is not None and value is not None and result.family is not None:
            # one attack too: the report states the family's bound, and CI must not fail
            # on a bound the report does not state (red team)
            value = joint
            how = f" (bound holding together over {result.family.pairs} attack-metric pairs, as the verdict's)"
        elif several and _confident(rule) and value is not None:
            how = f" (this attack's own bound, not corrected for the {len(result.attacks)} attacks)"
        label = f"{rule.metric}.{rule.bound}"
        if value is None and rule.bound != "point":
            value = est.point  # interval not reliable: judge on the point estimate
            label = f"{rule.metric}.point (no {rule.bound} bound in these results)"
        elif rule.metric == "epsilon" and rule.bound == "upper":
            # the implied ε has a lower bound only: its "upper" is the point, not a bound
            label = "epsilon.point (the implied ε has no upper bound)"
        if value is None:
            line = f"{a.name}: {rule.metric} is not measurable in this audit, so {rule} fails (the gate fails what it cannot measure)"
            out.append(_Judged(a.name, None, label, how, True, line, sign))
        else:
            line = f"{a.name}: {label} = {_shown(value, rule.value)} {rule.op} {rule.value:g}{how}"
            out.append(
                _Judged(a.name, value, label, how, _OPS[rule.op](value, rule.value), line, sign)
            )
    return out


def _shown(value: float, threshold: float) -> str:
    """``value`` with as many digits (4 to 12 significant) as put it on its own side of
    ``threshold``: 0.60004 was printed "0.6 > 0.6" (red team)."""
    for digits in range(4, 13):
        text = f"{value:.{digits}g}"
        if (float(text) > threshold) == (value > threshold) and (float(text) < threshold) == (
            value < threshold
        ):
            return text
    return repr(value)
