"""The text attacks' numbers (attacks/_text.py, docs/method.md §13) against brute-force
references, the sequence-signals store's checks and file round trip, and the null: with no
membership signal every text attack's AUC interval covers chance at about its nominal rate."""

from __future__ import annotations

import dataclasses
import stat
import zlib

import numpy as np
import pytest

from miaudit.attacks import (
    SequenceInputs,
    SignalKind,
    lira_offline,
    lira_online,
    lowest_fraction_mean,
    mean_log_prob,
    registered_attacks,
    rmia_online,
    score_sequences,
    standardised_log_prob,
)
from miaudit.errors import InputError
from miaudit.metrics import evaluate
from miaudit.signals import (
    ModelTokens,
    load_sequence_signals,
    write_sequence_signals,
    zlib_bytes,
)
from tests.simulate_text import sequence_store

TEXT_ATTACKS = [s.name for s in registered_attacks(signal_kind=SignalKind.SEQUENCE_SIGNALS)]


def _score(name: str, store=None) -> np.ndarray:
    return score_sequences(name, SequenceInputs(store or sequence_store())).score


def _by_record(store, k: int, values: np.ndarray | None = None) -> list[np.ndarray]:
    m = store.models[k]
    return m.per_record(m.log_prob if values is None else values)


def test_loss_zlib_and_min_k_are_their_formulas() -> None:
    store = sequence_store()
    pool = ~store.population
    per = _by_record(store, store.target)
    mean = np.array([r.mean() for r in per])
    np.testing.assert_allclose(_score("text_loss", store), mean[pool], rtol=1e-12)
    np.testing.assert_allclose(_score("zlib", store), (mean / store.zlib_bytes)[pool], rtol=1e-12)
    lowest = np.array([np.sort(r)[: int(np.ceil(0.2 * r.size))].mean() for r in per])
    np.testing.assert_allclose(_score("min_k", store), lowest[pool], rtol=1e-12)
    t = store.models[store.target]
    z = [
        (lp - mu) / np.sqrt(v)
        for lp, mu, v in zip(per, t.per_record(t.mean), t.per_record(t.var), strict=True)
    ]
    plus = np.array([np.sort(r)[: int(np.ceil(0.2 * r.size))].mean() for r in z])
    np.testing.assert_allclose(_score("min_k_plus", store), plus[pool], rtol=1e-12)
    base = np.array([r.mean() for r in _by_record(store, store.base)])
    np.testing.assert_allclose(_score("reference_ratio", store), (mean - base)[pool], rtol=1e-12)


def test_sequence_lira_and_rmia_are_the_existing_scorers_on_the_mean_log_probability() -> None:
    store = sequence_store()
    pool, refs = ~store.population, store.references
    target = mean_log_prob(store.models[store.target])
    ref = np.stack([mean_log_prob(store.models[k]) for k in refs])
    keep = store.keep[refs]
    np.testing.assert_array_equal(
        _score("text_lira_online", store), lira_online(target[pool], ref[:, pool], keep[:, pool])
    )
    np.testing.assert_array_equal(
        _score("text_lira_offline", store), lira_offline(target[pool], ref[:, pool], keep[:, pool])
    )
    rmia = rmia_online(np.exp(target), np.exp(ref), store.population)
    np.testing.assert_array_equal(_score("text_rmia_online", store), rmia[pool])


def test_min_k_helpers_on_small_cases() -> None:
    tokens = ModelTokens(
        np.array([0, 2, 5]),
        np.array([-1.0, -3.0, -0.5, -2.0, -4.0]),
        np.zeros(5),
        np.array([1.0, 4.0, 0.0, 1.0, 1.0]),
    )
    np.testing.assert_allclose(mean_log_prob(tokens), [-2.0, -6.5 / 3])
    np.testing.assert_allclose(standardised_log_prob(tokens), [-1.0, -1.5, 0.0, -2.0, -4.0])
    np.testing.assert_allclose(
        lowest_fraction_mean(tokens.log_prob, tokens.offsets, k=0.5), [-3.0, -3.0]
    )
    with pytest.raises(InputError, match="k: must be in"):
        lowest_fraction_mean(tokens.log_prob, tokens.offsets, k=0.0)


def test_attacks_missing_their_inputs_are_refused_in_one_line() -> None:
    store = sequence_store()
    alone = dataclasses.replace(
        store,
        models=store.models[:1],
        roles=("target",),
        keep=store.keep[:1],
        population=np.zeros(store.n_records, bool),
    )
    with pytest.raises(InputError, match="reference_ratio needs the base model"):
        _score("reference_ratio", alone)
    with pytest.raises(InputError, match=r"references: .* need ≥ 2 reference fine-tunes"):
        _score("text_lira_offline", alone)


def test_the_store_refuses_bad_arrays_naming_them() -> None:
    store = sequence_store()
    t = store.models[0]
    with pytest.raises(InputError, match="model 0 log_prob: has values above 0"):
        dataclasses.replace(
            store, models=(dataclasses.replace(t, log_prob=-t.log_prob), *store.models[1:])
        )
    with pytest.raises(InputError, match="roles: need one 'target'"):
        dataclasses.replace(store, roles=("base", "base", *store.roles[2:]))
    with pytest.raises(InputError, match="population: holds records a model trained on"):
        dataclasses.replace(store, population=~store.population)
    with pytest.raises(InputError, match="record_id: has duplicates"):
        dataclasses.replace(store, record_id=np.zeros(store.n_records, dtype=np.int64))


def test_the_store_round_trips_through_a_restricted_file(tmp_path) -> None:
    store = sequence_store()
    path = write_sequence_signals(store, tmp_path / "sequence.npz")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    back = load_sequence_signals(path)
    assert back.roles == store.roles and back.n_records == store.n_records
    for name in TEXT_ATTACKS:
        np.testing.assert_array_equal(_score(name, back), _score(name, store))
    with pytest.raises(InputError, match=r"sequence signals are written as \.npz"):
        write_sequence_signals(store, tmp_path / "x.parquet")
    np.savez(tmp_path / "other.npz", a=np.zeros(2))
    with pytest.raises(InputError, match="has no 'record_id' array"):
        load_sequence_signals(tmp_path / "other.npz")


def test_zlib_bytes_is_zlibs_length() -> None:
    texts = ["Patient: Jane Roe, DOB 1970-01-01", "é" * 40]
    assert zlib_bytes(texts).tolist() == [len(zlib.compress(t.encode(), 9)) for t in texts]


def test_under_the_null_every_text_attack_covers_chance() -> None:
    """No membership signal (boost 0), 40 seeds, 95 % intervals: each attack's AUC interval
    misses 0.5 at most 6 times (binomial(40, 0.05) exceeds 6 with probability 0.014)."""
    misses = dict.fromkeys(TEXT_ATTACKS, 0)
    for seed in range(40):
        store = sequence_store(seed, n=160, population=40, boost=0.0)
        member = store.member[~store.population]
        scores = {name: _score(name, store) for name in TEXT_ATTACKS}
        ev = evaluate(member, scores, n_resamples=100, rng=seed)
        for name in TEXT_ATTACKS:
            auc = ev.estimate(name, "auc")
            misses[name] += not auc.lower <= 0.5 <= auc.upper
    assert max(misses.values()) <= 6, misses


def test_offline_rmia_calibrates_a_on_the_references() -> None:
    """Sequence probabilities are a few per cent: the tabular default a = 0.33 lets the constant
    (1 − a)/2 swamp p_OUT, and offline RMIA ranks almost like the loss. Calibrated on the
    references (one plays the target) it does not: on simulated stores AUC 0.93–0.95 against
    0.80–0.83 with the default (4 seeds while writing it); asserted: ≥ 0.05 better on two."""
    from sklearn.metrics import roc_auc_score

    from miaudit.attacks import RMIA_DEFAULT_A, rmia_offline

    for seed in (0, 1):
        store = sequence_store(seed, n=600, population=100)
        pool, refs, pop = ~store.population, store.references, store.population
        target = np.exp(mean_log_prob(store.models[store.target]))
        ref = np.exp(np.stack([mean_log_prob(store.models[k]) for k in refs]))
        default = rmia_offline(target, ref, store.keep[refs], pop, a=RMIA_DEFAULT_A)[pool]
        member = store.member[pool]
        calibrated = _score("text_rmia_offline", store)
        assert roc_auc_score(member, calibrated) > roc_auc_score(member, default) + 0.05


def test_offline_rmia_with_one_reference_pair_keeps_the_default_a() -> None:
    """Two references that are complements on the pool leave none to calibrate on (population
    texts, in no model, must not hide the complement): the default a, no error."""
    from miaudit.attacks import RMIA_DEFAULT_A, rmia_offline

    store = sequence_store(0, n=200, pairs=1, population=40)
    pool, refs, pop = ~store.population, store.references, store.population
    target = np.exp(mean_log_prob(store.models[store.target]))
    ref = np.exp(np.stack([mean_log_prob(store.models[k]) for k in refs]))
    expected = rmia_offline(target, ref, store.keep[refs], pop, a=RMIA_DEFAULT_A)[pool]
    np.testing.assert_array_equal(_score("text_rmia_offline", store), expected)
