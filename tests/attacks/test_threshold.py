"""Threshold and class-dependent attacks: the gap identity, cross-fitting, and one contract for all."""

from __future__ import annotations

import numpy as np
import pytest

from miaudit.attacks import OUTPUT_ATTACKS, THRESHOLD_SPECS, class_dependent_scores, threshold_score
from miaudit.audit import run_attacks
from miaudit.metrics import roc_auc_score, tpr_at_fpr
from miaudit.signals import compute_signals
from tests.conftest import simulated_outputs


def test_gap_attack_accuracy_identity():
    """On a balanced set, 'member iff correct' has accuracy ½(1 + acc_train − acc_test) exactly."""
    o = simulated_outputs(n=4000, classes=4, shift=1.5, seed=3)
    sig = compute_signals(o.values, o.label)
    guess = threshold_score("gap", sig) == 1.0
    m = o.member == 1
    acc_train, acc_test = sig["correctness"][m].mean(), sig["correctness"][~m].mean()
    attack_acc = (guess == m).mean()
    assert attack_acc == pytest.approx(0.5 * (1 + acc_train - acc_test), abs=1e-12)


def test_scores_point_the_right_way():
    o = simulated_outputs(n=3000, shift=2.0, seed=1)
    sig = compute_signals(o.values, o.label)
    for name in THRESHOLD_SPECS:
        assert roc_auc_score(o.member, threshold_score(name, sig)) > 0.55, name


def test_class_dependent_is_out_of_fold():
    """Changing the membership labels of one fold cannot change that fold's own scores."""
    rng = np.random.default_rng(0)
    n = 600
    score = rng.normal(size=n)
    labels = rng.integers(0, 3, n)
    member = rng.integers(0, 2, n)
    a = class_dependent_scores(score, labels, member, n_folds=5, rng=1)
    # p-values are fractions of class-y non-members of other folds with score ≤ own
    assert ((a.score >= 0) & (a.score <= 1)).all()
    # brute force for one record
    i = 17
    fold_rng = np.random.default_rng(1)
    fold = np.empty(n, int)
    strata = labels * 2 + member
    for key in np.unique(strata):
        idx = np.flatnonzero(strata == key)
        fold[fold_rng.permutation(idx)] = np.arange(idx.size) % 5
    calib = score[(fold != fold[i]) & (member == 0) & (labels == labels[i])]
    assert a.score[i] == pytest.approx((calib <= score[i]).mean())


def test_class_dependent_helps_when_classes_differ_in_scale():
    """Per-class calibration removes a class effect that a global threshold confuses with membership."""
    rng = np.random.default_rng(4)
    n = 6000
    labels = rng.integers(0, 2, n)
    member = rng.integers(0, 2, n)
    score = 0.5 * member + 3.0 * labels + rng.normal(size=n)  # class 1 simply scores higher
    labels[labels == 1] = 1
    # global AUC is diluted by the class offset; per-class p-values recover the within-class signal
    glob = roc_auc_score(member, score)
    cd = class_dependent_scores(score, labels, member, rng=0)
    assert roc_auc_score(member, cd.score) >= glob - 0.01
    assert 0 < cd.operating_fpr < cd.operating_tpr < 1


@pytest.mark.parametrize("name", OUTPUT_ATTACKS)
def test_contract_every_output_attack(name):
    """Shape, determinism, row-order invariance and a null without signal for every attack."""
    o = simulated_outputs(n=800, shift=1.0, seed=2)
    run = run_attacks(o, attacks=[name], n_resamples=0, seed=5)
    s = run.scores[name]
    assert s.shape == (800,) and np.isfinite(s).all()
    again = run_attacks(o, attacks=[name], n_resamples=0, seed=5)
    np.testing.assert_array_equal(again.scores[name], s)
    if not name.endswith("_by_class"):  # fold assignment depends on row positions by design
        perm = np.random.default_rng(0).permutation(800)
        from miaudit.data import ModelOutputs

        p = ModelOutputs.from_arrays(logits=o.values[perm], label=o.label[perm], member=o.member[perm], record_id=o.record_id[perm])
        r2 = run_attacks(p, attacks=[name], n_resamples=0, seed=5)
        np.testing.assert_array_equal(r2.scores[name], s[perm])
        assert r2.result.attack(name).auc == run.result.attack(name).auc
    null = run_attacks(simulated_outputs(n=800, shift=0.0, seed=9), attacks=[name], n_resamples=200, seed=1)
    auc = null.result.attack(name).auc
    assert auc.lower <= 0.5 <= auc.upper or abs(auc.point - 0.5) < 0.05


def test_tpr_at_low_fpr_not_inflated_by_member_first_rows():
    """Saved outputs written members first, with tied confidences, must not fake low-FPR TPR."""
    n = 2000
    probs = np.tile([1.0, 0.0], (n, 1))  # every record gets p_y = 1: no information at all
    member = np.r_[np.ones(n // 2, int), np.zeros(n // 2, int)]
    from miaudit.data import ModelOutputs

    o = ModelOutputs.from_arrays(probs=probs, label=np.zeros(n, int), member=member)
    run = run_attacks(o, attacks=["confidence", "loss"], n_resamples=0)
    for name in ("confidence", "loss"):
        assert tpr_at_fpr(member, run.scores[name], fpr=0.01) == 0.0
        assert run.result.attack(name).auc.point == 0.5
