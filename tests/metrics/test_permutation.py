"""The permutation test of the largest AUC: its level at any size, its power, against brute force."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from miaudit.metrics import max_auc_permutation_p, roc_auc_score


def test_holds_its_level_where_the_bootstrap_bounds_do_not():
    """10 independent attacks on null data, 300 members and 10 non-members: the family's
    bootstrap bounds called 12.5 % of 400 such datasets detectable (nominal 2.5 %). The
    permutation test's rejections at 2.5 % stay within 2.5 % + 3 binomial SE over 300 datasets
    (SE 0.9 points): 5.3 %."""
    rng = np.random.default_rng(20261207)
    y = np.r_[np.ones(300), np.zeros(10)].astype(int)
    rejected = 0
    for _ in range(300):
        s = {f"a{j}": rng.normal(size=310) for j in range(10)}
        rejected += max_auc_permutation_p(y, s, n_permutations=199, rng=rng) <= 0.025
    assert rejected / 300 <= 0.025 + 3 * np.sqrt(0.025 * 0.975 / 300)


def test_finds_a_real_signal_among_blind_attacks():
    rng = np.random.default_rng(3)
    y = np.r_[np.ones(200), np.zeros(40)].astype(int)
    s = {"blind": rng.normal(size=240), "sees": np.r_[rng.normal(1, 1, 200), rng.normal(0, 1, 40)]}
    assert max_auc_permutation_p(y, s, rng=rng) == pytest.approx(0.001)


def test_equals_the_exact_permutation_distribution_on_a_tiny_case():
    """4 members of 7 records, two attacks with ties: the Monte Carlo p converges to the share of
    all 35 relabellings whose largest AUC reaches the observed one (AUC as sklearn computes it)."""
    y = np.array([1, 1, 0, 1, 0, 1, 0])
    s = {"a": np.array([3.0, 2, 2, 5, 1, 2, 0]), "b": np.array([0.0, 1, 4, 1, 2, 3, 3])}
    best = max(roc_auc_score(y, v) for v in s.values())
    hits = 0
    for members in itertools.combinations(range(7), 4):
        z = np.zeros(7, int)
        z[list(members)] = 1
        hits += max(roc_auc_score(z, v) for v in s.values()) >= best - 1e-12
    exact = hits / 35
    p = max_auc_permutation_p(y, s, n_permutations=20_000, rng=np.random.default_rng(0))
    assert p == pytest.approx(exact, abs=0.01)  # Monte Carlo SE at 20,000 draws: < 0.004
    flipped = max_auc_permutation_p(1 - y, s, n_permutations=20_000, rng=np.random.default_rng(0))
    assert 0 < flipped <= 1 and max_auc_permutation_p(y, {}, rng=np.random.default_rng(0)) == 1.0


def test_the_audit_records_it_for_small_classes_and_the_verdict_reads_it():
    import miaudit
    from miaudit.report import assess_risk
    from tests.conftest import simulated_outputs

    o = simulated_outputs(n=600, shift=1.5, seed=4)
    r = miaudit.attack(o, attacks=["loss", "gap"], n_resamples=50, seed=1, quiet=True)
    assert r.family is not None and r.family.permutation_p == pytest.approx(0.001)
    assert assess_risk(r).level != "not detected"
    unsure = r.model_copy(update={"family": r.family.model_copy(update={"permutation_p": 0.2})})
    risk = assess_risk(unsure)
    assert risk.level == "not detected" and "p = 0.2" in risk.explanation
    assert "permutation_p" in r.to_json()


def _z(member: np.ndarray, score: np.ndarray) -> float:
    """A group's standardised member rank sum, from its definition (average ranks; the
    variance of a sum drawn without replacement)."""
    from scipy.stats import rankdata

    r, n, n1 = rankdata(score), member.size, int(member.sum())
    var = n1 * (n - n1) / (n * (n - 1)) * ((r - r.mean()) ** 2).sum()
    return (r[member.astype(bool)].sum() - n1 * (n + 1) / 2) / np.sqrt(var)


def test_group_p_values_equal_the_exact_max_t_on_a_tiny_case():
    """Two groups with ties (3 members of 5 records, 2 of 6): each group's adjusted p converges
    to the share of all 10 × 15 joint within-group relabellings whose largest standardised rank
    sum reaches the group's observed one."""
    from miaudit.metrics import group_auc_permutation_p

    y = np.array([1, 0, 1, 1, 0, 0, 1, 0, 1, 0, 0])
    s = np.array([3.0, 1, 3, 2, 0, 1, 1, 1, 4, 2, 0])
    a, b = np.arange(5), np.arange(5, 11)
    observed = [_z(y[a], s[a]), _z(y[b], s[b])]
    tops = []
    for ma in itertools.combinations(range(5), 3):
        for mb in itertools.combinations(range(6), 2):
            za, zb = np.zeros(5, int), np.zeros(6, int)
            za[list(ma)], zb[list(mb)] = 1, 1
            tops.append(max(_z(za, s[a]), _z(zb, s[b])))
    exact = [np.mean(np.array(tops) >= o - 1e-9) for o in observed]
    p = group_auc_permutation_p(y, s, [a, b], n_permutations=20_000, rng=np.random.default_rng(0))
    assert p == pytest.approx(exact, abs=0.01)  # Monte Carlo SE at 20,000 draws: < 0.004
    # a group of one class, or of tied scores, cannot lie above chance
    tied = group_auc_permutation_p(
        y, np.zeros(11), [a, b], n_permutations=99, rng=np.random.default_rng(0)
    )
    assert tied.tolist() == [1.0, 1.0]


def test_group_p_values_hold_their_level_together():
    """Null data, 10 groups of 10 members and 10 non-members: the smallest adjusted p-value
    lies at or below 5 % in 5 % of datasets by construction (99 relabellings: exactly, for
    untied scores). Over 400 datasets the count must lie within 3 binomial SE of 20 (SE 4.4);
    separate per-group tests would reject in about 40 % of them."""
    from miaudit.metrics import group_auc_permutation_p

    rng = np.random.default_rng(20261207)
    y = np.tile(np.r_[np.ones(10), np.zeros(10)], 10).astype(int)
    groups = [np.arange(20 * g, 20 * g + 20) for g in range(10)]
    hits = sum(
        group_auc_permutation_p(y, rng.normal(size=200), groups, n_permutations=99, rng=rng).min()
        <= 0.05
        for _ in range(400)
    )
    assert abs(hits - 20) <= 3 * np.sqrt(400 * 0.05 * 0.95), hits


def test_nan_scores_are_refused_not_read_as_significance():
    """Red team: one NaN score in one group gave every other group p = 0.001 (a NaN maximum is
    reached by no relabelling); the largest-AUC test did the same."""
    from miaudit.errors import InputError
    from miaudit.metrics import group_auc_permutation_p

    y = np.tile(np.r_[np.ones(10), np.zeros(10)], 2).astype(int)
    s = np.random.default_rng(0).normal(size=40)
    s[3] = np.nan
    with pytest.raises(InputError, match="NaN"):
        group_auc_permutation_p(
            y, s, [np.arange(20), np.arange(20, 40)], rng=np.random.default_rng(0)
        )
    with pytest.raises(InputError, match="NaN"):
        max_auc_permutation_p(y, {"a": s}, rng=np.random.default_rng(0))
