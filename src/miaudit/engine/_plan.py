"""The membership plan: which records each model trains on, and how models form training units.

Default: complementary pairs. A random pool of records (``pool_fraction`` of the data) is split
in two halves per pair; model 2j trains on one half and model 2j+1 on the other, so any 2k
models of k whole pairs give every pool record exactly k IN and k OUT models (docs/method.md §3).
The records outside the pool are trained on by no model: the population (RMIA's z records).

The pool is part of the plan, drawn before any membership: every plan kind is evaluated on its
pool, whether or not some model happens to train on a pool record. Inferring it as "the records
some model trained on" would make the evaluated set depend on each target's own membership (a
pool record that no other model drew is evaluated only when the target drew it), which leaks
membership into the evaluation: measured with a target whose outputs carry no trace of its
training set (independent plan, 3 models, 20 seeds; tests/audit/test_threat_model.py), online
RMIA's mean AUC was 0.549 against 0.498 on the plan's real pool.

Training units are fixed by the plan: unit c holds models [cB, (c+1)B) with B = ``unit_size``,
whatever remains to be trained, so a model's bits never depend on what it was batched with.
By default B is chosen from the number of models (and the device) alone, never from the
machine: an even number of units filled evenly (:func:`even_unit_size`; ``miaudit.engine._run.unit_size``).
B is part of every unit's cache key.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from miaudit.errors import InputError
from miaudit.models import plan_seed_sequence


@dataclass(frozen=True, eq=False)
class MembershipPlan:
    """``keep`` (models, records) bool; ``pool`` (records,) bool, the records the plan draws
    members from (and the evaluated ones); ``unit_size`` B. The population is everything else."""

    keep: np.ndarray
    pool: np.ndarray
    unit_size: int
    kind: str

    @property
    def population(self) -> np.ndarray:
        """(records,) bool: the records outside the pool, trained on by no model (RMIA's z)."""
        return ~self.pool

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


#: The most models one unit stacks by default (the size the memory check was made for).
MAX_UNIT_SIZE = 16


def even_unit_size(n_models: int, workers: int, cap: int = MAX_UNIT_SIZE) -> int:
    """The unit size that spreads ``n_models`` evenly over ``workers``: the fewest units of at
    most ``cap`` models whose number is a multiple of the workers, filled evenly.

    >>> even_unit_size(18, 2)  # 9 + 9 (a fixed 16 would give 16 + 2)
    9
    >>> even_unit_size(40, 2), even_unit_size(18, 1), even_unit_size(3, 8)
    (10, 9, 1)
    """
    if n_models < 1 or cap < 1:
        raise ValueError(f"need n_models ≥ 1 and cap ≥ 1, got {n_models} and {cap}")
    w = max(1, workers)
    units = min(n_models, -(-n_models // (w * cap)) * w)
    return -(-n_models // units)


def complementary_plan(
    n_records: int, n_models: int, *, seed: int, pool_fraction: float = 0.5, unit_size: int = 16
) -> MembershipPlan:
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
    return _finish(keep, pool, unit_size, "complementary")


def independent_plan(
    n_records: int, n_models: int, *, seed: int, pool_fraction: float = 0.5, unit_size: int = 16
) -> MembershipPlan:
    """Each model trains on its own random half of the pool (the public tools' default)."""
    rng = np.random.default_rng(plan_seed_sequence(seed))
    pool = _pool(n_records, pool_fraction, rng)
    keep = np.zeros((n_models, n_records), dtype=bool)
    for k in range(n_models):
        keep[k, rng.choice(pool, size=len(pool) // 2, replace=False)] = True
    return _finish(keep, pool, unit_size, "independent")


def user_plan(
    keep: np.ndarray,
    n_records: int,
    *,
    pool: np.ndarray | None = None,
    unit_size: int = 16,
    field: str = "plan.keep",
    pool_field: str = "plan.pool",
) -> MembershipPlan:
    """A plan from a user's keep matrix (models × records, 0/1 or bool, records in data order).

    ``pool`` (records,) 0/1 or bool: the records the keep matrix was drawn from, which are the
    evaluated ones; the rest is the population. By default every record (then there is no
    population, which RMIA needs). It must be fixed independently of the matrix: a pool read
    off the matrix ("records some model trains on") leaks membership (module docstring).
    """
    arr = _mask(keep, field, "keep matrix")
    if arr.ndim != 2 or arr.shape[1] != n_records:
        raise InputError(
            field, f"keep matrix has shape {arr.shape}, expected (models, {n_records})"
        )
    empty = ~arr.any(axis=1)
    if empty.any():
        raise InputError(field, f"model {int(np.argmax(empty))} trains on no record")
    in_pool = (
        np.ones(n_records, dtype=bool) if pool is None else _mask(pool, pool_field, "pool mask")
    )
    if in_pool.shape != (n_records,):
        raise InputError(
            pool_field, f"pool mask has shape {in_pool.shape}, expected ({n_records},)"
        )
    outside = arr[:, ~in_pool].any(axis=0)
    if outside.any():
        raise InputError(
            field,
            f"record {int(np.flatnonzero(~in_pool)[np.argmax(outside)])} is outside the pool ({pool_field}) but some model trains on it",
        )
    return _finish(arr, in_pool, unit_size, "user")


def _mask(values: np.ndarray, field: str, what: str) -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype.kind != "b":
        if arr.dtype.kind not in "iuf" or not np.isin(arr, (0, 1)).all():
            raise InputError(field, f"{what} values must be 0 or 1")
        arr = arr.astype(bool)
    return arr


def _pool(n_records: int, pool_fraction: float, rng: np.random.Generator) -> np.ndarray:
    size = round(pool_fraction * n_records)
    if size < 2:
        raise InputError(
            "plan.pool_fraction",
            f"a pool of {size} record(s) out of {n_records} cannot be split into halves",
        )
    return np.sort(rng.choice(n_records, size=size, replace=False))


def _finish(keep: np.ndarray, pool: np.ndarray, unit_size: int, kind: str) -> MembershipPlan:
    if unit_size < 1:
        raise InputError("plan.unit_size", f"must be at least 1, got {unit_size}")
    mask = np.zeros(keep.shape[1], dtype=bool)
    mask[pool] = True  # pool: record indices or a boolean mask
    return MembershipPlan(keep=keep, pool=mask, unit_size=unit_size, kind=kind)
