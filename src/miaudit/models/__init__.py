"""Typed recipes and the code that trains them: stacked torch MLPs/CNNs, scikit-learn
classifiers; safe model files."""

from typing import TYPE_CHECKING, Any

from miaudit.models._preprocessing import fit_preprocessing, preprocessing_fit
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

if TYPE_CHECKING:
    from miaudit.models._dp import GradientCanaries, single_model, train_dp, train_one_dp
    from miaudit.models._torch_train import build_net, train_stacked

#: Public names whose modules import torch (an optional extra): imported on first use.
_TORCH_NAMES = {
    "GradientCanaries": "miaudit.models._dp",
    "single_model": "miaudit.models._dp",
    "train_dp": "miaudit.models._dp",
    "train_one_dp": "miaudit.models._dp",
    "build_net": "miaudit.models._torch_train",
    "train_stacked": "miaudit.models._torch_train",
}


def __getattr__(name: str) -> Any:
    if name in _TORCH_NAMES:
        import importlib

        return getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    raise AttributeError(f"module 'miaudit.models' has no attribute {name!r}")


__all__ = [
    "CNNRecipe",
    "DPConfig",
    "EarlyStopping",
    "GradientCanaries",
    "MLPRecipe",
    "ModelStreams",
    "Precision",
    "Recipe",
    "SklearnRecipe",
    "build_net",
    "check_code_trust",
    "check_recipe_for_data",
    "fit_preprocessing",
    "load_sklearn",
    "load_torch_state",
    "model_seed_sequence",
    "parse_recipe",
    "plan_seed_sequence",
    "preprocessing_fit",
    "save_sklearn",
    "save_torch_state",
    "single_model",
    "train_dp",
    "train_one_dp",
    "train_stacked",
    "validation_error",
]
