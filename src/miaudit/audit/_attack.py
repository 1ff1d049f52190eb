"""Audit one model from its saved outputs: ``miaudit attack`` and :func:`miaudit.attack`."""

from __future__ import annotations

import datetime as _dt
import functools
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miaudit._io import sha256_file
from miaudit._version import __version__
from miaudit.attacks import (
    BASELINE_ATTACK,
    OUTPUT_ATTACKS,
    AttackSpec,
    Need,
    OutputSignals,
    PopulationSignals,
    SignalKind,
    output_attacks_under,
    registered_attacks,
    score_outputs,
)
from miaudit.audit._column_order import (
    COLUMN_ORDER_ALPHA,
    accuracy_shift_notes,
    column_order_notes,
)
from miaudit.audit._config import MAX_RESAMPLES
from miaudit.audit._pseudonyms import describe_key, key_or_fresh, pseudonymise
from miaudit.audit._results import (
    AttackResult,
    AuditResult,
    BootstrapInfo,
    Comparison,
    ExposedRecord,
    FamilyBounds,
    ImpliedEpsilonResult,
    InputDescription,
    OperatingPoint,
    RocCurve,
    SliceAttack,
    SliceResult,
    TopTie,
)
from miaudit.data import ModelOutputs, PopulationOutputs, load_outputs, load_population
from miaudit.errors import InputError
from miaudit.metrics import (
    DEFAULT_FPRS,
    Evaluation,
    evaluate,
    group_auc_permutation_p,
    implied_epsilon,
    max_auc_permutation_p,
    ppv_key,
    tpr_key,
)
from miaudit.signals import compute_signals, softmax

DEFAULT_ATTACKS = OUTPUT_ATTACKS
MAX_SLICE_VALUES = 50
MOST_EXPOSED = 20
#: A slice value needs this many members and non-members to be reported.
MIN_SLICE_CLASS = 20
#: Decimals of a group's figures in results.json (the report shows 3): at full precision its
#: AUC, U / (n₁·n₀), and TPR, k / n₁, gave the group's member count, and two slice columns
#: differing by one record gave that record's membership (red team, 4 of 4).
SLICE_DECIMALS = 3


@dataclass(frozen=True, eq=False)
class AttackRun:
    """Shareable results plus the restricted per-record scores (the training roster)."""

    result: AuditResult
    record_id: np.ndarray
    member: np.ndarray
    label: np.ndarray
    scores: dict[str, np.ndarray]

    def __repr__(self) -> str:
        return (
            f"AttackRun({len(self.record_id):,} records with restricted per-record scores of "
            f"{', '.join(self.scores)};\n{self.result!r})"
        )


def _check_attacks(attacks: Sequence[str]) -> tuple[AttackSpec, ...]:
    if not attacks:
        raise InputError("--attacks", "no attack given")
    known = registered_attacks(signal_kind=SignalKind.MODEL_OUTPUTS)
    names = {s.name: s for s in known}
    for a in attacks:
        if a not in names:
            raise InputError(
                "--attacks", f"unknown attack {a!r}; known: {', '.join(s.name for s in known)}"
            )
    return tuple(names[a] for a in dict.fromkeys(attacks))


def _as_text(column: str, values: np.ndarray) -> np.ndarray:
    """Byte strings (npz ``S`` arrays, Parquet binary columns) as text, refused in one line
    when they are not UTF-8; other values as they are."""
    if values.dtype.kind not in "SO" or not any(isinstance(v, bytes) for v in values.tolist()):
        return values
    try:
        return np.array(
            [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in values.tolist()]
        )
    except UnicodeDecodeError:
        raise InputError(
            "--slices", f"column {column!r} holds bytes that are not UTF-8 text"
        ) from None


def _slice_groups(outputs: ModelOutputs, column: str) -> list[tuple[str, np.ndarray]]:
    if column not in outputs.columns:
        have = ", ".join(outputs.columns) or "none"
        raise InputError("--slices", f"no column {column!r} in the outputs (extra columns: {have})")
    values = _as_text(column, np.asarray(outputs.columns[column]))
    # Every record in exactly one group: grouped by the values np.unique finds (−0.0 and 0.0
    # are one value; by their text they were two, and one record fell in no group).
    found, which = np.unique(
        values.astype(str) if values.dtype.kind in "OUSb" else values, return_inverse=True
    )
    # Missing values (NaN) are their own group: quartiles of a column with NaN were NaN, and the
    # groups read "age=≤nan" / "age=>nan" (red team: 30 % missing ages)
    missing = np.isnan(values) if values.dtype.kind == "f" else np.zeros(values.shape, bool)
    absent = [("missing", missing)] if missing.any() else []
    if values.dtype.kind in "if" and found.size - int(missing.any()) > 20:
        edges = np.unique(np.quantile(values[~missing], [0.25, 0.5, 0.75]))
        # right=True: bin 0 holds x ≤ e₀, bin i (eᵢ₋₁, eᵢ], as the labels say (values equal
        # to an edge fell in the group above it, under a label that excluded them)
        bins = np.digitize(values, edges, right=True)
        labels = (
            [f"≤{edges[0]:.4g}"]
            + [f"({a:.4g}, {b:.4g}]" for a, b in itertools.pairwise(edges)]
            + [f">{edges[-1]:.4g}"]
        )
        return [(labels[i], (bins == i) & ~missing) for i in range(len(edges) + 1)] + absent
    if found.size > MAX_SLICE_VALUES:
        raise InputError(
            "--slices",
            f"column {column!r} has {found.size} distinct values; at most {MAX_SLICE_VALUES} can be sliced",
        )
    return [
        (str(u), (which.reshape(-1) == i) & ~missing)
        for i, u in enumerate(found)
        if not (isinstance(u, float | np.floating) and np.isnan(u))
    ] + absent


def attack_result(
    name: str, ev: Evaluation, description: str, paper: str, **extra: object
) -> AttackResult:
    """One attack's shareable record from an evaluation."""
    fpr, tpr, lo, hi = ev.roc_grid(name)
    return AttackResult(
        name=name,
        description=description,
        paper=paper,
        auc=ev.estimate(name, "auc"),
        tpr_at_fpr={tpr_key(f): ev.estimate(name, tpr_key(f)) for f in ev.fprs},
        balanced_accuracy=ev.estimate(name, "balanced_accuracy"),
        advantage=ev.estimate(name, "advantage"),
        ppv=ev.estimate(name, ppv_key(ev.ppv_fpr)),
        ppv_prior=ev.prior,
        ppv_fpr=ev.ppv_fpr,
        roc=RocCurve(fpr=fpr, tpr=tpr, tpr_lower=lo, tpr_upper=hi),
        **extra,
    )


#: What the report's verdict reads, per attack: its thresholds are on these two.
VERDICT_METRICS = ("auc", "tpr@1%fpr")


def family_bounds(ev: Evaluation, names: Sequence[str] | None = None) -> FamilyBounds | None:
    """The verdict metrics of every attack (or of ``names``) bounded together
    (:meth:`Evaluation.simultaneous_lower`); None without a bootstrap."""
    metrics = [m for m in VERDICT_METRICS if m == "auc" or m in {tpr_key(f) for f in ev.fprs}]
    lower = ev.simultaneous_lower(metrics, names)
    if not lower:
        return None
    return FamilyBounds(
        confidence=ev.confidence,
        method="max-t bootstrap over every (attack, metric) pair (Westfall & Young)",
        metrics=metrics,
        lower=lower,
    )


#: The permutation test runs when the smaller class has at most this many records: the family's
#: bootstrap bounds were too narrow with small classes (10 attacks on null data: 36.0 % of
#: models called detectable with 300 members and 5 non-members, 4.5 % at 50 + 50; verdict_null),
#: and a relabelling costs the smaller class's size (999 of them: about 0.5 s at this size),
#: beside ranking every record once (5,000 members against 400,000 non-members: 4.3 s in all).
PERMUTATION_BELOW = 5_000


def with_permutation_test(
    family: FamilyBounds | None,
    member: np.ndarray,
    scores: dict[str, np.ndarray],
    seed: np.random.SeedSequence,
) -> FamilyBounds | None:
    """``family`` with the permutation test's p-value (:func:`max_auc_permutation_p`) where
    the smaller class has at most :data:`PERMUTATION_BELOW` records, one model's outputs: each
    record one pair, so relabelling records is what the null hypothesis allows."""
    m = np.asarray(member).astype(bool)
    if family is None or min(int(m.sum()), int((~m).sum())) > PERMUTATION_BELOW:
        return family
    p = max_auc_permutation_p(m, scores, rng=np.random.default_rng(seed))
    return family.model_copy(update={"permutation_p": p})


def top_tie(member: np.ndarray, score: np.ndarray) -> TopTie | None:
    """How many records, members and non-members share the highest score; None where fewer
    than :data:`MIN_SLICE_CLASS` records do: the split of a handful of top records, beside the
    ranked most-exposed list, would tell their membership (a red team read the top record's
    from results.json). A smaller tie goes unremarked: it can zero the TPR only at FPRs below
    the share of fewer than 20 non-members."""
    s = np.asarray(score, dtype=np.float64)
    m = np.asarray(member).astype(bool)
    at_top = s == s.max() if s.size else np.zeros(0, bool)
    if int(at_top.sum()) < MIN_SLICE_CLASS:
        return None

    def share(mask: np.ndarray) -> float:
        return float(at_top[mask].mean()) if mask.any() else 0.0

    return TopTie(
        records=float(at_top.mean()) if s.size else 0.0, members=share(m), nonmembers=share(~m)
    )


@functools.cache
def label_free_signals() -> frozenset[str]:
    """The signals computed without the label (entropy), found by computing each signal on one
    probe row under two labels: a new signal is classed by what it computes, not by its name."""
    probe = np.array([[2.0, 0.5, -1.0]])
    a = compute_signals(probe, np.array([0]), kind="logits")
    b = compute_signals(probe, np.array([1]), kind="logits")
    return frozenset(k for k in a if np.array_equal(a[k], b[k]))


def reads_label(name: str) -> bool:
    """Whether attack ``name``'s score reads the label's column: every attack but those whose
    signals are all label-free (``entropy``, ``entropy_by_class``: the latter groups by label but
    scores the entropy). Swapped class columns move only the attacks that read it."""
    spec = {s.name: s for s in registered_attacks()}.get(name)
    return spec is None or not spec.signals or not set(spec.signals) <= label_free_signals()


def below_chance_notes(results: Sequence[AttackResult]) -> list[str]:
    """A warning when the AUC interval of every attack that reads the label's column
    (:func:`reads_label`) lies below 0.5: the scores rank non-members above members beyond
    noise, which no model's training does. Swapped class columns, rows out of order or members
    that are not the training rows give exactly that, and the audit's figures mean nothing then
    (a red team's flipped labels: loss AUC 0.438 [0.383, 0.484], no word). Every such attack, not
    one: one interval of many lies below chance by chance. The label-free ones are left out:
    swapped columns leave them above 0.5 (entropy 0.988 beside loss 0.005), and counting them
    kept the warning from ever firing with the default attacks (red team)."""
    uppers = [a.auc.upper for a in results if a.auc.status == "ok" and reads_label(a.name)]
    if not uppers or any(u is None or u >= 0.5 for u in uppers):
        return []
    return [
        f"WARNING: every attack's AUC interval that reads the label's column lies below 0.5 (the highest upper end is {max(uppers):.3f}): "  # type: ignore[type-var]
        "the scores rank non-members above members, which training does not do. Check that the "
        "outputs' rows match the records, their class columns the labels (miaudit numbers the "
        "classes in sorted order of the label values), and the members the rows the model trained on."
    ]


def tie_notes(results: Sequence[AttackResult], fprs: Sequence[float]) -> list[str]:
    return [
        n
        for a in results
        if a.top_tie is not None and (n := a.top_tie.note(a.name, list(fprs))) is not None
    ]


def comparisons_with_loss(ev: Evaluation, baseline: str = BASELINE_ATTACK) -> list[Comparison]:
    """Paired AUC and TPR@1 %FPR differences of every attack against the baseline (if run)."""
    if baseline not in ev.names:
        return []
    metrics = ["auc"] + ([tpr_key(0.01)] if 0.01 in ev.fprs else [])
    return [
        Comparison(attack=n, baseline=baseline, metric=m, difference=ev.difference(n, baseline, m))
        for n in ev.names
        if n != baseline
        for m in metrics
    ]


@dataclass(frozen=True)
class _Seeds:
    """The run's independent streams of randomness, from its one seed."""

    boot: np.random.SeedSequence
    fold: np.random.SeedSequence
    eps: np.random.SeedSequence
    slices: np.random.SeedSequence
    permutation: np.random.SeedSequence

    @classmethod
    def of(cls, seed: int) -> _Seeds:
        # a fifth child leaves the first four as they were: no earlier figure moved
        return cls(*np.random.SeedSequence(seed).spawn(5))


def _check_classes(member: np.ndarray) -> None:
    n1 = int(np.count_nonzero(member))
    if min(n1, member.size - n1) < 2:  # the implied ε splits each class in halves
        raise InputError(
            "member",
            f"{n1} member(s) and {member.size - n1} non-member(s): an audit needs at least "
            "2 of each (and 30 of each for a verdict)",
        )


def _check_options(prior: float, n_resamples: int) -> None:
    if not 0 < prior < 1:
        raise InputError("--prior", f"must be in (0, 1), got {prior}")
    if not 0 <= n_resamples <= MAX_RESAMPLES:
        raise InputError("--resamples", f"must lie in [0, {MAX_RESAMPLES:,}], got {n_resamples}")


def _signals(
    outputs: ModelOutputs, specs: tuple[AttackSpec, ...], policy: str | None, seed: int
) -> dict[str, np.ndarray]:
    """The signals the attacks read, from the outputs or from what ``policy`` exposes."""
    needed = tuple(dict.fromkeys(sig for s in specs for sig in s.signals))
    if policy is None:
        return compute_signals(outputs.values, outputs.label, kind=outputs.kind, which=needed)
    return _signals_under_policy(outputs, policy, specs, needed, seed)


def _score(
    spec: AttackSpec,
    outputs: ModelOutputs,
    signals: dict[str, np.ndarray],
    seeds: _Seeds,
    population: PopulationSignals | None = None,
) -> tuple[np.ndarray, dict[str, object]]:
    """One attack's scores and what its result records beside the metrics."""
    member = outputs.member
    inputs = OutputSignals(
        signals,
        outputs.label,
        member=member,
        seed=seeds.fold,
        features=outputs.features,
        population=population,
        image_shape=outputs.image_shape,
    )
    out = score_outputs(spec.name, inputs)
    extra: dict[str, object] = {}
    if out.operating_point is not None:
        op = out.operating_point
        extra["operating_point"] = OperatingPoint(rule=op.rule, tpr=op.tpr, fpr=op.fpr)
    extra["top_tie"] = top_tie(member, out.score)
    ie = implied_epsilon(member, out.score, rng=np.random.default_rng(seeds.eps))
    extra["implied_epsilon"] = ImpliedEpsilonResult(
        point=ie.point, lower_bound=ie.lower_bound, alpha=ie.alpha, note=ie.note
    )
    return out.score, extra


def _describe_input(outputs: ModelOutputs, source: Path | None) -> InputDescription:
    return InputDescription(
        name=source.name if source else "(in memory)",
        format=source.suffix.lstrip(".") if source else "arrays",
        sha256=sha256_file(source) if source else None,
        kind=outputs.kind,
        n_records=outputs.n_records,
        n_members=int(outputs.member.sum()),
        n_nonmembers=int((outputs.member == 0).sum()),
        n_classes=outputs.n_classes,
    )


def _run_notes(
    outputs: ModelOutputs,
    policy: str | None,
    results: list[AttackResult],
    ev: Evaluation,
    scores: dict[str, np.ndarray],
    strongest_name: str,
    exposed: list[ExposedRecord],
) -> list[str]:
    strongest = scores[strongest_name]
    notes = ([f"Attacks saw only what the {policy} output policy exposes."] if policy else []) + [
        "Intervals: percentile bootstrap over records (advantage and balanced accuracy: a uniform band of TPR − FPR); TPR and PPV at FPR α are not measurable when n0·α < 10.",
        "implied_epsilon is descriptive (one model's outputs, not independent training runs): it is not a DP audit.",
    ]
    notes += column_order_notes(outputs.values, outputs.label, "the outputs")
    notes += below_chance_notes(results) + tie_notes(results, ev.fprs)
    if not exposed and outputs.n_records:
        top = int((strongest == strongest.max()).sum())
        why = (
            "which of them to name would be arbitrary, and beside the tie's member share their names would tell their membership"
            if top >= MIN_SLICE_CLASS
            else "which of them to name would be arbitrary"
        )
        notes.append(
            f"most_exposed: none listed: {top} records share {strongest_name}'s top score and its other attacks' evidence, and {why}."
        )
    if outputs.has_record_id is False:
        notes.append("The input had no record_id column: records are identified by row number.")
    return notes


def run_attacks(
    outputs: ModelOutputs | str | Path,
    *,
    attacks: Sequence[str] = DEFAULT_ATTACKS,
    slices: Sequence[str] = (),
    n_resamples: int = 200,
    seed: int = 0,
    prior: float = 0.5,
    fprs: Sequence[float] = DEFAULT_FPRS,
    pseudonym_key: bytes | None = None,
    raw_ids: bool = False,
    policy: str | None = None,
    population: PopulationOutputs | str | Path | None = None,
    feature_columns: Sequence[str] | None = None,
) -> AttackRun:
    """Run attacks on one model's outputs and evaluate them; see :func:`attack`."""
    source = None if isinstance(outputs, ModelOutputs) else Path(outputs)
    outputs, pop = _load_inputs(outputs, population, feature_columns)
    specs = _check_attacks(attacks)
    slice_groups = {col: _slice_groups(outputs, col) for col in dict.fromkeys(slices)}
    _check_options(prior, n_resamples)
    seeds = _Seeds.of(seed)
    signals = _signals(outputs, specs, policy, seed)
    pop_signals, pop_notes = _population_signals(outputs, pop, specs, policy, seed)
    scored = {s.name: _score(s, outputs, signals, seeds, pop_signals) for s in specs}
    scores, member = {name: score for name, (score, _) in scored.items()}, outputs.member
    ev = evaluate(
        member,
        scores,
        fprs=fprs,
        prior=prior,
        n_resamples=n_resamples,
        rng=np.random.default_rng(seeds.boot),
    )
    results = [
        attack_result(s.name, ev, s.description, s.citation, **scored[s.name][1]) for s in specs
    ]
    key = key_or_fresh(pseudonym_key)
    strongest = max(results, key=lambda a: a.auc.point or 0.0).name
    exposed = most_exposed(
        scores[strongest], outputs.record_id, key, evidence=mean_rank(scores), raw_ids=raw_ids
    )
    result = AuditResult(
        tool_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        seed=seed,
        input=_describe_input(outputs, source),
        bootstrap=BootstrapInfo(
            replicates=n_resamples, confidence=ev.confidence, resampling=ev.resampling
        ),
        attacks=results,
        comparisons=comparisons_with_loss(ev),
        slices=_slices(slice_groups, member, scores, n_resamples, seeds.slices, focus=strongest),
        exposure_attack=strongest,
        most_exposed=exposed,
        pseudonymisation=describe_key(key, raw_ids=raw_ids),
        notes=_run_notes(outputs, policy, results, ev, scores, strongest, exposed) + pop_notes,
        family=with_permutation_test(family_bounds(ev), member, scores, seeds.permutation),
    )
    return AttackRun(result, outputs.record_id, member, outputs.label, scores)


def _load_inputs(
    outputs: ModelOutputs | str | Path,
    population: PopulationOutputs | str | Path | None,
    feature_columns: Sequence[str] | None,
) -> tuple[ModelOutputs, PopulationOutputs | None]:
    """The audited outputs and the population records, loaded from files where given as paths."""
    if not isinstance(outputs, ModelOutputs):
        outputs = load_outputs(Path(outputs), feature_columns)
    _check_classes(outputs.member)
    if population is None or isinstance(population, PopulationOutputs):
        return outputs, population
    return outputs, load_population(Path(population), feature_columns)


def _population_signals(
    outputs: ModelOutputs,
    pop: PopulationOutputs | None,
    specs: tuple[AttackSpec, ...],
    policy: str | None,
    seed: int,
) -> tuple[PopulationSignals | None, list[str]]:
    """The population's signals (under the same output policy) for the attacks that need them,
    after checking that it is the audited model's and shares no record with the audited ones,
    and the warnings of those checks (:func:`population_notes`)."""
    if not any(Need.POPULATION in s.needs for s in specs):
        return None, []
    if pop is None:
        needing = next(s.name for s in specs if Need.POPULATION in s.needs)
        raise InputError(
            "--population",
            f"{needing} needs the model's outputs on population records (known non-members)",
        )
    if pop.values.shape[1] != outputs.n_classes:
        raise InputError(
            "--population",
            f"has {pop.values.shape[1]} classes, the audited outputs {outputs.n_classes}: give the same model's outputs",
        )
    notes = check_disjoint(outputs, pop)
    if pop.image_shape != outputs.image_shape:
        raise InputError(
            "--population",
            f"features are images of shape {pop.image_shape}, the audited records' {outputs.image_shape}",
        )
    as_outputs = ModelOutputs(
        pop.values, pop.kind, pop.label, np.zeros(pop.n_records, np.int8), pop.record_id
    )
    signals = _signals(as_outputs, specs, policy, seed)
    return PopulationSignals(signals, pop.label, pop.features), notes + population_notes(
        outputs, pop
    )


def population_notes(outputs: ModelOutputs, pop: PopulationOutputs) -> list[str]:
    """Warnings that the population's outputs or labels are in another encoding than the audited
    ones: its columns out of miaudit's class order (:func:`column_order_notes`), else its argmax
    accuracy far from the audited non-members' (:func:`accuracy_shift_notes`). A population
    labelled 1 − y or with swapped columns was taken silently (QMIA AUC 0.576 → 0.531, population
    accuracy 0.159 beside the non-members' 0.851: red team)."""
    found = column_order_notes(pop.values, pop.label, "--population")
    if found:
        return found
    non = outputs.member == 0
    return accuracy_shift_notes(pop.values, pop.label, outputs.values[non], outputs.label[non])


def check_disjoint(outputs: ModelOutputs, pop: PopulationOutputs) -> list[str]:
    """Refuse a population that shares a record with the audited ones: by ``record_id`` when
    both files carry ids, else by identical (features, label) rows (docs/formats.md). With ids,
    identical rows under different ids are allowed (real data has duplicate records, e.g. Adult)
    but counted: the returned warning says how many population rows repeat an audited member's
    (features, label) — a population built from the members' table with fresh ids passed
    silently, and QMIA fitted on copies of members (AUC 0.576 → 0.548: red team)."""
    if outputs.has_record_id and pop.has_record_id:
        shared = np.intersect1d(outputs.record_id.astype(str), pop.record_id.astype(str))
        if shared.size:
            raise InputError(
                "--population",
                f"record {str(shared[0])!r} is also an audited record: population records must be known non-members outside the audited set",
            )
    if outputs.features is None or pop.features is None:
        return []  # nothing to compare: the attack refuses the missing features itself
    if outputs.features.shape[1:] != pop.features.shape[1:]:
        return []  # the attack refuses the width itself, naming it
    rows = _row_keys(outputs.features, outputs.label)
    pop_rows = _row_keys(pop.features, pop.label)
    if outputs.has_record_id and pop.has_record_id:
        return _duplicate_notes(rows, pop_rows, outputs.member)
    shared_rows = np.flatnonzero(np.isin(rows, pop_rows))
    if shared_rows.size:
        raise InputError(
            "--population",
            f"audited row {int(shared_rows[0])} has the features and label of a population record (no record_id to tell them apart): population records must lie outside the audited set",
        )
    return []


def _duplicate_notes(rows: np.ndarray, pop_rows: np.ndarray, member: np.ndarray) -> list[str]:
    """One WARNING note when more population rows repeat an audited member's (features, label),
    under other ids, than natural duplication explains. Natural duplicates (Adult: 16 of 28,842
    population rows repeat one of 10,000 members, 12 one of 10,000 non-members) fall on members
    and non-members alike, so the rows repeating a member (m) against those repeating only a
    non-member (o) are read as m ~ Binomial(m + o, the members' share of the audited records):
    a warning when P(X ≥ m) ≤ :data:`COLUMN_ORDER_ALPHA`."""
    from scipy.stats import binom

    m = np.isin(pop_rows, rows[member == 1])
    o = int((np.isin(pop_rows, rows[member == 0]) & ~m).sum())
    copies = int(m.sum())
    share = float(np.mean(member == 1))
    if not copies or binom.sf(copies - 1, copies + o, share) > COLUMN_ORDER_ALPHA:
        return []
    return [
        f"WARNING: --population: {copies:,} of its {pop_rows.size:,} rows have the features and "
        f"label of an audited member under another record_id, against {o:,} those of an audited "
        "non-member only: more than natural duplicates explain, and an attack fitted on copies of "
        "members reads them as non-members. Check that the population records lie outside the "
        "audited set."
    ]


def _row_keys(features: np.ndarray, label: np.ndarray) -> np.ndarray:
    """One hashable key per (features, label) row: the bytes of its values rounded to float32,
    with −0.0 made +0.0. Equal numbers are one record whatever their bytes: the same records
    written once as float32 and once as float64 (features are read as float64) match, and rows
    that agree to float32's seven digits in every feature cannot be told apart by a regressor
    on them either."""
    with np.errstate(over="ignore"):
        values = np.asarray(features).reshape(len(label), -1).astype(np.float32) + np.float32(0)
    rows = np.ascontiguousarray(
        np.column_stack([values.astype(np.float64), np.asarray(label, np.float64)])
    )
    return rows.view(np.dtype((np.void, rows.dtype.itemsize * rows.shape[1]))).ravel()


def exposure_ranking(score: np.ndarray, evidence: np.ndarray, count: int) -> list[tuple[int, int]]:
    """(record index, rank) of the most exposed records: by score, then by ``evidence`` (the
    other attacks' view of the record). Records equal in both share a rank (1, 2, 2, 4…); their
    display order carries no meaning. A tie that straddles the cut is shown whole while the
    list stays within 2 × ``count``, else left out: which of them to show would be arbitrary.
    A tie of :data:`MIN_SLICE_CLASS` records or more is never listed (the list stops above it):
    results.json gives such a tie at the top score its member/non-member split
    (:func:`top_tie`), and the split of a group listed by pseudonym tells each one's membership
    (a red team's 25 saturated members: listed at rank 1 beside "0 % of non-members")."""
    s = np.asarray(score, dtype=np.float64)
    e = np.asarray(evidence, dtype=np.float64)
    order = np.lexsort((-e, -s))
    out: list[tuple[int, int]] = []
    start = 0
    while start < order.size and len(out) < count:
        i0 = order[start]
        end = start + 1
        while end < order.size and s[order[end]] == s[i0] and e[order[end]] == e[i0]:
            end += 1
        if end - start >= MIN_SLICE_CLASS or len(out) + (end - start) > 2 * count:
            break  # a tie whose split may be published, or one straddling the cut, too large
        out += [(int(i), start + 1) for i in order[start:end]]
        start = end
    return out


def most_exposed(
    score: np.ndarray,
    record_id: np.ndarray,
    key: bytes,
    *,
    evidence: np.ndarray | None = None,
    raw_ids: bool = False,
    count: int = MOST_EXPOSED,
) -> list[ExposedRecord]:
    """The ``count`` highest-scoring records, as keyed pseudonyms (raw ids only if asked).

    Ranked by score, then by ``evidence`` (e.g. the mean rank the other attacks give the
    record), never by row order, id or pseudonym: records equal in both share a rank
    (:func:`exposure_ranking`). ``score_percentile`` is the percentage of records scoring at
    most as high; ``ties`` how many others share the score.
    """
    s = np.asarray(score, dtype=np.float64)
    if s.size == 0:
        return []
    ranked = exposure_ranking(s, np.zeros_like(s) if evidence is None else evidence, count)
    idx = np.array([i for i, _ in ranked], dtype=np.int64)
    names = pseudonymise(record_id[idx], key) if idx.size else []
    sorted_s = np.sort(s)
    out = []
    for (i, rank), name in sorted(zip(ranked, names, strict=True), key=lambda t: (t[0][1], t[1])):
        at_most = int(np.searchsorted(sorted_s, s[i], side="right"))
        tied = at_most - int(np.searchsorted(sorted_s, s[i], side="left")) - 1
        shown = str(record_id[i]) if raw_ids else name
        out.append(
            ExposedRecord(
                pseudonym=shown, rank=rank, score_percentile=100.0 * at_most / s.size, ties=tied
            )
        )
    return out


def mean_rank(scores: dict[str, np.ndarray]) -> np.ndarray:
    """Each record's mean rank percentile over attacks: the evidence that orders score ties."""
    from scipy.stats import rankdata

    ranks: np.ndarray = np.mean([rankdata(v) / v.size for v in scores.values()], axis=0)
    return ranks


def _signals_under_policy(
    outputs: ModelOutputs,
    policy: str,
    specs: tuple[AttackSpec, ...],
    needed: tuple[str, ...],
    seed: int,
) -> dict[str, np.ndarray]:
    """Signals computed from what ``policy`` lets out (docs/method.md §1): the attacker sees no more."""
    from miaudit.defenses import apply_policy, computable_signals, exposed_signals, parse_policy

    pol = parse_policy(policy, field="--policy")
    allowed = set(computable_signals(pol))
    blocked = [s.name for s in specs if not set(s.signals) <= allowed]
    if blocked:
        raise InputError(
            "--attacks",
            f"{', '.join(blocked)} cannot run under the {pol} policy (it exposes only {', '.join(sorted(allowed))}); choose attacks from: {', '.join(output_attacks_under(pol))}",
        )
    probs = compute_signals_probs(outputs)
    exposed = apply_policy(
        pol, probs, rng=np.random.default_rng(np.random.SeedSequence([seed, 0x504F4C]))
    )
    return exposed_signals(exposed, outputs.label, which=needed)


def compute_signals_probs(outputs: ModelOutputs) -> np.ndarray:
    """The outputs as probabilities: a softmax of logits (computed stably), or given
    probabilities divided by their row's sum. Rows are accepted summing to 1 within
    ``PROB_SUM_TOL`` (rounded outputs), and the signals without a policy read them normalised
    (a log-softmax of log p): the output policies must see the same rows, or under them a
    row's confidence, entropy and rounding would move with its sum."""
    if outputs.kind == "probs":
        probs: np.ndarray = np.asarray(outputs.values, dtype=np.float64)
        normalised: np.ndarray = probs / probs.sum(axis=-1, keepdims=True)
        return normalised
    return softmax(outputs.values)


def mark_group_tests(
    rows: list[SliceResult],
    tested: Sequence[tuple[int, np.ndarray]],
    member: np.ndarray,
    score: np.ndarray,
    focus: str,
    rng: np.random.Generator,
) -> None:
    """Set, in place, the ``focus`` attack's permutation p-value on each of ``tested``'s rows
    (row of ``rows``, the group's record indices), adjusted over those groups
    (:func:`~miaudit.metrics.group_auc_permutation_p`): --slices groups and the report's
    classes alike."""
    p = group_auc_permutation_p(member, score, [idx for _, idx in tested], rng=rng)
    for (row, _), p_g in zip(tested, p, strict=True):
        rows[row] = rows[row].with_permutation_p(focus, float(p_g))


# Long: one pass over every column's groups, each measured, tested or only counted.
def _slices(
    groups: dict[str, list[tuple[str, np.ndarray]]],
    member: np.ndarray,
    scores: dict[str, np.ndarray],
    n_resamples: int,
    seed: np.random.SeedSequence,
    *,
    focus: str | None = None,
) -> list[SliceResult]:
    """Each group's size and, where it has enough members and non-members, its metrics; never
    its member/non-member split (:class:`SliceResult`). Values held by fewer than
    :data:`MIN_SLICE_CLASS` records are not named, only counted together: results.json named
    a one-record group's value (a rare quasi-identifier such as a postcode) in shareable
    output (red team).

    The ``focus`` attack's AUC is also tested in each column's measured groups whose smaller
    class has at most :data:`PERMUTATION_BELOW` records, by relabelling records within each
    group, adjusted over the column's groups (:func:`group_auc_permutation_p`): the report
    names a group above chance only when that test agrees, as the verdict does, since the
    bootstrap bound of a group of 20-odd members is too narrow (null models had a group "above
    chance" 4.5 % of the time at a nominal 2.5 %: red team)."""
    out: list[SliceResult] = []
    seeds = iter(seed.spawn(sum(len(g) for g in groups.values())))
    for column, parts in groups.items():
        rare = [mask for _, mask in parts if int(mask.sum()) < MIN_SLICE_CLASS]
        tested: list[tuple[int, np.ndarray]] = []  # (row of out, the group's records)
        for value, mask in parts:
            s_seed = next(seeds)
            if int(mask.sum()) < MIN_SLICE_CLASS:
                continue  # named below only as one of the rare values
            m = member[mask]
            n1, n0 = int(m.sum()), int((m == 0).sum())
            attacks = []
            if n1 >= MIN_SLICE_CLASS and n0 >= MIN_SLICE_CLASS:
                ev = evaluate(
                    m,
                    {k: v[mask] for k, v in scores.items()},
                    fprs=(0.01,),
                    n_resamples=n_resamples,
                    rng=np.random.default_rng(s_seed),
                )
                attacks = [
                    SliceAttack(
                        attack=k,
                        auc=ev.estimate(k, "auc").coarsened(SLICE_DECIMALS),
                        tpr_at_1pct_fpr=ev.estimate(k, tpr_key(0.01)).coarsened(SLICE_DECIMALS),
                    )
                    for k in scores
                ]
                if focus in scores and min(n1, n0) <= PERMUTATION_BELOW:
                    tested.append((len(out), np.flatnonzero(mask)))
            out.append(SliceResult(column=column, value=value, n_records=n1 + n0, attacks=attacks))
        if tested and focus is not None:
            # a stream after the groups' own
            mark_group_tests(
                out, tested, member, scores[focus], focus, np.random.default_rng(seed.spawn(1)[0])
            )
        if rare:  # too few to measure, and their values would name a rare quasi-identifier
            out.append(
                SliceResult(
                    column=column,
                    value=f"(other: {len(rare)} value{'s' if len(rare) > 1 else ''} of fewer than {MIN_SLICE_CLASS} records each, not named)",
                    n_records=int(sum(int(mask.sum()) for mask in rare)),
                    attacks=[],
                )
            )
    return out
