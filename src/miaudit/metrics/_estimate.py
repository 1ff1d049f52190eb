"""An estimate with its interval, and the names of the metrics miaudit reports."""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["ok", "not_measurable", "interval_not_reliable"]


class Estimate(BaseModel):
    """A point estimate and its bootstrap interval.

    ``status``: ``ok``; ``not_measurable`` — a TPR (or PPV) at FPR α with fewer than 10
    non-members at that rate (n0·α < 10): no point, no interval, and ``needs_nonmembers`` says
    how many non-members would make it measurable; ``interval_not_reliable`` — written by
    schema /1 results (a point with n0·α < 10), read but no longer produced.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: float | None
    lower: float | None = None
    upper: float | None = None
    status: Status = "ok"
    needs_nonmembers: int | None = None

    def bound(self, which: Literal["point", "lower", "upper"]) -> float | None:
        return {"point": self.point, "lower": self.lower, "upper": self.upper}[which]

    def bonferroni_half_width(self, family: int, confidence: float) -> float | None:
        """Half-width of a one-sided bound holding together over ``family`` such estimates
        (Bonferroni), from the normal approximation of this ``confidence`` interval (SD ≈
        width / 2z): point ∓ it. None without an interval.

        >>> round(Estimate(point=0.6, lower=0.55, upper=0.65).bonferroni_half_width(1, 0.95), 6)
        0.05
        """
        if self.lower is None or self.upper is None:
            return None
        from scipy.stats import norm

        tail = (1 - confidence) / 2
        sd = (self.upper - self.lower) / (2 * float(norm.ppf(1 - tail)))
        return float(norm.ppf(1 - tail / family)) * sd

    def coarsened(self, decimals: int) -> Estimate:
        """This estimate to ``decimals`` places: the point rounded, the interval widened to the
        places outside it (never narrower). What a shared file publishes of a small group: its
        full-precision AUC, U / (n₁·n₀), and TPR, k / n₁, gave the group's member count.

        >>> Estimate(point=0.61234, lower=0.55891, upper=0.66102).coarsened(3)
        Estimate(point=0.612, lower=0.558, upper=0.662, status='ok', needs_nonmembers=None)
        """
        scale = 10.0**decimals

        def out(v: float | None, side: int) -> float | None:
            if v is None:
                return None
            # a float a hair beyond a place (0.1 + 0.2) must not move a whole place outwards
            v = round(v, decimals + 6)
            return (math.floor(v * scale) if side < 0 else math.ceil(v * scale)) / scale

        return self.model_copy(
            update={
                "point": None if self.point is None else round(self.point, decimals),
                "lower": out(self.lower, -1),
                "upper": out(self.upper, +1),
            }
        )


def tpr_key(fpr: float) -> str:
    """Canonical metric name of a TPR at a FPR: ``tpr@1%fpr``, ``tpr@0.1%fpr``."""
    return f"tpr@{fpr * 100:g}%fpr"


def ppv_key(fpr: float) -> str:
    return f"ppv@{fpr * 100:g}%fpr"
