"""The CI gate: ``--fail-on "tpr@1%fpr.upper>0.05"`` turns results into a pass/fail verdict."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

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
    return GateRule(metric, m["bound"] or "upper", m["op"], value)


def check_gate_rules(
    texts: list[str], fprs: list[float] | tuple[float, ...], *, epsilon: bool = True
) -> list[GateRule]:
    """Every ``--fail-on`` rule parsed and checked against what the audit will report, before
    it runs: a TPR at an FPR the audit does not compute (``fprs``) was refused only after the
    whole audit, its files written (a learner's ``tpr@5%fpr``); ``epsilon`` False: the audit
    reports no ε implied by the ROC (a reference audit), so a rule on it could only fail."""
    rules = [parse_gate_rule(t) for t in texts]
    reported = {tpr_key(f) for f in fprs}
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


def gate_failures(result: AuditResult, rules: list[GateRule]) -> list[str]:
    """One line per (rule, attack) that trips, each rule's worst attack first (the largest value
    for ``>`` rules, the smallest for ``<``); a rule on an unmeasurable metric trips too (the
    gate is cautious: what it cannot measure it cannot pass)."""
    out = []
    for rule in rules:
        tripped: list[tuple[float, str]] = []
        for a in result.attacks:
            est = a.metric(rule.metric)
            value = est.bound(rule.bound)  # type: ignore[arg-type]
            if value is None and rule.bound != "point":
                value = est.point  # interval not reliable: judge on the point estimate
            if value is None:
                tripped.append(
                    (
                        -float("inf"),
                        f"{a.name}: {rule.metric} is not measurable in this audit, so {rule} fails (the gate fails what it cannot measure)",
                    )
                )
            elif _OPS[rule.op](value, rule.value):
                worse = value if rule.op.startswith(">") else -value
                tripped.append(
                    (
                        worse,
                        f"{a.name}: {rule.metric}.{rule.bound} = {value:.4g} {rule.op} {rule.value:g}",
                    )
                )
        out += [line for _, line in sorted(tripped, key=lambda t: -t[0])]
    return out
