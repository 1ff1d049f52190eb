"""The public names of datasets, models and engine (changing them breaks users)."""

from __future__ import annotations

import miaudit.datasets
import miaudit.engine
import miaudit.models


def test_public_names_are_pinned() -> None:
    assert set(miaudit.engine.__all__) >= {
        "train",
        "TrainConfig",
        "TrainRun",
        "load_config",
        "parse_config",
        "Executor",
        "LocalExecutor",
        "PlanConfig",
        "EngineConfig",
        "MembershipPlan",
    }
    assert set(miaudit.models.__all__) >= {
        "MLPRecipe",
        "CNNRecipe",
        "SklearnRecipe",
        "Recipe",
        "parse_recipe",
        "ModelStreams",
    }
    assert set(miaudit.datasets.__all__) >= {
        "DataConfig",
        "Dataset",
        "load_dataset",
        "fit_affine",
        "purchase_like",
    }
    for module in (miaudit.engine, miaudit.models, miaudit.datasets):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_layering_no_upward_imports() -> None:
    from pathlib import Path

    root = Path(miaudit.engine.__file__).resolve().parents[1]
    for pkg in ("datasets", "models", "engine"):
        for path in (root / pkg).glob("*.py"):
            text = path.read_text()
            for upper in ("miaudit.attacks", "miaudit.metrics", "miaudit.audit", "miaudit.cli"):
                assert upper not in text, f"{path.name} imports {upper}"
