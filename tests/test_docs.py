"""Generated documentation is current: docs/config.md is what scripts/config_reference.py writes."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _generator():
    spec = importlib.util.spec_from_file_location(
        "config_reference", ROOT / "scripts" / "config_reference.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_config_reference_is_current() -> None:
    expected = _generator().render()
    assert (ROOT / "docs" / "config.md").read_text(encoding="utf-8") == expected, (
        "docs/config.md is stale: run .venv/bin/python scripts/config_reference.py"
    )


def test_config_reference_names_every_section_and_recipe_kind() -> None:
    text = (ROOT / "docs" / "config.md").read_text(encoding="utf-8")
    for section in ("DataConfig", "PlanConfig", "EngineConfig", "AttackSection", "MLPRecipe"):
        assert f"## {section}" in text
    assert '`"torch-mlp"`' in text and '`"sklearn"`' in text
