"""Charts that hold at any size: adaptive histogram bins, variant names in a legend."""

from __future__ import annotations

import numpy as np

from miaudit.report import score_histograms
from miaudit.report._charts import histogram_chart, tradeoff_chart
from tests.report.conftest import variants


def _shares(h) -> np.ndarray:
    counts = np.asarray(h.members) + np.asarray(h.nonmembers)
    return counts / counts.sum()


def test_a_skewed_loss_is_never_one_bin():
    """Minus the loss of an overfit model: most members sit at ~0, a long tail below. Equal
    widths would put nearly everything in the last bin; quantile bins spread it."""
    rng = np.random.default_rng(0)
    member = rng.random(4000) < 0.5
    loss = np.where(member, rng.exponential(1e-4, 4000), rng.exponential(0.05, 4000))
    loss[rng.random(4000) < 0.02] *= 400  # a few badly fitted records stretch the range
    (h,) = score_histograms(member, {"loss": -loss})
    assert h.binning == "quantile"
    shares = _shares(h)
    assert shares.max() <= 0.5 and (shares > 0).sum() >= 10
    assert len(h.edges) <= 41
    svg = histogram_chart([h])
    assert "loss (quantile bins)" in svg


def test_a_plain_score_keeps_equal_widths():
    rng = np.random.default_rng(1)
    member = rng.random(2000) < 0.5
    (h,) = score_histograms(member, {"s": rng.normal(member * 0.5, 1.0)})
    assert h.binning == "equal-width"
    widths = np.diff(h.edges)
    assert np.allclose(widths, widths[0])


def test_a_point_mass_leaves_the_rest_spread():
    rng = np.random.default_rng(2)
    member = rng.random(3000) < 0.5
    s = np.where(rng.random(3000) < 0.6, 0.0, rng.normal(-3.0, 1.0, 3000))
    (h,) = score_histograms(member, {"s": s})
    assert (_shares(h) > 0).sum() >= 5


def test_tradeoff_names_in_a_legend_not_beside_points():
    svg = str(tradeoff_chart(variants()))
    for v in variants():
        assert svg.count(f">{v.name}<") == 1, v.name  # once, in the legend
