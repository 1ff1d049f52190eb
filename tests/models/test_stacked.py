"""Stacked training computes what one-model-at-a-time training computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miaudit.datasets import digits, fit_affine, purchase_like
from miaudit.models import CNNRecipe, MLPRecipe, ModelStreams
from miaudit.models._nets import flip_images, query_views, shift_images
from miaudit.models._reference import train_plain_mlp
from miaudit.models._torch_train import train_stacked

#: float32 logits of stacked vs plain training after one epoch (issue 3: 1e-4).
LOGIT_TOL = 1e-4


@pytest.fixture(autouse=True)
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _sets(n: int, sizes: list[int], seed: int = 0) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [np.sort(rng.choice(n, s, replace=False)) for s in sizes]


def test_one_epoch_matches_the_plain_loop() -> None:
    data = purchase_like(n_records=600, n_features=80, n_classes=10, seed=1)
    recipe = MLPRecipe(hidden=[32, 32], epochs=1, batch_size=32)
    # Unequal training sets: some models sit out the last steps (no batch left).
    sets = _sets(600, [300, 300, 257, 200])
    affines = [fit_affine(data, s) for s in sets]
    stacked = train_stacked(recipe, data, sets, affines, [ModelStreams.of(9, k) for k in range(4)])
    for k in range(4):
        plain = train_plain_mlp(recipe, data, sets[k], affines[k], ModelStreams.of(9, k))
        assert np.abs(stacked.logits[k] - plain).max() < LOGIT_TOL


@pytest.mark.parametrize(
    "options",
    [
        {"dropout": 0.2},
        {"optimizer": "sgd", "momentum": 0.9, "lr": 0.05, "precision": "bfloat16"},
        {"precision": "bfloat16", "weight_decay": 1e-3},
    ],
    ids=["adam-f32-dropout", "sgd-bf16", "adam-bf16"],
)
def test_a_model_does_not_depend_on_its_unit_mates(options: dict) -> None:
    data = purchase_like(n_records=400, n_features=50, n_classes=5, seed=2)
    recipe = MLPRecipe(hidden=[16], epochs=2, batch_size=50, **options)
    # Unequal sets: the fast one-call update runs while every model steps, per-model views after.
    sets = _sets(400, [200, 140, 200])
    affines = [fit_affine(data, s) for s in sets]
    together = train_stacked(recipe, data, sets, affines, [ModelStreams.of(4, k) for k in range(3)])
    alone = train_stacked(recipe, data, sets[1:2], affines[1:2], [ModelStreams.of(4, 1)])
    # Same draws, same arithmetic per model; only the batched kernels' blocking may differ.
    assert np.abs(together.logits[1] - alone.logits[0]).max() < 1e-5


def test_bfloat16_and_early_stopping_learn() -> None:
    # Noisy records (30% of bits flipped) and a high learning rate: validation loss soon rises.
    data = purchase_like(n_records=600, n_features=80, n_classes=4, flip_rate=0.3, seed=3)
    sets = _sets(600, [300, 300])
    affines = [fit_affine(data, s) for s in sets]
    recipe = MLPRecipe(
        hidden=[64],
        epochs=30,
        batch_size=32,
        lr=1e-2,
        precision="bfloat16",
        early_stopping={"validation_fraction": 0.2, "patience": 2},
    )
    res = train_stacked(recipe, data, sets, affines, [ModelStreams.of(5, k) for k in range(2)])
    acc = (res.logits.argmax(-1) == data.label).mean()
    assert acc > 0.9  # 4 well-separated classes: chance is 0.25
    assert all(0 <= e < 29 for e in res.kept_epoch)  # stopped early on its own validation loss


def test_shift_and_flip_move_pixels() -> None:
    img = torch.zeros(1, 9)
    img[0, 4] = 1.0  # centre of a 3×3 image
    right = shift_images(img, (1, 3, 3), torch.tensor([0]), torch.tensor([1]))
    assert right.reshape(3, 3)[1, 2] == 1.0 and right.sum() == 1.0
    corner = torch.zeros(1, 9)
    corner[0, 0] = 1.0
    assert flip_images(corner, (1, 3, 3)).reshape(3, 3)[0, 2] == 1.0
    assert len(query_views(img, (1, 3, 3), ["shift"])) == 5
    assert len(query_views(img, (1, 3, 3), ["hflip", "shift"])) == 10


def test_cnn_with_shift_queries_learns_digits() -> None:
    data = digits()
    sets = _sets(data.n_records, [900, 900])
    affines = [fit_affine(data, s) for s in sets]
    res = train_stacked(
        CNNRecipe(channels=[8], hidden=32, epochs=8, batch_size=32, lr=5e-3, augment=["shift"]),
        data,
        sets,
        affines,
        [ModelStreams.of(1, k) for k in range(2)],
    )
    assert res.logits.shape == (2, data.n_records, 5, 10)
    assert (res.logits[:, :, 0].argmax(-1) == data.label).mean() > 0.8
