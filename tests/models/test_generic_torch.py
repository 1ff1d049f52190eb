"""The generic per-model trainer of ``torch-module`` recipes: bit-for-bit reproducible for a
seed on CPU, independent of the unit, with the user's train step or the recipe's loss."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from miaudit.datasets import DataConfig, fit_affine, load_dataset
from miaudit.errors import InputError
from miaudit.models import ModelStreams, TorchModuleRecipe
from miaudit.models._generic_torch import ModuleCode, saved_module, train_modules


class _Net(torch.nn.Module):
    """A small custom architecture: a residual block with dropout (random in training)."""

    def __init__(self, n_features: int, n_classes: int, width: int = 16) -> None:
        super().__init__()
        self.inp = torch.nn.Linear(n_features, width)
        self.block = torch.nn.Sequential(
            torch.nn.ReLU(), torch.nn.Dropout(0.2), torch.nn.Linear(width, width)
        )
        self.out = torch.nn.Linear(width, n_classes)

    def forward(self, x):
        h = self.inp(x)
        return self.out(torch.relu(h + self.block(h)))


def build(n_features, n_classes, width=16):
    return _Net(n_features, n_classes, width)


@pytest.fixture(scope="module")
def data():
    return load_dataset(DataConfig(dataset="breast-cancer"))


def _halves(data, models):
    rng = np.random.default_rng(0)
    return [np.sort(rng.choice(data.n_records, data.n_records // 2, replace=False)) for _ in models]


def _train(data, models, recipe, code=None, on_epoch=None):
    sets = _halves(data, range(max(models) + 1))
    sets = [sets[k] for k in models]
    return train_modules(
        recipe,
        code or ModuleCode(build),
        data,
        sets,
        [fit_affine(data, t) for t in sets],
        [ModelStreams.of(7, k) for k in models],
        on_epoch=on_epoch,
    )


RECIPE = TorchModuleRecipe(factory="tests:build", epochs=3, batch_size=64, params={"width": 16})


def test_a_seed_reproduces_every_bit_and_models_do_not_depend_on_their_unit(data) -> None:
    rng_before = torch.random.get_rng_state()
    a = _train(data, [0, 1], RECIPE)
    b = _train(data, [0, 1], RECIPE)
    alone = _train(data, [1], RECIPE)
    assert torch.equal(torch.random.get_rng_state(), rng_before)  # the caller's generator
    assert a.logits.shape == (2, data.n_records, 2) and a.logits.dtype == np.float32
    assert np.array_equal(a.logits, b.logits)
    assert a.state.keys() == b.state.keys()
    assert all(torch.equal(a.state[k], b.state[k]) for k in a.state)
    assert np.array_equal(a.logits[1], alone.logits[0])
    assert all(torch.equal(a.state[k][1], alone.state[k][0]) for k in a.state)
    assert not np.array_equal(a.logits[0], a.logits[1])
    assert a.kept_epoch == [2, 2]


def test_the_saved_weights_rebuild_each_model(data) -> None:
    result = _train(data, [0, 1], RECIPE)
    for pos in (0, 1):
        module = saved_module(
            RECIPE.model_copy(update={"factory": f"{__name__}:build"}),
            result.state,
            pos,
            data.n_features,
            data.n_classes,
            trust_code=True,
        )
        x = torch.from_numpy(fit_affine(data, _halves(data, range(2))[pos]).apply(data.features))
        with torch.no_grad():
            assert np.allclose(module(x).numpy(), result.logits[pos], atol=1e-6)


def test_the_users_train_step_runs_each_minibatch(data) -> None:
    calls = []

    def step(module, xb, yb, optimizer):
        calls.append(len(xb))
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(module(xb), yb)
        loss.backward()
        optimizer.step()
        return loss

    _train(data, [0], RECIPE, ModuleCode(build, step))
    half = data.n_records // 2
    assert len(calls) == RECIPE.epochs * math.ceil(half / RECIPE.batch_size)
    assert sum(calls) == RECIPE.epochs * half and max(calls) == RECIPE.batch_size

    # A step that never updates would leave every model at its initial weights, audited as
    # references without a word (red team): refused, naming the step.
    def never_steps(module, xb, yb, optimizer):
        return None

    with pytest.raises(InputError, match=r"^model\.train_step: training changed none"):
        _train(data, [0], RECIPE, ModuleCode(build, never_steps))


def test_early_stopping_keeps_the_best_epoch(data) -> None:
    recipe = TorchModuleRecipe(
        factory="tests:build",
        epochs=40,
        lr=0.05,
        batch_size=64,
        early_stopping={"validation_fraction": 0.2, "patience": 2},
    )
    epochs: list[tuple[int, int]] = []
    result = _train(data, [0, 1], recipe, on_epoch=lambda i, e: epochs.append((i, e)))
    for i in (0, 1):
        ran = [e for j, e in epochs if j == i]
        assert ran == list(range(len(ran))) and len(ran) < 40  # stopped early
        assert 0 <= result.kept_epoch[i] == len(ran) - 1 - 2  # patience 2 after the best


@pytest.mark.parametrize(
    ("factory", "field", "match"),
    [
        (lambda n, c, width=16: torch.nn.Linear(n, c + 1), "model.factory", r"expected \(2, 2\)"),
        (lambda n, c, width=16: "not a module", "model.factory", "not a torch.nn.Module"),
        (lambda n, c: torch.nn.Linear(n, c), "model.params", "refused them"),
        (lambda n, c, width=16: torch.nn.Linear(n + 1, c), "model.factory", "fails on a"),
    ],
)
def test_a_module_that_does_not_fit_is_refused_before_training(data, factory, field, match) -> None:
    with pytest.raises(InputError, match=match) as err:
        _train(data, [0], RECIPE, ModuleCode(factory))
    assert err.value.field == field


@pytest.fixture(scope="module")
def digits():
    return load_dataset(DataConfig(dataset="digits"))


def test_augmentations_train_each_batch_and_become_the_queries(digits) -> None:
    """``augment`` as for torch-cnn: the logits gain the query axis (the image, then its four
    one-pixel shifts), the first query is the plain prediction, and a seed still reproduces
    every bit."""
    from miaudit.engine import n_queries
    from miaudit.models._nets import query_views

    recipe = RECIPE.model_copy(update={"augment": ["shift"], "epochs": 1})
    a = _train(digits, [1], recipe)
    assert a.logits.shape == (1, digits.n_records, n_queries(recipe), 10) == (1, 1797, 5, 10)
    assert np.array_equal(a.logits, _train(digits, [1], recipe).logits)
    plain = _train(digits, [1], RECIPE.model_copy(update={"epochs": 1}))
    assert not np.array_equal(a.logits[:, :, 0], plain.logits)  # the batches were augmented
    sets = _halves(digits, range(2))
    module = saved_module(
        recipe.model_copy(update={"factory": f"{__name__}:build"}),
        a.state,
        0,
        digits.n_features,
        digits.n_classes,
        trust_code=True,
    )
    x = torch.from_numpy(fit_affine(digits, sets[1]).apply(digits.features).astype(np.float32))
    assert digits.image_shape is not None
    with torch.no_grad():
        for q, view in enumerate(query_views(x, digits.image_shape, ["shift"])):
            assert np.allclose(module(view).numpy(), a.logits[0, :, q], atol=1e-5)


def test_augmentations_are_refused_for_tabular_data_and_mirrors_for_digits(data, digits) -> None:
    from miaudit.models import check_recipe_for_data

    with pytest.raises(InputError, match=r"model\.augment: augmentations need image data"):
        check_recipe_for_data(
            RECIPE.model_copy(update={"augment": ["shift"]}),
            image_shape=None,
            mirror_invariant=True,
            dataset="breast-cancer",
        )
    with pytest.raises(InputError, match=r"model\.augment: 'hflip' changes the class"):
        check_recipe_for_data(
            TorchModuleRecipe(factory="m:f", augment=["hflip"]),
            image_shape=digits.image_shape,
            mirror_invariant=False,
            dataset="digits",
        )
    with pytest.raises(ValueError, match="lists an augmentation twice"):
        TorchModuleRecipe(factory="m:f", augment=["shift", "shift"])


def _softmax_net(n_features, n_classes):
    return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes), torch.nn.Softmax(dim=1))


def _positive_net(n_features, n_classes):
    """Honest logits that are all positive (an offset after the last layer)."""
    return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes), torch.nn.Softplus())


def test_a_module_ending_in_softmax_is_refused_and_positive_logits_kept(data) -> None:
    """Red team (own model, F2): a module ending in ``nn.Softmax`` had its probabilities stored
    as logits, softmaxed a second time by every attack (LiRA TPR@1%FPR 2.75% -> 4.68% on the
    same weights). It is refused in one line naming model.factory, before anything is saved;
    a module whose logits are all positive trains."""
    recipe = TorchModuleRecipe(factory="tests:_softmax_net", epochs=1, batch_size=64)
    with pytest.raises(InputError) as err:
        _train(data, [0], recipe, ModuleCode(_softmax_net))
    assert err.value.field == "model.factory" and "\n" not in err.value.problem
    assert "nn.Softmax" in err.value.problem and "return logits (or log-probabilities" in (
        err.value.problem
    )
    recipe = TorchModuleRecipe(factory="tests:_positive_net", epochs=1, batch_size=64)
    out = _train(data, [0], recipe, ModuleCode(_positive_net))
    assert (out.logits > 0).all()


def _sigmoid_net(n_features, n_classes):
    return torch.nn.Sequential(torch.nn.Linear(n_features, n_classes), torch.nn.Sigmoid())


def test_a_module_ending_in_sigmoid_is_refused(data) -> None:
    """Red team: a module ending in ``nn.Sigmoid`` (per-class probabilities, rows not summing
    to 1) passed the softmax check, and its values went through a softmax as logits. Refused
    in one line naming model.factory and the fix."""
    recipe = TorchModuleRecipe(factory="tests:_sigmoid_net", epochs=1, batch_size=64)
    with pytest.raises(InputError) as err:
        _train(data, [0], recipe, ModuleCode(_sigmoid_net))
    assert err.value.field == "model.factory" and "\n" not in err.value.problem
    assert "per-class sigmoid probabilities" in err.value.problem
    assert "_sigmoid_net builds gives values all in [0, 1]" in err.value.problem
