"""Audit results: immutable, schema-versioned records that round-trip through JSON.

What is in here is shareable: aggregates with intervals, slices, and record ids only as keyed
pseudonyms. Never a membership column. The meaning of an existing field never changes; a
change of meaning is a new field and a new schema version.
"""

from __future__ import annotations

import json
import math
import stat
from pathlib import Path
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SerializerFunctionWrapHandler,
    StrictInt,
    ValidationError,
    field_validator,
    model_serializer,
    model_validator,
)

from miaudit.audit._budget import BudgetCurve
from miaudit.errors import InputError
from miaudit.metrics import PERMUTATIONS, Estimate

RESULTS_SCHEMA = "miaudit.results/4"
#: Schemas this version reads: /1 results (miaudit before the key checks) are read and flagged
#: (:meth:`AuditResult.pseudonym_warning`), since their key's strength was never checked; /1 and
#: /2 results carry one ``score_percentile`` per exposed record whose meaning depended on the
#: kind of audit, split on reading (:meth:`AuditResult._split_exposure`). /4 (suppressed groups:
#: a slice's split may be null, and its size ``n_records`` is given) reads /3 as it is.
READABLE_SCHEMAS = ("miaudit.results/1", "miaudit.results/2", "miaudit.results/3", RESULTS_SCHEMA)


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    #: Optional fields left out of the JSON while None: added after a schema's first files,
    #: which thus read (and are written) as they were.
    absent_when_none: ClassVar[tuple[str, ...]] = ()

    @model_serializer(mode="wrap")
    def _without_absent(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)
        if isinstance(data, dict):
            for name in self.absent_when_none:
                if getattr(self, name) is None:
                    data.pop(name, None)
        return data


_R = TypeVar("_R", bound=BaseModel)


#: What an audit's input held (``InputDescription.kind``): outputs as logits or probabilities,
#: or a text audit's sequence signals. Nothing else is written; the report prints the kind.
INPUT_KINDS = ("logits", "probs", "sequence-signals")


#: Most records (or classes) a results file may count: a trillion, beyond any audit miaudit can
#: run (its scores alone would take 8 TB); a crafted file's 10^40 members were printed whole.
MAX_RECORDS = 10**12


class InputDescription(_Record):
    name: str
    format: str
    sha256: str | None
    kind: str
    n_records: int = Field(ge=0, le=MAX_RECORDS)
    n_members: int = Field(ge=0, le=MAX_RECORDS)
    n_nonmembers: int = Field(ge=0, le=MAX_RECORDS)
    n_classes: int = Field(ge=0, le=MAX_RECORDS)  # 0: text audits (sequences have no classes)

    @field_validator("kind")
    @classmethod
    def _known_kind(cls, v: str) -> str:
        if v not in INPUT_KINDS:
            raise ValueError(f"is not one of {', '.join(INPUT_KINDS)}")
        return v

    @model_validator(mode="after")
    def _members_and_nonmembers(self) -> InputDescription:
        if self.n_records != self.n_members + self.n_nonmembers:
            raise ValueError(
                f"n_records ({self.n_records}) is not n_members + n_nonmembers ({self.n_members} + {self.n_nonmembers})"
            )
        return self


class BootstrapInfo(_Record):
    replicates: int = Field(ge=0)
    confidence: float = Field(gt=0, lt=1)
    resampling: str


#: Most points of an attack's ROC read: miaudit writes it on a log-spaced grid of 51 FPRs
#: (metrics ROC_GRID); a crafted results.json with 3 M points took 6 GB to report (red team).
MAX_ROC_POINTS = 1_000


class RocCurve(_Record):
    """TPR at log-spaced FPRs (the upper envelope of the full ROC) with pointwise intervals."""

    fpr: list[float]
    tpr: list[float]
    tpr_lower: list[float]
    tpr_upper: list[float]

    @model_validator(mode="after")
    def _one_point_per_fpr(self) -> RocCurve:
        bands = {len(self.tpr_lower), len(self.tpr_upper)}
        if len(self.tpr) != len(self.fpr) or bands not in ({0}, {len(self.fpr)}):
            raise ValueError(
                "fpr and tpr, and tpr_lower and tpr_upper (or neither: no bootstrap), must have one value per FPR"
            )
        if len(self.fpr) > MAX_ROC_POINTS:
            raise ValueError(
                f"holds {len(self.fpr):,} points; miaudit writes at most {MAX_ROC_POINTS:,}"
            )
        for name in ("fpr", "tpr", "tpr_lower", "tpr_upper"):
            if not all(0 <= v <= 1 for v in getattr(self, name)):  # NaN fails too
                raise ValueError(f"{name} holds a value outside [0, 1]")
        return self


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

    def verdict_lowers(
        self, family: dict[str, float] | None = None
    ) -> tuple[float | None, float | None]:
        """(AUC, TPR at 1 % FPR) lower bounds as the verdict reads them: ``family``'s (this
        attack's bounds simultaneous over every attack, ``FamilyBounds.lower``) when given, else
        its own 95 % bounds where they are measurable (results written before the family)."""
        if family is not None:
            return family.get("auc"), family.get("tpr@1%fpr")
        tpr = self.tpr_at_fpr.get("tpr@1%fpr")
        return (
            self.auc.lower if self.auc.status == "ok" else None,
            tpr.lower if tpr is not None and tpr.status == "ok" else None,
        )

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


def short(e: Estimate | None, *, pct: bool = False) -> str:
    """An estimate in a few characters: ``0.712 [0.69, 0.74]``, ``3.1% [1.2%, 5%]``, ``n/m``."""
    if e is None or e.point is None:
        return "n/m"
    scale, unit, fmt = (100.0, "%", ".3g") if pct else (1.0, "", ".3f")
    text = f"{e.point * scale:{fmt}}{unit}"
    if e.lower is not None and e.upper is not None:
        text += f" [{e.lower * scale:{fmt}}{unit}, {e.upper * scale:{fmt}}{unit}]"
    return text


def attack_lines(attacks: list[AttackResult]) -> list[str]:
    """One line per attack: its AUC and TPR at 1 % FPR with their intervals."""
    return [
        f"  {a.name}: AUC {short(a.auc)}, TPR@1%FPR {short(a.tpr_at_fpr.get('tpr@1%fpr'), pct=True)}"
        for a in attacks
    ]


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
    #: The exposure attack's AUC in this group tested by relabelling its records (one-sided,
    #: adjusted over the column's groups: :func:`miaudit.metrics.group_auc_permutation_p`); set
    #: where the group's smaller class is
    #: small enough for the bootstrap bound to be too narrow. Absent elsewhere and before.
    auc_permutation_p: float | None = Field(None, ge=1 / (PERMUTATIONS + 1), le=1)

    absent_when_none = ("auc_permutation_p",)


class SliceResult(_Record):
    """One group of records (a slice value, or a class): its size and, where it holds enough
    members and non-members to measure, the attacks' AUC and TPR. ``n_members`` and
    ``n_nonmembers`` are None in what miaudit writes since schema /4: a group's split, beside
    another group's or the totals, tells the membership of the records that differ (a red team
    read records' membership so from /3 results, which carried them)."""

    column: str
    value: str
    n_members: int | None = None
    n_nonmembers: int | None = None
    attacks: list[SliceAttack]
    n_records: int | None = None

    def with_permutation_p(self, attack: str, p: float) -> SliceResult:
        """This group with ``attack``'s permutation p-value (``SliceAttack.auc_permutation_p``)."""
        attacks = [
            a.model_copy(update={"auc_permutation_p": p}) if a.attack == attack else a
            for a in self.attacks
        ]
        return self.model_copy(update={"attacks": attacks})

    @property
    def size(self) -> int:
        """The group's number of records (schema /3 results: its members plus non-members)."""
        if self.n_records is not None:
            return self.n_records
        return (self.n_members or 0) + (self.n_nonmembers or 0)


class ExposedRecord(_Record):
    """One of the records an audit ranks most exposed. Exactly one of the two figures is set,
    by the kind of audit (schema /3; before, one field carried either meaning):

    - ``score_percentile`` (an audit of one model's saved outputs): the percentage of records
      whose score under the exposure attack is at most this record's;
    - ``flagged_by_percent`` (a reference-model audit): the percentage of the models that
      trained on the record that flag it at the exposure attack's 1 % FPR threshold.
    """

    pseudonym: str
    rank: int
    score_percentile: float | None = None
    flagged_by_percent: float | None = None
    ties: int = 0

    @model_validator(mode="after")
    def _one_figure(self) -> ExposedRecord:
        if (self.score_percentile is None) == (self.flagged_by_percent is None):
            raise ValueError("exactly one of score_percentile and flagged_by_percent is set")
        return self


class RmiaCalibration(_Record):
    """Offline RMIA's ``a``: how it was chosen and its value for each target (in target order)."""

    method: str
    per_target: list[float]


class ReferenceSetup(_Record):
    """How the reference-model audit was run (``miaudit audit``).

    ``references``: k, the complementary pairs each target was attacked with; None when the
    references were not chosen as k pairs (then ``reference_choice`` says how, and
    ``reference_models`` how many models each target had). ``pool``: where the evaluated
    records came from. ``reference_set``: the audited model's references when the user named
    them (check-record answers against the same set). The last five fields are written only when
    set (audits of signals and of external targets set them), so results of the engine's paired
    audits are unchanged.
    """

    dataset: str
    recipe: dict[str, object]
    models: int
    references: int | None
    targets: int
    external_target: bool = False
    pool_records: int
    population_records: int
    pairs: int
    rmia_offline_a: RmiaCalibration | None = None
    reference_choice: str | None = None
    reference_models: list[int] | None = None
    pool: str | None = None
    undefined_pairs: int | None = None
    reference_set: list[StrictInt] | None = None  # model indices: true or 2.0 is not one

    absent_when_none = (
        "reference_choice",
        "reference_models",
        "pool",
        "undefined_pairs",
        "reference_set",
    )


class Utility(_Record):
    """Accuracy of the audited models on their members (train) and non-members (test)."""

    train_accuracy: float
    test_accuracy: float
    generalization_gap: float
    #: test_accuracy with its interval resampling records (as every interval of the audit);
    #: absent where not measured (results written before it, or no bootstrap).
    test_accuracy_interval: Estimate | None = None

    absent_when_none = ("test_accuracy_interval",)


class Pseudonymisation(_Record):
    method: str
    key_id: str
    raw_ids: bool = False
    #: Length of the key in bytes (≥ 16 since schema /2, checked when written); None in /1.
    key_bytes: int | None = None


def _renamed(entry: object, old: str, new: str) -> object:
    if not isinstance(entry, dict) or old not in entry:
        return entry
    out = {k: v for k, v in entry.items() if k != old}
    out[new] = entry[old]
    return out


class FamilyBounds(_Record):
    """Lower bounds that hold together for every attack on each metric of ``metrics`` (the
    report's verdict reads these: it asks whether any of them lies above chance)."""

    confidence: float = Field(gt=0, lt=1)
    method: str
    metrics: list[str]
    #: attack → metric → bound (an attack or metric absent: not measurable there).
    lower: dict[str, dict[str, float]]
    #: p-value of a permutation test that the largest AUC over the attacks lies above chance
    #: (:func:`miaudit.metrics.max_auc_permutation_p`, exact at any size): the verdict calls
    #: nothing detected unless it lies below the bounds' one-sided tail. Absent where not run
    #: (both classes large, or a reference audit).
    permutation_p: float | None = Field(None, ge=1 / (PERMUTATIONS + 1), le=1)

    absent_when_none = ("permutation_p",)

    @property
    def pairs(self) -> int:
        """How many (attack, metric) bounds hold together."""
        return sum(len(m) for m in self.lower.values())


#: Where each figure of results.json lies: rates (AUC, TPR, PPV, balanced accuracy, shares) in
#: [0, 1]; differences of rates and the advantage (TPR − FPR) in [−1, 1].
_RATE = (0.0, 1.0)
_SIGNED = (-1.0, 1.0)
#: Family bounds are checked against their attack's point from this many replicates on. A bound
#: is point − c·SD with one c for the family; c < 0 (every bound above its point) needs every
#: replicate to fall below every point at once: miaudit wrote it with 2 to 5 replicates (1 run
#: in 12 on null outputs), never with this many (a chance of about 2⁻³⁹).
FAMILY_CHECKED_FROM = 39


def _outside(where: str, e: Estimate, span: tuple[float, float]) -> str | None:
    """What cannot be true of an estimate of a figure lying in ``span``: an end outside it or a
    lower end above the upper. (A percentile interval may miss its point: miaudit writes such
    intervals with few replicates, so that is not checked.)"""
    lo, hi = span
    for end, v in (("point", e.point), ("lower", e.lower), ("upper", e.upper)):
        if v is not None and not lo <= v <= hi:  # NaN fails too
            return f"{where}.{end} = {v:.6g} lies outside [{lo:g}, {hi:g}]"
    if e.lower is not None and e.upper is not None and e.lower > e.upper:
        return f"{where}: its lower end {e.lower:.6g} lies above its upper end {e.upper:.6g}"
    return None


def _attack_problem(where: str, a: AttackResult) -> str | None:
    rates = [("auc", a.auc), ("balanced_accuracy", a.balanced_accuracy), ("ppv", a.ppv)]
    rates += [(f"tpr_at_fpr.{k}", e) for k, e in a.tpr_at_fpr.items()]
    found = [_outside(f"{where}.{n}", e, _RATE) for n, e in rates]
    found.append(_outside(f"{where}.advantage", a.advantage, _SIGNED))
    shares = {"ppv_prior": a.ppv_prior, "ppv_fpr": a.ppv_fpr}
    if a.operating_point is not None:
        shares |= {
            "operating_point.tpr": a.operating_point.tpr,
            "operating_point.fpr": a.operating_point.fpr,
        }
    if a.top_tie is not None:
        t = a.top_tie
        shares |= {
            "top_tie.records": t.records,
            "top_tie.members": t.members,
            "top_tie.nonmembers": t.nonmembers,
        }
    found += [
        f"{where}.{n} = {v:.6g} lies outside [0, 1]" for n, v in shares.items() if not 0 <= v <= 1
    ]
    if a.implied_epsilon is not None:  # an ε is never negative (the metric clamps its point at 0)
        e = a.implied_epsilon
        found += [
            f"{where}.implied_epsilon.{n} = {v:.6g} is negative or not finite"
            for n, v in (("point", e.point), ("lower_bound", e.lower_bound))
            if v is not None and not (0 <= v < math.inf)
        ]
        if not 0 < e.alpha < 1:
            found.append(f"{where}.implied_epsilon.alpha = {e.alpha:.6g} lies outside (0, 1)")
    return next((f for f in found if f is not None), None)


def _family_problem(
    family: FamilyBounds, attacks: list[AttackResult], replicates: int
) -> str | None:
    """Bounds that cannot be the family's: of an attack or metric it does not hold, above 1, on
    both sides of their points (one c for all), or above their points with enough replicates."""
    by_name = {a.name: a for a in attacks}
    measured = [a.name for a in attacks if a.auc.status == "ok" and a.auc.lower is not None]
    if (
        "auc" in family.metrics
        and measured
        and not any("auc" in family.lower.get(n, {}) for n in measured)
    ):
        # an emptied family turned a "moderate" audit into "not detected … for all 0 attack and
        # metric pairs" (red team); a text audit's family holds its model attacks only
        return f"family.lower: no bound for any measured attack ({measured[0][:80]!r} …)"
    sides = set()
    for name, bounds in family.lower.items():
        if name not in by_name:
            return f"family.lower: {name[:80]!r} is not an attack of these results"
        for metric, bound in bounds.items():
            where = f"family.lower.{name[:80]}.{metric[:40]}"
            if metric not in family.metrics:
                return f"{where}: not one of family.metrics"
            point = by_name[name].metric(metric).point
            if point is None or not bound <= 1:
                return (
                    f"{where} = {bound:.6g} bounds a figure the attack does not measure in [0, 1]"
                )
            slack = 1e-12 * max(1.0, abs(point))
            if bound > point + slack and replicates >= FAMILY_CHECKED_FROM:
                return f"{where} = {bound:.6g} lies above the attack's own {metric} ({point:.6g})"
            if abs(bound - point) > slack:
                sides.add(bound > point)
    if sides == {True, False}:
        return "family.lower: some bounds lie above their attack's point and others below (one family has one margin)"
    return None


class AuditResult(_Record):
    """Everything shareable about one audit of one model."""

    #: Older readable schemas are converted when read (:meth:`_split_exposure`).
    schema_version: Literal["miaudit.results/4"] = "miaudit.results/4"
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
    #: The reference-budget curve (issue 18): written only by audits with k reference pairs.
    budget_curve: BudgetCurve | None = None
    #: Bounds simultaneous over the attacks (the verdict's); None in results written before.
    family: FamilyBounds | None = None

    absent_when_none = ("budget_curve", "family")

    @model_validator(mode="after")
    def _possible(self) -> AuditResult:
        """Refuse what no audit can produce (red team: an AUC of 2.0, an interval [0.9, 0.1],
        NaN confidence and a family bound of 0.95 over an AUC of 0.694 were rendered, the last
        as a HIGH verdict)."""
        problem = self._impossible()
        if problem is not None:
            raise ValueError(problem)
        return self

    def _impossible(self) -> str | None:
        found = [_attack_problem(f"attacks.{i}", a) for i, a in enumerate(self.attacks)]
        names = [a.name for a in self.attacks]
        if len(set(names)) != len(names):
            found.append("attacks: an attack named twice")
        found += [
            _outside(f"comparisons.{i}.difference", c.difference, _SIGNED)
            for i, c in enumerate(self.comparisons)
        ]
        per_column: dict[str, int] = {}
        for i, sl in enumerate(self.slices):
            counts = (sl.n_records, sl.n_members, sl.n_nonmembers)
            if any(n is not None and n < 0 for n in counts):
                found.append(f"slices.{i}: a negative count")
            per_column[sl.column] = per_column.get(sl.column, 0) + sl.size
            if per_column[sl.column] > self.input.n_records:  # each record in one group per column
                found.append(
                    f"slices.{i}: the groups of {sl.column!r} hold more records than the audit's {self.input.n_records:,}"
                )
            for j, sa in enumerate(sl.attacks):
                found.append(_outside(f"slices.{i}.attacks.{j}.auc", sa.auc, _RATE))
                found.append(
                    _outside(f"slices.{i}.attacks.{j}.tpr_at_1pct_fpr", sa.tpr_at_1pct_fpr, _RATE)
                )
        for i, e in enumerate(self.most_exposed):
            figure = e.score_percentile if e.flagged_by_percent is None else e.flagged_by_percent
            if e.rank < 1 or e.ties < 0 or not 0 <= (figure or 0.0) <= 100:
                found.append(
                    f"most_exposed.{i}: a rank below 1, negative ties or a percentage outside [0, 100]"
                )
        if self.utility is not None:
            u = self.utility
            if not (
                0 <= u.train_accuracy <= 1
                and 0 <= u.test_accuracy <= 1
                and -1 <= u.generalization_gap <= 1
            ):
                found.append("utility: an accuracy outside [0, 1] or a gap outside [-1, 1]")
            if u.test_accuracy_interval is not None:
                found.append(
                    _outside("utility.test_accuracy_interval", u.test_accuracy_interval, _RATE)
                )
        if self.family is not None:
            found.append(_family_problem(self.family, self.attacks, self.bootstrap.replicates))
        return next((f for f in found if f is not None), None)

    @model_validator(mode="before")
    @classmethod
    def _split_exposure(cls, data: Any) -> Any:
        """Read older results as /4. /1 and /2: their ``score_percentile`` is the percentage of
        models flagging the record when the audit had reference models (the only writer of that
        meaning), else the score percentile; it moves to the field of that meaning. /3 differs
        only in what it could not hold (a suppressed group)."""
        if isinstance(data, dict) and data.get("schema_version") == READABLE_SCHEMAS[2]:
            return {**data, "schema_version": RESULTS_SCHEMA}
        if not isinstance(data, dict) or data.get("schema_version") not in READABLE_SCHEMAS[:2]:
            return data
        exposed = data.get("most_exposed")
        if data.get("reference") is not None and isinstance(exposed, list):
            exposed = [_renamed(e, "score_percentile", "flagged_by_percent") for e in exposed]
        return {**data, "schema_version": RESULTS_SCHEMA, "most_exposed": exposed or []}

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
        from miaudit.audit._pseudonyms import key_warning

        return key_warning(self.pseudonymisation, lists_records=bool(self.most_exposed))

    def to_json(self) -> str:
        return self.model_dump_json(indent=2)

    def __repr__(self) -> str:
        """A summary for a console or a notebook (``to_json`` has everything)."""
        inp = self.input
        what = (
            f"{self.reference.models} models on {self.reference.dataset}, "
            if self.reference is not None
            else ""
        )
        head = (
            f"AuditResult({what}{inp.name}: {inp.n_records:,} records, {inp.n_members:,} members, "
            f"{inp.n_nonmembers:,} non-members; {self.bootstrap.replicates} bootstrap replicates, "
            f"{self.bootstrap.confidence:.0%} intervals, seed {self.seed}"
        )
        tail = [f"  {len(self.slices)} slice(s)"] if self.slices else []
        tail += [f"  note: {n}" for n in self.notes[:3]]
        return "\n".join([head, *attack_lines(self.attacks), *tail]) + ")"

    __str__ = __repr__

    @classmethod
    def from_json(cls, text: str, source: str = "results.json") -> AuditResult:
        """Results from their JSON, through the guard of every record file miaudit reads: at most
        :data:`MAX_RECORD_CHARS`, no NaN or Infinity (pydantic's JSON parser takes both), not
        nested past reason (an InputError naming ``source``); then the schema
        (ValidationError)."""
        if len(text) > MAX_RECORD_CHARS:
            raise InputError(
                "results",
                f"{source!r} is larger than {MAX_RECORD_CHARS // 2**20} MiB: not a file miaudit writes",
            )
        try:
            data = json.loads(text, parse_constant=_no_constant)
        except _NonFinite:
            raise InputError(
                "results", f"{source!r} holds NaN or Infinity, which miaudit never writes"
            ) from None
        except ValueError:
            raise InputError("results", f"{source!r} is not JSON") from None
        except RecursionError:
            raise InputError(
                "results", f"{source!r} is nested past reason (recursion limit exceeded)"
            ) from None
        return cls.model_validate(data)

    @classmethod
    def read(cls, path: Path) -> AuditResult:
        """``results.json`` at ``path``, checked against the schema and for what no audit can
        produce; every problem (unreadable, too large, not JSON, NaN, another schema, nested
        past reason, an impossible figure) is one :class:`InputError` line."""
        text = record_text(path, "results")
        try:
            return cls.from_json(text, str(path))
        except ValidationError as exc:
            raise InputError(
                "results", f"{str(path)!r} is not miaudit results ({validation_problem(exc)})"
            ) from None


class PrivacySpent(_Record):
    """What DP-SGD spent on one model, as its accountant recorded it (models' ``train_dp``).

    ``epsilon`` is ∞ when the accountant gave no finite bound (JSON has no ∞: written as null,
    read back as ∞)."""

    epsilon: float
    delta: float
    accountant: str
    noise_multiplier: float
    max_grad_norm: float
    sample_rate: float
    steps: int
    poisson_sampling: bool
    ghost_clipping: bool
    fault_injection: str
    #: Where the batch sampling and noise came from ("seeded": the config's seed, replayable by
    #: whoever knows it; "secret": the OS's entropy). Records written before: seeded.
    randomness: Literal["seeded", "secret"] = "seeded"

    @field_validator("epsilon", mode="before")
    @classmethod
    def _null_is_infinite(cls, v: object) -> object:
        return math.inf if v is None else v


def validation_problem(exc: ValidationError) -> str:
    """A pydantic error's first problem in one line: where (dotted) and what."""
    first = exc.errors()[0]
    where = ".".join(str(x) for x in first["loc"])
    return f"{where + ': ' if where else ''}{first['msg']}"


class _NonFinite(ValueError):
    pass


def _no_constant(name: str) -> object:
    """Python's json reads NaN and ±Infinity, which JSON has not: every writer here refuses them
    (``allow_nan=False``), so a file holding one was written by hand (red team: Infinity in a
    DP audit's power or privacy fields was printed)."""
    raise _NonFinite(name)


def parse_record(
    model: type[_R], text: str, schema: str, *, source: str, field: str | None = None
) -> _R:
    """``text`` (the JSON of ``source``, a file name) as a ``model`` record of schema ``schema``
    (its ``"schema"`` key). Anything else (another schema, not JSON, a missing or bad field) is an
    InputError naming ``source`` (under ``field``, e.g. the CLI option that gave the file)."""

    def refuse(problem: str) -> InputError:
        return InputError(field or source, f"{source!r} {problem}" if field else problem)

    if len(text) > MAX_RECORD_CHARS:
        raise refuse(f"is larger than {MAX_RECORD_CHARS // 2**20} MiB: not a file miaudit writes")
    try:
        data = json.loads(text, parse_constant=_no_constant)
    except _NonFinite:
        raise refuse("holds NaN or Infinity, which miaudit never writes") from None
    except ValueError:
        raise refuse("is not JSON") from None
    except RecursionError:
        raise refuse("is nested past reason") from None
    found = data.get("schema") if isinstance(data, dict) else None
    if found != schema:
        shown = str(found)[:80] if found is not None else "none"
        raise refuse(f"has schema {shown!r}, not {schema!r}: not a file this miaudit reads")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise refuse(f"is not a valid {schema} file ({validation_problem(exc)})") from None


def dump_record(record: BaseModel) -> str:
    """A record as its file holds it, through ``json.dumps``: the float spelling (Python's) these
    files always had; ∞ and NaN written as null by pydantic first."""
    return json.dumps(json.loads(record.model_dump_json()), indent=2, allow_nan=False)


#: Largest trade-off, DP-audit or text trade-off file read (they hold aggregates: kilobytes; a
#: crafted 25 MB one took 530 MB to report).
MAX_RECORD_CHARS = 16 * 2**20


def read_record(model: type[_R], path: Path, schema: str, *, field: str | None = None) -> _R:
    """:func:`parse_record` of the file ``path``; InputError when it cannot be read."""
    return parse_record(model, record_text(path, field), schema, source=str(path), field=field)


def record_text(path: Path, field: str | None = None) -> str:
    """The text of a record file: a regular file (a FIFO would hang the read) of at most
    :data:`MAX_RECORD_CHARS`; InputError naming it (under ``field``) otherwise."""
    try:
        found = path.stat()
        if not stat.S_ISREG(found.st_mode):
            raise InputError(field or str(path), f"{str(path)!r} is not a regular file")
        if found.st_size > MAX_RECORD_CHARS:
            raise InputError(
                field or str(path),
                f"{str(path)!r} is larger than {MAX_RECORD_CHARS // 2**20} MiB: not a file miaudit writes",
            )
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        why = getattr(exc, "strerror", None) or type(exc).__name__
        raise InputError(field or str(path), f"cannot read {str(path)!r} ({why})") from None
    return text
