"""Attack power against the number of references, and the null audit (docs/method.md §4).

Both are checks that an audit does not fool itself: more references must not make LiRA/RMIA
worse beyond noise, RMIA should beat LiRA with few references, and a target whose training set
lies outside the pool must look like chance to every attack.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miaudit.attacks import (
    attack_spec,
    leave_one_model_out_each,
    paired_reference_sets,
    score_target,
)
from miaudit.audit._config import AuditConfig, runs_on_target_outputs
from miaudit.audit._reference_audit import _reference_attack, _score_target_outputs
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.metrics import Estimate, Evaluation, evaluate


def _own_output(name: str) -> bool:
    return runs_on_target_outputs(attack_spec(name))


def _threshold_scores(
    store: SignalsStore, name: str, targets: Sequence[int], records: np.ndarray
) -> np.ndarray:
    return _score_target_outputs(store, [name], list(targets), records)[0][name]


def reference_power(
    store: SignalsStore,
    cfg: AuditConfig,
    ks: Sequence[int],
    attacks: Sequence[str],
    *,
    targets: Sequence[int] | None = None,
    n_resamples: int = 200,
    seed: int = 0,
) -> Evaluation:
    """Evaluate each attack with each number of references k on the same (target, record) pairs.

    Names in the evaluation are ``"<attack>@k=<k>"`` for reference attacks and the bare name
    for threshold attacks; every difference between two of them is paired.
    """
    tlist = list(range(store.n_models)) if targets is None else list(targets)
    scores: dict[str, np.ndarray] = {}
    member = records = None
    made = {name: _reference_attack(name, cfg) for name in attacks if not _own_output(name)}
    for k in ks:
        refs = paired_reference_sets(store, k, targets=tlist)
        for name, paired in leave_one_model_out_each(
            store, made, targets=tlist, reference_sets=refs
        ).items():
            scores[f"{name}@k={k}"] = paired.scores.reshape(-1)
            member, records = paired.member, paired.records
    if records is None or member is None:
        raise InputError("attacks", "reference_power needs at least one reference attack")
    for name in attacks:
        if _own_output(name):
            scores[name] = _threshold_scores(store, name, tlist, records).reshape(-1)
    groups = np.tile(records, len(tlist))
    return evaluate(
        member.reshape(-1).astype(np.int8), scores, n_resamples=n_resamples, groups=groups, rng=seed
    )


@dataclass(frozen=True)
class NullAudit:
    """Each attack's AUC on a target that never trained on the pool (0.5 is the truth)."""

    auc: dict[str, Estimate]
    confidence: float
    n_members: int
    n_nonmembers: int

    def covers_chance(self) -> dict[str, bool]:
        return {
            k: (e.lower is not None and e.upper is not None and e.lower <= 0.5 <= e.upper)
            for k, e in self.auc.items()
        }


def null_audit(
    cfg: AuditConfig,
    out: str | Path,
    *,
    seed: int,
    target_fraction: float = 0.25,
    bonferroni: bool = True,
    n_resamples: int = 200,
) -> NullAudit:
    """The null check of docs/method.md §4.

    Records are split (by ``seed``) into the target's training set T (``target_fraction``), the
    pool (``plan.pool_fraction`` of the rest, k complementary pairs of references trained on it)
    and the population Z (no model). The target trains on T only; a random half of the pool is
    then *called* its members. With ``bonferroni`` the intervals are at 1 − 0.05/attacks.
    """
    from miaudit.datasets import load_dataset
    from miaudit.engine import PlanConfig, train

    k = cfg.audit.references
    n = load_dataset(cfg.data).n_records
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, seed, 0x4E55]))
    t_idx, pool, keep = _null_plan(n, k, target_fraction, cfg.plan.pool_fraction, rng)
    plan = PlanConfig(models=2 * k + 1, kind="user", unit_size=cfg.plan.unit_size)
    tcfg = cfg.train_config().model_copy(update={"plan": plan})
    trained_pool = np.zeros(n, dtype=bool)
    trained_pool[pool] = trained_pool[t_idx] = True
    run = train(tcfg, out, keep=keep, pool=trained_pool)
    null_store, records = _called_members(run.signals, t_idx, pool, rng)
    scores = _null_scores(null_store, cfg, records)
    y = null_store.keep[2 * k, records].astype(np.int8)
    conf = 1 - 0.05 / len(scores) if bonferroni else 0.95
    # A percentile interval needs replicates beyond each tail: ≥ 10 expected at (1 − conf)/2.
    replicates = max(n_resamples, int(np.ceil(10 / ((1 - conf) / 2))))
    ev = evaluate(y, scores, n_resamples=replicates, confidence=conf, rng=seed)
    return NullAudit(
        {name: ev.estimate(name, "auc") for name in scores}, conf, int(y.sum()), int((y == 0).sum())
    )


def _null_plan(
    n: int, k: int, target_fraction: float, pool_fraction: float, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(T, pool, keep): the target (model 2k) trains on T; k complementary reference pairs on
    the pool; the rest is population."""
    perm = rng.permutation(n)
    n_t = round(target_fraction * n)
    t_idx, rest = perm[:n_t], perm[n_t:]
    pool = np.sort(rng.choice(rest, size=round(pool_fraction * rest.size), replace=False))
    keep = np.zeros((2 * k + 1, n), dtype=bool)
    for j in range(k):
        half = rng.permutation(pool)
        keep[2 * j, half[: pool.size // 2]] = True
        keep[2 * j + 1, half[pool.size // 2 :]] = True
    keep[2 * k, t_idx] = True
    return t_idx, pool, keep


def _called_members(
    store: SignalsStore, t_idx: np.ndarray, pool: np.ndarray, rng: np.random.Generator
) -> tuple[SignalsStore, np.ndarray]:
    """The store without T, a random half of the pool *called* the target's members; and the
    pool's positions in it (the records scored)."""
    target = store.n_models - 1
    cols = np.setdiff1d(np.arange(store.n_records), t_idx)
    fake = np.zeros(store.n_records, dtype=bool)
    fake[rng.permutation(pool)[: pool.size // 2]] = True
    new_keep = store.keep[:, cols].copy()
    new_keep[target] = fake[cols]
    in_pool = np.isin(cols, pool)
    null_store = SignalsStore.from_arrays(
        logits=store.logits[:, cols],
        label=store.label[cols],
        keep=new_keep,
        population=~in_pool,
        record_id=store.record_id[cols],
        target=target,
    )
    return null_store, np.flatnonzero(in_pool)


def _null_scores(
    null_store: SignalsStore, cfg: AuditConfig, records: np.ndarray
) -> dict[str, np.ndarray]:
    """Every configured attack's scores of the target on the pool records."""
    target = null_store.n_models - 1
    refs = list(range(target))
    scores = {}
    for name in cfg.audit.attacks:
        if _own_output(name):
            scores[name] = _threshold_scores(null_store, name, [target], records).reshape(-1)
        else:
            scores[name] = score_target(
                null_store, _reference_attack(name, cfg), target=target, references=refs
            ).scores.reshape(-1)
    return scores
