"""What each model's preprocessing is fitted on: a recipe choice, recorded with the model.

Preprocessing (numeric mean and standard deviation, which one-hot categories exist) is fitted
outside any training step, so a DP recipe's privacy accounting never covers it. Fitted on a
model's own training records it leaks membership through the input: a category that only one
record has is an all-zero column for every model that did not train on that record, and a live
one for every model that did, so two queries (the record with and without its category) tell
the two apart with certainty, whatever ε the accountant records. A DP recipe therefore fits it
on the population, the records outside the plan's pool, which no audited model trains on
(``preprocessing = "population"``); per-model fitting (``"training"``, what a deployment usually
does) stays available to recipes without ``dp``.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from miaudit.datasets import Affine, Dataset, fit_affine
from miaudit.errors import InputError
from miaudit.models._recipe import AnyRecipe, PreprocessingFit, PythonRecipe, SklearnRecipe


def preprocessing_fit(recipe: AnyRecipe) -> PreprocessingFit:
    """What the recipe's preprocessing is fitted on (scikit-learn recipes: their training
    records; ``python`` recipes fit none here: the user's code sees raw features and owns its
    preprocessing, which can only see the training records it is given)."""
    if isinstance(recipe, SklearnRecipe | PythonRecipe):
        return "training"
    return recipe.preprocessing_fit


def fits_anything(data: Dataset) -> bool:
    """Whether ``data`` has columns that preprocessing fits (numeric or one-hot)."""
    return bool(data.numeric.size or data.onehot.size)


def fit_preprocessing(
    recipe: AnyRecipe,
    data: Dataset,
    train_sets: list[np.ndarray],
    population: np.ndarray,
) -> tuple[list[Affine], list[dict[str, Any]]]:
    """Each model's preprocessing as the recipe says, and what it saw (for the manifest).

    ``train_sets``: each model's training record indices; ``population``: (records,) bool, the
    records outside the plan's pool. Returns one :class:`Affine` per model and one description
    per model: ``fit`` ("training" or "population"), ``records`` (how many records it was
    fitted on), ``records_sha256`` (of their sorted indices) and ``fitted_columns``.
    """
    fit = preprocessing_fit(recipe)
    columns = int(data.numeric.size + data.onehot.size)
    if fit == "population":
        rows = np.flatnonzero(population)
        if columns and rows.size == 0:
            raise InputError(
                "model.preprocessing",
                "is fitted on the population (records outside the plan's pool), and the population is empty: lower plan.pool_fraction below 1, or give a pool that leaves records out",
            )
        shared = fit_affine(data, rows)
        return [shared] * len(train_sets), [_seen(fit, rows, columns)] * len(train_sets)
    return [fit_affine(data, t) for t in train_sets], [
        _seen(fit, np.asarray(t), columns) for t in train_sets
    ]


def _seen(fit: PreprocessingFit, rows: np.ndarray, columns: int) -> dict[str, Any]:
    digest = hashlib.sha256(np.sort(rows).astype(np.int64).tobytes()).hexdigest()
    return {
        "fit": fit,
        "records": int(rows.size),
        "records_sha256": digest,
        "fitted_columns": columns,
    }


def population_digest(population: np.ndarray) -> str:
    """Hash of the population's record indices (part of a cache key when preprocessing is fitted on it)."""
    return hashlib.sha256(np.flatnonzero(population).astype(np.int64).tobytes()).hexdigest()
