"""The CI gate (``--fail-on``): which bound each rule reads."""

from __future__ import annotations

import pytest

import miaudit
from miaudit.audit import gate_failures, parse_gate_rule
from miaudit.audit._fail_on import _shown
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
    assert sorted(line.split(" = ")[0] for line in lines) == sorted(f"{a}: auc.upper" for a in tied)
    for line in lines:  # each value printed with the digits that keep it above x (red team:
        shown = float(line.split(" = ")[1].split(" ")[0])  # 0.60004 printed "0.6 > 0.6")
        assert shown > x and line.endswith(f"> {x:g}")


def test_other_confident_rules_say_their_bound_is_uncorrected(result):
    from miaudit.audit import GateRule

    # built by hand: a parsed rule may not hold for every value (advantage ≥ 0 always)
    lines = gate_failures(result, [GateRule("advantage", "lower", ">", -1.0)])
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
    assert lines and lines[0].startswith("loss: auc.lower = ")
    assert float(lines[0].split(" = ")[1].split(" ")[0]) == round(joint, 6)
    # a metric outside the family reads the attack's own bound, with nothing to correct for
    lower = one.attacks[0].advantage.lower
    lines = gate_failures(one, [parse_gate_rule(f"advantage.lower>{lower - 1e-6}")])
    assert lines == [f"loss: advantage.lower = {_shown(lower, lower - 1e-6)} > {lower - 1e-6:g}"]


@pytest.mark.parametrize(
    ("rule", "says"),
    [
        ("tpr@10%fpr.upper>5", "lies in [0, 1] (5 % is 0.05)"),
        ("auc.lower>60", "lies in [0, 1] (60 % is 0.6)"),
        ("auc>1e400", "lies in [0, 1]"),
        ("epsilon>1e400", "lies in [0, ∞)"),
        ("advantage>-0.5", "lies in [0, 1]"),
        ("advantage>=0", "holds for every value"),
        ("balanced_accuracy<0.5", "holds for no value"),
        ("auc>1", "holds for no value"),
        ("auc<=1", "holds for every value"),
        ("auc>=0", "holds for every value"),
    ],
)
def test_a_rule_outside_what_its_metric_can_take_is_refused(rule, says):
    """Red team: written in percent (tpr@10%fpr.upper>5) a rule never tripped, silently; auc>-1
    always did."""
    from miaudit.errors import InputError

    with pytest.raises(InputError, match="--fail-on") as err:
        parse_gate_rule(rule)
    assert says in str(err.value)
    assert parse_gate_rule("advantage.lower>0").value == 0.0


def test_bounds_need_replicates_and_results_the_audit_can_judge():
    """Red team: with resamples = 0 the gate substituted the point and called it "auc.lower";
    with members coded the other way (loss AUC 0.20) it passed, exit 0."""
    from dataclasses import replace

    from miaudit.audit import check_gate_rules
    from miaudit.errors import InputError

    with pytest.raises(InputError, match="0 bootstrap replicates give none"):
        check_gate_rules(["auc.lower>0.6"], [0.01], resamples=0)
    with pytest.raises(InputError, match="--resamples 39"):
        check_gate_rules(["tpr@1%fpr>0.05"], [0.01], resamples=20)
    check_gate_rules(["auc.point>0.6"], [0.01], resamples=0)  # a point needs no replicates
    o = simulated_outputs(n=1200, shift=1.5, seed=5)
    flipped = miaudit.attack(
        replace(o, member=1 - o.member), attacks=["loss"], n_resamples=50, seed=7, quiet=True
    )
    lines = gate_failures(flipped, [parse_gate_rule("auc.lower>0.6")])
    assert lines and "cannot be judged" in lines[0] and "non-members above members" in lines[0]
    # inverted inputs make points meaningless too (red team: a point rule passed, exit 0)
    lines = gate_failures(flipped, [parse_gate_rule("auc.point>0.6")])
    assert lines and "non-members above members" in lines[0]
    bare = miaudit.attack(o, attacks=["loss"], n_resamples=0, seed=7, quiet=True)
    lines = gate_failures(bare, [parse_gate_rule("auc.point>0.5")])
    assert lines == [f"loss: auc.point = {_shown(bare.attacks[0].auc.point, 0.5)} > 0.5"]
    lines = gate_failures(bare, [parse_gate_rule("auc.lower>0.5")])
    assert "no bootstrap (resamples = 0)" in lines[0]
    assert lines[1].startswith("loss: auc.point (no lower bound in these results) = ")


def test_an_epsilon_rule_says_it_reads_the_point():
    """The implied ε has a lower bound only; its "upper" is the point (red team: "epsilon.upper =
    1.973" for a point, not a bound)."""
    o = simulated_outputs(n=1200, shift=1.5, seed=5)
    r = miaudit.attack(o, attacks=["loss"], n_resamples=50, seed=7, quiet=True)
    lines = gate_failures(r, [parse_gate_rule("epsilon>0.01")])
    assert lines and lines[0].startswith(
        "loss: epsilon.point (the implied ε has no upper bound) = "
    )
