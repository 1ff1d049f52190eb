"""What an audit's design can measure: the smallest false-positive rates its non-members
resolve, and how many records a rate it cannot measure would need.

The rule is the results' own (docs/method.md §0, "What 'not measurable' means"): with n₀
non-members an FPR below 1/n₀ cannot be observed, and a TPR at FPR α is reported only when
α·n₀ ≥ ``MIN_NEGATIVES_AT_RATE`` (10), so it needs ⌈10/α⌉ non-members.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from miaudit.audit import AuditResult
from miaudit.metrics import MIN_NEGATIVES_AT_RATE


@dataclass(frozen=True)
class RateLimit:
    """One asked-for TPR at FPR α: whether this design measures it, and what it would need."""

    key: str
    fpr: float
    nonmembers_at_rate: float
    measurable: bool
    needs_nonmembers: int


@dataclass(frozen=True)
class DesignLimits:
    nonmembers: int
    unit: str
    smallest_observable_fpr: float
    smallest_reliable_fpr: float
    rates: tuple[RateLimit, ...]

    @property
    def unmeasurable(self) -> tuple[RateLimit, ...]:
        return tuple(r for r in self.rates if not r.measurable)


def _fpr_of(key: str) -> float | None:
    m = re.fullmatch(r"tpr@([0-9.eE+-]+)%fpr", key)
    return float(m.group(1)) / 100 if m else None


def needed_nonmembers(fpr: float) -> int:
    """Non-members a TPR at ``fpr`` needs to be measurable: ⌈10/α⌉.

    >>> needed_nonmembers(0.01)
    1000
    """
    return math.ceil(MIN_NEGATIVES_AT_RATE / fpr - 1e-9)


def design_limits(result: AuditResult) -> DesignLimits:
    """The rates asked for in ``result`` and what its non-members can measure of them."""
    n0 = max(result.input.n_nonmembers, 1)
    keys = list(dict.fromkeys(k for a in result.attacks for k in a.tpr_at_fpr))
    rates = []
    for key in keys:
        fpr = _fpr_of(key)
        if fpr is None or fpr <= 0:
            continue
        statuses = [a.tpr_at_fpr[key].status for a in result.attacks if key in a.tpr_at_fpr]
        rates.append(
            RateLimit(
                key=key,
                fpr=fpr,
                nonmembers_at_rate=fpr * n0,
                measurable=any(s != "not_measurable" for s in statuses),
                needs_nonmembers=needed_nonmembers(fpr),
            )
        )
    rates.sort(key=lambda r: -r.fpr)
    return DesignLimits(
        nonmembers=result.input.n_nonmembers,
        unit="pairs" if result.reference is not None else "records",
        smallest_observable_fpr=1 / n0,
        smallest_reliable_fpr=min(1.0, MIN_NEGATIVES_AT_RATE / n0),
        rates=tuple(rates),
    )
