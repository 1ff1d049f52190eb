"""The contract every registered attack keeps, in scikit-learn's "common tests" style.

Parametrised over :func:`miaudit.attacks.registered_attacks`: an attack registered later (a
plugin, the toy of tests/attacks/test_registry.py) is held to the same checks through
:data:`CONTRACT_CHECKS`. Each check builds small inputs of the attack's signal kind with a
planted membership signal (members sit further from the decision boundary) and asserts:

- a fixed seed reproduces the scores bit for bit;
- permuting the records permutes the scores (to 1e-12 for order-invariant attacks; for attacks
  whose randomness is drawn by position, the AUC moves by less than 0.06);
- higher score = more likely member: the planted signal gives AUC ≥ 0.6;
- finite scores of shape (records,) on finite input;
- bad input (NaN, wrong shapes) is an InputError naming the input.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest

from miaudit.attacks import (
    LocalOracle,
    Need,
    OutputSignals,
    PopulationSignals,
    QueryInputs,
    ReferenceSettings,
    SequenceInputs,
    SignalKind,
    attack_spec,
    fit_outputs,
    leave_one_model_out,
    reference_attack,
    registered_attacks,
    score_outputs,
    score_queries,
    score_sequences,
)
from miaudit.data import SignalsStore
from miaudit.errors import InputError
from miaudit.metrics import roc_auc_score
from miaudit.signals import SIGNALS, compute_signals
from tests.simulate import complementary_keep, true_class_logits
from tests.simulate_text import permuted, sequence_store

PLANTED_AUC = 0.6
AUC_SHIFT = 0.06  # order-dependent attacks: permuted AUC within this of the original


@dataclass(frozen=True, eq=False)
class Scored:
    """An attack's scores on one input, their membership, and the same after a permutation."""

    score: np.ndarray
    member: np.ndarray
    permuted_score: np.ndarray
    perm: np.ndarray  # permuted_score[i] is the score of record perm[i]


# --- inputs of each signal kind ------------------------------------------------------------------


def _outputs(n: int = 400, seed: int = 0) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    member = (rng.permutation(n) < n // 2).astype(np.int8)
    z = true_class_logits(rng, y, 3, 0.5 + 2.0 * member)
    return compute_signals(z, y, which=SIGNALS), y, member


def _features(y: np.ndarray, seed: int = 5) -> np.ndarray:
    """Features of the records (attacks that need them, e.g. QMIA): noise and the label."""
    rng = np.random.default_rng(seed)
    return np.column_stack([rng.normal(size=(y.size, 2)), y + rng.normal(0, 0.1, y.size)])


def _population(n: int = 300, seed: int = 7) -> PopulationSignals:
    """Known non-members of the same model (attacks that need a population, e.g. QMIA)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    z = true_class_logits(rng, y, 3, np.full(n, 0.5))
    return PopulationSignals(compute_signals(z, y, which=SIGNALS), y, _features(y, seed + 1))


def _run_outputs(name: str, perm: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    signals, y, member = _outputs()
    x = _features(y)
    if perm is not None:
        signals, y, member = {k: v[perm] for k, v in signals.items()}, y[perm], member[perm]
        x = x[perm]
    inputs = OutputSignals(
        signals, y, member=member, seed=seed, features=x, population=_population()
    )
    return score_outputs(name, inputs).score


def _store(seed: int = 0) -> SignalsStore:
    rng = np.random.default_rng(seed)
    n, pairs = 240, 3
    keep = complementary_keep(rng, 2 * pairs, n)
    pop = np.zeros(n, dtype=bool)
    pop[rng.permutation(n)[:60]] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, n)
    logits = rng.normal(size=(2 * pairs, n, 3)) + 2.0 * keep[..., None] * np.eye(3)[y][None]
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )


def _permuted_store(store: SignalsStore, perm: np.ndarray) -> SignalsStore:
    return SignalsStore.from_arrays(
        logits=store.logits[:, perm],
        label=store.label[perm],
        keep=store.keep[:, perm],
        population=store.population[perm],
    )


def _run_reference(name: str, store: SignalsStore, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Scores of targets 0 and 1 (flattened) and the store positions of their records."""
    paired = leave_one_model_out(
        store, reference_attack(name, ReferenceSettings(seed=seed)), targets=[0, 1]
    )
    return paired.scores, paired.records


def _linear(x: np.ndarray) -> np.ndarray:
    """Class 1 iff the first feature is > 0."""
    pos = (x.reshape(x.shape[0], -1)[:, 0] > 0).astype(np.float64)
    return np.column_stack([1 - pos, pos])


def _queries(n: int = 120, seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Records whose distance to the boundary x₀ = 0 is larger for members."""
    rng = np.random.default_rng(seed)
    member = (rng.permutation(n) < n // 2).astype(np.int8)
    side = rng.choice([-1.0, 1.0], n)
    x = np.column_stack([side * (0.2 + 1.5 * member + 0.3 * rng.random(n)), rng.normal(size=n)])
    return x, (side > 0).astype(np.int64), member


_STEP = np.array([0.6, 0.0])
_SHIFTS = [lambda b: b, lambda b: b + _STEP, lambda b: b - _STEP]


def _query_inputs(x: np.ndarray, y: np.ndarray, seed: int) -> QueryInputs:
    oracle = LocalOracle(_linear, "label-only")
    return QueryInputs(oracle, x, y, rng=seed, augmentations=_SHIFTS, sigma=0.8)


def _run_queries(name: str, perm: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    x, y, _ = _queries()
    if perm is not None:
        x, y = x[perm], y[perm]
    return score_queries(name, _query_inputs(x, y, seed)).scores


def _run_sequences(name: str, perm: np.ndarray | None = None, seed: int = 0) -> np.ndarray:
    store = sequence_store()
    if perm is not None:
        store = permuted(store, perm)
    return score_sequences(name, SequenceInputs(store, seed=seed)).score


# --- scoring once, by kind -----------------------------------------------------------------------


def scored(name: str) -> Scored:
    """The attack's scores on the planted input and on a permutation of its records."""
    kind = attack_spec(name).signal_kind
    rng = np.random.default_rng(1)
    if kind is SignalKind.MODEL_OUTPUTS:
        _, _, member = _outputs()
        perm = rng.permutation(member.size)
        return Scored(_run_outputs(name), member, _run_outputs(name, perm), perm)
    if kind is SignalKind.ORACLE_QUERIES:
        _, _, member = _queries()
        perm = rng.permutation(member.size)
        return Scored(_run_queries(name), member, _run_queries(name, perm), perm)
    if kind is SignalKind.SEQUENCE_SIGNALS:
        text = sequence_store()
        perm = rng.permutation(text.n_records)
        pool = ~text.population
        # Scores are per pool record in store order: the j-th pool record of the permuted store
        # is the original pool's record at position back[j].
        back = np.searchsorted(np.flatnonzero(pool), perm[pool[perm]])
        return Scored(_run_sequences(name), text.member[pool], _run_sequences(name, perm), back)
    store = _store()
    perm = rng.permutation(store.n_records)
    score, records = _run_reference(name, store)
    p_score, p_records = _run_reference(name, _permuted_store(store, perm))
    # Column r of the permuted store is column perm[r] of the original: bring the permuted
    # scores back to the original record order, so that the identity is the permutation.
    inverse = np.argsort(perm)
    position = {int(c): i for i, c in enumerate(p_records)}
    back = np.array([position[int(inverse[c])] for c in records])
    member = store.keep[[0, 1]][:, records].astype(np.int8)
    identity = np.arange(score.size)
    return Scored(score.reshape(-1), member.reshape(-1), p_score[:, back].reshape(-1), identity)


def _rerun(name: str, seed: int) -> np.ndarray:
    kind = attack_spec(name).signal_kind
    if kind is SignalKind.MODEL_OUTPUTS:
        return _run_outputs(name, seed=seed)
    if kind is SignalKind.ORACLE_QUERIES:
        return _run_queries(name, seed=seed)
    if kind is SignalKind.SEQUENCE_SIGNALS:
        return _run_sequences(name, seed=seed)
    return _run_reference(name, _store(), seed=seed)[0].reshape(-1)


# --- the checks ------------------------------------------------------------------------------------


def check_deterministic(name: str) -> None:
    np.testing.assert_array_equal(_rerun(name, seed=3), _rerun(name, seed=3))


def check_shape_and_finite(name: str) -> None:
    s = scored(name)
    assert s.score.shape == s.member.shape
    assert s.score.dtype == np.float64
    assert np.isfinite(s.score).all()


def check_higher_is_member(name: str) -> None:
    s = scored(name)
    auc = roc_auc_score(s.member, s.score)
    assert auc >= PLANTED_AUC, f"{name}: AUC {auc:.3f} on a planted signal"


def check_order(name: str) -> None:
    s = scored(name)
    if attack_spec(name).order_invariant:
        # Up to summation order: pooled statistics (LiRA's global σ) add records in another order.
        np.testing.assert_allclose(s.permuted_score, s.score[s.perm], rtol=1e-12, atol=1e-12)
    else:
        shift = roc_auc_score(s.member[s.perm], s.permuted_score) - roc_auc_score(s.member, s.score)
        assert abs(shift) < AUC_SHIFT, f"{name}: AUC moved by {shift:.3f} under a permutation"


def check_refuses_bad_input(name: str) -> None:
    spec = attack_spec(name)
    if spec.signal_kind is SignalKind.MODEL_OUTPUTS:
        signals, y, member = _outputs(n=60)
        bad = dict(signals)
        sig = spec.signals[0]
        bad[sig] = bad[sig].copy()
        bad[sig][3] = np.nan
        with pytest.raises(InputError, match=rf"signals\['{sig}'\]"):
            score_outputs(name, OutputSignals(bad, y, member=member))
        short = {k: v[:-1] for k, v in signals.items()}
        with pytest.raises(InputError, match=rf"signals\['{sig}'\].*shape"):
            score_outputs(name, OutputSignals(short, y, member=member))
        with pytest.raises(InputError, match="labels"):
            score_outputs(name, OutputSignals(signals, y[:, None], member=member))
        if Need.FEATURES in spec.needs:
            _refuses_bad_features(name, signals, y, member)
    elif spec.signal_kind is SignalKind.ORACLE_QUERIES:
        x, y, _ = _queries(n=20)
        x[2, 0] = np.nan
        with pytest.raises(InputError, match="records"):
            score_queries(name, _query_inputs(x, y, 0))
        with pytest.raises(InputError, match="labels"):
            score_queries(name, _query_inputs(np.nan_to_num(x), y[:-1], 0))
    elif spec.signal_kind is SignalKind.SEQUENCE_SIGNALS:
        text = sequence_store()
        target = text.models[text.target]
        bad = target.log_prob.copy()
        bad[3] = np.nan
        with pytest.raises(InputError, match="model 0 log_prob"):
            dataclasses.replace(
                text, models=(dataclasses.replace(target, log_prob=bad), *text.models[1:])
            )
        with pytest.raises(InputError, match="inputs"):
            score_sequences(name, text)  # type: ignore[arg-type]
    else:
        store = _store()
        with pytest.raises(InputError, match="logits"):
            SignalsStore.from_arrays(
                logits=np.where(store.logits == store.logits.max(), np.nan, store.logits),
                label=store.label,
                keep=store.keep,
                population=store.population,
            )
        attack = reference_attack(name, ReferenceSettings())
        with pytest.raises(InputError, match="references"):
            leave_one_model_out(store, attack, targets=[0], reference_sets=[[0, 2, 3]])


def _refuses_bad_features(
    name: str, signals: dict[str, np.ndarray], y: np.ndarray, member: np.ndarray
) -> None:
    x, pop = _features(y), _population()
    nan = x.copy()
    nan[1, 0] = np.nan
    with pytest.raises(InputError, match=r"^features"):
        score_outputs(name, OutputSignals(signals, y, member=member, features=nan, population=pop))
    with pytest.raises(InputError, match=r"^features"):
        score_outputs(name, OutputSignals(signals, y, member=member, population=pop))
    with pytest.raises(InputError, match=r"population.features.*columns"):
        score_outputs(
            name, OutputSignals(signals, y, member=member, features=x[:, :2], population=pop)
        )
    if Need.POPULATION in attack_spec(name).needs:
        with pytest.raises(InputError, match=r"^population"):
            score_outputs(name, OutputSignals(signals, y, member=member, features=x))


def check_fit_is_run_split(name: str) -> None:
    """An attack with a ``fit`` (fit once on the population, score any records): fitted then
    applied to chunks of 150, 249 and 1 records, it gives exactly ``run``'s scores; a chunk with
    inf, negative labels or views the population lacks is refused like ``score_outputs``
    refuses them. Attacks without ``fit`` pass trivially."""
    if attack_spec(name).fit is None:
        return
    signals, y, _ = _outputs()
    x, pop = _features(y), _population()
    whole = score_outputs(name, OutputSignals(signals, y, seed=3, features=x, population=pop)).score
    scorer = fit_outputs(name, pop, seed=3)
    parts = [slice(0, 150), slice(150, 399), slice(399, 400)]
    chunks = [
        scorer(OutputSignals({k: v[r] for k, v in signals.items()}, y[r], features=x[r])).score
        for r in parts
    ]
    np.testing.assert_array_equal(np.concatenate(chunks), whole)
    bad = {k: v[:5].copy() for k, v in signals.items()}
    for v in bad.values():
        v[0] = np.inf
    flipped = y[:5].copy()
    flipped[0] = -1
    one = {k: v[:5] for k, v in signals.items()}
    two_views = {k: np.stack([v[:5], v[:5]], axis=1) for k, v in signals.items()}
    for chunk in (
        OutputSignals(bad, y[:5], features=x[:5]),
        OutputSignals(one, flipped, features=x[:5]),
        OutputSignals(two_views, y[:5], features=np.stack([x[:5], x[:5]], axis=1)),
        OutputSignals({k: v[:0] for k, v in signals.items()}, y[:0], features=x[:0]),
        OutputSignals(one, y[:5], features=x[:5], population=_population(seed=9)),
        OutputSignals(one, y[:5], features=x[:5, :1]),
    ):
        with pytest.raises(InputError):
            scorer(chunk)
    same = OutputSignals(one, y[:5], features=x[:5], population=pop)  # the fit's own: accepted
    np.testing.assert_array_equal(scorer(same).score, whole[:5])


CONTRACT_CHECKS: tuple[Callable[[str], None], ...] = (
    check_deterministic,
    check_shape_and_finite,
    check_higher_is_member,
    check_order,
    check_refuses_bad_input,
    check_fit_is_run_split,
)


@pytest.mark.parametrize("check", CONTRACT_CHECKS, ids=lambda c: c.__name__)
@pytest.mark.parametrize("name", [s.name for s in registered_attacks()])
def test_contract(name: str, check: Callable[[str], None]) -> None:
    check(name)


def test_every_signal_kind_is_covered() -> None:
    """A new signal kind needs inputs here before attacks of that kind can be checked."""
    assert {s.signal_kind for s in registered_attacks()} <= set(SignalKind)
    assert set(SignalKind) == {
        SignalKind.MODEL_OUTPUTS,
        SignalKind.REFERENCE_OUTPUTS,
        SignalKind.ORACLE_QUERIES,
        SignalKind.SEQUENCE_SIGNALS,
    }
