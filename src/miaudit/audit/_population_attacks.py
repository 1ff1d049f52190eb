"""Attacks on a target's own outputs that also fit on population records (QMIA) in audits.

In a reference audit the population is the store's ``population``: records outside the plan's
pool, on which no model trained (docs/formats.md). Each target gets its own regressor, fitted on
its outputs on those records; the scored pool records are never in the fit, and no reference
model is read.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from miaudit.attacks import (
    Need,
    OutputSignals,
    PopulationSignals,
    SignalKind,
    attack_spec,
    score_outputs,
)
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.signals import compute_signals


@dataclass(frozen=True, eq=False)
class RecordFeatures:
    """The records' features, by record id (so that restricting a store keeps them aligned)."""

    record_id: np.ndarray
    features: np.ndarray

    @classmethod
    def of(cls, record_id: np.ndarray, features: np.ndarray) -> RecordFeatures:
        f = np.asarray(features)
        if f.ndim != 2 or f.shape[0] != len(record_id):
            raise InputError(
                "features",
                f"must be (records, features) = ({len(record_id)}, d) in the store's order, got shape {f.shape}",
            )
        if f.dtype.kind not in "biuf" or not np.isfinite(f).all():
            raise InputError("features", "must be finite numbers")
        return cls(np.asarray(record_id), f)

    def rows(self, ids: np.ndarray) -> np.ndarray:
        index = {str(r): i for i, r in enumerate(self.record_id.tolist())}
        missing = [r for r in np.asarray(ids).tolist() if str(r) not in index]
        if missing:
            raise InputError("features", f"no features for record {missing[0]!r}")
        return self.features[[index[str(r)] for r in np.asarray(ids).tolist()]]


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
    x, x_pop = features.rows(store.record_id[records]), features.rows(store.record_id[population])
    logits = store.logits[:, :, 0, :] if store.logits.ndim == 4 else store.logits
    out = {n: np.empty((len(targets), records.size)) for n in wanted}
    for i, t in enumerate(targets):
        phi = compute_signals(logits[t], store.label, which=("scaled_logit",))["scaled_logit"]
        inputs = OutputSignals(
            {"scaled_logit": phi[records]},
            store.label[records],
            seed=np.random.SeedSequence([seed, int(t)]),
            features=x,
            population=PopulationSignals(
                {"scaled_logit": phi[population]}, store.label[population], x_pop
            ),
        )
        for n in wanted:
            out[n][i] = score_outputs(n, inputs).score
    return out
