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


def _cfg(attacks: list[str], targets: int | None = None) -> SignalsAuditConfig:
    return SignalsAuditConfig.model_validate(
        {"audit": {"attacks": attacks, "resamples": 20, "targets": targets}}
    )


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
    with pytest.raises(InputError, match=r"image_shape: \(1, 2, 2\) does not hold"):
        attack_store(store, _cfg(["qmia"]), features=x, image_shape=(1, 2, 2), references=1)
    views = np.stack([x, x], axis=1)
    with pytest.raises(InputError, match="2 views; the store has no query axis"):
        attack_store(store, _cfg(["qmia"]), features=views, references=1)


def _image_store(n: int = 400, views: int = 1, seed: int = 0):
    """8×8 images whose brightness sets φ on non-members (12·brightness), +1 on members; with
    views, the mirror's φ follows the mirror's own brightness map (left half weighs double)."""
    rng = np.random.default_rng(seed)
    keep = complementary_keep(rng, 4, n)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:200]] = True
    keep[:, pop] = False
    img = rng.uniform(0, 1, size=(n, 8, 8)) * rng.uniform(0, 1, size=(n, 1, 1))
    y = (img.mean(axis=(1, 2)) > 0.25).astype(np.int64)
    weight = np.ones((8, 8))
    weight[:, :4] = 2.0
    flats, logits = [], np.zeros((4, n, views, 2))
    for v in range(views):
        im = img[:, :, ::-1] if v else img
        flats.append(im.reshape(n, 64))
        hard = 12 * (im * weight).mean(axis=(1, 2)) / 1.5
        phi = hard[None] + 1.0 * keep + 0.5 * rng.normal(size=keep.shape)
        logits[:, np.arange(n), v, y] = phi
    store = SignalsStore.from_arrays(
        logits=(logits[:, :, 0] if views == 1 else logits).astype(np.float32),
        label=y,
        keep=keep,
        population=pop,
        record_id=np.arange(n),
    )
    x = flats[0] if views == 1 else np.stack(flats, axis=1)
    return store, x


def test_qmia_regresses_images_with_a_cnn_and_reads_every_query_view():
    """A store written elsewhere with images: QMIA's CNN removes the brightness (AUC well
    above loss's), and given both views it reads both; the views' order is the store's."""
    store, x = _image_store()
    run = attack_store(
        store, _cfg(["loss", "qmia"], 2), features=x, image_shape=(1, 8, 8), references=1
    )
    auc = {a.name: a.auc.point for a in run.result.attacks}
    assert auc["qmia"] > auc["loss"] + 0.1, auc
    two, xv = _image_store(views=2)
    both = attack_store(two, _cfg(["qmia"], 2), features=xv, image_shape=(1, 8, 8), references=1)
    first = attack_store(
        two, _cfg(["qmia"], 2), features=xv[:, 0], image_shape=(1, 8, 8), references=1
    )
    a2, a1 = both.result.attacks[0].auc.point, first.result.attacks[0].auc.point
    assert a2 > a1 + 0.02, (a1, a2)  # two noisy views of the same membership average better


def test_an_image_recipe_gives_qmia_its_shape_and_the_recipe_views():
    from miaudit.audit._reference_audit import dataset_features

    cfg = parse_audit_config(
        {
            "data": {"dataset": "digits"},
            "model": {"kind": "torch-cnn", "augment": ["shift"]},
            "audit": {"attacks": ["qmia"]},
        }
    )
    features = dataset_features(cfg)
    assert features is not None and features.image_shape == (1, 8, 8)
    rows = features.rows(features.record_id[:3])
    assert rows.shape == (3, 5, 64)  # the image and its four one-pixel shifts
    np.testing.assert_array_equal(rows[:, 0], features.features[:3])


def test_an_external_target_gives_qmia_views_only_when_it_answered_them():
    """An external image target's outputs stand for every query when it answered one query:
    QMIA then reads the images alone; with (records, queries, classes) outputs, every view."""
    from miaudit.audit import ExternalTarget
    from miaudit.audit._population_attacks import RecordFeatures
    from miaudit.audit._reference_audit import _target_features

    rng = np.random.default_rng(3)
    ids = np.arange(6)
    features = RecordFeatures.of(
        ids, rng.uniform(size=(6, 64)).astype(np.float32), image_shape=(1, 8, 8), augment=["hflip"]
    )
    one = ExternalTarget(rng.normal(size=(6, 3)), ids[:3])
    both = ExternalTarget(rng.normal(size=(6, 2, 3)), ids[:3])
    assert _target_features(features, one).rows(ids).shape == (6, 64)
    views = _target_features(features, both).rows(ids)
    assert views.shape == (6, 2, 64)
    np.testing.assert_array_equal(
        views[:, 1].reshape(6, 8, 8), features.features.reshape(6, 8, 8)[:, :, ::-1]
    )
    assert _target_features(None, one) is None


def test_each_view_of_the_features_meets_its_own_query():
    """Query 0's φ follows its image's brightness (+1 on members); query 1 shows a blank image
    and φ is noise. Paired right, the regressor removes query 0's brightness; given the views
    the other way round, it cannot, and the attack loses power."""
    rng = np.random.default_rng(4)
    n = 400
    keep = complementary_keep(rng, 4, n)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:200]] = True
    keep[:, pop] = False
    img = rng.uniform(0, 1, size=(n, 64)) * rng.uniform(0, 1, size=(n, 1))
    y = np.zeros(n, dtype=np.int64)
    logits = np.zeros((4, n, 2, 2), dtype=np.float32)
    logits[:, :, 0, 0] = 12 * img.mean(axis=1)[None] + keep + 0.5 * rng.normal(size=keep.shape)
    logits[:, :, 1, 0] = rng.normal(size=keep.shape)
    store = SignalsStore.from_arrays(logits=logits, label=y, keep=keep, population=pop)
    blank = np.zeros_like(img)
    auc = {}
    for name, views in (("paired", [img, blank]), ("swapped", [blank, img])):
        run = attack_store(
            store,
            _cfg(["qmia"], 2),
            features=np.stack(views, axis=1),
            image_shape=(1, 8, 8),
            references=1,
        )
        auc[name] = run.result.attacks[0].auc.point
    assert auc["paired"] > auc["swapped"] + 0.1, auc


@pytest.mark.parametrize("made", [False, True], ids=["views given", "views made by augment"])
def test_views_are_made_a_chunk_of_records_at_a_time(monkeypatch: pytest.MonkeyPatch, made: bool):
    """An audit never makes every record's query views at once: the scored records' rows come a
    chunk at a time (here 60, 60, 60 and 20 of 200), and the scores equal one chunk for all —
    views given per record or made from the images by the recipe's ``augment``."""
    from miaudit.audit import _population_attacks as pa

    store, x = _image_store(views=2)
    xv = x.astype(np.float32)
    features = (
        pa.RecordFeatures.of(store.record_id, xv[:, 0], image_shape=(1, 8, 8), augment=["hflip"])
        if made
        else pa.RecordFeatures.of(store.record_id, xv, image_shape=(1, 8, 8))
    )
    records = np.flatnonzero(~store.population)
    asked: list[int] = []
    rows = pa.RecordFeatures.rows

    def spy(self: pa.RecordFeatures, ids: np.ndarray) -> np.ndarray:
        out = rows(self, ids)
        asked.append(len(ids))
        assert out.shape == (len(ids), 2, 64)  # the image and its mirror
        return out

    monkeypatch.setattr(pa.RecordFeatures, "rows", spy)
    whole = pa.population_attack_scores(store, ["qmia"], [0], records, features, seed=2)
    assert asked == [int(store.population.sum()), records.size]  # population, one chunk
    asked.clear()
    monkeypatch.setattr(pa, "VIEW_CHUNK", 60)
    chunked = pa.population_attack_scores(store, ["qmia"], [0], records, features, seed=2)
    assert asked == [int(store.population.sum()), 60, 60, 60, 20]
    np.testing.assert_array_equal(chunked["qmia"], whole["qmia"])


def test_a_population_attack_without_a_fit_scores_every_record_at_once(
    monkeypatch: pytest.MonkeyPatch,
):
    """An attack registered without ``fit`` (it may read all its records together) is run
    once on every scored record, whatever the chunk size."""
    from miaudit.attacks import (
        AttackScores,
        AttackSpec,
        Family,
        Need,
        OutputSignals,
        SignalKind,
        register_attack,
        unregister_attack,
    )
    from miaudit.audit import _population_attacks as pa

    calls: list[int] = []

    def centred(x: OutputSignals) -> AttackScores:  # reads all its records: no per-record split
        calls.append(len(x.labels))
        phi = np.asarray(x.signals["scaled_logit"], dtype=np.float64)
        return AttackScores(phi - phi.mean())

    register_attack(
        AttackSpec(
            name="toy_population",
            family=Family.THRESHOLD,
            signal_kind=SignalKind.MODEL_OUTPUTS,
            run=centred,
            description="φ centred on the scored records (a toy)",
            citation="the audit test",
            attacker_knows="the toy's",
            needs=frozenset({Need.LABELS, Need.FEATURES, Need.POPULATION}),
            signals=("scaled_logit",),
        )
    )
    try:
        store, x = _store()
        features = pa.RecordFeatures.of(store.record_id, x)
        records = np.flatnonzero(~store.population)
        monkeypatch.setattr(pa, "VIEW_CHUNK", 50)
        out = pa.population_attack_scores(store, ["toy_population"], [0], records, features, 1)
    finally:
        unregister_attack("toy_population")
    assert calls == [records.size]
    assert abs(out["toy_population"][0].mean()) < 1e-9
