"""What ``miaudit tradeoff`` writes: frozen, schema-versioned records that round-trip through
``tradeoff.json`` (shareable: aggregates only).

The JSON keeps the layout of schema ``miaudit.tradeoff/1`` as the earlier dataclasses wrote it:
``"schema"`` at the top, each attack's TPR under ``"tpr@1%fpr"``, ``"queries_per_record"`` only
for query attacks.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer

from miaudit.audit._results import _Record, dump_record, parse_record, read_record
from miaudit.metrics import Estimate, tpr_key

TRADEOFF_SCHEMA: Literal["miaudit.tradeoff/1"] = "miaudit.tradeoff/1"
TRADEOFF_FILE = "tradeoff.json"
TPR1 = tpr_key(0.01)


class AttackFigures(_Record):
    """One attack on one variant: AUC and TPR at 1 % FPR, with record-resampling intervals;
    ``queries_per_record`` for the query attacks of a policy variant (else absent)."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    auc: Estimate
    tpr_at_1pct_fpr: Estimate = Field(alias=TPR1)
    queries_per_record: int | None = None

    @model_serializer(mode="wrap")
    def _without_absent_queries(self, handler: SerializerFunctionWrapHandler) -> Any:
        out = handler(self)
        if self.queries_per_record is None and isinstance(out, dict):
            out.pop("queries_per_record", None)
        return out


class VariantComparison(_Record):
    """Paired AUC(baseline's strongest attack) − AUC(a training variant's strongest) on the same
    (target, record) pairs."""

    kind: Literal["baseline_vs_variant"] = "baseline_vs_variant"
    variant: str
    a: str
    b: str
    metric: Literal["auc"] = "auc"
    difference: Estimate
    pairs: int


class RobustnessComparison(_Record):
    """Under label-only: paired AUC(a robustness attack) − AUC(the gap attack), with the
    robustness attack's TPR at 1 % FPR."""

    kind: Literal["robustness_vs_gap"] = "robustness_vs_gap"
    variant: str
    a: str
    b: str
    metric: Literal["auc"] = "auc"
    difference: Estimate
    tpr_at_1pct_fpr: Estimate
    pairs: int
    targets: int


TradeoffComparison = Annotated[
    VariantComparison | RobustnessComparison, Field(discriminator="kind")
]


class VariantOutcome(_Record):
    """One variant's accuracy, strongest attack, privacy spent and verdict."""

    name: str
    description: str
    test_accuracy: float
    train_accuracy: float
    generalization_gap: float
    strongest_attack: str
    auc: Estimate
    tpr_at_1pct_fpr: Estimate
    #: The accountant's ε (the largest over the models); None: not DP-trained.
    epsilon: float | None
    delta: float | None
    accountant: str | None
    policy: str | None
    attacks: dict[str, AttackFigures]
    folder: str
    baseline: bool = False
    #: Paired AUC(comparator) − AUC(this variant's strongest), same (target, record) pairs.
    risk_reduction: Estimate | None = None
    #: Paired test accuracy(baseline) − test accuracy(this variant), same test pairs.
    accuracy_loss: Estimate | None = None
    #: "baseline", "best", "recommended", "not recommended" or "flagged" (``recommendation``).
    recommendation: str = ""
    reason: str = ""
    #: What the risk reduction is measured against (for policies: the same attacks on full outputs).
    compared_with: str = ""


class TradeoffResult(_Record):
    """Every variant of one recipe measured by the same audit, with paired comparisons."""

    model_config = ConfigDict(
        frozen=True, extra="forbid", validate_by_name=True, serialize_by_alias=True
    )

    schema_version: Literal["miaudit.tradeoff/1"] = Field(TRADEOFF_SCHEMA, alias="schema")
    dataset: str
    seed: int
    variants: list[VariantOutcome]
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
