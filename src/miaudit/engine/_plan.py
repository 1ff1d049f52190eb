"""The membership plan: which records each model trains on, and how models form training units.

Default: complementary pairs. A random pool of records (``pool_fraction`` of the data) is split
in two halves per pair; model 2j trains on one half and model 2j+1 on the other, so any 2k
models of k whole pairs give every pool record exactly k IN and k OUT models (ALGORITHMS.md §3).
The records outside the pool are trained on by no model: the population (RMIA's z records).

Training units are fixed by the plan: unit c holds models [cB, (c+1)B) with B = ``unit_size``,
whatever remains to be trained, so a model's bits never depend on what it was batched with.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError
from miaudit.models import plan_seed_sequence


@dataclass(frozen=True, eq=False)
class MembershipPlan:
    """``keep`` (models, records) bool; ``population`` (records,) bool; ``unit_size`` B."""

    keep: np.ndarray
    population: np.ndarray
    unit_size: int
    kind: str

    @property
    def n_models(self) -> int:
        return int(self.keep.shape[0])

    @property
    def n_units(self) -> int:
        return -(-self.n_models // self.unit_size)

    def unit_models(self, unit: int) -> range:
        return range(unit * self.unit_size, min((unit + 1) * self.unit_size, self.n_models))

    def train_set(self, model: int) -> np.ndarray:
        return np.flatnonzero(self.keep[model])


def complementary_plan(n_records: int, n_models: int, *, seed: int, pool_fraction: float = 0.5, unit_size: int = 16) -> MembershipPlan:
    """Complementary pairs over a random pool (an odd last model gets a random half)."""
    rng = np.random.default_rng(plan_seed_sequence(seed))
    pool = _pool(n_records, pool_fraction, rng)
    keep = np.zeros((n_models, n_records), dtype=bool)
    half = len(pool) // 2
    for j in range(0, n_models, 2):
        perm = rng.permutation(pool)
        keep[j, perm[:half]] = True
        if j + 1 < n_models:
            keep[j + 1, perm[half:]] = True
    return _finish(keep, unit_size, "complementary")


def independent_plan(n_records: int, n_models: int, *, seed: int, pool_fraction: float = 0.5, unit_size: int = 16) -> MembershipPlan:
    """Each model trains on its own random half of the pool (the public tools' default)."""
    rng = np.random.default_rng(plan_seed_sequence(seed))
    pool = _pool(n_records, pool_fraction, rng)
    keep = np.zeros((n_models, n_records), dtype=bool)
    for k in range(n_models):
        keep[k, rng.choice(pool, size=len(pool) // 2, replace=False)] = True
    return _finish(keep, unit_size, "independent")


def user_plan(keep: np.ndarray, n_records: int, *, unit_size: int = 16, field: str = "plan.keep") -> MembershipPlan:
    """A plan from a user's keep matrix (models × records, 0/1 or bool, records in data order)."""
    arr = np.asarray(keep)
    if arr.ndim != 2 or arr.shape[1] != n_records:
        raise InputError(field, f"keep matrix has shape {arr.shape}, expected (models, {n_records})")
    if arr.dtype.kind != "b":
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise InputError(field, "keep matrix values must be 0 or 1")
        arr = arr.astype(bool)
    empty = ~arr.any(axis=1)
    if empty.any():
        raise InputError(field, f"model {int(np.argmax(empty))} trains on no record")
    return _finish(arr, unit_size, "user")


def _pool(n_records: int, pool_fraction: float, rng: np.random.Generator) -> np.ndarray:
    size = round(pool_fraction * n_records)
    if size < 2:
        raise InputError("plan.pool_fraction", f"a pool of {size} record(s) out of {n_records} cannot be split into halves")
    return np.sort(rng.choice(n_records, size=size, replace=False))


def _finish(keep: np.ndarray, unit_size: int, kind: str) -> MembershipPlan:
    if unit_size < 1:
        raise InputError("plan.unit_size", f"must be at least 1, got {unit_size}")
    return MembershipPlan(keep=keep, population=~keep.any(axis=0), unit_size=unit_size, kind=kind)
