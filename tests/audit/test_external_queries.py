"""Augmented queries for an external target (issue 18): the views the built-in CNN records,
asked of any model, and a target's (records, queries, classes) outputs in the store."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from miaudit.attacks import LiraAttack, score_target
from miaudit.audit import ExternalTarget, augmented_queries
from miaudit.audit._reference_audit import _with_external_target
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.models import query_views
from tests.simulate import complementary_keep

SHAPE = (1, 4, 4)


def images(n: int = 30, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 16)).astype(np.float32)


def test_views_are_the_recipes_in_its_order():
    x = images()
    views = augmented_queries(x, ["hflip", "shift"], SHAPE)
    want = query_views(torch.as_tensor(x), SHAPE, ["hflip", "shift"])
    assert len(views) == 10
    for got, exp in zip(views, want, strict=True):
        np.testing.assert_array_equal(got, exp.numpy())
    np.testing.assert_array_equal(views[0], x)
    assert augmented_queries(x, [], None)[0] is not None


def test_views_need_a_matching_image_shape():
    with pytest.raises(InputError, match="image_shape"):
        augmented_queries(images(), ["shift"], (1, 3, 3))


def test_any_model_answers_every_query():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(16, 3))
    x = images()
    target = ExternalTarget.from_model(net, x, np.arange(5), augment=["shift"], image_shape=SHAPE)
    assert target.outputs.shape == (30, 5, 3)
    plain = ExternalTarget.from_model(net, x, np.arange(5))
    np.testing.assert_allclose(target.outputs[:, 0], plain.outputs, rtol=1e-12)


def _store(queries: int) -> SignalsStore:
    rng = np.random.default_rng(1)
    n, k = 200, 4
    keep = complementary_keep(rng, k, n)
    return SignalsStore.from_arrays(
        logits=rng.normal(size=(k, n, queries, 3)).astype(np.float32),
        label=rng.integers(0, 3, n),
        keep=keep,
    )


def test_a_targets_queries_enter_the_store_and_lira():
    store = _store(5)
    rng = np.random.default_rng(2)
    outputs = rng.normal(size=(store.n_records, 5, 3))
    members = store.record_id[rng.random(store.n_records) < 0.5]
    merged = _with_external_target(store, ExternalTarget(outputs, members))
    np.testing.assert_allclose(merged.logits[-1], outputs.astype(np.float32))
    moved = outputs.copy()
    moved[:, 3] += 5.0 * np.eye(3)[store.label]  # only the fourth query changes
    a = score_target(merged, LiraAttack(), target=merged.n_models - 1, references=[0, 1, 2, 3])
    b = score_target(
        _with_external_target(store, ExternalTarget(moved, members)),
        LiraAttack(),
        target=merged.n_models - 1,
        references=[0, 1, 2, 3],
    )
    assert not np.allclose(a.scores, b.scores)


def test_queries_must_match_the_references():
    store = _store(5)
    outputs = np.zeros((store.n_records, 2, 3))
    with pytest.raises(InputError, match="queries"):
        _with_external_target(store, ExternalTarget(outputs, store.record_id[:10]))
