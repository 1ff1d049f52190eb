"""dp-audit --curve: the accountant's whole ε(δ) curve tested at once, Bonferroni over a δ grid
fixed in advance (docs/dp.md, "Testing the whole curve")."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("opacus")

from miaudit.audit._dp_curve import CURVE_DELTAS, accountant_curve, curve_deltas, curve_test
from miaudit.audit._results import PrivacySpent
from miaudit.metrics import one_run_p_value

PRIVACY = PrivacySpent(
    epsilon=1.0,
    delta=3e-5,
    accountant="prv",
    noise_multiplier=2.0,
    max_grad_norm=1.0,
    sample_rate=0.05,
    steps=200,
    poisson_sampling=True,
    ghost_clipping=False,
    fault_injection="none",
)


def test_the_curve_is_opacus_and_falls_with_delta():
    deltas = curve_deltas(PRIVACY.delta)
    assert set(CURVE_DELTAS) < set(deltas) and 3e-5 in deltas  # the claimed δ is on the grid
    eps = [e for _, e in accountant_curve(PRIVACY, deltas)]
    assert all(np.diff(eps) < 0)  # a larger δ buys a smaller ε


def test_bonferroni_over_the_points_decides():
    perfect = curve_test(1000, 200, 200, PRIVACY, 0.05)
    chance = curve_test(1000, 200, 100, PRIVACY, 0.05)
    for res in (perfect, chance):
        k = len(res.points)
        assert res.smallest_p_value == min(p.p_value for p in res.points)
        assert res.adjusted_p_value == pytest.approx(min(1.0, k * res.smallest_p_value))
        for p in res.points:
            assert p.p_value == pytest.approx(
                one_run_p_value(1000, 200, 200 if res is perfect else 100, p.epsilon, delta=p.delta)
            )
    assert perfect.rejected and not chance.rejected
    assert "REJECTED" in perfect.line() and "no point of the curve" in chance.line()


def test_several_runs_take_the_largest_epsilon_at_each_delta():
    """Red team: with several runs the curve of the run largest at the claimed δ was used at
    every δ; runs differ in q and steps, so another run's ε can be larger at another δ."""
    fewer = PRIVACY.model_copy(update={"steps": 100, "noise_multiplier": 1.6})
    deltas = curve_deltas(PRIVACY.delta)
    a = dict(accountant_curve(PRIVACY, deltas))
    b = dict(accountant_curve(fewer, deltas))
    assert any(a[d] > b[d] for d in deltas) and any(b[d] > a[d] for d in deltas)  # they cross
    both = curve_test(1000, 200, 150, [PRIVACY, fewer, PRIVACY], 0.05)
    assert [p.epsilon for p in both.points] == [max(a[d], b[d]) for d in deltas]
    assert curve_test(1000, 200, 150, [PRIVACY], 0.05) == curve_test(1000, 200, 150, PRIVACY, 0.05)
