"""Issue 16's null suite at test size: every attack through every path on outputs with no
membership signal (the full size is ``python -m benchmarks run null_suite``)."""

from __future__ import annotations

from benchmarks.bench_null_suite import SIZES, coverage_tests, null_suite

PATHS = {
    "attack", "attack --policy top-1", "attack --policy round:2", "attack --policy label-only", "attack --policy noise:0.05",
    "audit (k = 2)", "audit (k = 1)", "audit + ExternalTarget", "plan independent", "plan user",
    "tradeoff policy top-1", "tradeoff policy label-only",
}


def test_null_suite_small_instance():
    """Three seeds of every path and attack (k = 1 included: it used to be refused or give 1e61
    scores), and the check-record deciles on 2,000 records. Three seeds can only catch an attack
    whose interval misses chance every time (binomial p 1.25e-4 < 0.05 / 94); the criterion's own
    power is checked below, and the deciles at full strength in tests/audit/test_check_record.py."""
    res = null_suite(SIZES["test"])
    assert set(res["covered"]) == PATHS
    assert len(res["covered"]["audit (k = 2)"]) == 11 and len(res["covered"]["attack"]) == 10
    assert res["passed"], ([k for k, t in res["tests"].items() if t["fail"]], res["decile_failures"])


def test_coverage_criterion_fails_below_nominal_and_only_reports_over_coverage():
    """The criterion on planted coverages (200 seeds, 3 pairs, level 0.05 / 3): 0.85 fails,
    0.94 passes (within noise of 0.95), 1.00 is reported as over-coverage, never failed."""
    tests, level = coverage_tests({"p": {"low": 170, "ok": 188, "all": 200}}, 200)
    assert level == 0.05 / 3
    assert tests["p | low"]["fail"] and not tests["p | ok"]["fail"] and not tests["p | all"]["fail"]
    assert tests["p | all"]["over"] and not tests["p | ok"]["over"]
