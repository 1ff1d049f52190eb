"""ROC metrics against brute-force references, sklearn, closed forms and invariances."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import roc_auc_score as sk_auc
from sklearn.metrics import roc_curve as sk_roc

from miaudit.errors import InputError
from miaudit.metrics import (
    balanced_accuracy_best,
    membership_advantage,
    ppv_at_fpr,
    roc_auc_score,
    roc_curve,
    tpr_at_fpr,
)

TOL = 1e-12  # exact rational arithmetic up to float64 rounding


def brute_auc(y, s):
    pos, neg = s[y == 1], s[y == 0]
    wins = (pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum()
    return wins / (pos.size * neg.size)


def brute_points(y, s):
    """(FPR, TPR) of the rule 'flag s ≥ t' for every distinct t, plus flag-nothing."""
    pts = [(0.0, 0.0)]
    for t in np.unique(s):
        flag = s >= t
        pts.append((flag[y == 0].mean(), flag[y == 1].mean()))
    return pts


def brute_tpr_at(y, s, alpha):
    return max(t for f, t in brute_points(y, s) if f <= alpha + 1e-15)


def cases():
    rng = np.random.default_rng(1)
    out = []
    for n, ties in ((7, False), (50, True), (300, True), (301, False)):
        y = rng.integers(0, 2, n)
        y[:2] = [0, 1]
        s = rng.normal(size=n) + y
        if ties:
            s = np.round(s, 0)
        out.append((y, s))
    return out


@pytest.mark.parametrize("y,s", cases())
def test_auc_matches_brute_force_and_sklearn(y, s):
    assert abs(roc_auc_score(y, s) - brute_auc(y, s)) < TOL
    assert abs(roc_auc_score(y, s) - sk_auc(y, s)) < TOL


@pytest.mark.parametrize("y,s", cases())
def test_roc_keeps_every_threshold_like_sklearn_without_dropping(y, s):
    fpr, tpr, thr = roc_curve(y, s)
    sf, st, _sthr = sk_roc(y, s, drop_intermediate=False)
    np.testing.assert_allclose(fpr, sf, atol=TOL)
    np.testing.assert_allclose(tpr, st, atol=TOL)
    assert len(thr) == np.unique(s).size + 1  # every distinct score is one point
    assert sorted(zip(fpr, tpr, strict=True)) == sorted(brute_points(y, s)) or np.allclose(
        sorted(zip(fpr, tpr, strict=True)), sorted(brute_points(y, s))
    )


@pytest.mark.parametrize("y,s", cases())
@pytest.mark.parametrize("alpha", [0.0, 0.01, 0.1, 0.25, 0.5])
def test_tpr_at_fpr_matches_brute_force(y, s, alpha):
    n0 = (y == 0).sum()
    got = tpr_at_fpr(y, s, fpr=alpha)
    if alpha * n0 < 1:
        assert math.isnan(got)  # not measurable below 1/n0
    else:
        assert abs(got - brute_tpr_at(y, s, alpha)) < TOL


@pytest.mark.parametrize("y,s", cases())
def test_advantage_and_balanced_accuracy_brute_force(y, s):
    best = max(t - f for f, t in brute_points(y, s))
    assert abs(membership_advantage(y, s) - best) < TOL
    assert abs(balanced_accuracy_best(y, s) - 0.5 * (1 + best)) < TOL


def test_fpr_exactly_alpha_is_allowed():
    # 1000 non-members, 10 of them above every member-free threshold: FPR 1 % exactly.
    y = np.r_[np.zeros(1000, int), np.ones(100, int)]
    s = np.r_[np.arange(1000) / 1000.0, np.full(100, 0.995)]
    # Members tie with non-member 0.995: threshold 0.995 flags 5 non-members (0.995..0.999) and all members.
    assert tpr_at_fpr(y, s, fpr=0.01) == 1.0
    assert tpr_at_fpr(y, s, fpr=0.004) == 0.0


def test_ties_are_one_threshold_and_row_order_cannot_matter():
    # Members written first and tied with non-members: row order must not lift TPR at low FPR.
    y = np.r_[np.ones(50, int), np.zeros(950, int)]
    s = np.r_[np.ones(50), np.ones(50), np.zeros(900)]
    assert tpr_at_fpr(y, s, fpr=0.01) == 0.0  # the tie group costs 50/950 > 1 % FPR
    assert roc_auc_score(y, s) == pytest.approx(brute_auc(y, s))


def test_ppv_closed_form():
    y = np.r_[np.ones(100, int), np.zeros(1000, int)]
    s = np.r_[np.full(30, 2.0), np.zeros(70), np.full(10, 2.0), np.zeros(990)]
    # threshold 2.0: TPR 0.3, FPR 0.01
    for prior in (0.5, 0.01):
        expect = prior * 0.3 / (prior * 0.3 + (1 - prior) * 0.01)
        assert ppv_at_fpr(y, s, fpr=0.01, prior=prior) == pytest.approx(expect, abs=TOL)


METRICS = {
    "auc": roc_auc_score,
    "advantage": membership_advantage,
    "balanced_accuracy": balanced_accuracy_best,
    "tpr@1%": lambda y, s: tpr_at_fpr(y, s, fpr=0.01),
    "tpr@10%": lambda y, s: tpr_at_fpr(y, s, fpr=0.1),
    "ppv": lambda y, s: ppv_at_fpr(y, s, fpr=0.1, prior=0.3),
}


@pytest.mark.parametrize("name", sorted(METRICS))
def test_invariances(name):
    """Permutation of records and strictly increasing transforms of scores change nothing."""
    metric = METRICS[name]
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 500)
    s = np.round(rng.normal(size=500) + y, 1)
    ref = metric(y, s)
    perm = rng.permutation(500)
    assert metric(y[perm], s[perm]) == pytest.approx(ref, abs=TOL)
    for transform in (np.exp, lambda v: 3 * v - 7, lambda v: np.arctan(v)):
        assert metric(y, transform(s)) == pytest.approx(ref, abs=TOL)


@pytest.mark.parametrize(
    "y,s,problem",
    [
        ([], [], "empty"),
        ([1, 1], [0.1, 0.2], "only one membership class"),
        ([0, 1, 2], [0.1, 0.2, 0.3], "0 or 1"),
        ([0, 1], [0.1, float("nan")], "NaN"),
        ([0, 1], [0.1], "records"),
    ],
)
def test_bad_input_names_the_problem(y, s, problem):
    with pytest.raises(InputError, match=problem):
        roc_auc_score(np.asarray(y), np.asarray(s, dtype=float))


@pytest.mark.parametrize("y,s", cases())
def test_ppv_brute_force(y, s):
    """PPV at the threshold reaching TPR@α with the smallest FPR."""
    alpha, prior = 0.25, 0.2
    pts = brute_points(y, s)
    best_tpr = max(t for f, t in pts if f <= alpha + 1e-15)
    fpr = min(f for f, t in pts if t == best_tpr and f <= alpha + 1e-15)
    expect = (
        float("nan") if best_tpr == 0 else prior * best_tpr / (prior * best_tpr + (1 - prior) * fpr)
    )
    got = ppv_at_fpr(y, s, fpr=alpha, prior=prior)
    assert (math.isnan(got) and math.isnan(expect)) or got == pytest.approx(expect, abs=TOL)
