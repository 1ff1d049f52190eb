"""Typed recipes and the code that trains them: stacked torch MLPs/CNNs, scikit-learn
classifiers, the user's own code (``python`` and ``torch-module`` kinds); safe model files; the
user's own models (ONNX files, torch modules from a factory, Hugging Face folders).

Training a unit of torch models is :func:`train_unit` (stacked, or DP-SGD when the recipe has
``dp``), which returns a :class:`UnitResult`; a scikit-learn model is :func:`train_sklearn`;
a ``python`` recipe's model is :func:`train_python_model`; a ``torch-module`` recipe's unit is
:func:`train_modules` (the generic per-model trainer). miaudit's own small causal language
model (:class:`CausalLMRecipe`) is pre-trained once by :func:`pretrained_base` and fine-tuned
by :func:`finetune_lm` (Hugging Face folders; docs/text.md).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from miaudit.models._device import check_device
from miaudit.models._dp_sigma import (
    SigmaTable,
    check_delta,
    check_dp_claim,
    check_finetune_dp,
    noise_for_epsilon,
    poisson_schedule,
    remember_sigmas,
    spent_epsilon,
)
from miaudit.models._hf import (
    MAX_HF_JSON_BYTES,
    MAX_HF_WEIGHT_BYTES,
    HfCausalLM,
    HfClassifier,
    TokenStats,
    check_hf_folder,
    load_hf_causal_lm,
    load_hf_classifier,
)
from miaudit.models._lm_recipe import (
    LMDP,
    CausalLMRecipe,
    LMArchitecture,
    LMFinetune,
    LMPretrain,
)
from miaudit.models._onnx import MAX_ONNX_BYTES, OnnxModel, check_onnx_bytes, load_onnx
from miaudit.models._output_kind import MIN_SIGMOID_ROWS, looks_like_sigmoids, sigmoid_problem
from miaudit.models._preprocessing import (
    fit_preprocessing,
    fits_anything,
    population_digest,
    preprocessing_fit,
)
from miaudit.models._python import fitted_logits, train_python_model
from miaudit.models._recipe import (
    AnyRecipe,
    Augmentation,
    CNNRecipe,
    CodeRecipe,
    DPConfig,
    EarlyStopping,
    MLPRecipe,
    Precision,
    PythonRecipe,
    Recipe,
    SklearnRecipe,
    TorchModuleRecipe,
    check_recipe_for_data,
    parse_recipe,
    training_augmentations,
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
from miaudit.models._sklearn import make_estimator, names_code, train_sklearn
from miaudit.models._streams import ModelStreams, model_seed_sequence, plan_seed_sequence
from miaudit.models._train import UnitResult, torch_threads, train_unit
from miaudit.models._user_code import (
    check_code_trust,
    code_digests,
    code_folder,
    code_names,
    load_function,
    resolve_code_folder,
)

if TYPE_CHECKING:
    from miaudit.models._dp import GradientCanaries, single_model, train_one_dp
    from miaudit.models._dp_multirun import BATCHED_FAULTS, BatchedMechanism, train_dp_runs
    from miaudit.models._generic_torch import (
        ModuleCode,
        build_module,
        saved_module,
        train_modules,
    )
    from miaudit.models._lm import (
        OwnCausalLM,
        build_lm,
        finetune_lm,
        load_lm,
        load_own_lm,
        n_parameters,
        pretrained_base,
        record_log_likelihoods,
        save_lm,
    )
    from miaudit.models._lm_candidates import (
        all_digit_log_likelihoods,
        digit_log_likelihoods,
        greedy_digits,
    )
    from miaudit.models._lm_tokenizer import token_bounds, train_tokenizer
    from miaudit.models._nets import query_views
    from miaudit.models._torch_train import build_net

# Names whose modules import torch (an extra): imported on first use, so that importing
# miaudit.models (as the coordinating process of every run does) never imports torch.
_TORCH_NAMES = {
    "GradientCanaries": "miaudit.models._dp",
    "single_model": "miaudit.models._dp",
    "train_one_dp": "miaudit.models._dp",
    "BATCHED_FAULTS": "miaudit.models._dp_multirun",
    "BatchedMechanism": "miaudit.models._dp_multirun",
    "train_dp_runs": "miaudit.models._dp_multirun",
    "build_net": "miaudit.models._torch_train",
    "query_views": "miaudit.models._nets",
    "ModuleCode": "miaudit.models._generic_torch",
    "build_module": "miaudit.models._generic_torch",
    "train_modules": "miaudit.models._generic_torch",
    "saved_module": "miaudit.models._generic_torch",
    **dict.fromkeys(
        (
            "build_lm",
            "finetune_lm",
            "load_lm",
            "load_own_lm",
            "OwnCausalLM",
            "n_parameters",
            "pretrained_base",
            "record_log_likelihoods",
            "save_lm",
        ),
        "miaudit.models._lm",
    ),
    **dict.fromkeys(
        ("all_digit_log_likelihoods", "digit_log_likelihoods", "greedy_digits"),
        "miaudit.models._lm_candidates",
    ),
    # the canary-length check before pre-training (not torch: imported on use all the same)
    **dict.fromkeys(("token_bounds", "train_tokenizer"), "miaudit.models._lm_tokenizer"),
}


def __getattr__(name: str) -> Any:
    if name not in _TORCH_NAMES:
        raise AttributeError(f"module 'miaudit.models' has no attribute {name!r}")
    value = getattr(importlib.import_module(_TORCH_NAMES[name]), name)
    globals()[name] = value
    return value


__all__ = [
    "BATCHED_FAULTS",
    "LMDP",
    "MAX_HF_JSON_BYTES",
    "MAX_HF_WEIGHT_BYTES",
    "MAX_ONNX_BYTES",
    "MIN_SIGMOID_ROWS",
    "TRAINING_REVISION",
    "AnyRecipe",
    "Augmentation",
    "BatchedMechanism",
    "CNNRecipe",
    "CausalLMRecipe",
    "CodeRecipe",
    "DPConfig",
    "EarlyStopping",
    "GradientCanaries",
    "HfCausalLM",
    "HfClassifier",
    "LMArchitecture",
    "LMFinetune",
    "LMPretrain",
    "MLPRecipe",
    "ModelStreams",
    "ModuleCode",
    "OnnxModel",
    "OwnCausalLM",
    "Precision",
    "PythonRecipe",
    "Recipe",
    "SigmaTable",
    "SklearnRecipe",
    "TokenStats",
    "TorchModuleRecipe",
    "UnitResult",
    "all_digit_log_likelihoods",
    "build_lm",
    "build_module",
    "build_net",
    "check_code_trust",
    "check_delta",
    "check_device",
    "check_dp_claim",
    "check_finetune_dp",
    "check_hf_folder",
    "check_onnx_bytes",
    "check_recipe_for_data",
    "code_digests",
    "code_folder",
    "code_names",
    "digit_log_likelihoods",
    "finetune_lm",
    "fit_preprocessing",
    "fits_anything",
    "fitted_logits",
    "greedy_digits",
    "import_factory",
    "load_function",
    "load_hf_causal_lm",
    "load_hf_classifier",
    "load_lm",
    "load_onnx",
    "load_own_lm",
    "load_sklearn",
    "load_torch_module",
    "load_torch_state",
    "looks_like_sigmoids",
    "make_estimator",
    "model_seed_sequence",
    "module_sizes",
    "n_parameters",
    "names_code",
    "noise_for_epsilon",
    "parse_recipe",
    "plan_seed_sequence",
    "poisson_schedule",
    "population_digest",
    "preprocessing_fit",
    "pretrained_base",
    "query_views",
    "record_log_likelihoods",
    "remember_sigmas",
    "resolve_code_folder",
    "save_lm",
    "save_sklearn",
    "save_torch_state",
    "saved_module",
    "sigmoid_problem",
    "single_model",
    "spent_epsilon",
    "token_bounds",
    "torch_threads",
    "train_dp_runs",
    "train_modules",
    "train_one_dp",
    "train_python_model",
    "train_sklearn",
    "train_tokenizer",
    "train_unit",
    "training_augmentations",
    "validation_error",
]
