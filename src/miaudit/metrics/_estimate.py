"""An estimate with its interval, and the names of the metrics miaudit reports."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

Status = Literal["ok", "not_measurable", "interval_not_reliable"]


class Estimate(BaseModel):
    """A point estimate and its bootstrap interval.

    ``status``: ``not_measurable`` — the rate asked for is below 1/n0 (no point, no interval);
    ``interval_not_reliable`` — a TPR at FPR α with n0·α < 10 (point given, no interval).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    point: float | None
    lower: float | None = None
    upper: float | None = None
    status: Status = "ok"

    def bound(self, which: Literal["point", "lower", "upper"]) -> float | None:
        return {"point": self.point, "lower": self.lower, "upper": self.upper}[which]


def tpr_key(fpr: float) -> str:
    """Canonical metric name of a TPR at a FPR: ``tpr@1%fpr``, ``tpr@0.1%fpr``."""
    return f"tpr@{fpr * 100:g}%fpr"


def ppv_key(fpr: float) -> str:
    return f"ppv@{fpr * 100:g}%fpr"
