"""The reference audits' null benchmark at its small size: every setting runs, and each null
store's verdict is counted once (detected, not assessed, or neither)."""

from __future__ import annotations


def test_reference_audits_of_null_models_run_and_are_counted() -> None:
    from benchmarks.bench_reference_null import run

    res = run("small")
    assert res.passed, res.table
    for f in res.figures.values():
        assert f["trials"] == 15 and f["detected"] + f["not_assessed"] <= f["trials"]
