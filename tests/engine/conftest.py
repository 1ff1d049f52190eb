from __future__ import annotations

from typing import Any

import pytest

from miaudit.engine import TrainConfig, parse_config


def small_config(**over: Any) -> TrainConfig:
    """A few tiny MLPs on breast cancer: a unit trains in well under a second."""
    raw: dict[str, Any] = {
        "seed": 7,
        "data": {"dataset": "breast-cancer"},
        "model": {"kind": "torch-mlp", "hidden": [16], "epochs": 3, "batch_size": 32},
        "plan": {"models": 4, "unit_size": 2},
        "engine": {"workers": 0, "threads": 1, "progress": False},
    }
    for key, value in over.items():
        section, _, name = key.partition("__")
        if name:
            raw[section] = {**raw[section], name: value}
        else:
            raw[section] = value
    return parse_config(raw)


@pytest.fixture
def config_factory():
    return small_config
