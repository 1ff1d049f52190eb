"""``miaudit audit``: train the target's recipe on complementary halves, attack every model with
the others as references (leave-one-model-out), evaluate the pooled pairs by resampling records.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from miaudit._io import cleans_output_dir
from miaudit._version import __version__
from miaudit.attacks import (
    RMIA_DEFAULT_A,
    LiraAttack,
    OutputSignals,
    ReferenceAttack,
    ReferenceSettings,
    RmiaAttack,
    attack_spec,
    complementary_pairs,
    complementary_partners,
    leave_one_model_out_each,
    paired_reference_sets,
    reads_balanced_references,
    reference_attack,
    score_outputs,
)
from miaudit.audit._attack import (
    attack_result,
    below_chance_notes,
    comparisons_with_loss,
    exposure_ranking,
    family_bounds,
    tie_notes,
    top_tie,
)
from miaudit.audit._budget import AuditScores, BudgetCurve, budget_curve
from miaudit.audit._column_order import column_order_notes
from miaudit.audit._config import (
    AuditConfig,
    SignalsAuditConfig,
    load_audit_config,
    load_signals_config,
    runs_on_target_outputs,
)
from miaudit.audit._population_attacks import (
    RecordFeatures,
    needs_population,
    population_attack_scores,
)
from miaudit.audit._pseudonyms import describe_key, key_or_fresh, pseudonymise
from miaudit.audit._query_views import augmented_queries
from miaudit.audit._results import (
    AttackResult,
    AuditResult,
    BootstrapInfo,
    ExposedRecord,
    InputDescription,
    ReferenceSetup,
    RmiaCalibration,
    Utility,
)
from miaudit.audit._writer import (
    drop_replaced_run,
    prepare_out,
    write_run,
    write_shareable_report,
)
from miaudit.data import CHUNK_RECORDS, SignalsStore
from miaudit.errors import InputError
from miaudit.metrics import Evaluation, evaluate, grouped_mean
from miaudit.models import Augmentation
from miaudit.signals import compute_signals

if TYPE_CHECKING:  # the engine is imported when an audit trains, not with this module
    from miaudit.engine import TrainRun

#: How a reference audit words an attack on the target's own outputs (no references).
OWN_OUTPUT_WORDING = " (the target's own output)"


@dataclass(frozen=True, eq=False)
class ReferenceRun:
    result: AuditResult
    targets: np.ndarray
    record_id: np.ndarray  # per pair
    member: np.ndarray  # per pair
    label: np.ndarray  # per pair
    scores: dict[str, np.ndarray]  # per pair
    #: The audited model of each pair (pairs no attack could score are left out of every array).
    pair_target: np.ndarray


#: How a target's references are chosen: k complementary pairs, every other model except its
#: complementary partner(s) (``"all"``), or the given model indices (one audited model only).
References = int | Literal["all"] | Sequence[int]


@dataclass(frozen=True)
class _Plan:
    """Who is attacked with which references, and how that is stated in results.json."""

    targets: list[int]
    refs: list[list[int]]
    k: int | None  # complementary pairs per target, when chosen so
    choice: str  # the choice in words
    given: list[int] | None = None  # the one target's references, when the user named them


#: Balanced references (docs/method.md §3): a target's references are balanced for LiRA and RMIA
#: when the z statistic of its members' mean d = n_in − n_out against its non-members' reaches
#: this (two-sided p ≈ 6·10⁻⁵ where the counts do not depend on the target's membership, as
#: with independent halves), or when d is a deterministic function of membership (z infinite).
BALANCE_Z = 4.0
#: Mixed into the seed of the draw of the references a balanced record drops.
_BALANCE_STREAM = 0x6C697261


@dataclass(frozen=True)
class _Balance:
    """Targets whose references were balanced (LiRA, offline RMIA), and what that dropped."""

    targets: tuple[int, ...] = ()  # positions in the plan's targets
    z: tuple[float, ...] = ()
    dropped: int = 0  # (reference, record) values left out of the balanced attacks' fits
    values: int = 0  # (reference, record) values of those targets' scorable records


@dataclass(frozen=True, eq=False)
class _Scored:
    """Every attack's (targets, records) scores and what the audit reports beside them."""

    scores: dict[str, np.ndarray]  # name → (T, m)
    member: np.ndarray  # (T, m) bool
    records: np.ndarray  # (m,) store positions
    labels: np.ndarray  # (T, m)
    correct: np.ndarray  # (T, m) the target's correctness, for the utility
    rmia_a: RmiaCalibration | None
    balance: _Balance = _Balance()


def _reference_attack(name: str, cfg: AuditConfig | SignalsAuditConfig) -> ReferenceAttack:
    """The attack ``name`` as the config sets it up. Offline RMIA's ``a`` is the config's, or
    (``rmia_a`` unset) cross-fitted per target on the models outside its pair, never on an
    audited target's own membership (:func:`miaudit.attacks.cross_fitted_rmia_a`)."""
    a = cfg.audit
    settings = ReferenceSettings(
        variance=a.lira_variance, gamma=a.rmia_gamma, a=a.rmia_a, seed=cfg.seed
    )
    return reference_attack(name, settings)


def _partners_of(store: SignalsStore, target: int) -> set[int]:
    """The target and its complementary partner(s): never its references (docs/method.md §3)."""
    return {
        int(m) for m in np.flatnonzero(complementary_partners(store.keep[:, store.pool], target))
    } | {target}


def _all_but_partner(store: SignalsStore, target: int) -> list[int]:
    excluded = _partners_of(store, target)
    return [m for m in range(store.n_models) if m not in excluded]


def _pairs_for(store: SignalsStore, target: int, k: int) -> list[int]:
    """k complementary pairs for one audited model: the first k that do not hold it or its partner."""
    excluded = _partners_of(store, target)
    pairs = [p for p in complementary_pairs(store) if not excluded & set(p)]
    if not 1 <= k <= len(pairs):
        raise InputError(
            "references",
            f"asks for {k} complementary pairs for model {target}; the store has {len(pairs)} besides its own",
        )
    return [m for pair in pairs[:k] for m in pair]


def _given(store: SignalsStore, target: int, models: Sequence[int]) -> list[int]:
    refs = [int(m) for m in models]
    if not refs or len(set(refs)) != len(refs):
        raise InputError("references", "give at least one model index, none repeated")
    bad = [m for m in refs if not 0 <= m < store.n_models or m == target]
    if bad:
        raise InputError(
            "references",
            f"model {bad[0]} is not a reference of model {target} (outside [0, {store.n_models}) or the target)",
        )
    mirrored = sorted(_partners_of(store, target) & set(refs))
    if mirrored:
        raise InputError(
            "references",
            f"model {mirrored[0]} is the complementary partner of model {target}: its membership mirrors the target's, so it cannot be a reference",
        )
    return refs


def _one_target(store: SignalsStore, target: int, references: References) -> _Plan:
    if not 0 <= target < store.n_models:
        raise InputError("target", f"model {target} is outside [0, {store.n_models})")
    if references == "all":
        refs = _all_but_partner(store, target)
        if not refs:
            raise InputError("references", f"model {target} has no model to serve as its reference")
        return _Plan(
            [target],
            [refs],
            None,
            f"every other model except the target's complementary partner ({len(refs)} models)",
        )
    if isinstance(references, int):
        return _Plan(
            [target],
            [_pairs_for(store, target, references)],
            references,
            f"{references} complementary pair(s)",
        )
    refs = _given(store, target, references)
    return _Plan([target], [refs], None, f"given: models {', '.join(map(str, refs))}", refs)


def _leave_one_out(store: SignalsStore, n_targets: int, references: References) -> _Plan:
    targets = list(range(n_targets))
    if isinstance(references, int):
        try:
            refs = paired_reference_sets(store, references, targets=targets)
        except InputError as exc:
            raise InputError(
                "references",
                f"{references} complementary pairs per target: {exc.problem} (references 'all' works with any keep matrix)",
            ) from None
        return _Plan(targets, refs, references, f"{references} complementary pair(s) per target")
    if references != "all":
        raise InputError(
            "references",
            "a list of reference models applies to one audited model: name it (target=…, --target) or let every model take a turn with references 'all' or k",
        )
    refs = [_all_but_partner(store, t) for t in targets]
    lonely = [t for t, r in zip(targets, refs, strict=True) if not r]
    if lonely:
        raise InputError("references", f"model {lonely[0]} has no model to serve as its reference")
    return _Plan(targets, refs, None, "every other model except the target's complementary partner")


def _reference_plan(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    target: int | None,
    references: References | None,
) -> _Plan:
    """The audited models and each one's references. ``references`` None: the config's k when
    its ``[audit]`` sets one, else every other model except the target's partner."""
    if references is None:
        references = cfg.audit.references if "references" in cfg.audit.model_fields_set else "all"
    if isinstance(references, int) and (isinstance(references, bool) or references < 1):
        raise InputError(
            "references", f"a number of complementary pairs must be ≥ 1, got {references}"
        )
    if isinstance(references, str) and references != "all":
        raise InputError(
            "references", f"must be 'all', a number of pairs or model indices, got {references!r}"
        )
    if target is not None:
        return _one_target(store, target, references)
    n = store.n_models if cfg.audit.targets is None else min(cfg.audit.targets, store.n_models)
    return _leave_one_out(store, n, references)


def _is_offline_rmia(attack: ReferenceAttack) -> bool:
    return isinstance(attack, RmiaAttack) and attack.mode == "offline"


def count_dependence(ref_keep: np.ndarray, member: np.ndarray) -> float:
    """How strongly a target's membership sets its references' IN/OUT counts: the z statistic
    of mean d over the target's members minus mean d over its non-members, d = n_in − n_out
    among the references on each record (``ref_keep`` (references, records), ``member``
    (records,)). ±inf when d is constant within each group and differs between them (each
    record in exactly K/2 models: d = −1 for every member, +1 for every non-member); 0 when it
    is constant and equal (complementary pairs without the partner), or a group is empty.

    Examples
    --------
    >>> keep = np.array([[1, 1, 0, 0], [1, 0, 1, 0], [0, 1, 0, 1], [0, 0, 1, 1]], dtype=bool)
    >>> count_dependence(keep[1:], keep[0])  # each record in 2 of 4 models, model 0 the target
    -inf
    """
    d = 2 * np.count_nonzero(ref_keep, axis=0) - ref_keep.shape[0]
    a, b = d[member], d[~member]
    if a.size == 0 or b.size == 0:
        return 0.0
    diff = float(a.mean() - b.mean())
    se = float(
        np.sqrt(a.var(ddof=min(1, a.size - 1)) / a.size + b.var(ddof=min(1, b.size - 1)) / b.size)
    )
    if se == 0.0:
        return 0.0 if diff == 0.0 else float(np.copysign(np.inf, diff))
    return diff / se


def balanced_use(ref_keep: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(references, records) mask leaving each record as many IN as OUT references: from the
    larger side, |n_in − n_out| references drawn uniformly at random (``rng``, never the
    signals) are dropped (False). Uniform draws keep every reference's chance of sitting on
    either side the same for the target's members and non-members (docs/method.md §3)."""
    r, m = ref_keep.shape
    use = np.ones((r, m), dtype=bool)
    for lo in range(0, m, CHUNK_RECORDS):
        part = ref_keep[:, lo : lo + CHUNK_RECORDS]
        d = 2 * np.count_nonzero(part, axis=0) - r
        larger = np.where(d > 0, part, ~part)
        key = np.where(larger, rng.random(part.shape), -1.0)
        rank = np.empty(part.shape, dtype=np.int64)
        np.put_along_axis(
            rank, np.argsort(-key, axis=0, kind="stable"), np.arange(r)[:, None], axis=0
        )
        use[:, lo : lo + CHUNK_RECORDS] = ~(larger & (rank < np.abs(d)))
    return use


def _balance(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    targets: list[int],
    refs: list[list[int]],
) -> tuple[_Balance, Callable[[int], np.ndarray | None]]:
    """Which targets' references the balanced attacks read balanced (:data:`BALANCE_Z`), and the mask of
    each (computed when asked, seeded by the config's seed and the target's index)."""
    pool = np.flatnonzero(~store.population)
    chosen: list[int] = []
    zs: list[float] = []
    dropped = values = 0
    for i, t in enumerate(targets):
        ref_keep = store.keep[np.ix_(np.asarray(refs[i]), pool)]
        z = count_dependence(ref_keep, store.keep[t, pool])
        if abs(z) >= BALANCE_Z:
            n_in = np.count_nonzero(ref_keep, axis=0)
            scorable = (n_in > 0) & (n_in < len(refs[i]))
            chosen.append(i)
            zs.append(z)
            dropped += int(np.abs(2 * n_in - len(refs[i]))[scorable].sum())
            values += len(refs[i]) * int(scorable.sum())

    def use(i: int) -> np.ndarray | None:
        if i not in chosen:
            return None
        rng = np.random.default_rng([_BALANCE_STREAM, cfg.seed, targets[i]])
        return balanced_use(store.keep[np.ix_(np.asarray(refs[i]), pool)], rng)

    return _Balance(tuple(chosen), tuple(zs), dropped, values), use


def _score_with_references(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    targets: list[int],
    refs: list[list[int]],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, RmiaCalibration | None, _Balance]:
    """Reference attacks' (T, m) scores, membership, evaluated records, offline RMIA's ``a``
    and the balancing of the references (:func:`_balance`).

    With no reference attack, the pairs the reference attacks would have scored.
    """
    made = {
        name: _reference_attack(name, cfg)
        for name in cfg.audit.attacks
        if not runs_on_target_outputs(attack_spec(name))
    }
    balanced = any(reads_balanced_references(a) for a in made.values())
    balance, use = _balance(store, cfg, targets, refs) if balanced else (_Balance(), None)
    scores: dict[str, np.ndarray] = {}
    member = records = None
    rmia_a = None
    for name, paired in leave_one_model_out_each(
        store,
        made,
        targets=targets,
        reference_sets=refs,
        online_use=use if balance.targets else None,
    ).items():
        scores[name] = paired.scores
        member, records = paired.member, paired.records
        if _is_offline_rmia(made[name]):
            rmia_a = rmia_calibration(cfg, paired.rmia_a)
    if records is None or member is None:
        records = np.flatnonzero(~store.population)
        member = store.keep[np.asarray(targets)][:, records]
    return scores, member, records, rmia_a, balance


def _score_target_outputs(
    store: SignalsStore,
    names: Sequence[str],
    targets: list[int],
    records: np.ndarray,
    features: RecordFeatures | None = None,
    seed: int = 0,
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Attacks on each target's own outputs: (T, m) scores, the labels and the correctness.

    Those that also fit on population records (QMIA) fit once per target
    (:func:`population_attack_scores`)."""
    specs = [
        attack_spec(n)
        for n in names
        if runs_on_target_outputs(attack_spec(n)) and not needs_population(n)
    ]
    needed = tuple(dict.fromkeys(sig for s in specs for sig in s.signals))
    logits = store.logits[:, :, 0, :] if store.logits.ndim == 4 else store.logits
    labels = np.broadcast_to(store.label[records], (len(targets), records.size))
    sig = compute_signals(
        logits[np.asarray(targets)][:, records],
        labels,
        which=tuple(dict.fromkeys((*needed, "correctness"))),
    )
    flat = OutputSignals(
        signals={k: v.reshape(-1) for k, v in sig.items()}, labels=labels.reshape(-1)
    )
    scores = {s.name: score_outputs(s.name, flat).score.reshape(labels.shape) for s in specs}
    scores.update(population_attack_scores(store, names, targets, records, features, seed))
    return {n: scores[n] for n in names if n in scores}, labels, sig["correctness"]


def _score_all(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    targets: list[int],
    refs: list[list[int]],
    features: RecordFeatures | None = None,
) -> _Scored:
    scores, member, records, rmia_a, balance = _score_with_references(store, cfg, targets, refs)
    own, labels, correct = _score_target_outputs(
        store, cfg.audit.attacks, targets, records, features, cfg.seed
    )
    return _Scored({**scores, **own}, member, records, labels, correct, rmia_a, balance)


def _description(name: str) -> tuple[str, str]:
    """The report's wording and citation of an attack in a reference audit."""
    spec = attack_spec(name)
    suffix = OWN_OUTPUT_WORDING if runs_on_target_outputs(spec) else ""
    return spec.description + suffix, spec.citation


def _most_exposed(
    store: SignalsStore,
    records: np.ndarray,
    pos: np.ndarray,
    y: np.ndarray,
    s: np.ndarray,
    key: bytes,
) -> list[ExposedRecord]:
    """Per-record exposure: how often a record is flagged, at the strongest attack's 1 % FPR
    threshold (scores ``s`` of the pooled pairs; ``pos``: each pair's position in ``records``),
    among the models that trained on it."""
    non = np.sort(s[y == 0])
    thr = non[min(non.size - 1, int(np.ceil(0.99 * non.size)))] if non.size else np.inf
    flagged = (s > thr) & (y == 1)
    in_count = np.bincount(pos, weights=y, minlength=records.size)
    hit = np.bincount(pos, weights=flagged, minlength=records.size)
    exposure = np.divide(hit, in_count, out=np.zeros_like(hit), where=in_count > 0)
    # Evidence that orders equal exposure: the record's mean score over the models it trained in.
    score_sum = np.bincount(pos, weights=np.where(y == 1, s, 0.0), minlength=records.size)
    evidence = np.divide(
        score_sum, in_count, out=np.full_like(score_sum, -np.inf), where=in_count > 0
    )
    ranked = exposure_ranking(exposure, evidence, 20)
    top = np.array([j for j, _ in ranked], dtype=np.int64)
    shown = pseudonymise(store.record_id[records[top]], key) if top.size else []
    return [
        ExposedRecord(pseudonym=p, rank=rank, flagged_by_percent=float(exposure[j]) * 100)
        for p, (j, rank) in sorted(zip(shown, ranked, strict=True), key=lambda t: (t[1][1], t[0]))
    ]


def _utility(
    correct: np.ndarray,
    member: np.ndarray,
    record: np.ndarray,
    cfg: AuditConfig | SignalsAuditConfig,
    confidence: float,
) -> Utility:
    """Train and test accuracy over the evaluated pairs; the test accuracy's interval resamples
    records (``record``: each pair's), as the audit's intervals do: whether a control left a
    model that still predicts is read from it (the trade-off's majority-class check)."""
    train_acc = float(correct[member].mean()) if member.any() else float("nan")
    test_acc = float(correct[~member].mean()) if (~member).any() else float("nan")
    interval = None
    if (~member).any() and cfg.audit.resamples:
        interval = grouped_mean(
            correct[~member],
            record[~member],
            n_resamples=cfg.audit.resamples,
            confidence=confidence,
            # a stream of its own (the third child of the seed: the bootstrap's is the first), so
            # that adding it moved no other figure
            rng=np.random.default_rng(np.random.SeedSequence(cfg.seed).spawn(3)[2]),
        )
    return Utility(
        train_accuracy=train_acc,
        test_accuracy=test_acc,
        generalization_gap=train_acc - test_acc,
        test_accuracy_interval=interval,
    )


def _setup(
    store: SignalsStore,
    source: str,
    scored: _Scored,
    plan: _Plan,
    pairs: _Pairs,
    stated: _Stated | None,
) -> ReferenceSetup:
    info = store.info
    return ReferenceSetup(
        dataset=info.dataset if info.dataset is not None else source,
        recipe=info.recipe or {},
        models=store.n_models,
        references=plan.k,
        targets=len(plan.targets),
        external_target=stated is not None and stated.external_target,
        pool_records=int(scored.records.size),
        population_records=int(store.population.sum()),
        pairs=int(pairs.y.size),
        rmia_offline_a=scored.rmia_a,
        reference_choice=None if stated is None else plan.choice,
        reference_models=None if stated is None else [len(r) for r in plan.refs],
        pool=None if stated is None else stated.pool,
        undefined_pairs=None if stated is None else pairs.undefined,
        reference_set=plan.given,
    )


def _notes(
    cfg: AuditConfig | SignalsAuditConfig,
    plan: _Plan,
    stated: _Stated | None,
    pairs: _Pairs,
    results: list[AttackResult],
    ev: Evaluation,
    balance: _Balance = _Balance(),
) -> list[str]:
    external = stated is not None and stated.external_target
    if external:
        first = f"An external target model (trained elsewhere, not retrained) was attacked; references: {plan.choice}."
    elif stated is not None:
        first = f"Models trained elsewhere (their signals given); {len(plan.targets)} audited, {'each taking a turn as the target' if len(plan.targets) > 1 else 'one target'}; references: {plan.choice}; pairs (model, record) are pooled."
    else:
        first = "Leave-one-model-out: each target model is attacked with k complementary pairs of the other models as references; pairs (model, record) are pooled."
    undefined = (
        [
            f"{pairs.undefined:,} (model, record) pairs were left out: their references held no OUT model (offline attacks) or no IN model (online attacks) on the record; which pairs depends on the references' membership only."
        ]
        if pairs.undefined
        else []
    )
    return [
        *below_chance_notes(results),
        first,
        "Intervals: percentile bootstrap resampling records, all pairs of a record together.",
        "most_exposed: percentage of the models that trained on a record that flag it at the strongest attack's 1 % FPR threshold.",
        *undefined,
        *tie_notes(results, ev.fprs),
        *_small_k_notes(cfg, plan, external),
        *_balance_notes(cfg, plan, balance),
    ]


def _balance_notes(
    cfg: AuditConfig | SignalsAuditConfig, plan: _Plan, balance: _Balance
) -> list[str]:
    """One note when the references were balanced (online and offline LiRA, offline RMIA): on
    how many models, why, what
    was dropped (docs/method.md §3); nothing per record."""
    if not balance.targets:
        return []
    names = [
        n
        for n in cfg.audit.attacks
        if not runs_on_target_outputs(attack_spec(n))
        and reads_balanced_references(_reference_attack(n, cfg))
    ]
    finite = [abs(z) for z in balance.z if np.isfinite(z)]
    how = (
        f"the difference in mean n_in − n_out between its members and non-members reached |z| ≥ {min(finite):.1f} (threshold {BALANCE_Z:g})"
        if finite
        else "n_in − n_out was a function of its membership (each record in a fixed number of models)"
    )
    return [
        f"Balanced references ({', '.join(names)}): on {len(balance.targets)} of {len(plan.targets)} audited model(s) the number of IN and OUT references of a record depended on the model's own membership ({how}), "
        "which pushes online LiRA below chance and offline LiRA and RMIA's TPR at low FPR below it even where the model leaks nothing (docs/method.md §3). "
        f"There each record kept as many IN as OUT references: {balance.dropped:,} of {balance.values:,} (reference, record) values were dropped, "
        "drawn at random from each record's larger side (seeded by the run's seed and the model, never by the signals); other attacks use every reference."
    ]


def _fault_notes(store: SignalsStore) -> list[str]:
    """A warning, said first, when the models' DP-SGD ran with fault injection: the recipe's ε
    is void (red team: an audit of a zero-noise recipe said nothing, while dp-audit did)."""
    faults = sorted({str(p.get("fault_injection", "none")) for p in store.info.privacy} - {"none"})
    if not faults:
        return []
    return [
        f"WARNING: DP-SGD fault injection was on ({', '.join(faults)}): the recipe's ε "
        "(model.dp) is VOID, not what the training did; these models are for testing an auditor, "
        "never for release."
    ]


def _store_warnings(store: SignalsStore, plan: _Plan) -> list[str]:
    """The warnings about the models themselves, said first: DP fault injection, class order."""
    return _fault_notes(store) + _column_notes(store, plan)


def _column_notes(store: SignalsStore, plan: _Plan) -> list[str]:
    """A warning when the first audited model's class columns look out of miaudit's order
    (:func:`~miaudit.audit._column_order.column_order_notes`): an external target or the
    user's own training code numbering its classes another way reads every label-dependent
    attack on another class's column (red team: RMIA's AUC 0.566 → 0.543, no word). One model
    stands for the rest: an external target is the only one, and models trained by one recipe
    number their classes alike; each further model was one more pass over a store that may
    hold millions of records per model."""
    t = plan.targets[0]
    values = np.asarray(store.logits[t])
    if values.ndim == 3:  # (records, queries, classes): the record itself is query 0
        values = values[:, 0]
    return column_order_notes(values, store.label, f"model {t}'s outputs")


def _copies_notes(store: SignalsStore, plan: _Plan) -> list[str]:
    """Warnings for models whose outputs are bit-identical: every model alike though they
    trained on different records (a train function that ignores the records it is given: every
    AUC 0.500, no word), or a reference identical to its target (the target written twice: it
    leaks the target's membership, and LiRA's AUC rose 0.843 → 0.893) (red team). Models are
    told apart by their first records' logits, and only those alike there are compared in
    full: no extra pass over a large (memory-mapped) store when the models differ, as they do."""
    head = [
        hashlib.sha256(np.ascontiguousarray(store.logits[m, :_HEAD_RECORDS]).tobytes()).digest()
        for m in range(store.n_models)
    ]

    def same(a: int, b: int) -> bool:
        return head[a] == head[b] and np.array_equal(store.logits[a], store.logits[b])

    if store.n_models > 1 and all(same(0, m) for m in range(1, store.n_models)):
        return [
            "WARNING: every model gave bit-identical outputs although they trained on different "
            "records: the audit compares models that do not differ (does the training use the "
            "records it is given?), and its figures mean nothing."
        ]
    twins = sorted(
        {
            (t, r)
            for t, refs in zip(plan.targets, plan.refs, strict=True)
            for r in refs
            if same(t, r)
        }
    )
    if not twins:
        return []
    shown = ", ".join(f"{r} of target {t}" for t, r in twins[:5])
    return [
        f"WARNING: reference models with outputs bit-identical to their target's ({shown}"
        f"{' …' if len(twins) > 5 else ''}): a copy of the target is not a reference (it carries "
        "the target's membership and inflates the online attacks); remove it from the store or "
        "name the references (--references)."
    ]


#: Records whose logits tell models apart before any full comparison (:func:`_copies_notes`).
_HEAD_RECORDS = 4096


def _evaluate(
    cfg: AuditConfig | SignalsAuditConfig,
    y: np.ndarray,
    pooled: dict[str, np.ndarray],
    groups: np.ndarray,
) -> Evaluation:
    """Every attack's metrics on the pooled pairs, resampling records with all their pairs."""
    boot_seed, _ = np.random.SeedSequence(cfg.seed).spawn(2)
    return evaluate(
        y,
        pooled,
        fprs=cfg.audit.fprs,
        prior=cfg.audit.prior,
        n_resamples=cfg.audit.resamples,
        groups=groups,
        rng=np.random.default_rng(boot_seed),
    )


def _describe_pairs(source: str, y: np.ndarray, n_classes: int) -> InputDescription:
    return InputDescription(
        name=source,
        format="signals",
        sha256=None,
        kind="logits",
        n_records=int(y.size),
        n_members=int(y.sum()),
        n_nonmembers=int((y == 0).sum()),
        n_classes=n_classes,
    )


@dataclass(frozen=True)
class _Stated:
    """What an audit other than the engine's paired one states about its set-up (results.json
    of the engine's paired audits stays as it was)."""

    pool: str
    external_target: bool = False


@dataclass(frozen=True, eq=False)
class _Pairs:
    """The scored (target, record) pairs, flattened target by target; undefined pairs dropped."""

    scores: dict[str, np.ndarray]
    y: np.ndarray
    pos: np.ndarray  # position of each pair's record in the evaluated records
    target: np.ndarray
    label: np.ndarray
    undefined: int
    defined: np.ndarray  # (T·m,) bool: the pairs kept, in target-major order


def _pairs(scored: _Scored, targets: list[int], order: Sequence[str]) -> _Pairs:
    """Flatten the (T, m) scores; a pair an attack could not score (NaN: its references lack an
    IN or OUT model on the record) is left out of every attack, so that all are compared on the
    same pairs. Complementary pairs leave none out."""
    defined = np.ones(scored.member.shape, dtype=bool)
    for n in order:
        defined &= ~np.isnan(scored.scores[n])
    flat = defined.reshape(-1)
    if not flat.any():
        raise InputError(
            "keep",
            "no (model, record) pair can be scored: every record lacks an IN or OUT reference model",
        )
    m = scored.records.size
    return _Pairs(
        scores={n: scored.scores[n].reshape(-1)[flat] for n in order},
        y=scored.member.reshape(-1)[flat].astype(np.int8),
        pos=np.tile(np.arange(m), len(targets))[flat],
        target=np.repeat(np.asarray(targets, dtype=np.int64), m)[flat],
        label=scored.labels.reshape(-1)[flat],
        undefined=int(flat.size - flat.sum()),
        defined=flat,
    )


def _checked_membership(y: np.ndarray) -> None:
    if y.min() == y.max():
        what = "member" if y.max() == 0 else "non-member"
        raise InputError(
            "keep",
            f"the audited pairs hold no {what}: each target needs both members and non-members among the evaluated records",
        )


def attack_store(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig | None = None,
    *,
    source: str = "(in memory)",
    pseudonym_key: bytes | None = None,
    config_sha256: str | None = None,
    external_target: bool = False,
    target: int | None = None,
    references: References | None = None,
    pool: np.ndarray | Sequence[object] | None = None,
    features: np.ndarray | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> ReferenceRun:
    """Attack a multi-model signals store and evaluate the pooled (target, record) pairs.

    ``cfg`` (default :class:`SignalsAuditConfig`): only its ``[audit]`` section and ``seed``
    are read. Who is audited: ``target`` (default the store's target), else every model (or the
    first ``audit.targets``) in turn, leave-one-model-out. ``references``: ``"all"`` (every
    other model except the target's complementary partner), k (k complementary pairs) or, with
    one target, the model indices; default the config's k when its ``[audit]`` sets
    ``references``, else ``"all"``. ``pool``: record ids to evaluate (default: every record
    outside ``store.population``). With ``external_target`` the store's ``target`` is a model
    trained elsewhere whose references the engine trained (default references: ``"all"``).
    Pairs whose references hold no IN (online) or no OUT (offline) model on the record are left
    out and counted in results.json. Any keep matrix works, complementary or not.
    ``features``: (records, d) features in the store's record order, for attacks that regress
    on them (QMIA, fitted per target on the store's population records) — or (records, Q, d),
    one row per query view of a store with Q augmented queries (QMIA then reads every query).
    ``image_shape``: (C, H, W) when the features are flat images (QMIA regresses with a CNN).
    """
    return _attack_known(
        store,
        cfg if cfg is not None else SignalsAuditConfig(),
        _known_features(store, features, image_shape),
        source=source,
        pseudonym_key=pseudonym_key,
        config_sha256=config_sha256,
        external_target=external_target,
        target=target,
        references=references,
        pool=pool,
    )


def _attack_known(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    known: RecordFeatures | None,
    *,
    source: str,
    pseudonym_key: bytes | None,
    config_sha256: str | None = None,
    external_target: bool = False,
    target: int | None = None,
    references: References | None = None,
    pool: np.ndarray | Sequence[object] | None = None,
) -> ReferenceRun:
    """:func:`attack_store` with the features already kept by record id
    (:class:`RecordFeatures`, whose query views are made a chunk of records at a time)."""
    store, plan, pool_words = _prepare(store, cfg, external_target, target, references, pool)
    stated = _Stated(pool_words or _STORE_POOL, external_target)
    return _run_plan(store, cfg, plan, stated, source, pseudonym_key, config_sha256, known)


def _known_features(
    store: SignalsStore, features: np.ndarray | None, image_shape: tuple[int, int, int] | None
) -> RecordFeatures | None:
    if features is None:
        return None
    return RecordFeatures.of(store.record_id, features, image_shape=image_shape)


#: The pool in words when it is the store's own.
_STORE_POOL = "the store's: every record outside store.population"


def _prepare(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    external_target: bool,
    target: int | None,
    references: References | None,
    pool: np.ndarray | Sequence[object] | None,
) -> tuple[SignalsStore, _Plan, str | None]:
    """The store restricted to ``pool``, the plan of targets and references, the pool in words."""
    store, pool_words = _with_pool(store, pool)
    _every_record_has_an_out_model(store)
    if external_target:
        if store.target is None:
            raise InputError("target", "the store names no target model")
        target, references = store.target, "all" if references is None else references
    elif target is None:
        target = store.target
    return store, _reference_plan(store, cfg, target, references), pool_words


def _run_plan(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    plan: _Plan,
    stated: _Stated | None,
    source: str,
    pseudonym_key: bytes | None,
    config_sha256: str | None,
    features: RecordFeatures | None = None,
) -> ReferenceRun:
    scored = _score_all(store, cfg, plan.targets, plan.refs, features)
    order = list(cfg.audit.attacks)
    pairs = _pairs(scored, plan.targets, order)
    _checked_membership(pairs.y)
    ev = _evaluate(cfg, pairs.y, pairs.scores, scored.records[pairs.pos])
    results = [
        attack_result(n, ev, *_description(n), top_tie=top_tie(pairs.y, pairs.scores[n]))
        for n in order
    ]
    strongest = max(results, key=lambda a: a.auc.point or 0.0).name
    key = key_or_fresh(pseudonym_key)
    result = AuditResult(
        tool_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        seed=cfg.seed,
        input=_describe_pairs(source, pairs.y, store.n_classes),
        bootstrap=BootstrapInfo(
            replicates=cfg.audit.resamples, confidence=ev.confidence, resampling=ev.resampling
        ),
        attacks=results,
        comparisons=comparisons_with_loss(ev),
        exposure_attack=strongest,
        most_exposed=_most_exposed(
            store, scored.records, pairs.pos, pairs.y, pairs.scores[strongest], key
        ),
        pseudonymisation=describe_key(key),
        reference=_setup(store, source, scored, plan, pairs, stated),
        utility=_utility(
            scored.correct.reshape(-1)[pairs.defined],
            pairs.y.astype(bool),
            pairs.pos,
            cfg,
            ev.confidence,
        ),
        config_sha256=config_sha256,
        notes=_store_warnings(store, plan)
        + _notes(cfg, plan, stated, pairs, results, ev, scored.balance)
        + _copies_notes(store, plan),
        budget_curve=_budget(store, cfg, plan, stated, features, scored),
        family=family_bounds(ev),
    )
    return ReferenceRun(
        result,
        np.asarray(plan.targets),
        store.record_id[scored.records[pairs.pos]],
        pairs.y,
        pairs.label,
        pairs.scores,
        pairs.target,
    )


def _budget(
    store: SignalsStore,
    cfg: AuditConfig | SignalsAuditConfig,
    plan: _Plan,
    stated: _Stated | None,
    features: RecordFeatures | None,
    scored: _Scored,
) -> BudgetCurve | None:
    """The reference-budget curve when each target had k complementary pairs (not for an
    external target: its references are not chosen as pairs). k = 0 takes the audit's own
    scores of the attacks on the target's outputs (QMIA included) — they need no reference, so
    they are not computed again; other records are scored with the audit's features and seed."""
    if plan.k is None or (stated is not None and stated.external_target):
        return None
    a = cfg.audit
    own = [n for n in a.attacks if runs_on_target_outputs(attack_spec(n))]
    _, budget_seed = np.random.SeedSequence(cfg.seed).spawn(2)

    def zero_scores(
        st: SignalsStore, names: Sequence[str], targets: list[int], records: np.ndarray
    ) -> dict[str, np.ndarray]:
        if np.array_equal(records, scored.records):
            return {n: scored.scores[n] for n in names}
        return _score_target_outputs(st, names, targets, records, features, cfg.seed)[0]

    return budget_curve(
        store,
        ReferenceSettings(variance=a.lira_variance, gamma=a.rmia_gamma, a=a.rmia_a, seed=cfg.seed),
        a.attacks,
        plan.targets,
        plan.refs,
        zero=(own, zero_scores),
        resamples=a.resamples,
        seed=np.random.default_rng(budget_seed),
        own=AuditScores(scored.scores, scored.member, scored.records),
    )


def rmia_calibration(
    cfg: AuditConfig | SignalsAuditConfig, per_target: np.ndarray | None
) -> RmiaCalibration:
    """What results.json says about offline RMIA's ``a``: given, or cross-fitted per target."""
    if per_target is None:
        if cfg.audit.rmia_a is None:
            raise InputError("audit.rmia_a", "offline RMIA reported no a of its own")
        return RmiaCalibration(
            method="given in the config (audit.rmia_a)", per_target=[float(cfg.audit.rmia_a)]
        )
    return RmiaCalibration(
        method=(
            "cross-fitted: for each target, calibrated on the models outside its complementary pair (one plays the target, the others are its references); "
            f"where fewer than two pairs lie outside it (k = 1), the stated default a = {RMIA_DEFAULT_A}"
        ),
        per_target=[float(v) for v in per_target],
    )


def _small_k_notes(cfg: AuditConfig | SignalsAuditConfig, plan: _Plan, external: bool) -> list[str]:
    """What one reference pair (k = 1) changes, stated where it applies."""
    lira = any(
        isinstance(_reference_attack(a, cfg), LiraAttack)
        for a in cfg.audit.attacks
        if not runs_on_target_outputs(attack_spec(a))
    )
    if external or plan.k != 1 or not lira:
        return []
    return [
        "k = 1: each record has one IN and one OUT reference, so LiRA's σ is the spread of the references' φ across records "
        "(no within-record spread can be measured; it overstates σ, which scales the scores but leaves the ranking as with any common σ)."
    ]


def _every_record_has_an_out_model(store: SignalsStore) -> None:
    """A pool record every model trained on has no OUT model anywhere: no attack can score it."""
    pool = store.pool
    every = store.keep[:, pool].all(axis=0)
    if every.any():
        # named by its row, not its id: the line tells a record's membership in every model,
        # the target's included, and error lines end up in CI logs (red team)
        row = int(np.flatnonzero(pool)[int(np.argmax(every))])
        more = int(every.sum()) - 1
        raise InputError(
            "keep",
            f"the record in row {row} of the store{f' (and {more} more)' if more else ''} is in every model's training set: no model is OUT on it, so no attack can score it; drop it from the store or leave it out of some models",
        )


def _with_pool(
    store: SignalsStore, pool: np.ndarray | Sequence[object] | None
) -> tuple[SignalsStore, str | None]:
    """The store restricted to an explicit pool of record ids (plus its population, RMIA's z
    records), and the pool in words for results.json; no pool: the store's own (its records
    outside ``store.population``), in words None."""
    if pool is None:
        return store, None
    ids = [str(r) for r in np.asarray(pool).reshape(-1).tolist()]
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    missing = [r for r in ids if r not in index]
    if missing or not ids:
        raise InputError(
            "pool", f"record {missing[0]!r} is not in the store" if missing else "is empty"
        )
    if len(set(ids)) != len(ids):
        raise InputError("pool", "record ids repeat")
    chosen = np.zeros(store.n_records, dtype=bool)
    chosen[[index[r] for r in ids]] = True
    cols = np.flatnonzero(chosen | store.population)
    restricted = SignalsStore.from_arrays(
        logits=store.logits[:, cols],
        label=store.label[cols],
        keep=store.keep[:, cols],
        population=~chosen[cols],
        record_id=store.record_id[cols],
        target=store.target,
        info=store.info,
    )
    return (
        restricted,
        f"given: {len(ids):,} records (the rest of the store's records left out, its population kept as RMIA's z records)",
    )


#: Engine settings that change how fast, not what: a re-run differing only in these is the same run.
_RUN_ONLY = {"workers", "progress", "executor", "address"}


def config_digest(cfg: AuditConfig) -> str:
    data = cfg.model_dump(mode="json")
    data["engine"] = {k: v for k, v in data["engine"].items() if k not in _RUN_ONLY}
    data.pop(
        "trust_code", None
    )  # permission to run the config's code, not part of what it computes
    return hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()


@dataclass(frozen=True, eq=False)
class ExternalTarget:
    """A model trained elsewhere, audited without retraining it.

    ``outputs``: its logits (or probabilities) on every record of the config's dataset, in the
    dataset's order (``miaudit.datasets.load_dataset(config.data)``); ``members``: the record
    ids it trained on; ``kind``: what ``outputs`` hold, ``"logits"`` (the default) or
    ``"probs"`` (``predict_proba``'s output). Probabilities given as logits (every row ≥ 0 and
    summing to 1) are refused rather than put through a softmax a second time, and so are
    per-class sigmoid values given as logits (every value in [0, 1] on at least
    ``miaudit.models.MIN_SIGMOID_ROWS`` records). Build it from a
    fitted model with :meth:`from_model`, which sets ``kind`` itself.
    """

    outputs: np.ndarray
    members: np.ndarray
    kind: Literal["logits", "probs"] = "logits"

    @classmethod
    def from_model(
        cls,
        model: object,
        features: np.ndarray,
        members: np.ndarray,
        *,
        augment: Sequence[Augmentation] = (),
        image_shape: tuple[int, int, int] | None = None,
    ) -> ExternalTarget:
        """A fitted scikit-learn classifier (``predict_proba``) or a torch module (logits).

        ``augment`` (images, with ``image_shape`` = (C, H, W) of the flat ``features``): ask
        the model the same augmented queries the built-in CNN recipe records — the image, its
        mirror ("hflip"), one-pixel shifts ("shift") — giving (records, queries, classes)
        outputs for stores whose logits have that query axis (LiRA scores every query).
        """
        views = augmented_queries(features, augment, image_shape)
        outs = [_model_outputs(model, v) for v in views]
        stacked = outs[0][0] if len(outs) == 1 else np.stack([o[0] for o in outs], axis=1)
        return cls(stacked, np.asarray(members), outs[0][1])

    @classmethod
    def from_onnx(
        cls,
        path: str | Path,
        features: np.ndarray,
        members: np.ndarray,
        *,
        output: str | None = None,
        kind: Literal["logits", "probs"] | None = None,
    ) -> ExternalTarget:
        """An ONNX file, read as data (:func:`miaudit.models.load_onnx`): its logits (a torch
        export) or probabilities (skl2onnx with ``zipmap=False``) on ``features``.

        ``output`` names the graph's output to read when it has several; ``kind`` says what it
        holds when its name does not (a softmax output named ``output``: ``kind="probs"``).
        """
        from miaudit.models import load_onnx

        features = np.asarray(features)
        model = load_onnx(
            path,
            n_features=features.shape[1] if features.ndim == 2 else None,
            output=output,
            kind=kind,
        )
        return cls(model.record_outputs(features), np.asarray(members), model.kind)


def _model_outputs(
    model: object, features: np.ndarray
) -> tuple[np.ndarray, Literal["logits", "probs"]]:
    if hasattr(model, "predict_proba"):
        return np.asarray(model.predict_proba(features), dtype=np.float64), "probs"
    import torch

    if isinstance(model, torch.nn.Module):
        was_training = model.training
        model.eval()
        with torch.no_grad():
            logits = (
                model(torch.as_tensor(np.asarray(features), dtype=torch.float32)).double().numpy()
            )
        model.train(was_training)
        return logits, "logits"
    raise InputError(
        "target",
        f"cannot get outputs from {type(model).__name__}: need predict_proba (scikit-learn) or a torch.nn.Module",
    )


def _target_queries(store: SignalsStore, out: np.ndarray) -> np.ndarray:
    """The target's outputs as (records, queries, classes) when they carry a query axis (it
    must match the store's), else as given."""
    n, c = store.n_records, store.n_classes
    if out.ndim == 3:
        queries = store.logits.shape[2] if store.logits.ndim == 4 else 1
        if out.shape != (n, queries, c):
            raise InputError(
                "target.outputs",
                f"has shape {out.shape}, expected (records, queries, classes) = {(n, queries, c)} matching the references' queries",
            )
    elif out.shape != (n, c):
        raise InputError(
            "target.outputs",
            f"has shape {out.shape}, expected (records, classes) = {(n, c)} in the dataset's order",
        )
    return out


def _checked_queries(queries: np.ndarray, label: np.ndarray, member: np.ndarray, kind: str) -> None:
    from miaudit.data import ModelOutputs

    for a in range(queries.shape[1]):
        ModelOutputs.from_arrays(
            label=label,
            member=member.astype(np.int8),
            logits=queries[:, a] if kind == "logits" else None,
            probs=queries[:, a] if kind == "probs" else None,
        )


def _check_target_kind(out: np.ndarray, kind: str) -> None:
    """Outputs that are not what ``kind`` says, refused before anything reads them (naming the
    field the user sets): logits that are probabilities (a softmax would be applied twice) or
    per-class sigmoid values (a softmax of the wrong numbers), or probabilities with negative
    values (log-probabilities or logits); logits beyond float32's range (they are kept as
    float32 with the references')."""
    from miaudit.data import fits_float32, looks_like_probabilities
    from miaudit.models import looks_like_sigmoids, sigmoid_problem

    if out.dtype.kind not in "biuf":  # refused as such with the shape and finiteness checks
        return
    if kind == "logits" and looks_like_probabilities(out):
        raise InputError(
            "target.outputs",
            "every row is non-negative and sums to 1: these look like probabilities, which read "
            "as logits would go through a softmax twice; pass kind='probs' "
            "(ExternalTarget(outputs, members, kind='probs'), or ExternalTarget.from_onnx(..., kind='probs'))",
        )
    if kind == "logits" and looks_like_sigmoids(out):
        raise InputError("target.outputs", sigmoid_problem("kind is 'logits' but the target", out))
    if kind == "probs" and out.size and out.min() < 0:
        raise InputError(
            "target.outputs",
            f"kind is 'probs' but holds negative values (the least {float(out.min()):.6g}): these "
            "look like log-probabilities or logits; pass kind='logits'",
        )
    if kind == "logits":
        fits_float32("target.outputs", out)


def _as_logits(values: np.ndarray, kind: str) -> np.ndarray:
    if kind == "logits":
        return values
    logs: np.ndarray = np.log(np.maximum(values, np.finfo(np.float64).tiny))
    return logs


def _with_external_target(store: SignalsStore, target: ExternalTarget) -> SignalsStore:
    from miaudit.data import ModelOutputs

    n = store.n_records
    out = _target_queries(store, np.asarray(target.outputs))
    queries = out if out.ndim == 3 else None
    out = out[:, 0] if queries is not None else out
    index = {str(r): i for i, r in enumerate(store.record_id.tolist())}
    unknown = [m for m in target.members.tolist() if str(m) not in index]
    if unknown:
        raise InputError("target.members", f"record id {unknown[0]!r} is not in the dataset")
    member = np.zeros(n, dtype=bool)
    member[[index[str(m)] for m in target.members.tolist()]] = True
    checked = ModelOutputs.from_arrays(
        label=store.label,
        member=member.astype(np.int8),
        logits=out if target.kind == "logits" else None,
        probs=out if target.kind == "probs" else None,
    )
    logits = (
        checked.values
        if checked.kind == "logits"
        else np.log(np.maximum(checked.values, np.finfo(np.float64).tiny))
    )
    # Records the target trained on outside the pool have no IN/OUT references: drop them; the
    # population (RMIA's z) must be records the target never saw.
    cols = np.flatnonzero(~(member & store.population))
    pool_members = member[cols] & ~store.population[cols]
    if not pool_members.any():
        raise InputError(
            "target.members",
            "none of the target's training records is in the pool the references were trained on; raise plan.pool_fraction",
        )
    lg = store.logits[:, cols]
    if queries is not None:  # every query checked like the first, then converted alike
        _checked_queries(queries, store.label, member, target.kind)
        logits = _as_logits(queries, target.kind)
        lg = lg if lg.ndim == 4 else lg[:, :, None, :]
    t = logits[cols].astype(np.float32)
    t = (
        np.broadcast_to(t[:, None, :], (cols.size, lg.shape[2], t.shape[-1]))
        if t.ndim == 2 and lg.ndim == 4
        else t
    )
    return SignalsStore.from_arrays(
        logits=np.concatenate([lg, t[None]]),
        label=store.label[cols],
        keep=np.concatenate([store.keep[:, cols], member[cols][None]]),
        population=store.population[cols],
        record_id=store.record_id[cols],
        target=store.n_models,
        info=store.info.model_copy(update={"external_target": True}),
    )


@dataclass(frozen=True, eq=False)
class AuditRun:
    """An audit as it ran, in memory: its results, the training run (models, signals) and the
    attacked pairs with their scores (what ``scores.parquet`` holds)."""

    result: AuditResult
    train: TrainRun
    pairs: ReferenceRun


def audit(
    config: AuditConfig | str | Path,
    out: str | Path,
    *,
    target: ExternalTarget | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    report: bool = True,
) -> AuditResult:
    """Run a full audit: train (or reuse) the plan, attack it, write results.

    Files in ``out`` (those of ``miaudit audit``): ``audit.json`` (the config as run),
    ``results.json`` and ``report.html`` (shareable; ``report=False``: no report),
    ``scores.parquet`` (restricted: per (model, record) pair), ``signals/`` and ``models/``
    (restricted, from the engine). Re-running the same config reuses verified cached models and
    replaces its own results (removed before training starts: an interrupted re-run leaves no
    results older than its signals); a different config's results are kept unless ``overwrite``.
    With ``target`` a model trained elsewhere is audited (not retrained); the engine trains
    its references with the config's recipe.
    """
    result = run_audit(config, out, target=target, overwrite=overwrite, quiet=quiet).result
    if report:
        write_shareable_report(Path(out))
    return result


@cleans_output_dir  # bad input leaves no folder it made
def run_audit(
    config: AuditConfig | str | Path,
    out: str | Path,
    *,
    target: ExternalTarget | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> AuditRun:
    """:func:`audit`, returning the run in memory too (the trade-off reuses it)."""
    from miaudit._io import ensure_private_dir, write_text_atomic
    from miaudit.engine import train

    cfg = config if isinstance(config, AuditConfig) else load_audit_config(config)
    out_dir = ensure_private_dir(Path(out))
    digest = config_digest(cfg)
    features = dataset_features(cfg)  # an attack that cannot run is refused before training
    if target is not None:  # so are outputs that are not what they say
        _check_target_kind(np.asarray(target.outputs), target.kind)
    key = _prepared_out(out_dir, overwrite, same_config=digest)
    run = train(cfg.train_config(), out_dir)
    if not quiet:
        print(run.summary())
    # The config as run: [plan].models is not the audit's (it trains 2k + 2 models, recorded in
    # train.json) and a config may not set it, so the recorded one leaves it out (it said 16
    # beside 10 trained: a new user's walk) and reads back as a config.
    as_run = cfg.model_dump(mode="json", exclude={"plan": {"models"}})
    write_text_atomic(out_dir / "audit.json", json.dumps(as_run, indent=2))
    store = run.signals if target is None else _with_external_target(run.signals, target)
    source = store.info.dataset or "signals"
    if target is None:  # the engine's paired plan: k pairs per target, results as they always were
        _, plan, _ = _prepare(store, cfg, False, None, cfg.audit.references, None)
        ref = _run_plan(store, cfg, plan, None, source, key, digest, features)
    else:
        known = _target_features(features, target)
        ref = _attack_known(
            store, cfg, known, source=source, pseudonym_key=key, external_target=True
        )
    _write_pairs(out_dir, key, ref, quiet=quiet)
    _keep_target_for_check_record(out_dir, store if target is not None else None)
    return AuditRun(ref.result, run, ref)


def _prepared_out(out_dir: Path, overwrite: bool, *, same_config: str | None) -> bytes:
    """The audit's output folder checked (:func:`prepare_out`: existing results are replaced
    only with ``overwrite`` or by a re-run of the same config) and the replaced run's result
    files removed before any work (:func:`drop_replaced_run`), so that a run failing midway
    leaves no mix of two runs (red team); its pseudonym key."""
    key = prepare_out(out_dir, overwrite=overwrite, same_config=same_config, kind="audit")
    drop_replaced_run(out_dir, kind="audit")
    return key


def _target_features(
    features: RecordFeatures | None, target: ExternalTarget
) -> RecordFeatures | None:
    """The features QMIA reads for an external target: per query view only when the target
    answered the augmented queries (its outputs (records, queries, classes)); else the images
    alone, since its one output stands for every query."""
    if features is None:
        return None
    return features if np.ndim(target.outputs) == 3 else replace(features, augment=())


def dataset_features(cfg: AuditConfig) -> RecordFeatures | None:
    """The dataset's features by record id (:func:`record_features`), when an attack of the
    config regresses on them (QMIA); None otherwise."""
    return record_features(cfg) if any(needs_population(a) for a in cfg.audit.attacks) else None


def record_features(cfg: AuditConfig) -> RecordFeatures:
    """The config's dataset's features by record id. Images carry their shape (QMIA's CNN
    regressor) and the recipe's augmentations, whose views are the store's queries."""
    from miaudit.datasets import load_dataset
    from miaudit.models import training_augmentations

    data = load_dataset(cfg.data)
    if data.image_shape is None:
        return RecordFeatures.of(data.record_id, data.features)
    return RecordFeatures.of(
        data.record_id,
        data.features,
        image_shape=data.image_shape,
        augment=training_augmentations(cfg.model),
    )


def _write_pairs(out_dir: Path, key: bytes, ref: ReferenceRun, *, quiet: bool) -> None:
    """results.json and the restricted scores.parquet (one row per scored pair, with its target)."""
    write_run(
        out_dir,
        key,
        ref.result.to_json(),
        ref.record_id,
        ref.member,
        ref.label,
        ref.scores,
        extra={"target": ref.pair_target},
        quiet=quiet,
        kind="audit",
    )


def _keep_target_for_check_record(out_dir: Path, store: SignalsStore | None) -> None:
    """check-record answers about the audited model: an external target's outputs and training
    set are kept (restricted) beside the engine's signals; a run without one removes a stale file."""
    from miaudit.audit._check_record import TARGET_PATH, save_external_target

    if store is not None:
        save_external_target(out_dir, store)
    else:
        (out_dir / TARGET_PATH).unlink(missing_ok=True)


def parse_references(text: str, *, field: str = "--references") -> References:
    """``all``, a number of complementary pairs (``4``) or model indices (``1,2,5``; one model:
    ``5,``), as ``--references`` takes them."""
    value = text.strip()
    try:
        if value == "all":
            return "all"
        if "," not in value:
            return int(value)
        return [int(v) for v in value.split(",") if v.strip()]
    except ValueError:
        raise InputError(
            field,
            f"must be 'all', a number of complementary pairs or comma-separated model indices, got {text!r}",
        ) from None


def audit_signals(
    signals: SignalsStore | str | Path,
    out: str | Path,
    *,
    config: SignalsAuditConfig | str | Path | None = None,
    target: int | None = None,
    references: References | None = None,
    pool: np.ndarray | Sequence[object] | None = None,
    overwrite: bool = False,
    quiet: bool = False,
    report: bool = True,
    features: np.ndarray | None = None,
    image_shape: tuple[int, int, int] | None = None,
) -> ReferenceRun:
    """Audit reference models trained anywhere, from their signals (``miaudit audit --signals``).

    ``signals``: a multi-model store (.npz, .parquet or a folder; written e.g. with
    :class:`miaudit.data.SignalsWriter`). ``config``: a :class:`SignalsAuditConfig` or its file
    (``[audit]`` and ``seed`` only; default: the defaults). ``target``, ``references``,
    ``pool``, ``features`` and ``image_shape`` as in :func:`attack_store`, which computes exactly
    the same results.json.
    Files in ``out``: ``results.json`` (shareable), ``scores.parquet`` (restricted, one row per
    scored pair), ``signals/signals.npz`` (restricted: what ``miaudit check-record`` reads),
    ``audit.json`` (the settings as run) and ``report.html`` (shareable; ``report=False``: none).
    Existing results are replaced only with ``overwrite``. Everything is checked before any file
    is written.
    """
    from miaudit._io import ensure_private_dir, output_dir_cleanup, write_text_atomic
    from miaudit.audit._check_record import SIGNALS_PATH, TARGET_PATH
    from miaudit.data import load_signals

    cfg = config if isinstance(config, SignalsAuditConfig) else SignalsAuditConfig()
    if isinstance(config, str | Path):
        cfg = load_signals_config(config)
    if isinstance(signals, SignalsStore):
        store, source, named = signals, signals.info.dataset or "signals", None
    else:
        store, source, named = load_signals(signals), Path(signals).name, str(signals)
    known = _known_features(store, features, image_shape)
    store, plan, pool_words = _prepare(store, cfg, False, target, references, pool)
    stated, out_dir = _Stated(pool_words or _STORE_POOL), Path(out)
    with output_dir_cleanup(out_dir):  # a refusal below leaves no folder it made
        key = _prepared_out(out_dir, overwrite, same_config=None)  # makes the folder
        ref = _run_plan(store, cfg, plan, stated, source, key, None, known)
    audited = target if target is not None else store.target
    ensure_private_dir((out_dir / SIGNALS_PATH).parent)
    _as_audited(store, audited).save(out_dir / SIGNALS_PATH)
    (out_dir / TARGET_PATH).unlink(missing_ok=True)
    settings = {
        "signals": named or source,
        "target": audited,
        "references": plan.choice,
        "pool": pool_words or _STORE_POOL,
        "config": _signals_config_as_run(cfg),
    }
    write_text_atomic(out_dir / "audit.json", json.dumps(settings, indent=2))
    _write_pairs(out_dir, key, ref, quiet=quiet)
    if report:
        write_shareable_report(out_dir)
    return ref


def _signals_config_as_run(cfg: SignalsAuditConfig) -> dict[str, Any]:
    """The settings as run: ``[audit].references`` only where the config set it (unset, the
    references were every other model, written beside as ``references``; the field's default
    of 4 pairs was never used and read as if it had been)."""
    dumped = cfg.model_dump(mode="json")
    if "references" not in cfg.audit.model_fields_set:
        del dumped["audit"]["references"]
    return dumped


def _as_audited(store: SignalsStore, target: int | None) -> SignalsStore:
    """The store as check-record reads it: its audited model (one target) named and marked as
    the user's own (trained elsewhere); a leave-one-model-out store as it was."""
    if target is None or (target == store.target and store.info.external_target):
        return store
    return SignalsStore(
        store.logits,
        store.label,
        store.keep,
        store.population,
        store.record_id,
        target,
        store.info.model_copy(update={"external_target": True}),
    )
