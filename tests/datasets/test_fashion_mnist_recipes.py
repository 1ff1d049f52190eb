"""The built-in MLP and CNN recipes train on Fashion-MNIST: the CNN with mirror and shifts records
10 queries a record (the image, its mirror, their four one-pixel shifts), the MLP one. Skipped
where Debian's dataset-fashion-mnist is missing, except under CI (scripts/system-deps.sh)."""

from __future__ import annotations

import os

import numpy as np
import pytest

from miaudit.audit import parse_audit_config
from miaudit.data._fashion_mnist import fashion_mnist_folder
from miaudit.engine import train

MODELS = {
    "torch-mlp": ({"kind": "torch-mlp", "hidden": [32]}, 1),
    "torch-cnn": (
        {"kind": "torch-cnn", "channels": [4, 8], "hidden": 16, "augment": ["hflip", "shift"]},
        10,
    ),
}


@pytest.fixture(autouse=True)
def _installed():
    if not (fashion_mnist_folder() / "t10k-labels-idx1-ubyte.gz").is_file():
        if os.environ.get("CI") == "true":
            pytest.fail("dataset-fashion-mnist missing (scripts/system-deps.sh installs it)")
        pytest.skip("Debian's dataset-fashion-mnist is not installed")


@pytest.mark.parametrize("kind", sorted(MODELS))
def test_recipe_trains_and_records_its_queries(kind, tmp_path):
    model, queries = MODELS[kind]
    cfg = parse_audit_config(
        {
            "data": {"dataset": "fashion-mnist", "max_records": 300},
            "model": {**model, "epochs": 2, "batch_size": 32},
            "seed": 3,
            "plan": {"pool_fraction": 0.8},
            "engine": {"workers": 0, "threads": 1, "progress": False},
            "audit": {"references": 1, "attacks": ["lira_online"]},
        }
    )
    store = train(cfg.train_config(), tmp_path).signals
    lg = np.asarray(store.logits)
    want = (4, 300, queries, 10) if queries > 1 else (4, 300, 10)
    assert lg.shape == want and np.isfinite(lg).all()
    # Complementary pairs over the pool; the 60 population records are in no training set.
    assert store.population.sum() == 60 and not store.keep[:, store.population].any()
    np.testing.assert_array_equal(
        store.keep[0::2, ~store.population], ~store.keep[1::2, ~store.population]
    )
