"""Config values that passed validation and failed later, as internal errors or after every
model had trained (red team, 2026-12-07), are refused when the config is read."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.audit import parse_audit_config
from miaudit.datasets import fit_affine, purchase_like
from miaudit.engine import EngineConfig, check_device_for, parse_config
from miaudit.errors import InputError
from miaudit.models import SklearnRecipe
from miaudit.models._sklearn import train_sklearn

DATA = {"data": {"dataset": "digits"}}


@pytest.mark.parametrize(
    ("engine", "field"),
    [({"threads": 2**40}, "engine.threads"), ({"workers": 10**6}, "engine.workers")],
)
def test_parallelism_past_any_machine_is_refused(engine: dict[str, int], field: str) -> None:
    """2**40 threads overflowed torch (exit 1); a million workers spawned a process per unit."""
    with pytest.raises(InputError) as info:
        parse_config({**DATA, "engine": engine})
    assert info.value.field == field


def test_resamples_and_targets_are_bounded_by_what_they_can_mean() -> None:
    """resamples = 10**12 failed 'out of memory' after training; targets = 10**9 became 6."""
    with pytest.raises(InputError) as info:
        parse_audit_config({**DATA, "audit": {"resamples": 10**12}})
    assert info.value.field == "audit.resamples"
    with pytest.raises(InputError, match="at most the plan's 6 models"):
        parse_audit_config({**DATA, "audit": {"references": 2, "targets": 10**9}})
    assert parse_audit_config({**DATA, "audit": {"references": 2, "targets": 6}}).audit.targets == 6


def test_a_gpu_is_refused_for_recipes_that_train_on_the_cpu() -> None:
    """A scikit-learn recipe with device = "cuda" trained on the CPU while its signals said
    cuda (checked without a GPU: the engine section is built without its own device check)."""
    gpu = EngineConfig.model_construct(device="cuda")
    with pytest.raises(InputError, match="trains on the CPU") as info:
        check_device_for(SklearnRecipe(estimator="sklearn.linear_model.LogisticRegression"), gpu)
    assert info.value.field == "engine.device"
    check_device_for(
        SklearnRecipe(estimator="sklearn.linear_model.LogisticRegression"), EngineConfig()
    )


def test_scikit_learn_parameters_that_conflict_are_one_line() -> None:
    """Each parameter is valid, the combination is not: an internal error before."""
    data = purchase_like(n_records=60, n_features=4, n_classes=2, seed=0)
    idx = np.arange(30)
    recipe = SklearnRecipe(
        estimator="sklearn.ensemble.RandomForestClassifier",
        params={"bootstrap": False, "oob_score": True, "n_estimators": 3},
    )
    with pytest.raises(InputError, match="Out of bag") as info:
        train_sklearn(recipe, data, idx, fit_affine(data, idx), 0)
    assert info.value.field == "model.params"
