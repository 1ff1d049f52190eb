"""bench_label_only at its small size (docs/defenses.md, "Measured (label-only policy …)"): every
attack is compared with the gap attack on the same records, the figures are the library's, σ is
the reference model's choice, and on the 1-NN target robustness beats the gap attack."""

from __future__ import annotations

import numpy as np
import pytest

import benchmarks.bench_label_only as bench


@pytest.fixture(scope="module")
def small():
    return bench.run("small")


def test_robustness_beats_gap_on_the_small_nearest_neighbour(small):
    fig = small.figures["knn_synthetic"]
    assert fig["train_accuracy"] == 1.0  # 1-NN: every member is its own neighbour
    # The gap attack's AUC is ½(1 + train accuracy − test accuracy), exactly.
    gap = fig["attacks"]["gap"]["auc"]["point"]
    assert gap == pytest.approx(0.5 * (2 - fig["test_accuracy"]), abs=1e-9)
    for name in ("noise", "boundary"):
        d = fig["attacks"][name]["auc_vs_gap"]
        assert d["lower"] > 0, (name, d)
        assert d["point"] == pytest.approx(fig["attacks"][name]["auc"]["point"] - gap)
    assert small.passed is None  # no verdict at the small size


def test_every_attack_is_reported_with_the_librarys_tpr_convention(small):
    for t in bench.SMALL:
        fig = small.figures[t.key]
        names = {"gap", "noise", "boundary"} | ({"augmentation"} if t.data == "digits" else set())
        assert set(fig["attacks"]) == names
        # Fewer than 1,000 non-members: the TPR at 1 % FPR is not measurable.
        for a in fig["attacks"].values():
            assert a["tpr1"]["status"] == "not_measurable" and a["tpr1"]["point"] is None
        assert fig["attacks"]["gap"]["mean_queries"] == 1
        assert fig["attacks"]["boundary"]["mean_queries"] <= t.boundary_queries
        # σ is the best of the grid on the reference model, not on the evaluated records.
        ref = fig["reference_auc_by_sigma"]
        assert ref[f"{fig['sigma']:g}"] == max(ref.values())
        assert f"| {t.words} (" in small.table


def test_nine_shifts_are_the_3x3_neighbourhood():
    img = np.zeros((1, 1, 5, 5))
    img[0, 0, 2, 2] = 1.0
    flat = img.reshape(1, -1)
    seen = {tuple(np.argwhere(f(flat).reshape(5, 5) == 1)[0]) for f in bench.nine_shifts((1, 5, 5))}
    assert seen == {(2 + dy, 2 + dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)}
