"""Typed recipes and the code that trains them: stacked torch MLPs/CNNs, scikit-learn
classifiers; safe model files; the user's own models (ONNX files, torch modules from a factory).

Training a unit of torch models is :func:`train_unit` (stacked, or DP-SGD when the recipe has
``dp``), which returns a :class:`UnitResult`; a scikit-learn model is :func:`train_sklearn`.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miaudit.models._device import check_device
from miaudit.models._onnx import MAX_ONNX_BYTES, OnnxModel, check_onnx_bytes, load_onnx
from miaudit.models._preprocessing import (
    fit_preprocessing,
    fits_anything,
    population_digest,
    preprocessing_fit,
)
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
from miaudit.models._revision import TRAINING_REVISION
from miaudit.models._save import (
    import_factory,
    load_sklearn,
    load_torch_module,
    load_torch_state,
    module_sizes,
    save_sklearn,
    save_torch_state,
)
from miaudit.models._sklearn import check_code_trust, make_estimator, names_code, train_sklearn
from miaudit.models._streams import ModelStreams, model_seed_sequence, plan_seed_sequence
from miaudit.models._train import UnitResult, torch_threads, train_unit

if TYPE_CHECKING:
    from miaudit.models._dp import GradientCanaries, single_model, train_one_dp
    from miaudit.models._torch_train import build_net

# Names whose modules import torch (an extra): imported on first use, so that importing
# miaudit.models (as the coordinating process of every run does) never imports torch.
_TORCH_NAMES = {
    "GradientCanaries": "miaudit.models._dp",
    "single_model": "miaudit.models._dp",
    "train_one_dp": "miaudit.models._dp",
    "build_net": "miaudit.models._torch_train",
}


def __getattr__(name: str) -> Any:
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module 'miaudit.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "MAX_ONNX_BYTES",
    "TRAINING_REVISION",
    "CNNRecipe",
    "DPConfig",
    "EarlyStopping",
    "GradientCanaries",
    "MLPRecipe",
    "ModelStreams",
    "OnnxModel",
    "Precision",
    "Recipe",
    "SklearnRecipe",
    "UnitResult",
    "build_net",
    "check_code_trust",
    "check_device",
    "check_onnx_bytes",
    "check_recipe_for_data",
    "fit_preprocessing",
    "fits_anything",
    "import_factory",
    "load_onnx",
    "load_sklearn",
    "load_torch_module",
    "load_torch_state",
    "make_estimator",
    "model_seed_sequence",
    "module_sizes",
    "names_code",
    "parse_recipe",
    "plan_seed_sequence",
    "population_digest",
    "preprocessing_fit",
    "save_sklearn",
    "save_torch_state",
    "single_model",
    "torch_threads",
    "train_one_dp",
    "train_sklearn",
    "train_unit",
    "validation_error",
]
