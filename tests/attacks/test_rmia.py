"""RMIA (Zarifzadeh, Liu, Shokri, ICML 2024): sorted scores against the dense comparison, the
single-target ROC identity, ties, order invariance, the offline approximation, calibration of a,
simulation and bad input."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import rankdata, trim_mean
from sklearn.metrics import roc_auc_score, roc_curve

from miaudit.attacks._rmia import (
    A_GRID,
    calibrate_rmia_a,
    rmia_offline,
    rmia_online,
    rmia_probability,
    rmia_ratio,
    rmia_scores_from_ratios,
)
from miaudit.errors import InputError
from tests.simulate import complementary_keep


def dense_counts(rx: np.ndarray, rz: np.ndarray, gamma: float) -> np.ndarray:
    """The public tool's comparison: every x against every z, ratio_x / ratio_z ≥ γ."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return (rx[:, None] / rz[None, :] >= gamma).sum(axis=1)


def counts_of(score: np.ndarray, m: int) -> np.ndarray:
    return np.floor(score * m).astype(np.int64)


def simulate(
    n: int = 3000,
    n_pop: int = 1000,
    k: int = 16,
    shift: float = 1.5,
    seed: int = 0,
    null: bool = False,
):
    """p_y = sigmoid(difficulty + shift·IN + noise); population records are OUT everywhere."""
    rng = np.random.default_rng(seed)
    total = n + n_pop
    keep = complementary_keep(rng, k, total)
    pop = np.zeros(total, dtype=bool)
    pop[n:] = True
    keep[:, pop] = False
    member = (rng.random(total) < 0.5) & ~pop
    base = rng.normal(1.0, 2.0, size=total)
    ref_logit = base + shift * keep + rng.normal(size=(k, total))
    tgt_logit = base + (0.0 if null else shift) * member + rng.normal(size=total)
    sig = lambda v: 1.0 / (1.0 + np.exp(-v))  # noqa: E731
    return sig(tgt_logit), sig(ref_logit), keep, pop, member


@pytest.mark.parametrize("gamma", [1.0, 2.0, 0.5, 1.37])
def test_sorted_counts_equal_dense_counts_with_ties(gamma):
    rng = np.random.default_rng(1)
    # ratios from a small discrete set: many exact ties between x and z, and at x/z = γ
    # (0/0 is left out: the dense code calls it False, the sorted form counts ratio_z = 0 ≤ 0)
    levels = np.array([1e-3, 0.25, 0.5, 1.0, 2.0, 4.0, 1.37, 1.37 * 2])
    rx = rng.choice(levels, 500)
    rz = rng.choice(levels, 300)
    if gamma == 1.37:
        # not a power of two: x/z ≥ γ and z ≤ x/γ may round differently exactly at a boundary
        # (module docstring), so this γ is compared on a tie-free continuous draw
        rx, rz = rng.lognormal(size=500), rng.lognormal(size=300)
    got = counts_of(rmia_scores_from_ratios(rx, rz, gamma=gamma), 300)
    np.testing.assert_array_equal(got, dense_counts(rx, rz, gamma))


def test_sorted_equals_dense_on_continuous_ratios():
    rng = np.random.default_rng(2)
    rx, rz = rng.lognormal(size=2000), rng.lognormal(size=1500)
    for gamma in (1.0, 2.0, 0.8):
        np.testing.assert_array_equal(
            counts_of(rmia_scores_from_ratios(rx, rz, gamma=gamma), 1500),
            dense_counts(rx, rz, gamma),
        )


def test_ties_broken_by_ratio_only():
    rz = np.array([1.0, 2.0, 3.0])
    rx = np.array([2.5, 2.1, 2.9, 2.1, 0.1])  # first four dominate two z each
    s = rmia_scores_from_ratios(rx, rz)
    np.testing.assert_array_equal(counts_of(s, 3), [2, 2, 2, 2, 0])
    assert s[2] > s[0] > s[1] > s[4]  # equal fractions: ordered by ratio_x
    assert s[1] == s[3]  # equal ratio_x: equal scores, whatever their rows
    assert (s - counts_of(s, 3) / 3 < 1 / 4).all()  # the tie-break term stays below 1/(|z|+1)


def test_extreme_ratios_stay_ordered():
    rz = np.array([1.0])
    rx = np.array([0.0, 1e-300, 1e-5, 0.99, 1.0, 1.01, 1e5, 1e300])
    s = rmia_scores_from_ratios(rx, rz)
    assert (np.diff(s) > 0).all()
    assert (s < 1.0 + 1 / 2).all()


def test_single_target_roc_equals_roc_of_ratio():
    tgt, ref, keep, pop, member = simulate(n=1500, n_pop=400, seed=3)
    # round target p to create ties in ratio_x as well
    tgt = np.round(tgt, 2)
    ev = ~pop
    for mode in ("online", "offline"):
        if mode == "online":
            score, ratio = rmia_online(tgt, ref, pop), rmia_ratio(tgt, ref, None, a=None)
        else:
            score, ratio = (
                rmia_offline(tgt, ref, keep, pop, a=0.4),
                rmia_ratio(tgt, ref, keep, a=0.4),
            )
        f1, t1, _ = roc_curve(member[ev], score[ev], drop_intermediate=False)
        f2, t2, _ = roc_curve(member[ev], ratio[ev], drop_intermediate=False)
        np.testing.assert_array_equal(f1, f2)
        np.testing.assert_array_equal(t1, t2)
        np.testing.assert_array_equal(rankdata(score), rankdata(ratio))


def test_row_order_invariance():
    tgt, ref, keep, pop, _ = simulate(n=800, n_pop=300, seed=4)
    perm = np.random.default_rng(0).permutation(tgt.size)
    base = rmia_offline(tgt, ref, keep, pop, a=0.3, gamma=2.0, trim=0.1)
    np.testing.assert_array_equal(
        rmia_offline(tgt[perm], ref[:, perm], keep[:, perm], pop[perm], a=0.3, gamma=2.0, trim=0.1),
        base[perm],
    )
    base = rmia_online(tgt, ref, pop, trim=0.1)
    np.testing.assert_array_equal(
        rmia_online(tgt[perm], ref[:, perm], pop[perm], trim=0.1), base[perm]
    )
    kperm = np.random.default_rng(1).permutation(ref.shape[0])
    np.testing.assert_allclose(rmia_online(tgt, ref[kperm], pop, trim=0.1), base, rtol=1e-13)


def test_offline_pr_closed_form_and_trimmed_mean():
    tgt, ref, keep, _pop, _ = simulate(n=60, n_pop=20, k=10, seed=5)
    out = ~keep
    for trim in (0.0, 0.2):
        pr_out = np.array([trim_mean(ref[out[:, i], i], trim) for i in range(tgt.size)])
        a = 0.6
        want = tgt / (0.5 * ((1 + a) * pr_out + (1 - a)))
        np.testing.assert_allclose(rmia_ratio(tgt, ref, keep, a=a, trim=trim), want, rtol=1e-12)
        pr_all = np.array([trim_mean(ref[:, i], trim) for i in range(tgt.size)])
        np.testing.assert_allclose(
            rmia_ratio(tgt, ref, None, a=None, trim=trim), tgt / pr_all, rtol=1e-12
        )
    # a = 1 uses Pr_OUT itself
    pr_out = np.array([ref[out[:, i], i].mean() for i in range(tgt.size)])
    np.testing.assert_allclose(rmia_ratio(tgt, ref, keep, a=1.0), tgt / pr_out, rtol=1e-12)


def test_full_scores_equal_dense_brute_force():
    tgt, ref, keep, pop, _ = simulate(n=400, n_pop=150, k=8, seed=6)
    for gamma in (1.0, 2.0):
        s = rmia_offline(tgt, ref, keep, pop, a=0.5, gamma=gamma)
        ratio = rmia_ratio(tgt, ref, keep, a=0.5)
        np.testing.assert_array_equal(counts_of(s, 150), dense_counts(ratio, ratio[pop], gamma))


def test_gamma_monotone_and_target_monotone():
    tgt, ref, keep, pop, _ = simulate(n=500, n_pop=200, seed=7)
    s1 = rmia_offline(tgt, ref, keep, pop, a=0.3, gamma=1.0)
    s2 = rmia_offline(tgt, ref, keep, pop, a=0.3, gamma=2.0)
    assert (counts_of(s2, 200) <= counts_of(s1, 200)).all()
    # raising one record's target probability never lowers its score
    up = tgt.copy()
    up[~pop] = np.minimum(1.0, up[~pop] * 1.1)
    s3 = rmia_offline(up, ref, keep, pop, a=0.3)
    assert (s3[~pop] >= s1[~pop]).all()


def test_probability_with_temperature():
    logits = np.array([[[2.0, 0.0, -1.0], [0.0, 1.0, 3.0]]])  # (K=1, n=2, C=3)
    labels = np.array([0, 1])
    for t in (1.0, 2.5):
        e = np.exp(logits / t)
        want = (e / e.sum(-1, keepdims=True))[0, [0, 1], labels][None, :]
        np.testing.assert_allclose(
            rmia_probability(logits, labels, temperature=t), want, rtol=1e-12
        )
    with pytest.raises(InputError, match="temperature"):
        rmia_probability(logits, labels, temperature=0.0)
    with pytest.raises(InputError, match="labels"):
        rmia_probability(logits, np.array([0, 1, 2]))


def test_calibration_picks_grid_argmax():
    _tgt, ref, keep, _pop, _ = simulate(n=1500, n_pop=0, k=6, seed=8)
    got = calibrate_rmia_a(ref, keep, model=2)
    assert got in A_GRID
    others = [0, 1, 4, 5]  # not 3: the complementary partner of model 2 is left out
    aucs = [
        roc_auc_score(keep[2], rmia_ratio(ref[2], ref[others], keep[others], a=a)) for a in A_GRID
    ]
    assert got == A_GRID[int(np.argmax(aucs))]


def test_calibration_errors():
    _, ref, keep, _, _ = simulate(n=100, n_pop=0, k=4, seed=9)
    with pytest.raises(InputError, match="complement"):
        calibrate_rmia_a(ref[:2], keep[:2])
    with pytest.raises(InputError, match="two reference"):
        calibrate_rmia_a(ref[:1], keep[:1])
    with pytest.raises(InputError, match="model"):
        calibrate_rmia_a(ref, keep, model=4)
    with pytest.raises(InputError, match="only"):
        calibrate_rmia_a(ref, np.ones_like(keep))
    with pytest.raises(InputError, match="grid"):
        calibrate_rmia_a(ref, keep, grid=(1.5,))


def test_simulation_detects_members_and_null_does_not():
    tgt, ref, keep, pop, member = simulate(n=4000, n_pop=2000, k=16, seed=10)
    ev = ~pop
    a = calibrate_rmia_a(ref[:, ev], keep[:, ev])
    assert roc_auc_score(member[ev], rmia_online(tgt, ref, pop)[ev]) > 0.7
    assert roc_auc_score(member[ev], rmia_offline(tgt, ref, keep, pop, a=a)[ev]) > 0.65
    tgt0, ref0, keep0, pop0, member0 = simulate(n=4000, n_pop=2000, k=16, seed=11, null=True)
    assert abs(roc_auc_score(member0[ev], rmia_online(tgt0, ref0, pop0)[ev]) - 0.5) < 0.03
    assert (
        abs(roc_auc_score(member0[ev], rmia_offline(tgt0, ref0, keep0, pop0, a=a)[ev]) - 0.5) < 0.03
    )


def test_bad_input():
    tgt, ref, keep, pop, _ = simulate(n=20, n_pop=10, k=4, seed=12)
    cases = [
        (lambda: rmia_online(tgt[:-1], ref, pop), "ref_p"),
        (lambda: rmia_online(tgt, ref[:, :-1], pop), "ref_p"),
        (lambda: rmia_online(tgt, ref, pop[:-1]), "population"),
        (lambda: rmia_online(tgt, ref, pop.astype(int)), "population"),
        (lambda: rmia_online(tgt, ref, np.zeros_like(pop)), "population"),
        (lambda: rmia_online(tgt + 1.0, ref, pop), "target_p"),
        (lambda: rmia_online(tgt, ref, pop, gamma=0.0), "gamma"),
        (lambda: rmia_online(tgt, ref, pop, trim=0.5), "trim"),
        (lambda: rmia_online(tgt[:, None], ref, pop), "target_p"),
        (lambda: rmia_offline(tgt, ref, keep[:, :-1], pop, a=0.5), "keep"),
        (lambda: rmia_offline(tgt, ref, keep, pop, a=1.5), "a"),
        (lambda: rmia_offline(tgt, ref, np.ones_like(keep), pop, a=0.5), "keep"),
        (lambda: rmia_ratio(tgt, ref, None, a=0.5), "keep"),
        (lambda: rmia_scores_from_ratios(np.ones(3), np.ones(0)), "ratio_z"),
        (lambda: rmia_scores_from_ratios(-np.ones(3), np.ones(2)), "ratio_x"),
        (lambda: rmia_scores_from_ratios(np.ones((3, 1)), np.ones(2)), "ratio_x"),
    ]
    for call, field in cases:
        with pytest.raises(InputError) as err:
            call()
        assert err.value.field == field
