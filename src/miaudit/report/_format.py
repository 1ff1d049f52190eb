"""Numbers and estimates as text: statuses in words, never as 0; NaN and None as n/a.

Rounding rule (docs/method.md §16): an estimate with an interval is
printed to the decimal place its interval justifies, one digit beyond the first significant
digit of the interval's width (width 0.015 → 3 decimals; 3.1 percentage points → 1 decimal),
with the point and both ends to the same place; a figure without an interval gets 3 significant
digits; a descriptive share (a percentile, a percentage of models) gets at most 1 decimal.
"""

from __future__ import annotations

import math
import re

from miaudit.metrics import Estimate

#: Most decimals an interval may justify: a rate on [0, 1] and a percentage.
MAX_DECIMALS = 4
MAX_PCT_DECIMALS = 2
#: Decimals of a degenerate interval (zero width) on [0, 1].
POINT_DECIMALS = 3


def _num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{v:.3g}").replace("e+", "e")  # 1e-05 → 1e-5


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v * 100:.3g}%"


def share(v: float | None) -> str:
    """A descriptive percentage already on 0–100 (a percentile, a share of models): ≤ 1 decimal."""
    if v is None or not math.isfinite(v):
        return "n/a"
    text = f"{v:.1f}"
    return text.removesuffix(".0")


def interval_decimals(lower: float, upper: float, *, pct: bool = False) -> int:
    """Decimals an interval justifies: one beyond the first significant digit of its width.

    >>> interval_decimals(0.616, 0.631)
    3
    >>> interval_decimals(0.065, 0.096, pct=True)  # 3.1 percentage points
    1
    """
    cap = MAX_PCT_DECIMALS if pct else MAX_DECIMALS
    width = (upper - lower) * (100.0 if pct else 1.0)
    if not math.isfinite(width) or width <= 0:
        return min(cap, 1 if pct else POINT_DECIMALS)
    return min(cap, max(0, 1 - math.floor(math.log10(width))))


def format_estimate(e: Estimate | None, *, pct: bool = False, signed: bool = False) -> str:
    """An estimate as plain text: ``0.623 [0.616, 0.631]``; statuses in words, never as 0.

    Rounded to the precision its interval justifies (:func:`interval_decimals`).
    """
    if e is None or e.status == "not_measurable":
        needs = getattr(e, "needs_nonmembers", None)
        return f"not measurable (needs ≥ {needs:,} non-members)" if needs else "not measurable"
    if e.point is None or not math.isfinite(
        e.point
    ):  # in memory an undefined rate is NaN; in JSON null
        return "n/a"
    has_interval = (
        e.lower is not None
        and e.upper is not None
        and math.isfinite(e.lower)
        and math.isfinite(e.upper)
    )
    # with an interval: fixed decimals it justifies; without: 3 significant digits
    spec = ".3g"
    if has_interval:
        assert e.lower is not None and e.upper is not None  # for mypy
        spec = f".{interval_decimals(e.lower, e.upper, pct=pct)}f"

    def f(v: float) -> str:
        text = f"{v * 100:{spec}}%" if pct else f"{v:{spec}}"
        if float(text.rstrip("%")) == 0:
            return text.lstrip("-")  # no "-0.00"
        return f"+{text}" if signed and v > 0 else text

    text = f(e.point)
    if e.status == "interval_not_reliable":
        return f"{text} (interval not reliable)"
    if has_interval:
        assert e.lower is not None and e.upper is not None
        return f"{text} [{f(e.lower)}, {f(e.upper)}]"
    return text
