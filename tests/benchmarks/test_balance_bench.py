"""The balanced-references benchmark at its small size (docs/method.md §3, "Balanced
references"): its claim holds, and balancing moves the null figures towards chance."""

from __future__ import annotations


def test_balancing_brings_null_figures_back_to_chance() -> None:
    from benchmarks.bench_balance import run

    res = run("small")
    assert res.passed, (res.table, res.notes)
    for key in ("k8_null", "k16_null"):
        for attack in ("lira_online", "lira_shrunk_online"):
            auc = res.figures["auc"][key]["auc"][attack]
            assert abs(auc["after"][0] - 0.5) < abs(auc["before"][0] - 0.5), (key, attack)
            assert auc["before"][0] < 0.5
    tpr = res.figures["offline"]["tpr"]
    for attack in ("lira_offline", "rmia_offline"):
        assert abs(tpr[attack]["after"][0] - 0.01) < abs(tpr[attack]["before"][0] - 0.01)
    assert res.figures["auc"]["k8_null"]["auc"]["rmia_online"]["identical"]
