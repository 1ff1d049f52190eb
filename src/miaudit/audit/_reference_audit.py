"""``miaudit audit``: train the target's recipe on complementary halves, attack every model with
the others as references (leave-one-model-out), evaluate the pooled pairs by resampling records.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

import numpy as np

from miaudit._version import __version__
from miaudit.attacks import (
    RMIA_DEFAULT_A,
    LiraAttack,
    OutputSignals,
    ReferenceAttack,
    ReferenceSettings,
    RmiaAttack,
    attack_spec,
    leave_one_model_out_each,
    paired_reference_sets,
    reference_attack,
    score_outputs,
)
from miaudit.audit._attack import (
    attack_result,
    comparisons_with_loss,
    exposure_ranking,
    tie_notes,
    top_tie,
)
from miaudit.audit._config import AuditConfig, load_audit_config, runs_on_target_outputs
from miaudit.audit._pseudonyms import describe_key, key_or_fresh, pseudonymise
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
from miaudit.audit._writer import prepare_out, write_run, write_shareable_report
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.metrics import Evaluation, evaluate
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


@dataclass(frozen=True, eq=False)
class _Scored:
    """Every attack's (targets, records) scores and what the audit reports beside them."""

    scores: dict[str, np.ndarray]  # name → (T, m)
    member: np.ndarray  # (T, m) bool
    records: np.ndarray  # (m,) store positions
    labels: np.ndarray  # (T, m)
    correct: np.ndarray  # (T, m) the target's correctness, for the utility
    rmia_a: RmiaCalibration | None


def _reference_attack(name: str, cfg: AuditConfig) -> ReferenceAttack:
    """The attack ``name`` as the config sets it up. Offline RMIA's ``a`` is the config's, or
    (``rmia_a`` unset) cross-fitted per target on the models outside its pair, never on an
    audited target's own membership (:func:`miaudit.attacks.cross_fitted_rmia_a`)."""
    a = cfg.audit
    settings = ReferenceSettings(
        variance=a.lira_variance, gamma=a.rmia_gamma, a=a.rmia_a, seed=cfg.seed
    )
    return reference_attack(name, settings)


def _targets_and_references(
    store: SignalsStore, cfg: AuditConfig, external_target: bool
) -> tuple[list[int], list[list[int]]]:
    """The audited models and each one's reference models."""
    if external_target:
        if store.target is None:
            raise InputError("target", "the store names no target model")
        return [store.target], [[m for m in range(store.n_models) if m != store.target]]
    n_targets = (
        store.n_models if cfg.audit.targets is None else min(cfg.audit.targets, store.n_models)
    )
    targets = list(range(n_targets))
    return targets, paired_reference_sets(store, cfg.audit.references, targets=targets)


def _is_offline_rmia(attack: ReferenceAttack) -> bool:
    return isinstance(attack, RmiaAttack) and attack.mode == "offline"


def _score_with_references(
    store: SignalsStore,
    cfg: AuditConfig,
    targets: list[int],
    refs: list[list[int]],
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray, RmiaCalibration | None]:
    """Reference attacks' (T, m) scores, membership, evaluated records and offline RMIA's ``a``.

    With no reference attack, the pairs the reference attacks would have scored.
    """
    made = {
        name: _reference_attack(name, cfg)
        for name in cfg.audit.attacks
        if not runs_on_target_outputs(attack_spec(name))
    }
    scores: dict[str, np.ndarray] = {}
    member = records = None
    rmia_a = None
    for name, paired in leave_one_model_out_each(
        store, made, targets=targets, reference_sets=refs
    ).items():
        scores[name] = paired.scores
        member, records = paired.member, paired.records
        if _is_offline_rmia(made[name]):
            rmia_a = rmia_calibration(cfg, paired.rmia_a)
    if records is None or member is None:
        records = np.flatnonzero(~store.population)
        member = store.keep[np.asarray(targets)][:, records]
    return scores, member, records, rmia_a


def _score_target_outputs(
    store: SignalsStore, names: Sequence[str], targets: list[int], records: np.ndarray
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Attacks on each target's own outputs: (T, m) scores, the labels and the correctness."""
    specs = [attack_spec(n) for n in names if runs_on_target_outputs(attack_spec(n))]
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
    return scores, labels, sig["correctness"]


def _score_all(
    store: SignalsStore, cfg: AuditConfig, targets: list[int], refs: list[list[int]]
) -> _Scored:
    scores, member, records, rmia_a = _score_with_references(store, cfg, targets, refs)
    own, labels, correct = _score_target_outputs(store, cfg.audit.attacks, targets, records)
    return _Scored({**scores, **own}, member, records, labels, correct, rmia_a)


def _description(name: str) -> tuple[str, str]:
    """The report's wording and citation of an attack in a reference audit."""
    spec = attack_spec(name)
    suffix = OWN_OUTPUT_WORDING if runs_on_target_outputs(spec) else ""
    return spec.description + suffix, spec.citation


def _most_exposed(
    store: SignalsStore,
    records: np.ndarray,
    n_targets: int,
    y: np.ndarray,
    s: np.ndarray,
    key: bytes,
) -> list[ExposedRecord]:
    """Per-record exposure: how often a record is flagged, at the strongest attack's 1 % FPR
    threshold (scores ``s`` of the pooled pairs), among the models that trained on it."""
    non = np.sort(s[y == 0])
    thr = non[min(non.size - 1, int(np.ceil(0.99 * non.size)))] if non.size else np.inf
    flagged = (s > thr) & (y == 1)
    pos = np.tile(np.arange(records.size), n_targets)  # pair → position of its record
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


def _utility(correct: np.ndarray, member: np.ndarray) -> Utility:
    train_acc = float(correct[member].mean()) if member.any() else float("nan")
    test_acc = float(correct[~member].mean()) if (~member).any() else float("nan")
    return Utility(
        train_accuracy=train_acc, test_accuracy=test_acc, generalization_gap=train_acc - test_acc
    )


def _setup(
    store: SignalsStore,
    cfg: AuditConfig,
    source: str,
    scored: _Scored,
    n_targets: int,
    external_target: bool,
) -> ReferenceSetup:
    info = store.info
    return ReferenceSetup(
        dataset=info.dataset if info.dataset is not None else source,
        recipe=info.recipe or {},
        models=store.n_models,
        references=cfg.audit.references,
        targets=n_targets,
        external_target=external_target,
        pool_records=int(scored.records.size),
        population_records=int(store.population.sum()),
        pairs=int(scored.member.size),
        rmia_offline_a=scored.rmia_a,
    )


def _notes(
    cfg: AuditConfig, external_target: bool, results: list[AttackResult], ev: Evaluation
) -> list[str]:
    return [
        (
            "An external target model (trained elsewhere, not retrained) was attacked with every engine-trained model as a reference."
            if external_target
            else "Leave-one-model-out: each target model is attacked with k complementary pairs of the other models as references; pairs (model, record) are pooled."
        ),
        "Intervals: percentile bootstrap resampling records, all pairs of a record together.",
        "most_exposed: percentage of the models that trained on a record that flag it at the strongest attack's 1 % FPR threshold.",
        *tie_notes(results, ev.fprs),
        *_small_k_notes(cfg, external_target),
    ]


def _evaluate(
    cfg: AuditConfig, y: np.ndarray, pooled: dict[str, np.ndarray], groups: np.ndarray
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


def attack_store(
    store: SignalsStore,
    cfg: AuditConfig,
    *,
    source: str = "(in memory)",
    pseudonym_key: bytes | None = None,
    config_sha256: str | None = None,
    external_target: bool = False,
) -> ReferenceRun:
    """Attack a multi-model signals store and evaluate the pooled (target, record) pairs.

    By default every model (or the first ``audit.targets``) takes a turn as the target with k
    complementary pairs of the others as references (leave-one-model-out). With
    ``external_target`` the store's ``target`` model alone is attacked, with every other model
    as a reference (a model trained elsewhere, audited without retraining it).
    """
    targets, refs = _targets_and_references(store, cfg, external_target)
    scored = _score_all(store, cfg, targets, refs)
    order = list(cfg.audit.attacks)
    pooled = {n: scored.scores[n].reshape(-1) for n in order}
    y = scored.member.reshape(-1).astype(np.int8)
    groups = np.tile(scored.records, len(targets))
    ev = _evaluate(cfg, y, pooled, groups)
    results = [attack_result(n, ev, *_description(n), top_tie=top_tie(y, pooled[n])) for n in order]
    strongest = max(results, key=lambda a: a.auc.point or 0.0).name
    key = key_or_fresh(pseudonym_key)
    result = AuditResult(
        tool_version=__version__,
        created_at=_dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        seed=cfg.seed,
        input=_describe_pairs(source, y, store.n_classes),
        bootstrap=BootstrapInfo(
            replicates=cfg.audit.resamples, confidence=ev.confidence, resampling=ev.resampling
        ),
        attacks=results,
        comparisons=comparisons_with_loss(ev),
        exposure_attack=strongest,
        most_exposed=_most_exposed(store, scored.records, len(targets), y, pooled[strongest], key),
        pseudonymisation=describe_key(key),
        reference=_setup(store, cfg, source, scored, len(targets), external_target),
        utility=_utility(scored.correct, scored.member),
        config_sha256=config_sha256,
        notes=_notes(cfg, external_target, results, ev),
    )
    return ReferenceRun(
        result,
        np.asarray(targets),
        store.record_id[groups],
        y,
        scored.labels.reshape(-1),
        pooled,
    )


def rmia_calibration(cfg: AuditConfig, per_target: np.ndarray | None) -> RmiaCalibration:
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


def _small_k_notes(cfg: AuditConfig, external_target: bool) -> list[str]:
    """What one reference pair (k = 1) changes, stated where it applies."""
    lira = any(
        isinstance(_reference_attack(a, cfg), LiraAttack)
        for a in cfg.audit.attacks
        if not runs_on_target_outputs(attack_spec(a))
    )
    if external_target or cfg.audit.references != 1 or not lira:
        return []
    return [
        "k = 1: each record has one IN and one OUT reference, so LiRA's σ is the spread of the references' φ across records "
        "(no within-record spread can be measured; it overstates σ, which scales the scores but leaves the ranking as with any common σ)."
    ]


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
    ids it trained on. Build it from a fitted model with :meth:`from_model`.
    """

    outputs: np.ndarray
    members: np.ndarray
    kind: Literal["logits", "probs"] = "logits"

    @classmethod
    def from_model(cls, model: object, features: np.ndarray, members: np.ndarray) -> ExternalTarget:
        """A fitted scikit-learn classifier (``predict_proba``) or a torch module (logits)."""
        if hasattr(model, "predict_proba"):
            return cls(
                np.asarray(model.predict_proba(features), dtype=np.float64),
                np.asarray(members),
                "probs",
            )
        import torch

        if isinstance(model, torch.nn.Module):
            was_training = model.training
            model.eval()
            with torch.no_grad():
                logits = (
                    model(torch.as_tensor(np.asarray(features), dtype=torch.float32))
                    .double()
                    .numpy()
                )
            model.train(was_training)
            return cls(logits, np.asarray(members), "logits")
        raise InputError(
            "target",
            f"cannot get outputs from {type(model).__name__}: need predict_proba (scikit-learn) or a torch.nn.Module",
        )


def _with_external_target(store: SignalsStore, target: ExternalTarget) -> SignalsStore:
    from miaudit.data import ModelOutputs

    n = store.n_records
    out = np.asarray(target.outputs)
    if out.shape != (n, store.n_classes):
        raise InputError(
            "target.outputs",
            f"has shape {out.shape}, expected (records, classes) = {(n, store.n_classes)} in the dataset's order",
        )
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
    t = logits[cols].astype(np.float32)
    t = np.broadcast_to(t[:, None, :], (cols.size, lg.shape[2], t.shape[-1])) if lg.ndim == 4 else t
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
    replaces its own results; a different config's results are kept unless ``overwrite``.
    With ``target`` a model trained elsewhere is audited (not retrained); the engine trains
    its references with the config's recipe.
    """
    result = run_audit(config, out, target=target, overwrite=overwrite, quiet=quiet).result
    if report:
        write_shareable_report(Path(out))
    return result


def run_audit(
    config: AuditConfig | str | Path,
    out: str | Path,
    *,
    target: ExternalTarget | None = None,
    overwrite: bool = False,
    quiet: bool = False,
) -> AuditRun:
    """:func:`audit`, returning the run in memory too (the trade-off reuses it)."""
    from miaudit._io import ensure_writable_dir, write_text_atomic
    from miaudit.engine import train

    cfg = config if isinstance(config, AuditConfig) else load_audit_config(config)
    out_dir = ensure_writable_dir(Path(out))
    digest = config_digest(cfg)
    key = prepare_out(out_dir, overwrite=overwrite, same_config=digest, kind="audit")
    run = train(cfg.train_config(), out_dir)
    if not quiet:
        print(run.summary())
    write_text_atomic(out_dir / "audit.json", cfg.model_dump_json(indent=2))
    store = run.signals if target is None else _with_external_target(run.signals, target)
    ref = attack_store(
        store,
        cfg,
        source=store.info.dataset or "signals",
        pseudonym_key=key,
        config_sha256=digest if target is None else None,
        external_target=target is not None,
    )
    write_run(
        out_dir,
        key,
        ref.result.to_json(),
        ref.record_id,
        ref.member,
        ref.label,
        ref.scores,
        extra={"target": np.repeat(ref.targets, ref.member.size // max(1, ref.targets.size))},
        quiet=quiet,
        kind="audit",
    )
    _keep_target_for_check_record(out_dir, store if target is not None else None)
    return AuditRun(ref.result, run, ref)


def _keep_target_for_check_record(out_dir: Path, store: SignalsStore | None) -> None:
    """check-record answers about the audited model: an external target's outputs and training
    set are kept (restricted) beside the engine's signals; a run without one removes a stale file."""
    from miaudit.audit._check_record import TARGET_PATH, save_external_target

    if store is not None:
        save_external_target(out_dir, store)
    else:
        (out_dir / TARGET_PATH).unlink(missing_ok=True)
