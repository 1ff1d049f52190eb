"""Numbers and estimates as text: statuses in words, never as 0; NaN and None as n/a."""

from __future__ import annotations

import math
import re

from miaudit.metrics import Estimate


def _num(v: float | None) -> str:
    if v is None or not math.isfinite(v):
        return "n/a"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return re.sub(r"e([+-])0*(\d)", r"e\1\2", f"{v:.3g}").replace("e+", "e")  # 1e-05 → 1e-5


def _pct(v: float | None) -> str:
    return "n/a" if v is None or not math.isfinite(v) else f"{v * 100:.3g}%"


def format_estimate(e: Estimate | None, *, pct: bool = False, signed: bool = False) -> str:
    """An estimate as plain text: ``0.623 [0.616, 0.631]``; statuses in words, never as 0."""
    if e is None or e.status == "not_measurable":
        needs = getattr(e, "needs_nonmembers", None)
        return f"not measurable (needs ≥ {needs:,} non-members)" if needs else "not measurable"
    if e.point is None or not math.isfinite(
        e.point
    ):  # in memory an undefined rate is NaN; in JSON null
        return "n/a"

    def f(v: float) -> str:
        text = f"{v * 100:.3g}%" if pct else f"{v:.3f}"
        return f"+{text}" if signed and v > 0 else text

    text = f(e.point)
    if e.status == "interval_not_reliable":
        return f"{text} (interval not reliable)"
    if (
        e.lower is not None
        and e.upper is not None
        and math.isfinite(e.lower)
        and math.isfinite(e.upper)
    ):
        return f"{text} [{f(e.lower)}, {f(e.upper)}]"
    return text
