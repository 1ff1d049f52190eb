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
