"""scikit-learn recipes: resolve the estimator by dotted name, clone it per model, train."""

from __future__ import annotations

import functools
import importlib
import itertools
from typing import Any

import numpy as np

from miaudit.datasets import Affine, Dataset
from miaudit.errors import InputError, first_line
from miaudit.models._recipe import SklearnRecipe
from miaudit.models._user_code import check_code_trust

#: log(p) of a class the model gives probability 0: keeps logits finite (the signals format
#: refuses inf) while ranking below any probability a float32 can hold.
LOG_FLOOR = float(np.log(1e-30))


@functools.cache
def builtin_classifiers() -> dict[str, type]:
    """scikit-learn's own classifiers, by every name a config may use: the public path
    (``sklearn.ensemble.RandomForestClassifier``) and the defining module's path."""
    from sklearn.utils import all_estimators

    names: dict[str, type] = {}
    classifiers: list[tuple[str, type]] = all_estimators(type_filter="classifier")
    for name, cls in classifiers:
        names[f"{cls.__module__}.{name}"] = cls
        parts = cls.__module__.split(".")
        public = ".".join(itertools.takewhile(lambda p: not p.startswith("_"), parts))
        if getattr(importlib.import_module(public), name, None) is cls:  # scikit-learn's own module
            names[f"{public}.{name}"] = cls
    return names


def names_code(recipe: SklearnRecipe) -> bool:
    """Whether the recipe's estimator is code outside scikit-learn's classifiers (decided from
    the name alone: nothing is imported)."""
    return recipe.estimator not in builtin_classifiers()


def estimator_class(recipe: SklearnRecipe, *, trust_code: bool = False) -> type:
    """The classifier class named by ``recipe.estimator`` (InputError naming model.estimator).

    scikit-learn's classifiers are looked up by name; any other name is imported only with
    ``trust_code`` (the name is checked before any import)."""
    from sklearn.base import BaseEstimator

    check_code_trust(recipe, trust_code)
    cls = builtin_classifiers().get(recipe.estimator)
    if cls is None:
        cls = _users_class(recipe.estimator)
    if not isinstance(cls, type) or not issubclass(cls, BaseEstimator):
        raise InputError("model.estimator", f"{recipe.estimator!r} is not a scikit-learn estimator")
    if not hasattr(cls, "predict_proba"):
        raise InputError(
            "model.estimator",
            f"{recipe.estimator!r} has no predict_proba; the signals need class probabilities",
        )
    return cls


def _users_class(estimator: str) -> Any:
    """The user's class, imported as the bytes of its files are now (``load_function``, which
    the cache key's digest mirrors): a module imported before an edit is imported again, so
    the class trained is the one the key names (a notebook trained the old one under it)."""
    from miaudit.models._recipe import PythonRecipe
    from miaudit.models._user_code import load_function

    module_name, _, cls_name = estimator.rpartition(".")
    if not module_name:
        raise InputError("model.estimator", f"cannot import {estimator!r}")
    try:
        return load_function(PythonRecipe(train=f"{module_name}:{cls_name}"), "model.train")
    except InputError as exc:  # found, imported and checked as model.train: named as itself
        raise InputError("model.estimator", exc.problem) from None


def make_estimator(
    recipe: SklearnRecipe, seed: int | None = None, *, trust_code: bool = False
) -> Any:
    """A fresh estimator (clone of the template) with ``random_state`` set from ``seed``."""
    from sklearn.base import clone, is_classifier

    cls = estimator_class(recipe, trust_code=trust_code)
    try:
        template = cls(**recipe.params)
    except TypeError as exc:
        raise InputError("model.params", f"{recipe.estimator}: {exc}") from None
    if not is_classifier(template):
        raise InputError("model.estimator", f"{recipe.estimator!r} is not a classifier")
    est = clone(template)
    if seed is not None and "random_state" in est.get_params():
        est.set_params(random_state=seed)
    return est


def train_sklearn(
    recipe: SklearnRecipe,
    data: Dataset,
    train_idx: np.ndarray,
    affine: Affine,
    seed: int,
    *,
    trust_code: bool = False,
) -> tuple[Any, np.ndarray]:
    """Fit one model on ``train_idx``; return it and its logits, log-probabilities (n, C)
    float32 (a class missing from the training half gets the floor)."""
    est = make_estimator(recipe, seed, trust_code=trust_code)
    x = affine.apply(data.features)
    if names_code(recipe):  # the user's own estimator: what it raises is theirs
        from miaudit.models._user_code import users_code

        with users_code("model.estimator", recipe.estimator):
            est.fit(x[train_idx], data.label[train_idx])
            proba = est.predict_proba(x)
        return est, _logits(est, proba, data.n_records, data.n_classes)
    try:
        est.fit(x[train_idx], data.label[train_idx])
        proba = est.predict_proba(x)
    except (ValueError, TypeError) as exc:
        # scikit-learn checks each parameter when the config is read, but combinations only
        # here (solver liblinear with penalty elasticnet was an internal error): one line
        first = first_line(exc)
        raise InputError("model.params", f"{recipe.estimator}: {first[:300]}") from None
    return est, _logits(est, proba, data.n_records, data.n_classes)


def _logits(est: Any, proba: np.ndarray, n_records: int, n_classes: int) -> np.ndarray:
    """Log-probabilities (records, classes) float32; a class the model never saw gets the floor."""
    full = np.zeros((n_records, n_classes), dtype=np.float64)
    full[:, np.asarray(est.classes_, dtype=np.int64)] = proba
    with np.errstate(divide="ignore"):
        logits = np.maximum(np.log(full), LOG_FLOOR)
    return logits.astype(np.float32)
