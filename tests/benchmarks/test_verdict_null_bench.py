"""The verdict's null benchmark at its small size: the family's bounds flag no more null models
than the nominal rate allows (with its stated allowance), and never more than separate bounds."""

from __future__ import annotations


def test_the_verdict_holds_its_rate_on_null_data() -> None:
    from benchmarks.bench_verdict_null import run

    res = run("small")
    assert res.passed, res.table
    for setting in ("rho0", "rho0.8"):
        figures = res.figures[setting]
        assert figures["family"] <= figures["separate"]
