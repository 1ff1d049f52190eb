"""Typed recipes and the code that trains them: stacked torch MLPs/CNNs, scikit-learn
classifiers; safe model files."""

from miaudit.models._recipe import (
    CNNRecipe,
    DPConfig,
    EarlyStopping,
    MLPRecipe,
    Precision,
    Recipe,
    SklearnRecipe,
    check_recipe_for_data,
    parse_recipe,
    validation_error,
)
from miaudit.models._save import load_sklearn, load_torch_state, save_sklearn, save_torch_state
from miaudit.models._sklearn import check_code_trust
from miaudit.models._streams import ModelStreams, model_seed_sequence, plan_seed_sequence

__all__ = [
    "CNNRecipe",
    "DPConfig",
    "EarlyStopping",
    "MLPRecipe",
    "ModelStreams",
    "Precision",
    "Recipe",
    "SklearnRecipe",
    "check_code_trust",
    "check_recipe_for_data",
    "load_sklearn",
    "load_torch_state",
    "model_seed_sequence",
    "parse_recipe",
    "plan_seed_sequence",
    "save_sklearn",
    "save_torch_state",
    "validation_error",
]
