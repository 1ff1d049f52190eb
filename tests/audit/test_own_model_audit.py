"""The user's own code end to end beyond the page's examples (tests/docs): LightGBM through
the ``python`` recipe and the Python API, in this process; a ``torch-module`` recipe through
the engine's cache (an edit of the module retrains)."""

from __future__ import annotations

import sys

import numpy as np
import pytest

from miaudit.engine import train
from tests.engine.test_own_code import _project, _with_cache

BOOSTING = """
from lightgbm import LGBMClassifier


def fit(features, labels, seed, **params):
    model = LGBMClassifier(random_state=seed, n_jobs=1, deterministic=True, verbose=-1, **params)
    return model.fit(features, labels)
"""


def test_a_lightgbm_recipe_audits_from_the_api(tmp_path) -> None:
    pytest.importorskip("lightgbm")
    from miaudit.audit import audit, parse_audit_config
    from miaudit.models import resolve_code_folder

    (tmp_path / "own_lgbm_c0de.py").write_text(BOOSTING)
    cfg = parse_audit_config(
        {
            "seed": 3,
            "trust_code": True,
            "data": {"dataset": "breast-cancer"},
            "model": {
                "kind": "python",
                "train": "own_lgbm_c0de:fit",
                "params": {"n_estimators": 200, "num_leaves": 63, "min_child_samples": 2},
            },
            "engine": {"progress": False},
            "audit": {"references": 2, "resamples": 50, "attacks": ["loss", "lira_online"]},
        }
    )
    cfg = cfg.model_copy(update={"model": resolve_code_folder(cfg.model, tmp_path)})
    try:
        result = audit(cfg, tmp_path / "out", quiet=True)
        again = audit(cfg, tmp_path / "out", overwrite=True, quiet=True)
    finally:
        sys.modules.pop("own_lgbm_c0de", None)
    assert (tmp_path / "out" / "results.json").is_file()
    # Boosted trees this deep memorise their training records: members are found above chance.
    assert result.attack("lira_online").auc.lower > 0.5
    assert result.attack("lira_online").auc == again.attack("lira_online").auc
    signals = np.load(tmp_path / "out" / "signals" / "signals.npz")
    assert np.isfinite(signals["logits"]).all()


MODULE = """
import torch


def build(n_features, n_classes, width=8):
    return torch.nn.Sequential(
        torch.nn.Linear(n_features, width), torch.nn.ReLU(), torch.nn.Linear(width, n_classes)
    )
"""


def test_a_torch_module_trains_through_the_same_cache(tmp_path) -> None:
    pytest.importorskip("torch")
    name = "own_module_c0de"
    model = f'kind = "torch-module"\nfactory = "{name}:build"\nparams = {{ width = 8 }}\nepochs = 2'
    cfg_path = _project(tmp_path / "project", name, MODULE, model)
    try:
        first = train(_with_cache(cfg_path, tmp_path / "cache"), tmp_path / "a")
        assert first.signals.logits.shape == (4, 569, 2)
        unit = first.cache / "units" / first.signals.info.units[0]
        assert (unit / "weights.safetensors").is_file()
        again = train(_with_cache(cfg_path, tmp_path / "cache"), tmp_path / "b")
        assert again.reused == (0, 1)
        assert np.array_equal(first.signals.logits, again.signals.logits)
        (cfg_path.parent / f"{name}.py").write_text(MODULE.replace("width=8", "width=4"))
        assert train(_with_cache(cfg_path, tmp_path / "cache"), tmp_path / "c").reused == ()
    finally:
        sys.modules.pop(name, None)
