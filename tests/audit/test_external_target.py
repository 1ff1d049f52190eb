"""Auditing a model trained elsewhere, without retraining it; references from the recipe."""

from __future__ import annotations

import os
import stat
import tomllib

import numpy as np
import pytest

from miaudit.audit import ExternalTarget, audit, parse_audit_config
from miaudit.audit._check_record import check_record
from miaudit.datasets import load_dataset
from miaudit.errors import InputError
from tests.audit.conftest import CONFIG


@pytest.mark.filterwarnings(
    "ignore::sklearn.exceptions.ConvergenceWarning"
)  # overfitting is the point
def test_fitted_sklearn_model_is_audited_as_is(tmp_path):
    from sklearn.neural_network import MLPClassifier

    cfg = parse_audit_config(tomllib.loads(CONFIG))
    data = load_dataset(cfg.data)
    rng = np.random.default_rng(0)
    members = rng.permutation(data.n_records)[: data.n_records // 2]
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=200, random_state=0).fit(
        data.features[members], data.label[members]
    )
    before = model.coefs_[0].copy()
    target = ExternalTarget.from_model(model, data.features, data.record_id[members])
    result = audit(cfg, tmp_path / "out", target=target, quiet=True)
    np.testing.assert_array_equal(model.coefs_[0], before)  # not retrained
    assert result.reference.external_target and result.reference.targets == 1
    assert result.reference.models == 7  # 6 engine-trained references + the target
    assert result.attack("lira_online").auc.lower > 0.5  # the memorising target leaks
    assert result.input.n_members + result.input.n_nonmembers == result.reference.pool_records
    # Issue 16, item 2: check-record answers about *this* model (it used to answer about the
    # engine's model 0, calling the user's training records "non-members" half the time).
    pool_members = [
        str(r)
        for r in data.record_id[members]
        if str(r) in set(map(str, _pool_ids(tmp_path / "out")))
    ][:200]
    rows = check_record(tmp_path / "out", pool_members)
    assert all(r.member_in_plan for r in rows)
    assert all(
        r.model.startswith("your model") and r.target == 6 for r in rows
    )  # the store's 7th model, after the 6 references
    others = [
        str(r)
        for r in _pool_ids(tmp_path / "out")
        if str(r) not in set(map(str, data.record_id[members]))
    ][:200]
    non = check_record(tmp_path / "out", others)
    assert not any(r.member_in_plan for r in non)
    assert np.median([r.p_value for r in rows]) < np.median(
        [r.p_value for r in non]
    )  # the memorising model's members stand out
    assert stat.S_IMODE(os.stat(tmp_path / "out" / "signals" / "target.npz").st_mode) == 0o600


def _pool_ids(out):
    import pandas as pd

    return pd.read_parquet(out / "scores.parquet")["record_id"].tolist()


def test_bad_external_target(tmp_path):
    cfg = parse_audit_config(tomllib.loads(CONFIG))
    n = load_dataset(cfg.data).n_records
    with pytest.raises(InputError, match=r"target.outputs"):
        audit(
            cfg,
            tmp_path / "a",
            target=ExternalTarget(np.zeros((n, 3)), np.array([1, 2])),
            quiet=True,
        )
    with pytest.raises(InputError, match=r"target.members"):
        audit(
            cfg,
            tmp_path / "b",
            target=ExternalTarget(np.zeros((n, 10)), np.array([10**9])),
            quiet=True,
        )


def test_probabilities_given_as_logits_are_refused_before_training(tmp_path, monkeypatch):
    """Red team (own model, finding 2b): ``ExternalTarget(model.predict_proba(x), members)``
    took the default ``kind="logits"``, and the probabilities went through a softmax again
    (lira_online AUC 0.518 → 0.500, nothing printed). Refused, naming ``kind='probs'``, before
    any reference is trained; log-probabilities given as ``kind="probs"`` likewise."""
    import miaudit.engine

    cfg = parse_audit_config(tomllib.loads(CONFIG))
    n = load_dataset(cfg.data).n_records
    monkeypatch.setattr(miaudit.engine, "train", lambda *a, **k: pytest.fail("trained"))
    e = np.exp(np.random.default_rng(0).normal(size=(n, 10)))
    probs = e / e.sum(axis=1, keepdims=True)
    with pytest.raises(InputError) as err:
        audit(cfg, tmp_path / "a", target=ExternalTarget(probs, np.array([1, 2])), quiet=True)
    assert err.value.field == "target.outputs"
    assert "these look like probabilities" in err.value.problem
    assert "kind='probs'" in err.value.problem
    with pytest.raises(InputError) as err:
        audit(
            cfg,
            tmp_path / "b",
            target=ExternalTarget(np.log(probs), np.array([1, 2]), kind="probs"),
            quiet=True,
        )
    assert err.value.field == "target.outputs"
    assert "look like log-probabilities or logits; pass kind='logits'" in err.value.problem
    huge = np.zeros((n, 10))
    huge[4, 3] = 1e39
    with pytest.raises(InputError) as err:
        audit(cfg, tmp_path / "c", target=ExternalTarget(huge, np.array([1, 2])), quiet=True)
    assert (err.value.field, err.value.problem) == (
        "target.outputs",
        "value 1e+39 at index (4, 3) does not fit float32 (|x| ≤ 3.4e+38)",
    )
    assert not any((tmp_path / d).exists() for d in "abc")


def test_per_class_sigmoids_given_as_logits_are_refused_before_training(tmp_path, monkeypatch):
    """Red team: ``ExternalTarget(sigmoid(margins), members)`` (a multi-label head's values,
    rows not summing to 1) passed as logits and went through a softmax. Refused naming
    target.outputs, before any reference is trained; all-zero logits (a softmax reads any
    constant row alike) are not."""
    import miaudit.engine

    cfg = parse_audit_config(tomllib.loads(CONFIG))
    n = load_dataset(cfg.data).n_records
    monkeypatch.setattr(miaudit.engine, "train", lambda *a, **k: pytest.fail("trained"))
    margins = np.random.default_rng(0).normal(size=(n, 10))
    with pytest.raises(InputError) as err:
        audit(
            cfg,
            tmp_path / "a",
            target=ExternalTarget(1 / (1 + np.exp(-margins)), np.array([1, 2])),
            quiet=True,
        )
    assert err.value.field == "target.outputs" and "\n" not in err.value.problem
    assert "per-class sigmoid probabilities" in err.value.problem
