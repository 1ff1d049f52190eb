"""The CI gate: ``--fail-on "tpr@1%fpr.upper>0.05"`` turns results into a pass/fail verdict."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from miaudit.audit._results import AuditResult
from miaudit.errors import InputError

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
    return GateRule(metric, m["bound"] or "upper", m["op"], value)


def _positive_percent(text: str) -> bool:
    try:
        return 0 < float(text) < 100
    except ValueError:
        return False


def gate_failures(result: AuditResult, rules: list[GateRule]) -> list[str]:
    """One line per (rule, attack) that trips; a rule on an unmeasurable metric trips too."""
    out = []
    for rule in rules:
        for a in result.attacks:
            est = a.metric(rule.metric)
            value = est.bound(rule.bound)  # type: ignore[arg-type]
            if value is None and rule.bound != "point":
                value = est.point  # interval not reliable: judge on the point estimate
            if value is None:
                out.append(
                    f"{a.name}: {rule.metric} is not measurable, so {rule} cannot be shown to hold"
                )
            elif _OPS[rule.op](value, rule.value):
                out.append(
                    f"{a.name}: {rule.metric}.{rule.bound} = {value:.4g} {rule.op} {rule.value:g}"
                )
    return out
