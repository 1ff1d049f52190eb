"""Balanced references (docs/method.md §3): where a target's membership sets its references'
IN/OUT counts (each record in exactly K/2 models), online LiRA fits on as many IN as OUT
references per record; independent designs and complementary pairs are untouched."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score

from miaudit.attacks import LiraAttack, score_target
from miaudit.audit import attack_store
from miaudit.audit._config import SignalsAuditConfig
from miaudit.audit._reference_audit import BALANCE_Z, balanced_use, count_dependence
from miaudit.data import SignalsStore
from miaudit.engine import complementary_plan, independent_plan
from tests.simulate import complementary_keep

ONLINE = ["lira_online", "lira_shrunk_online"]


def _store(keep: np.ndarray, pop: np.ndarray, rng: np.random.Generator, shift: float = 0.0):
    """Two-class logits, ``shift`` added to the true class where a model trained on the record
    (0: the models leak nothing, the scores' null)."""
    k, n = keep.shape
    label = rng.integers(0, 2, n)
    logits = rng.normal(size=(k, n, 2))
    logits[:, np.arange(n), label] += shift * keep
    return SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=label, keep=keep, population=pop
    )


def _k_of(k: int, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """docs/signals-elsewhere.md's design: each pool record in exactly k/2 of k models, 20 %
    population (the red team's simulation)."""
    pop = rng.random(n) < 0.2
    return (rng.random((k, n)).argsort(axis=0) < k // 2) & ~pop, pop


def _cfg(seed: int, attacks: list[str]) -> SignalsAuditConfig:
    return SignalsAuditConfig.model_validate(
        {"seed": seed, "audit": {"attacks": attacks, "resamples": 0}}
    )


def test_half_the_models_per_record_no_longer_pushes_online_lira_below_chance():
    """Each record in exactly 4 of 8 models, logits independent of keep, target 0 with the 7
    others as references: a member has 3 IN and 4 OUT references, a non-member 4 and 3, and the
    side fitted on fewer values is the noisier, so unbalanced online LiRA read AUC 0.461 ± 0.003
    (60 stores of 1,000 records; shrunk 0.456). Balanced: 0.499 ± 0.003 (shrunk 0.499; per-store
    SD 0.020–0.021). Here the mean over 16 stores must lie within 3 SE (3 × 0.021 / √16 = 0.016)
    of 0.5: it reads 0.501 (shrunk 0.505); the old code read 0.459, 8 SE below."""
    aucs: dict[str, list[float]] = {n: [] for n in ONLINE}
    for seed in range(16):
        rng = np.random.default_rng(seed)
        keep, pop = _k_of(8, 1000, rng)
        run = attack_store(_store(keep, pop, rng), _cfg(seed, ONLINE), target=0)
        for a in run.result.attacks:
            aucs[a.name].append(a.auc.point)
    for name, values in aucs.items():
        assert abs(np.mean(values) - 0.5) < 0.016, (name, np.mean(values))
    pool = int((~pop).sum())
    (note,) = [n for n in run.result.notes if n.startswith("Balanced references")]
    assert "lira_online, lira_shrunk_online" in note and "1 of 1 audited model" in note
    assert "a function of its membership" in note
    assert f"{pool:,} of {7 * pool:,} (reference, record) values were dropped" in note


def test_balancing_restores_the_leak_a_real_signal_shows():
    """With a real signal (logit shift 0.5 where a model trained on the record), unbalanced
    online LiRA read 0.496 in the 4-of-8 design against 0.532 with independent halves (60
    stores, target 0); balanced, 0.529. Here one store of 4,000 records, leave-one-out over
    all 8 models: balanced AUC 0.530 with SD 0.003 over seeds 11–18, so > 0.515 leaves 4.5 SD;
    the old code read 0.493 on this store."""
    rng = np.random.default_rng(11)
    keep, pop = _k_of(8, 4000, rng)
    run = attack_store(_store(keep, pop, rng, shift=0.5), _cfg(0, ["lira_online"]))
    assert run.result.attacks[0].auc.point > 0.515
    assert any("8 of 8 audited model" in n for n in run.result.notes)


@pytest.mark.parametrize("design", ["independent", "complementary"])
def test_independent_halves_and_complementary_pairs_are_untouched(design):
    """Counts that do not depend on the target's membership: no note, and online LiRA's scores
    are bit for bit those of the unbalanced attack (the golden outputs did not move)."""
    rng = np.random.default_rng(3)
    n = 1000
    pop = rng.random(n) < 0.2
    keep = (rng.random((8, n)) < 0.5) if design == "independent" else complementary_keep(rng, 8, n)
    keep &= ~pop
    keep[7, keep.all(axis=0)] = False  # a record in every model has no OUT reference at all
    store = _store(keep, pop, rng, shift=0.5)
    run = attack_store(store, _cfg(0, ONLINE), target=0)
    assert not any(n.startswith("Balanced references") for n in run.result.notes)
    for name, attack in (
        ("lira_online", LiraAttack(mode="online")),
        ("lira_shrunk_online", LiraAttack(mode="online", shrink=True)),
    ):
        plain = score_target(store, attack, target=0).scores[0]
        assert np.array_equal(run.scores[name], plain[~np.isnan(plain)])


def test_the_engines_plans_are_never_balanced():
    """Complementary pairs without the partner: d = 0 on every record, z exactly 0. Independent
    halves: d is independent of the target's membership, z ~ N(0, 1); 8 models × 5 seeds stay
    below the threshold 4 (each crossing has probability 6·10⁻⁵)."""
    for seed in range(5):
        comp = complementary_plan(2000, 8, seed=seed)
        ind = independent_plan(2000, 8, seed=seed)
        for t in range(8):
            refs = [m for m in range(8) if m not in (t, t ^ 1)]
            assert count_dependence(comp.keep[refs][:, comp.pool], comp.keep[t, comp.pool]) == 0.0
            others = [m for m in range(8) if m != t]
            z = count_dependence(ind.keep[others][:, ind.pool], ind.keep[t, ind.pool])
            assert abs(z) < BALANCE_Z


def test_count_dependence_of_fixed_and_partly_fixed_designs():
    rng = np.random.default_rng(5)
    keep = rng.random((8, 4000)).argsort(axis=0) < 4
    # all 7 others: d = −1 for members, +1 for non-members (deterministic)
    assert count_dependence(keep[1:], keep[0]) == -np.inf
    assert count_dependence(~keep[1:], keep[0]) == np.inf
    # 3 of the 7: hypergeometric counts, mean d 6/7 lower for members, z ≈ 25 at 4,000 records
    z = count_dependence(keep[1:4], keep[0])
    assert -40 < z < -BALANCE_Z
    # a group is empty: nothing to compare
    assert count_dependence(keep[1:], np.ones(4000, dtype=bool)) == 0.0


def test_balanced_use_drops_the_excess_at_random_from_the_larger_side():
    """Every record ends with min(n_in, n_out) on each side, only larger-side values are dropped,
    and each larger-side reference is dropped equally often: with 4 IN of 7 on every record,
    each IN reference is dropped with probability 1/4 (binomial SD over 20,000 records 0.003;
    tolerance 0.015). The draw is the generator's alone: the same seed, the same mask."""
    rng = np.random.default_rng(9)
    ref_keep = rng.random((7, 5000)) < 0.5
    use = balanced_use(ref_keep, np.random.default_rng(1))
    n_in = ref_keep.sum(axis=0)
    low = np.minimum(n_in, 7 - n_in)
    assert np.array_equal((ref_keep & use).sum(axis=0), low)
    assert np.array_equal((~ref_keep & use).sum(axis=0), low)
    larger = np.where(n_in > 7 - n_in, ref_keep, ~ref_keep)
    assert not (~use & ~larger).any()
    assert np.array_equal(use, balanced_use(ref_keep, np.random.default_rng(1)))

    column = np.array([1, 1, 0, 1, 0, 0, 1], dtype=bool)
    fixed = np.repeat(column[:, None], 20_000, axis=1)
    dropped = (~balanced_use(fixed, np.random.default_rng(2))).mean(axis=1)
    np.testing.assert_allclose(dropped[column], 0.25, atol=0.015)
    assert (dropped[~column] == 0).all()


def test_balanced_scores_ignore_the_dropped_values():
    """The audit's online LiRA on a balanced target equals lira_online with the balanced mask
    (seeded by the run's seed and the target), computed outside the audit."""
    from miaudit.attacks import lira_online
    from miaudit.signals import compute_signals

    rng = np.random.default_rng(4)
    keep, pop = _k_of(8, 600, rng)
    store = _store(keep, pop, rng, shift=0.3)
    run = attack_store(store, _cfg(6, ["lira_online"]), target=2)
    pool = np.flatnonzero(~pop)
    refs = np.array([m for m in range(8) if m != 2])
    phi = compute_signals(
        store.logits, np.broadcast_to(store.label, store.logits.shape[:-1]), which=("scaled_logit",)
    )["scaled_logit"]
    ref_keep = keep[np.ix_(refs, pool)]
    use = balanced_use(ref_keep, np.random.default_rng([0x6C697261, 6, 2]))
    want = lira_online(phi[2, pool], phi[np.ix_(refs, pool)], ref_keep, use=use)
    np.testing.assert_array_equal(run.scores["lira_online"], want)
    assert roc_auc_score(keep[2, pool], want) == pytest.approx(run.result.attacks[0].auc.point)


def test_offline_attacks_no_longer_understate_the_low_fpr_tail():
    """Offline LiRA and RMIA read OUT references only, but in the 4-of-8 design a member has 4
    OUT references and a non-member 3: the noisier estimate of non-members spreads their scores
    and buries members at low FPR. On null stores (leave-one-out over 8 models, 2,000 records)
    their TPR at 1 % FPR read 0.0067 ± 0.0003 and 0.0057 ± 0.0005 (6 stores; it should be 0.01);
    balanced, 0.0093 ± 0.0004 each. Here 3 stores of 2,000 records, fixed seeds: above 0.008,
    which the old code's means lie well below."""
    attacks = ["lira_offline", "rmia_offline"]
    tprs: dict[str, list[float]] = {a: [] for a in attacks}
    for seed in range(3):
        rng = np.random.default_rng(100 + seed)
        keep, pop = _k_of(8, 2000, rng)
        run = attack_store(_store(keep, pop, rng), _cfg(seed, attacks))
        for a in run.result.attacks:
            tprs[a.name].append(a.tpr_at_fpr["tpr@1%fpr"].point)
        assert any(
            n.startswith("Balanced references (lira_offline, rmia_offline)")
            for n in run.result.notes
        )
    for name, values in tprs.items():
        assert np.mean(values) > 0.008, (name, values)
