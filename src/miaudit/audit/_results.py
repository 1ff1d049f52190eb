"""Audit results: immutable, schema-versioned records that round-trip through JSON.

What is in here is shareable: aggregates with intervals, slices, and record ids only as keyed
pseudonyms. Never a membership column. The meaning of an existing field never changes; a
change of meaning is a new field and a new schema version.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

from miaudit.errors import InputError
from miaudit.metrics import Estimate

RESULTS_SCHEMA = "miaudit.results/2"
#: Schemas this version reads: /1 results (miaudit before the key checks) are read and flagged
#: (:meth:`AuditResult.pseudonym_warning`), since their key's strength was never checked.
READABLE_SCHEMAS = ("miaudit.results/1", RESULTS_SCHEMA)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class InputDescription(_Record):
    name: str
    format: str
    sha256: str | None
    kind: str
    n_records: int
    n_members: int
    n_nonmembers: int
    n_classes: int


class BootstrapInfo(_Record):
    replicates: int
    confidence: float
    resampling: str


class RocCurve(_Record):
    """TPR at log-spaced FPRs (the upper envelope of the full ROC) with pointwise intervals."""

    fpr: list[float]
    tpr: list[float]
    tpr_lower: list[float]
    tpr_upper: list[float]


class OperatingPoint(_Record):
    rule: str
    tpr: float
    fpr: float


class ImpliedEpsilonResult(_Record):
    point: float | None
    lower_bound: float
    alpha: float
    note: str


class TopTie(_Record):
    """Shares of records, members and non-members that tie at an attack's top score. A
    threshold cannot split a tie, so at every FPR below ``nonmembers`` the attack's TPR reads 0,
    whatever it knows: the figure is a property of the score's resolution, not evidence that
    nothing leaks."""

    records: float
    members: float
    nonmembers: float

    def note(self, attack: str, fprs: list[float]) -> str | None:
        hidden = [f for f in fprs if f < self.nonmembers]
        if self.records <= 0.001 or not hidden:
            return None
        return (
            f"ties: {self.records:.1%} of records ({self.members:.1%} of members, {self.nonmembers:.1%} of non-members) share "
            f"{attack}'s top score; its TPR at any FPR below {self.nonmembers:.1%} is 0 because a threshold cannot split that tie, "
            "not because nothing leaks (AUC still counts the tie)"
        )


class AttackResult(_Record):
    name: str
    description: str
    paper: str
    auc: Estimate
    tpr_at_fpr: dict[str, Estimate]
    balanced_accuracy: Estimate
    advantage: Estimate
    ppv: Estimate
    ppv_prior: float
    ppv_fpr: float
    implied_epsilon: ImpliedEpsilonResult | None = None
    operating_point: OperatingPoint | None = None
    roc: RocCurve
    top_tie: TopTie | None = None

    def metric(self, name: str) -> Estimate:
        """Look a metric up by its report name: ``auc``, ``tpr@1%fpr``, ``advantage``…"""
        if name in self.tpr_at_fpr:
            return self.tpr_at_fpr[name]
        if name in ("auc", "advantage", "balanced_accuracy", "ppv"):
            return getattr(self, name)  # type: ignore[no-any-return]
        if name == "epsilon":
            # the descriptive ε implied by the ROC: its Clopper–Pearson bound is the "lower" end
            ie = self.implied_epsilon
            if ie is None:
                return Estimate(point=None, status="not_measurable")
            return Estimate(point=ie.point, lower=ie.lower_bound, upper=ie.point, status="ok")
        raise InputError(
            "metric",
            f"unknown metric {name!r}; known: auc, advantage, balanced_accuracy, ppv, epsilon, {', '.join(self.tpr_at_fpr)}",
        )


class Comparison(_Record):
    """Paired difference metric(attack) − metric(baseline) on the same resampled records."""

    attack: str
    baseline: str
    metric: str
    difference: Estimate


class SliceAttack(_Record):
    attack: str
    auc: Estimate
    tpr_at_1pct_fpr: Estimate


class SliceResult(_Record):
    column: str
    value: str
    n_members: int
    n_nonmembers: int
    attacks: list[SliceAttack]


class ExposedRecord(_Record):
    pseudonym: str
    rank: int
    score_percentile: float
    ties: int = 0


class RmiaCalibration(_Record):
    """Offline RMIA's ``a``: how it was chosen and its value for each target (in target order)."""

    method: str
    per_target: list[float]


class ReferenceSetup(_Record):
    """How the reference-model audit was run (``miaudit audit``)."""

    dataset: str
    recipe: dict[str, object]
    models: int
    references: int
    targets: int
    external_target: bool = False
    pool_records: int
    population_records: int
    pairs: int
    rmia_offline_a: RmiaCalibration | None = None


class Utility(_Record):
    """Accuracy of the audited models on their members (train) and non-members (test)."""

    train_accuracy: float
    test_accuracy: float
    generalization_gap: float


class Pseudonymisation(_Record):
    method: str
    key_id: str
    raw_ids: bool = False
    #: Length of the key in bytes (≥ 16 since schema /2, checked when written); None in /1.
    key_bytes: int | None = None


class AuditResult(_Record):
    """Everything shareable about one audit of one model."""

    schema_version: Literal["miaudit.results/1", "miaudit.results/2"] = RESULTS_SCHEMA
    tool_version: str
    created_at: str
    seed: int
    input: InputDescription
    bootstrap: BootstrapInfo
    attacks: list[AttackResult]
    comparisons: list[Comparison] = []
    slices: list[SliceResult] = []
    exposure_attack: str | None = None
    most_exposed: list[ExposedRecord] = []
    pseudonymisation: Pseudonymisation
    reference: ReferenceSetup | None = None
    utility: Utility | None = None
    config_sha256: str | None = None
    notes: list[str] = []

    def attack(self, name: str) -> AttackResult:
        for a in self.attacks:
            if a.name == name:
                return a
        raise InputError(
            "attack",
            f"no attack {name!r} in these results; have: {', '.join(a.name for a in self.attacks)}",
        )

    def strongest(self, metric: str = "auc") -> AttackResult:
        """The attack with the highest point value of ``metric`` (measurable ones only)."""
        ranked = [a for a in self.attacks if a.metric(metric).point is not None]
        if not ranked:
            raise InputError("metric", f"{metric} is not measurable for any attack")
        return max(ranked, key=lambda a: a.metric(metric).point or 0.0)

    def pseudonym_warning(self) -> str | None:
        """Why the pseudonyms of these results may be reversible, or None when their key was
        checked (at least 16 random bytes, not a publicly known key)."""
        from miaudit.audit._pseudonyms import KNOWN_WEAK_KEY_IDS, MIN_KEY_BYTES

        p = self.pseudonymisation
        if p.raw_ids or not self.most_exposed:
            return None
        if p.key_id in KNOWN_WEAK_KEY_IDS:
            return (
                "pseudonyms were made with a publicly known key (an earlier miaudit's fixed fallback or an empty key): "
                "anyone can reverse them by trying candidate ids; treat them as record ids and do not share these results"
            )
        if p.key_bytes is None:
            return (
                "pseudonyms were made by an earlier miaudit that did not check its key: if that pseudonym.key was empty, short "
                "or readable by others they can be reversed; rerun the audit to get checked pseudonyms"
            )
        if p.key_bytes < MIN_KEY_BYTES:
            return f"pseudonyms were made with a {p.key_bytes}-byte key: they can be reversed by trying candidate ids"
        return None

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    @classmethod
    def from_json(cls, text: str) -> AuditResult:
        return cls.model_validate_json(text)
