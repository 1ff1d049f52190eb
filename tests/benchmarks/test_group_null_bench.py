"""The most-exposed-group null benchmark at its small size: it runs end to end, and the rule
with the permutation test never names more groups than the bound alone (it only adds a
condition)."""

from __future__ import annotations


def test_the_group_rule_with_its_test_names_no_more_than_the_bound_alone() -> None:
    from benchmarks.bench_group_null import run

    res = run("small")
    assert res.passed, res.table
    for setting in ("g10x50", "g20x44"):
        f = res.figures[setting]
        assert f["with_test"] <= f["bound_alone"] and f["trials"] == 12
