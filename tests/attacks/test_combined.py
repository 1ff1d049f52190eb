"""The combined attack (docs/method.md §14): fitted on the references' membership only."""

from __future__ import annotations

import numpy as np

from miaudit.attacks import CombinedAttack, LiraAttack, leave_one_model_out, score_target
from miaudit.attacks._combined import rank_gaussian
from miaudit.data import SignalsStore
from miaudit.metrics import roc_auc_score
from tests.simulate import complementary_keep


def _store(pairs: int = 3, n: int = 400, seed: int = 0) -> SignalsStore:
    rng = np.random.default_rng(seed)
    keep = complementary_keep(rng, 2 * pairs, n)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:80]] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, n)
    hardness = rng.normal(0, 1.0, n)  # per-record offset: what the references calibrate away
    boost = (1.5 * keep + hardness[None])[..., None] * np.eye(3)[y][None]
    logits = rng.normal(size=(2 * pairs, n, 3)) + boost
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )


def test_rank_gaussian_keeps_order_and_nan():
    x = np.array([[3.0, np.nan, 1.0, 2.0]])
    z = rank_gaussian(x)
    assert np.isnan(z[0, 1]) and z[0, 2] < z[0, 3] < z[0, 0] and abs(z[0, [0, 2, 3]].sum()) < 1e-12


def test_never_reads_the_targets_membership():
    """Replacing the target's keep row (on the pool) leaves its scores unchanged."""
    store = _store()
    refs = [2, 3, 4, 5]
    a = score_target(store, CombinedAttack(), target=0, references=refs).scores
    keep = store.keep.copy()
    pool = ~store.population
    keep[0, pool] = np.random.default_rng(9).permutation(keep[0, pool])
    keep[1, pool] = ~keep[0, pool]  # its partner mirrors it still
    other = SignalsStore.from_arrays(
        logits=store.logits, label=store.label, keep=keep, population=store.population
    )
    b = score_target(other, CombinedAttack(), target=0, references=refs).scores
    np.testing.assert_array_equal(a, b)


def test_at_least_as_strong_as_its_best_component_here():
    """On a store where every component works, the stacker loses no more than noise to the
    best of them (AUC within 0.02) on two targets' pooled pairs."""
    store = _store(pairs=3, n=600, seed=1)
    comb = leave_one_model_out(store, CombinedAttack(), targets=[0, 1])
    online = leave_one_model_out(store, LiraAttack(mode="online"), targets=[0, 1])
    y = comb.member.reshape(-1)
    a_comb = roc_auc_score(y, comb.scores.reshape(-1))
    a_online = roc_auc_score(y, online.scores.reshape(-1))
    assert a_comb > 0.6 and a_comb > a_online - 0.02, (a_comb, a_online)


def test_one_pair_falls_back_to_equal_weights():
    store = _store(pairs=2)
    scores = score_target(store, CombinedAttack(), target=0, references=[2, 3]).scores
    assert np.isfinite(scores).all()


def test_the_stacker_fits_on_a_capped_sample_of_the_pool(monkeypatch):
    """Above STACKER_RECORDS pool records the stacker's rows come from that many pool records
    (the same for every target, with every population record); at or below it, from all of
    them. Every record is still scored, and the capped attack keeps its power here."""
    from miaudit.attacks import _combined

    store = _store(pairs=3, n=1200)
    pool = int((~store.population).sum())
    assert _combined.stacker_records(store) is store  # 1,120 pool records ≤ 20,000
    sample = _combined.stacker_records(store, limit=300)
    assert int((~sample.population).sum()) == 300
    assert int(sample.population.sum()) == int(store.population.sum())
    assert set(sample.record_id.tolist()) <= set(store.record_id.tolist())
    np.testing.assert_array_equal(sample.record_id, np.sort(sample.record_id))
    monkeypatch.setattr("miaudit.data._tables.CHUNK_RECORDS", 97)  # gathered chunk by chunk
    again = _combined.stacker_records(store, limit=300)
    np.testing.assert_array_equal(again.record_id, sample.record_id)
    rows = np.searchsorted(store.record_id, sample.record_id)
    np.testing.assert_array_equal(again.logits, store.logits[:, rows])
    np.testing.assert_array_equal(again.keep, store.keep[:, rows])
    np.testing.assert_array_equal(again.label, store.label[rows])
    np.testing.assert_array_equal(again.population, store.population[rows])
    few = _combined.stacker_records(store, limit=50)  # the population (80) is sampled too
    assert int(few.population.sum()) == 50 and int((~few.population).sum()) == 50
    views = SignalsStore.from_arrays(  # a query axis rides along
        logits=np.repeat(store.logits[:, :, None], 2, axis=2),
        label=store.label,
        keep=store.keep,
        population=store.population,
    )
    want = np.repeat(store.logits[:, rows][:, :, None], 2, axis=2)
    np.testing.assert_array_equal(_combined.stacker_records(views, limit=300).logits, want)

    counts: list[int] = []
    fitted = _combined.CombinedAttack._training_rows

    def spy(self, s, references):
        out = fitted(self, s, references)
        counts.append(0 if out is None else out[0].shape[0])
        return out

    monkeypatch.setattr(_combined.CombinedAttack, "_training_rows", spy)
    refs = [2, 3, 4, 5]
    full = score_target(store, CombinedAttack(), target=0, references=refs)
    monkeypatch.setattr(_combined, "STACKER_RECORDS", 300)
    capped = score_target(store, CombinedAttack(), target=0, references=refs)
    assert counts == [4 * pool, 4 * 300]  # four references play the target in turn
    assert capped.scores.shape == full.scores.shape == (1, pool)
    member = store.keep[0, ~store.population]
    auc_full, auc_capped = (roc_auc_score(member, r.scores[0]) for r in (full, capped))
    assert auc_capped > auc_full - 0.02, (auc_full, auc_capped)
