"""The CI gate (``--fail-on``): which bound each rule reads."""

from __future__ import annotations

import pytest

import miaudit
from miaudit.audit import gate_failures, parse_gate_rule
from tests.conftest import simulated_outputs


@pytest.fixture(scope="module")
def result():
    o = simulated_outputs(n=1200, shift=0.3, seed=5)
    return miaudit.attack(o, n_resamples=200, seed=7, quiet=True)


def _own(result, metric, bound):
    return {a.name: getattr(a.metric(metric), bound) for a in result.attacks}


def test_lower_rules_on_verdict_metrics_read_the_family(result):
    """``auc.lower>X`` asks whether *some* attack surely exceeds X: each attack's own bound over
    several attacks trips on models that leak nothing far beyond 2.5 %, so it reads the bounds
    that hold together (the verdict's). X between the largest joint and the largest own bound
    tripped before and passes now."""
    assert result.family is not None and len(result.attacks) > 2
    own = max(_own(result, "auc", "lower").values())
    joint = max(result.family.lower[a.name]["auc"] for a in result.attacks)
    assert joint < own  # the joint bounds are the wider ones (max-t over the family)
    x = (own + joint) / 2
    assert gate_failures(result, [parse_gate_rule(f"auc.lower>{x}")]) == []
    below = gate_failures(result, [parse_gate_rule(f"auc.lower>{joint - 1e-6}")])
    assert below and "holding together over" in below[0] and f"{joint:.4g}" in below[0]


def test_upper_rules_read_each_attacks_own_bound(result):
    """``upper>X`` passes only when every attack's own bound clears X: already cautious, so no
    correction (one that widened the bounds would only fail more models)."""
    uppers = _own(result, "auc", "upper")
    worst = max(uppers, key=uppers.__getitem__)
    x = uppers[worst] - 1e-6
    lines = gate_failures(result, [parse_gate_rule(f"auc.upper>{x}")])
    tied = [a for a, u in uppers.items() if u > x]  # loss and confidence rank records alike
    assert sorted(lines) == sorted(f"{a}: auc.upper = {uppers[a]:.4g} > {x:g}" for a in tied)


def test_other_confident_rules_say_their_bound_is_uncorrected(result):
    lines = gate_failures(result, [parse_gate_rule("advantage.lower>-1")])
    n = len(result.attacks)
    assert len(lines) == n
    assert all(
        line.endswith(f"(this attack's own bound, not corrected for the {n} attacks)")
        for line in lines
    )


def test_one_attack_reads_the_verdicts_bound_too():
    """With one attack the report still states the family's bound (over AUC and TPR at 1 %):
    CI failed on a bound the report does not state (red team)."""
    o = simulated_outputs(n=1200, shift=0.3, seed=5)
    one = miaudit.attack(o, attacks=["loss"], n_resamples=200, seed=7, quiet=True)
    assert one.family is not None
    joint = one.family.lower["loss"]["auc"]
    assert joint < one.attacks[0].auc.lower
    assert gate_failures(one, [parse_gate_rule(f"auc.lower>{joint + 1e-6}")]) == []
    lines = gate_failures(one, [parse_gate_rule(f"auc.lower>{joint - 1e-6}")])
    assert lines and lines[0].startswith(f"loss: auc.lower = {joint:.4g} >")
    # a metric outside the family reads the attack's own bound, with nothing to correct for
    lower = one.attacks[0].advantage.lower
    lines = gate_failures(one, [parse_gate_rule(f"advantage.lower>{lower - 1e-6}")])
    assert lines == [f"loss: advantage.lower = {lower:.4g} > {lower - 1e-6:g}"]
