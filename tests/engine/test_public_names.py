"""The public names of datasets, models and engine, pinned exactly: a name added or removed here
is a change of the API, made on purpose."""

from __future__ import annotations

import subprocess
import sys
import types

import pytest

import miaudit.datasets
import miaudit.engine
import miaudit.models

PINNED = {
    miaudit.datasets: {
        "Affine",
        "BuiltinName",
        "DataConfig",
        "Dataset",
        "PurchaseOptions",
        "adult",
        "breast_cancer",
        "digits",
        "fashion_mnist",
        "fit_affine",
        "load_dataset",
        "purchase_like",
        "subset",
    },
    miaudit.engine: {
        "CACHE_FORMAT",
        "EngineConfig",
        "Executor",
        "KeyParts",
        "LocalExecutor",
        "MembershipPlan",
        "PlanConfig",
        "RayExecutor",
        "TrainConfig",
        "TrainRun",
        "UnitJob",
        "UnitOutcome",
        "check_before_training",
        "check_dp_plan",
        "check_finite",
        "check_model_size",
        "complementary_plan",
        "independent_plan",
        "check_device_for",
        "load_config",
        "read_config_file",
        "make_plan",
        "n_queries",
        "parse_config",
        "train",
        "user_plan",
        "with_trust",
    },
    miaudit.models: {
        "MAX_HF_JSON_BYTES",
        "MAX_HF_WEIGHT_BYTES",
        "HfCausalLM",
        "HfClassifier",
        "TokenStats",
        "check_hf_folder",
        "load_hf_causal_lm",
        "load_hf_classifier",
        "LMDP",
        "CausalLMRecipe",
        "LMArchitecture",
        "LMFinetune",
        "LMPretrain",
        "all_digit_log_likelihoods",
        "build_lm",
        "digit_log_likelihoods",
        "finetune_lm",
        "greedy_digits",
        "load_lm",
        "load_own_lm",
        "OwnCausalLM",
        "n_parameters",
        "pretrained_base",
        "record_log_likelihoods",
        "save_lm",
        "token_bounds",
        "train_tokenizer",
        "MAX_ONNX_BYTES",
        "Augmentation",
        "query_views",
        "OnnxModel",
        "check_onnx_bytes",
        "import_factory",
        "load_onnx",
        "looks_like_sigmoids",
        "sigmoid_problem",
        "MIN_SIGMOID_ROWS",
        "load_torch_module",
        "module_sizes",
        "TRAINING_REVISION",
        "AnyRecipe",
        "CNNRecipe",
        "CodeRecipe",
        "DPConfig",
        "EarlyStopping",
        "GradientCanaries",
        "BATCHED_FAULTS",
        "BatchedMechanism",
        "train_dp_runs",
        "MLPRecipe",
        "ModelStreams",
        "ModuleCode",
        "Precision",
        "PythonRecipe",
        "Recipe",
        "SigmaTable",
        "SklearnRecipe",
        "TorchModuleRecipe",
        "UnitResult",
        "build_module",
        "build_net",
        "check_code_trust",
        "check_device",
        "check_delta",
        "check_dp_claim",
        "check_finetune_dp",
        "noise_for_epsilon",
        "remember_sigmas",
        "poisson_schedule",
        "spent_epsilon",
        "check_recipe_for_data",
        "code_digests",
        "code_folder",
        "code_names",
        "fit_preprocessing",
        "fits_anything",
        "fitted_logits",
        "load_function",
        "load_sklearn",
        "load_torch_state",
        "make_estimator",
        "model_seed_sequence",
        "names_code",
        "parse_recipe",
        "plan_seed_sequence",
        "population_digest",
        "preprocessing_fit",
        "resolve_code_folder",
        "save_sklearn",
        "save_torch_state",
        "saved_module",
        "single_model",
        "torch_threads",
        "train_modules",
        "train_one_dp",
        "train_python_model",
        "train_sklearn",
        "train_unit",
        "training_augmentations",
        "validation_error",
    },
}


@pytest.mark.parametrize("module", list(PINNED), ids=lambda m: m.__name__)
def test_public_names_are_pinned(module: types.ModuleType) -> None:
    assert len(module.__all__) == len(set(module.__all__)), "a name listed twice"
    assert set(module.__all__) == PINNED[module]
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{module.__name__}.{name}"


@pytest.mark.parametrize("module", list(PINNED), ids=lambda m: m.__name__)
def test_every_public_attribute_is_exported(module: types.ModuleType) -> None:
    """A public name imported into the package's namespace but left out of ``__all__`` is an
    export by accident (star-imports and documentation miss it)."""
    loose = {
        name
        for name, value in vars(module).items()
        if not name.startswith("_")
        and not isinstance(value, types.ModuleType)  # its private submodules, typing, …
        and getattr(value, "__module__", module.__name__).startswith("miaudit")
        and name not in ("annotations", "TYPE_CHECKING")  # from __future__, typing
    }
    assert loose <= set(module.__all__), sorted(loose - set(module.__all__))


def test_models_import_torch_only_when_a_torch_name_is_used() -> None:
    """The coordinating process of a run imports models and engine; torch (an extra, over a
    second to import) is imported only by the names that train or build torch models."""
    code = (
        "import sys, miaudit.models, miaudit.engine\n"
        "assert 'torch' not in sys.modules\n"
        "assert miaudit.models.train_unit and miaudit.models.UnitResult\n"
        "assert 'torch' not in sys.modules\n"
        "from miaudit.models import build_net, GradientCanaries\n"
        "assert 'torch' in sys.modules and build_net.__module__ == 'miaudit.models._torch_train'\n"
        "try:\n"
        "    miaudit.models.no_such_name\n"
        "except AttributeError as exc:\n"
        "    assert 'no_such_name' in str(exc)\n"
        "else:\n"
        "    raise AssertionError('no AttributeError')\n"
        "print('ok')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
