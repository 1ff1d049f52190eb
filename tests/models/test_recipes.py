"""Recipes: validation names the field; scikit-learn estimators by name; safe files."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.datasets import breast_cancer, fit_affine
from miaudit.errors import InputError
from miaudit.models import (
    CNNRecipe,
    MLPRecipe,
    SklearnRecipe,
    check_recipe_for_data,
    load_sklearn,
    load_torch_state,
    parse_recipe,
    save_sklearn,
    save_torch_state,
)
from miaudit.models._sklearn import LOG_FLOOR, make_estimator, train_sklearn


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"kind": "torch-mlp", "hidden": [256, -1]}, "model.hidden.1"),
        ({"kind": "torch-mlp", "epoch": 3}, "model.epoch"),
        ({"kind": "torch-mlp", "precision": "float16"}, "model.precision"),
        ({"kind": "torch-mlp", "momentum": 0.9}, "model"),
        ({"kind": "torch-cnn", "augment": ["shift", "shift"]}, "model.augment"),
        ({"kind": "torch-mlp", "early_stopping": {"patience": 0}}, "model.early_stopping.patience"),
        ({"kind": "xgboost"}, "model.kind"),
        ({"hidden": [3]}, "model.kind"),
        ({"kind": "sklearn", "estimator": "not a name"}, "model.estimator"),
    ],
)
def test_recipe_errors_name_the_field(raw, field) -> None:
    with pytest.raises(InputError) as info:
        parse_recipe(raw)
    assert info.value.field == field


def test_recipe_defaults_are_explicit() -> None:
    r = parse_recipe({"kind": "torch-mlp"})
    assert isinstance(r, MLPRecipe) and r.precision == "float32" and r.hidden == [256, 256]


def test_augmentations_must_suit_the_data() -> None:
    with pytest.raises(InputError) as info:
        check_recipe_for_data(
            CNNRecipe(augment=["hflip"]),
            image_shape=(1, 8, 8),
            mirror_invariant=False,
            dataset="digits",
        )
    assert info.value.field == "model.augment"
    with pytest.raises(InputError) as info:
        check_recipe_for_data(
            CNNRecipe(), image_shape=None, mirror_invariant=False, dataset="adult"
        )
    assert info.value.field == "model.kind"
    check_recipe_for_data(
        CNNRecipe(augment=["shift"]),
        image_shape=(1, 8, 8),
        mirror_invariant=False,
        dataset="digits",
    )


@pytest.mark.parametrize(
    ("recipe", "field"),
    [
        (SklearnRecipe(estimator="sklearn.linear_model.NoSuchModel"), "model.estimator"),
        (SklearnRecipe(estimator="sklearn.linear_model.LinearRegression"), "model.estimator"),
        (SklearnRecipe(estimator="numpy.ndarray"), "model.estimator"),
        (SklearnRecipe(params={"C": 1.0, "bogus": 2}), "model.params"),
    ],
)
def test_bad_estimators_name_the_field(recipe, field) -> None:
    with pytest.raises(InputError) as info:
        make_estimator(recipe)
    assert info.value.field == field


def test_estimators_are_fresh_clones_seeded_per_model() -> None:
    r = SklearnRecipe(
        estimator="sklearn.ensemble.RandomForestClassifier", params={"n_estimators": 3}
    )
    a, b = make_estimator(r, 1), make_estimator(r, 2)
    assert a is not b and a.random_state == 1 and b.random_state == 2


def test_sklearn_logits_are_log_probabilities_with_a_floor() -> None:
    data = breast_cancer()
    train = np.flatnonzero(data.label == 1)[:50]  # one class only: the other gets the floor
    train = np.concatenate([train, np.flatnonzero(data.label == 0)[:1]])
    _est, logits = train_sklearn(
        SklearnRecipe(estimator="sklearn.tree.DecisionTreeClassifier"),
        data,
        train,
        fit_affine(data, train),
        0,
    )
    assert logits.dtype == np.float32 and np.isfinite(logits).all()
    np.testing.assert_allclose(np.exp(logits).sum(axis=1), 1.0, atol=1e-6)
    assert logits.min() == pytest.approx(LOG_FLOOR, rel=1e-6)


def test_safe_files_round_trip(tmp_path) -> None:
    import torch

    save_torch_state(
        tmp_path / "w.safetensors",
        {"a": torch.arange(6.0).reshape(2, 3), "b": np.ones(3, np.float32)},
        {"k": "v"},
    )
    back = load_torch_state(tmp_path / "w.safetensors")
    assert torch.equal(back["a"], torch.arange(6.0).reshape(2, 3))
    assert (tmp_path / "w.safetensors").stat().st_mode & 0o777 == 0o600
    est = make_estimator(SklearnRecipe(), 0).fit(np.eye(4), [0, 1, 0, 1])
    save_sklearn(tmp_path / "m.skops", est)
    np.testing.assert_array_equal(load_sklearn(tmp_path / "m.skops").coef_, est.coef_)
    assert b"pickle" not in (tmp_path / "m.skops").read_bytes()[:2]
