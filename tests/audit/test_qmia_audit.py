"""QMIA and the combined attack in reference audits: the store's population as QMIA's known
non-members, the features by record id, results rows, and the refusals before any work."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.audit import (
    SignalsAuditConfig,
    attack_store,
    audit_signals,
    parse_audit_config,
    run_audit,
)
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from tests.simulate import complementary_keep


def _store(n: int = 500, pairs: int = 2, seed: int = 0) -> tuple[SignalsStore, np.ndarray]:
    """Models whose φ on a record is 4·x₀ (its hardness, a feature) plus 1.5 if they trained on it."""
    rng = np.random.default_rng(seed)
    keep = complementary_keep(rng, 2 * pairs, n)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:200]] = True
    keep[:, pop] = False
    x = rng.uniform(0, 1, size=(n, 3))
    y = (x[:, 1] > 0.5).astype(np.int64)
    phi = 4 * x[:, 0][None] + 1.5 * keep + 0.4 * rng.normal(size=keep.shape)
    logits = np.zeros((2 * pairs, n, 2))
    logits[:, np.arange(n), y] = phi
    store = SignalsStore.from_arrays(
        logits=logits.astype(np.float32),
        label=y,
        keep=keep,
        population=pop,
        record_id=np.arange(100, 100 + n),
    )
    return store, x


def _cfg(attacks: list[str]) -> SignalsAuditConfig:
    return SignalsAuditConfig.model_validate({"audit": {"attacks": attacks, "resamples": 20}})


def test_qmia_in_a_reference_audit_uses_the_population_and_beats_loss():
    store, x = _store()
    run = attack_store(store, _cfg(["loss", "qmia", "combined"]), features=x, references=1)
    auc = {a.name: a.auc.point for a in run.result.attacks}
    assert auc["qmia"] > auc["loss"] + 0.1 and auc["qmia"] > 0.8, auc
    assert auc["combined"] > 0.6
    assert set(run.scores) == {"loss", "qmia", "combined"}
    # the budget curve's k = 0 (no reference model) has QMIA, with the audit's features
    curve = run.result.budget_curve
    assert curve is not None and "qmia" in curve.candidates["k=0"]
    assert curve.points[0].references == 0 and curve.points[0].attack == "qmia"
    # pool restriction keeps the features aligned by record id
    pool = store.record_id[~store.population][:150]
    sub = attack_store(store, _cfg(["qmia"]), features=x, pool=pool, references=1)
    pairs = zip(run.pair_target, run.record_id, strict=True)
    full = dict(zip(pairs, run.scores["qmia"], strict=True))
    for t, r, s in zip(sub.pair_target, sub.record_id, sub.scores["qmia"], strict=True):
        assert s == pytest.approx(full[(t, r)])


def test_refusals(tmp_path):
    store, x = _store()
    with pytest.raises(InputError, match=r"audit\.attacks: qmia needs the records' features"):
        attack_store(store, _cfg(["qmia"]), references=1)
    with pytest.raises(InputError, match="features: must be"):
        attack_store(store, _cfg(["qmia"]), features=x[:10], references=1)
    nopop = SignalsStore.from_arrays(
        logits=store.logits, label=store.label, keep=store.keep, population=np.zeros(500, bool)
    )
    with pytest.raises(InputError, match="store has none"):
        attack_store(nopop, _cfg(["qmia"]), features=x, references="all")
    with pytest.raises(InputError, match="features"):
        audit_signals(store, tmp_path / "o", config=_cfg(["qmia"]), quiet=True, report=False)
    cfg = parse_audit_config({"data": {"dataset": "digits"}, "audit": {"attacks": ["qmia"]}})
    with pytest.raises(InputError, match="image data"):
        run_audit(cfg, tmp_path / "img", quiet=True)
    assert not (tmp_path / "img" / "models").exists()  # refused before training
