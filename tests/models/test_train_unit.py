"""``train_unit``: the one public way to train a unit of torch models, stacked or DP-SGD, with
one result type; bit for bit what the trainer it chooses computes."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miaudit.datasets import fit_affine, purchase_like
from miaudit.models import MLPRecipe, ModelStreams, UnitResult, parse_recipe, train_unit
from miaudit.models._torch_train import train_stacked


@pytest.fixture(scope="module")
def data():
    return purchase_like(n_records=300, n_features=30, n_classes=4, seed=3)


def _inputs(data, models: int = 2):
    rng = np.random.default_rng(0)
    sets = [np.sort(rng.choice(data.n_records, 150, replace=False)) for _ in range(models)]
    return sets, [fit_affine(data, s) for s in sets]


def _streams(models: int = 2) -> list[ModelStreams]:
    return [ModelStreams.of(11, k) for k in range(models)]


def test_stacked_unit_is_the_stacked_trainer_bit_for_bit(data) -> None:
    recipe = MLPRecipe(hidden=[16], epochs=2, batch_size=32)
    sets, affines = _inputs(data)
    epochs: list[int] = []
    got = train_unit(recipe, data, sets, affines, _streams(), on_epoch=epochs.append, threads=1)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        want = train_stacked(recipe, data, sets, affines, _streams())
    finally:
        torch.set_num_threads(before)
    assert isinstance(got, UnitResult) and got.privacy is None
    np.testing.assert_array_equal(got.logits, want.logits)
    assert got.logits.shape == (2, data.n_records, data.n_classes)
    assert got.state.keys() == want.state.keys()
    for name in got.state:
        assert torch.equal(got.state[name], want.state[name]), name
    assert got.kept_epoch == want.kept_epoch == [1, 1]
    assert epochs == [0, 1]


def test_threads_are_set_while_training_and_restored(data, monkeypatch) -> None:
    import miaudit.models._torch_train as torch_train

    seen = []
    real = torch_train.train_stacked

    def spy(*args, **kwargs):
        seen.append(torch.get_num_threads())
        return real(*args, **kwargs)

    monkeypatch.setattr(torch_train, "train_stacked", spy)
    before = torch.get_num_threads()
    want = 1 if before != 1 else 2
    sets, affines = _inputs(data, models=1)
    train_unit(MLPRecipe(hidden=[8], epochs=1), data, sets, affines, _streams(1), threads=want)
    assert seen == [want] and torch.get_num_threads() == before


def test_a_dp_recipe_trains_with_dp_sgd_and_records_privacy(data) -> None:
    pytest.importorskip("opacus")
    recipe = parse_recipe(
        {"kind": "torch-mlp", "hidden": [8], "epochs": 1, "batch_size": 32, "dp": {"epsilon": 4.0}}
    )
    sets, affines = _inputs(data)
    got = train_unit(recipe, data, sets, affines, _streams(), threads=1)
    assert isinstance(got, UnitResult) and got.logits.shape == (2, data.n_records, 4)
    assert got.privacy is not None and len(got.privacy) == 2
    for record in got.privacy:
        assert record["accountant"] == recipe.dp.accountant
        assert 0 < record["epsilon"] <= 4.0 + 1e-6 and record["steps"] > 0
