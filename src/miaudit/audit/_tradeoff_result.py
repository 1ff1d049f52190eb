"""What ``miaudit tradeoff`` writes: frozen, schema-versioned records that round-trip through
``tradeoff.json`` (shareable: aggregates only).

The JSON keeps the layout of schema ``miaudit.tradeoff/1`` as the earlier dataclasses wrote it:
``"schema"`` at the top, each attack's TPR under ``"tpr@1%fpr"``, ``"queries_per_record"`` only
for query attacks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
)

from miaudit.audit._results import _Record, dump_record, parse_record, read_record
from miaudit.metrics import Estimate, tpr_key

TRADEOFF_SCHEMA: Literal["miaudit.tradeoff/1"] = "miaudit.tradeoff/1"
TRADEOFF_FILE = "tradeoff.json"
TPR1 = tpr_key(0.01)


#: Most variants a trade-off file may hold (a recipe's variants are a handful; a crafted file of
#: 1,600 took the report 30 s).
MAX_VARIANTS = 256


def checked_estimate(e: Estimate | None, lo: float, hi: float, name: str) -> Estimate | None:
    """``e`` if its numbers are finite, within [lo, hi], its interval ordered and its count of
    non-members not negative; else ValueError naming ``name`` (a crafted trade-off file printed
    an AUC of -4.0 [-5.0, -3.0] and an interval [0.9, -0.9] in the shared report)."""
    if e is None:
        return e
    for value in (e.point, e.lower, e.upper):
        if value is not None and not (math.isfinite(value) and lo <= value <= hi):
            raise ValueError(f"{name} must lie in [{lo:g}, {hi:g}], got {value!r}")
    if e.lower is not None and e.upper is not None and e.lower > e.upper:
        raise ValueError(f"{name}'s interval is reversed ({e.lower!r} > {e.upper!r})")
    if e.needs_nonmembers is not None and e.needs_nonmembers < 0:
        raise ValueError(f"{name}'s needs_nonmembers must not be negative")
    return e


def fault_words(fault: str) -> str:
    """Why an ε recorded under fault injection means nothing, in a few words."""
    return f"fault injection on ({fault}): the training did not run the mechanism the accountant was told"


def _rate(name: str) -> Any:
    return AfterValidator(lambda e: checked_estimate(e, 0.0, 1.0, name))


def _difference(name: str) -> Any:
    return AfterValidator(lambda e: checked_estimate(e, -1.0, 1.0, name))


def _inside(folder: str) -> str:
    """A variant's folder as a relative path that stays in the trade-off folder (a crafted
    file pointed the report at another run's results and restricted scores)."""
    parts = Path(folder).parts
    if not parts or Path(folder).is_absolute() or ".." in parts:
        raise ValueError(f"folder must be a path inside the trade-off folder, got {folder[:80]!r}")
    return folder


class AttackFigures(_Record):
    """One attack on one variant: AUC and TPR at 1 % FPR, with record-resampling intervals;
    ``queries_per_record`` for the query attacks of a policy variant (else absent)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    auc: Annotated[Estimate, _rate("auc")]
    tpr_at_1pct_fpr: Annotated[Estimate, _rate(TPR1)] = Field(alias=TPR1)
    queries_per_record: int | None = Field(None, ge=1)

    absent_when_none = ("queries_per_record",)


class VariantComparison(_Record):
    """Paired AUC(baseline's strongest attack) − AUC(a training variant's strongest) on the same
    (target, record) pairs."""

    kind: Literal["baseline_vs_variant"] = "baseline_vs_variant"
    variant: str
    a: str
    b: str
    metric: Literal["auc"] = "auc"
    difference: Annotated[Estimate, _difference("difference")]
    pairs: int = Field(ge=0)
    #: The difference's lower bound holding together over every judged variant (Bonferroni).
    simultaneous_lower: float | None = Field(None, ge=-1, le=1)


class RobustnessComparison(_Record):
    """Under label-only: paired AUC(a robustness attack) − AUC(the gap attack), with the
    robustness attack's TPR at 1 % FPR."""

    kind: Literal["robustness_vs_gap"] = "robustness_vs_gap"
    variant: str
    a: str
    b: str
    metric: Literal["auc"] = "auc"
    difference: Annotated[Estimate, _difference("difference")]
    tpr_at_1pct_fpr: Annotated[Estimate, _rate(TPR1)]
    pairs: int = Field(ge=0)
    targets: int = Field(ge=0)


TradeoffComparison = Annotated[
    VariantComparison | RobustnessComparison, Field(discriminator="kind")
]


class VariantOutcome(_Record):
    """One variant's accuracy, strongest attack, privacy spent and verdict."""

    name: str
    description: str
    test_accuracy: float = Field(ge=0, le=1)  # NaN fails these bounds too
    #: test_accuracy with its interval resampling records (absent in files written before it).
    test_accuracy_interval: Annotated[Estimate | None, _rate("test_accuracy_interval")] = None
    train_accuracy: float = Field(ge=0, le=1)
    generalization_gap: float = Field(ge=-1, le=1)
    strongest_attack: str
    auc: Annotated[Estimate, _rate("auc")]
    tpr_at_1pct_fpr: Annotated[Estimate, _rate(TPR1)]
    #: The accountant's ε (the largest over the models); None: not DP-trained.
    epsilon: float | None = Field(ge=0)
    delta: float | None = Field(ge=0, lt=1)
    accountant: str | None
    policy: str | None
    attacks: dict[str, AttackFigures]
    #: The variant's audit folder, relative to the trade-off folder and inside it.
    folder: Annotated[str, AfterValidator(_inside)]
    baseline: bool = False
    #: Paired AUC(comparator) − AUC(this variant's strongest), same (target, record) pairs.
    risk_reduction: Annotated[Estimate | None, _difference("risk_reduction")] = None
    #: risk_reduction's lower bound holding together over the ``judged`` variants compared with
    #: the baseline (Bonferroni, one-sided): what "reduces risk" is decided on.
    risk_reduction_lower: float | None = Field(None, ge=-1, le=1)
    judged: int | None = Field(None, ge=1)
    #: Paired test accuracy(baseline) − test accuracy(this variant), same test pairs.
    accuracy_loss: Annotated[Estimate | None, _difference("accuracy_loss")] = None
    #: Paired test accuracy − the rate of always answering the majority class, on the same test
    #: pairs (absent in files written before it): what "flagged" is decided on.
    majority_margin: Annotated[Estimate | None, _difference("majority_margin")] = None
    #: Where fewer than 30 records' answers differ from the majority class's: an exact sign
    #: test's one-sided p that the model beats it over them (the interval is not read there).
    majority_sign_p: float | None = Field(None, ge=0, le=1)
    #: "baseline", "best", "recommended", "not recommended" or "flagged" (``recommendation``).
    recommendation: str = ""
    reason: str = ""
    #: What the risk reduction is measured against (for policies: the same attacks on full outputs).
    compared_with: str = ""
    #: DP-SGD fault injection the models were trained with (``model.dp.fault``; None: none). Its
    #: ε is then void: the accountant was told a mechanism the training did not run.
    fault_injection: str | None = None
    #: DP-SGD's σ, sampling rate and steps on the model that spent the most (None: not DP).
    noise_multiplier: float | None = Field(None, ge=0)
    sample_rate: float | None = Field(None, ge=0, le=1)
    steps: int | None = Field(None, ge=0)

    # absent when none, so files of recipes without DP or fault injection read as they did
    absent_when_none = (
        "fault_injection",
        "noise_multiplier",
        "sample_rate",
        "steps",
        "test_accuracy_interval",
        "majority_margin",
        "majority_sign_p",
    )

    def epsilon_text(self) -> str:
        """The recorded ε as every output states it: void beside it under fault injection."""
        if self.epsilon is None:
            return "∞"
        text = f"{self.epsilon:.2f} (δ = {self.delta:g})"
        return text + (
            f" VOID: {fault_words(self.fault_injection)}" if self.fault_injection else ""
        )


class TradeoffResult(_Record):
    """Every variant of one recipe measured by the same audit, with paired comparisons."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    schema_version: Literal["miaudit.tradeoff/1"] = Field(TRADEOFF_SCHEMA, alias="schema")
    dataset: str
    seed: int
    variants: list[VariantOutcome] = Field(min_length=1, max_length=MAX_VARIANTS)
    comparisons: list[TradeoffComparison]
    notes: list[str]

    def variant(self, name: str) -> VariantOutcome:
        for v in self.variants:
            if v.name == name:
                return v
        raise KeyError(name)

    def __repr__(self) -> str:
        """A summary for a console or a notebook (``to_json`` has everything)."""
        from miaudit.audit._results import short

        lines = [f"TradeoffResult({self.dataset}, seed {self.seed}: {len(self.variants)} variants"]
        lines += [
            f"  {v.name}: test accuracy {v.test_accuracy:.3f}, strongest {v.strongest_attack} "
            f"AUC {short(v.auc)}, TPR@1%FPR {short(v.tpr_at_1pct_fpr, pct=True)}"
            + (f" ({v.recommendation})" if v.recommendation else "")
            for v in self.variants
        ]
        return "\n".join(lines) + ")"

    __str__ = __repr__

    def to_json(self) -> str:
        return dump_record(self)

    @classmethod
    def from_json(cls, text: str, source: str = TRADEOFF_FILE) -> TradeoffResult:
        """InputError naming ``source`` unless ``text`` is a ``miaudit.tradeoff/1`` result."""
        return parse_record(cls, text, TRADEOFF_SCHEMA, source=source)

    @classmethod
    def read(cls, path: str | Path, *, field: str | None = None) -> TradeoffResult:
        """A ``tradeoff.json``; InputError naming it (under ``field``) when it is not one."""
        return read_record(cls, Path(path), TRADEOFF_SCHEMA, field=field)
