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


def _folds(labels, member, n_folds, seed):
    rng = np.random.default_rng(seed)
    fold = np.empty(labels.size, int)
    strata = labels * 2 + member
    for key in np.unique(strata):
        idx = np.flatnonzero(strata == key)
        fold[rng.permutation(idx)] = np.arange(idx.size) % n_folds
    return fold


def test_class_dependent_is_out_of_fold():
    """Changing the membership labels of one fold cannot change that fold's own scores (a rule
    fitted in-fold would move them), while it does move the other folds' scores."""
    rng = np.random.default_rng(0)
    n = 600
    score = rng.normal(size=n)
    labels = rng.integers(0, 3, n)
    member = rng.integers(0, 2, n)
    fold = _folds(labels, member, 5, 1)
    a = class_dependent_scores(score, labels, member, n_folds=5, folds=fold)
    np.testing.assert_array_equal(
        a.score, class_dependent_scores(score, labels, member, n_folds=5, rng=1).score
    )
    flipped = member.copy()
    flipped[fold == 0] = 1 - flipped[fold == 0]
    b = class_dependent_scores(score, labels, flipped, n_folds=5, folds=fold)
    np.testing.assert_array_equal(a.score[fold == 0], b.score[fold == 0])
    assert (a.score[fold != 0] != b.score[fold != 0]).mean() > 0.5
    # Brute force: the p-value is the fraction of class-y non-members of the other folds with
    # score ≤ own, plus a tie-break smaller than half the p-values' resolution.
    for i in (17, 123, 480):
        calib = score[(fold != fold[i]) & (member == 0) & (labels == labels[i])]
        p = (calib <= score[i]).mean()
        assert 0 < a.score[i] - p < 0.5 / calib.size**2 * 1.0001


def test_class_dependent_ties_are_broken_by_the_base_score():
    """Records above every calibration non-member of their class all get p = 1: with 20 classes
    a class has about 80 calibration non-members, so about 1/81 of the non-members (above 1 %)
    tie at the top with the members, and TPR at 1 % FPR reads 0. The base score orders them, so
    the members it ranks highest are found at low FPR."""
    rng = np.random.default_rng(3)
    n = 4000
    member = rng.integers(0, 2, n)
    labels = rng.integers(0, 20, n)
    score = rng.normal(size=n) + 4.0 * member * (rng.random(n) < 0.2)  # a fifth of members far out
    cd = class_dependent_scores(score, labels, member, rng=0)
    top = cd.score >= 1.0 - 1e-12
    assert top.sum() > 0.05 * n  # the tie the p-value alone would leave
    # Rounding to 4 decimals undoes the tie-break (δ < 1e-5 here): the p-values alone.
    untied = np.round(cd.score, 4)
    from miaudit.metrics import tpr_at_fpr

    assert tpr_at_fpr(member, cd.score, fpr=0.01) > 0.1
    assert tpr_at_fpr(member, untied, fpr=0.01) < 0.01


def test_class_dependent_helps_when_classes_differ_in_scale():
    """Per-class calibration removes a class effect that a global threshold confuses with
    membership: its AUC is above that of p-values calibrated on all classes (a class-blind
    implementation), by a paired interval above 0."""
    from miaudit.metrics import paired_difference

    rng = np.random.default_rng(4)
    n = 6000
    labels = rng.integers(0, 2, n)
    member = rng.integers(0, 2, n)
    score = 0.5 * member + 3.0 * labels + rng.normal(size=n)  # class 1 simply scores higher
    cd = class_dependent_scores(score, labels, member, rng=0)
    blind = class_dependent_scores(score, np.zeros(n, int), member, rng=0)  # one class: class-blind
    diff = paired_difference(member, cd.score, blind.score, n_resamples=200)
    assert diff.lower > 0.02, diff
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

        p = ModelOutputs.from_arrays(
            logits=o.values[perm],
            label=o.label[perm],
            member=o.member[perm],
            record_id=o.record_id[perm],
        )
        r2 = run_attacks(p, attacks=[name], n_resamples=0, seed=5)
        np.testing.assert_array_equal(r2.scores[name], s[perm])
        assert r2.result.attack(name).auc == run.result.attack(name).auc
    null = run_attacks(
        simulated_outputs(n=800, shift=0.0, seed=9), attacks=[name], n_resamples=200, seed=1
    )
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
