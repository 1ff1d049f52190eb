"""What the report accepts besides an :class:`~miaudit.audit.AuditResult`.

Small frozen records, each holding aggregates only (never a record id, never membership):

- :class:`ScoreHistogram` — one attack's member and non-member score counts on shared bins.
- :class:`TradeoffVariant` — one trained variant of a recipe in a privacy–utility trade-off.
- :class:`DpAuditSummary` — a DP claim and what an empirical audit measured against it.
"""

from __future__ import annotations

import itertools
import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from miaudit.metrics import Estimate


class _Input(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


BinningKind = Literal["equal-width", "quantile"]


class ScoreHistogram(_Input):
    """Counts of one attack's scores for members and non-members on the same bins.

    ``edges`` has one more entry than each count list. Scores outside the edges (the report
    clips the 0.5 % tails) are counted in the end bins; ``clipped`` says whether any were.
    ``unit`` is what was counted: ``records``, or ``pairs`` when several models scored each
    record (reference audits).
    """

    attack: str
    edges: list[float] = Field(min_length=2)
    members: list[int]
    nonmembers: list[int]
    clipped: bool = False
    unit: Literal["records", "pairs"] = "records"
    #: "quantile": edges at quantiles of the pooled scores (a skewed score), drawn at equal widths.
    binning: BinningKind = "equal-width"

    @model_validator(mode="after")
    def _shape(self) -> ScoreHistogram:
        n = len(self.edges) - 1
        if len(self.members) != n or len(self.nonmembers) != n:
            raise ValueError(
                f"need {n} member and non-member counts for {n + 1} edges, got {len(self.members)} and {len(self.nonmembers)}"
            )
        if any(not math.isfinite(e) for e in self.edges) or any(
            b <= a for a, b in itertools.pairwise(self.edges)
        ):
            raise ValueError("edges must be finite and strictly increasing")
        if min(self.members + self.nonmembers) < 0:
            raise ValueError("counts must be non-negative")
        return self


class TradeoffVariant(_Input):
    """One variant of a recipe (a defense, a budget, a regulariser) and what it costs and leaks.

    ``auc`` and ``tpr_at_1pct_fpr`` are those of the strongest attack on this variant
    (``strongest_attack``). ``epsilon`` is the claimed DP ε of the variant (None: not DP-trained).
    """

    name: str = Field(min_length=1)
    description: str = ""
    test_accuracy: float = Field(ge=0.0, le=1.0)
    #: test_accuracy with its interval resampling records (None: not measured).
    test_accuracy_interval: Estimate | None = None
    train_accuracy: float | None = Field(None, ge=0.0, le=1.0)
    generalization_gap: float | None = None
    strongest_attack: str
    auc: Estimate
    tpr_at_1pct_fpr: Estimate
    epsilon: float | None = Field(None, ge=0.0)
    #: δ of the variant's (ε, δ) claim (None: not DP-trained, or not given).
    delta: float | None = Field(None, gt=0.0, lt=1.0)
    baseline: bool = False
    #: Paired against the baseline (audit/_tradeoff.py): AUC reduction and accuracy loss.
    risk_reduction: Estimate | None = None
    accuracy_loss: Estimate | None = None
    #: "baseline", "best", "recommended", "not recommended", "flagged" or "" (not judged).
    recommendation: str = ""
    reason: str = ""
    compared_with: str = ""
    #: DP-SGD fault injection the models trained with (None: none): ``epsilon`` is then void.
    fault_injection: str | None = None


class DpAuditSummary(_Input):
    """A differential-privacy claim and the empirical lower bound an audit measured against it.

    The verdict is computed, not given: ``FAILED`` when the empirical lower bound exceeds the
    claimed ε (a bug in the training, the accounting or the audit), else ``PASSED``, which
    only means that this audit found no contradiction: it can never certify more than
    ``max_certifiable_epsilon``.
    """

    claimed_epsilon: float = Field(ge=0.0)
    delta: float = Field(ge=0.0, lt=1.0)
    accountant: str = Field(min_length=1)
    method: str = Field(min_length=1)
    empirical_epsilon_lower_bound: float = Field(ge=0.0)
    significance: float = Field(0.05, gt=0.0, lt=1.0)
    max_certifiable_epsilon: float | None = Field(None, ge=0.0)
    trials: int | None = Field(None, ge=1)
    trials_unit: str = "canaries"
    notes: list[str] = []
    #: Beside a trade-off: the variant whose recipe the DP audit is of (None: none of them, or
    #: no trade-off) and whether that is the baseline the report's verdict is about. A DP audit
    #: of another recipe never goes in the baseline's verdict (red team).
    variant: str | None = None
    of_baseline: bool = True

    @property
    def verdict(self) -> Literal["PASSED", "FAILED"]:
        return "FAILED" if self.empirical_epsilon_lower_bound > self.claimed_epsilon else "PASSED"
