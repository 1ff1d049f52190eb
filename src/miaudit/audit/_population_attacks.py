"""Attacks on a target's own outputs that also fit on population records (QMIA) in audits.

In a reference audit the population is the store's ``population``: records outside the plan's
pool, on which no model trained (docs/formats.md). Each target gets its own regressor, fitted on
its outputs on those records; the scored pool records are never in the fit, and no reference
model is read. Images regress with a small CNN; when the store has augmented queries and their
views are known (the recipe's ``augment``, or features given per view), QMIA reads every query.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from functools import cached_property

import numpy as np

from miaudit.attacks import (
    AttackScores,
    Need,
    OutputSignals,
    PopulationSignals,
    SignalKind,
    attack_spec,
    fit_outputs,
    score_outputs,
)
from miaudit.audit._query_views import augmented_queries
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.models import Augmentation
from miaudit.signals import compute_signals

#: Records whose query views are made at once (the rest of the views are written in place).
VIEW_CHUNK = 4096


@dataclass(frozen=True, eq=False)
class RecordFeatures:
    """The records' features, by record id (so that restricting a store keeps them aligned).

    ``features``: (records, d), or (records, Q, d) given per query view. ``image_shape``:
    (C, H, W) when the rows are flat images; ``augment``: the views of the store's queries
    (the built-in CNN recipe's), made from the images when rows are asked for.
    """

    record_id: np.ndarray
    features: np.ndarray
    image_shape: tuple[int, int, int] | None = None
    augment: tuple[Augmentation, ...] = ()

    @classmethod
    def of(
        cls,
        record_id: np.ndarray,
        features: np.ndarray,
        *,
        image_shape: tuple[int, int, int] | None = None,
        augment: Sequence[Augmentation] = (),
    ) -> RecordFeatures:
        f = np.asarray(features)
        if f.ndim not in (2, 3) or f.shape[0] != len(record_id):
            raise InputError(
                "features",
                f"must be (records, features) = ({len(record_id)}, d) in the store's order, or (records, queries, d), got shape {f.shape}",
            )
        if f.dtype.kind not in "biuf" or not np.isfinite(f).all():
            raise InputError("features", "must be finite numbers")
        if image_shape is not None and int(np.prod(image_shape)) != f.shape[-1]:
            raise InputError(
                "image_shape",
                f"{tuple(image_shape)} does not hold the features' {f.shape[-1]} values",
            )
        if augment and (image_shape is None or f.ndim == 3):
            raise InputError("augment", "views are made from flat images with their image_shape")
        return cls(np.asarray(record_id), f, image_shape, tuple(augment))

    @cached_property
    def _index(self) -> dict[str, int]:
        return {str(r): i for i, r in enumerate(self.record_id.tolist())}

    def rows(self, ids: np.ndarray) -> np.ndarray:
        """The records' features, (m, d) or (m, Q, d) with the store's query views."""
        index = self._index
        missing = [r for r in np.asarray(ids).tolist() if str(r) not in index]
        if missing:
            raise InputError("features", f"no features for record {missing[0]!r}")
        x = self.features[[index[str(r)] for r in np.asarray(ids).tolist()]]
        if not self.augment:
            return x
        out: np.ndarray | None = None
        # A chunk's views at a time into one array (one full copy); no records: one empty chunk.
        for start in range(0, max(len(x), 1), VIEW_CHUNK):
            views = augmented_queries(x[start : start + VIEW_CHUNK], self.augment, self.image_shape)
            if out is None:
                out = np.empty((len(x), len(views), x.shape[1]), dtype=views[0].dtype)
            out[start : start + VIEW_CHUNK] = np.stack(views, axis=1)
        assert out is not None
        return out


def needs_population(name: str) -> bool:
    """Whether the attack on the target's own outputs also fits on population records."""
    spec = attack_spec(name)
    return spec.signal_kind is SignalKind.MODEL_OUTPUTS and Need.POPULATION in spec.needs


def population_attack_scores(
    store: SignalsStore,
    names: Sequence[str],
    targets: Sequence[int],
    records: np.ndarray,
    features: RecordFeatures | None,
    seed: int,
) -> dict[str, np.ndarray]:
    """(T, m) scores of each population attack: one fit per target on its population outputs."""
    wanted = [n for n in names if needs_population(n)]
    if not wanted:
        return {}
    population = np.flatnonzero(store.population)
    if population.size == 0:
        raise InputError(
            "audit.attacks",
            f"{wanted[0]} fits on population records and the store has none (set plan.pool_fraction below 1)",
        )
    if features is None:
        raise InputError(
            "audit.attacks",
            f"{wanted[0]} needs the records' features: none are known here (tabular [data] in a config, or features= in attack_store)",
        )
    if records.size == 0:
        raise InputError("records", f"{wanted[0]} has no audited records to score")
    x_pop = features.rows(store.record_id[population])
    logits = _query_logits(store, x_pop)  # the records' rows have the population's views
    scorers = {
        n: [
            _scorer(
                n,
                PopulationSignals(
                    {"scaled_logit": _phi(logits[t][population], store.label[population])},
                    store.label[population],
                    x_pop,
                ),
                np.random.SeedSequence([seed, int(t)]),
                features.image_shape,
            )
            for t in targets
        ]
        for n in wanted
    }
    out = {n: np.empty((len(targets), records.size)) for n in wanted}
    # A chunk's features (its query views) at a time, scored by every target's fit: the views
    # of every record never exist at once (2.2 GB for 70,000 Fashion-MNIST images × 10 views).
    # VIEW_CHUNK records × Q views is a multiple of the CNN's 4,096-row prediction batches, so
    # the batches, and the scores, are those of one pass. An attack that cannot fit apart (no
    # ``fit`` in its spec) scores every record at once.
    split = all(attack_spec(n).fit is not None for n in wanted)
    step = VIEW_CHUNK if split else records.size
    for start in range(0, records.size, step):
        rows = records[start : start + step]
        x = features.rows(store.record_id[rows])
        for i, t in enumerate(targets):
            phi = _phi(logits[t][rows], store.label[rows])
            chunk = OutputSignals({"scaled_logit": phi}, store.label[rows], features=x)
            for n in wanted:
                out[n][i, start : start + rows.size] = scorers[n][i](chunk).score
    return out


def _scorer(
    name: str,
    population: PopulationSignals,
    seed: np.random.SeedSequence,
    image_shape: tuple[int, int, int] | None,
) -> Callable[[OutputSignals], AttackScores]:
    """The attack fitted once on the population (:func:`~miaudit.attacks.fit_outputs`), or,
    for an attack without a separate fit, one that runs whole on the records it is given."""
    if attack_spec(name).fit is not None:
        return fit_outputs(name, population, seed=seed, image_shape=image_shape)

    def whole(inputs: OutputSignals) -> AttackScores:
        return score_outputs(
            name, replace(inputs, seed=seed, population=population, image_shape=image_shape)
        )

    return whole


def _query_logits(store: SignalsStore, x: np.ndarray) -> np.ndarray:
    """The logits the features describe: every query when they come per view, else the first
    (the un-augmented image)."""
    if store.logits.ndim == 3:
        if x.ndim == 3 and x.shape[1] != 1:
            raise InputError("features", f"has {x.shape[1]} views; the store has no query axis")
        return store.logits if x.ndim == 2 else store.logits[:, :, None, :]
    if x.ndim == 2:
        return store.logits[:, :, 0, :]
    if x.shape[1] != store.logits.shape[2]:
        raise InputError(
            "features",
            f"has {x.shape[1]} views; the store's logits have {store.logits.shape[2]} queries",
        )
    return store.logits


def _phi(logits: np.ndarray, label: np.ndarray) -> np.ndarray:
    """φ per record, (n,) — or (n, Q) from (n, Q, C) logits (compute_signals broadcasts)."""
    lab = label if logits.ndim == 2 else np.broadcast_to(label[:, None], logits.shape[:2])
    return compute_signals(logits, lab, which=("scaled_logit",))["scaled_logit"]
