"""The CI gate: ``--fail-on "tpr@1%fpr.upper>0.05"`` turns results into a pass/fail verdict."""

from __future__ import annotations

import operator
import re
from dataclasses import dataclass

from miaudit.audit._results import AuditResult
from miaudit.errors import InputError

_OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le}
_RULE = re.compile(r"^\s*(?P<metric>[a-z_]+(?:@[0-9.]+%fpr)?)(?:\.(?P<bound>point|lower|upper))?\s*(?P<op>>=|<=|>|<)\s*(?P<value>[0-9.eE+-]+)\s*$")


@dataclass(frozen=True)
class GateRule:
    metric: str
    bound: str
    op: str
    value: float

    def __str__(self) -> str:
        return f"{self.metric}.{self.bound}{self.op}{self.value:g}"


def parse_rule(text: str) -> GateRule:
    """``METRIC[.point|.lower|.upper] OP VALUE``; the bound defaults to ``upper`` (cautious)."""
    m = _RULE.match(text)
    if not m:
        raise InputError("--fail-on", f"cannot parse {text!r}; expected e.g. \"tpr@1%fpr.upper>0.05\" or \"auc>0.6\"")
    return GateRule(m["metric"], m["bound"] or "upper", m["op"], float(m["value"]))


def failures(result: AuditResult, rules: list[GateRule]) -> list[str]:
    """One line per (rule, attack) that trips; a rule on an unmeasurable metric trips too."""
    out = []
    for rule in rules:
        for a in result.attacks:
            est = a.metric(rule.metric)
            value = est.bound(rule.bound)  # type: ignore[arg-type]
            if value is None and rule.bound != "point":
                value = est.point  # interval not reliable: judge on the point estimate
            if value is None:
                out.append(f"{a.name}: {rule.metric} is not measurable, so {rule} cannot be shown to hold")
            elif _OPS[rule.op](value, rule.value):
                out.append(f"{a.name}: {rule.metric}.{rule.bound} = {value:.4g} {rule.op} {rule.value:g}")
    return out
