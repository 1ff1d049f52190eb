"""Issue 16's null suite at test size: every attack through every path on outputs with no
membership signal (the full size is ``python -m benchmarks run null_suite``)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from benchmarks.bench_null_suite import SIZES, coverage_tests, null_suite

ROOT = Path(__file__).resolve().parents[2]
PATHS = {
    "attack",
    "attack --population",
    "attack --policy top-1",
    "attack --policy round:2",
    "attack --policy label-only",
    "attack --policy noise:0.05",
    "audit (k = 2)",
    "audit (k = 1)",
    "audit + ExternalTarget",
    "plan independent",
    "plan user",
    "tradeoff policy top-1",
    "tradeoff policy label-only",
}


def test_null_suite_small_instance():
    """Three seeds of every path and attack (k = 1 included: it used to be refused or give 1e61
    scores), and the check-record deciles on 2,000 records. Three seeds can only catch an attack
    whose interval misses chance every time (binomial p 1.25e-4 < 0.05 / 94); the criterion's own
    power is checked below, and the deciles at full strength in tests/audit/test_check_record.py."""
    res = null_suite(SIZES["test"])
    assert set(res["covered"]) == PATHS
    assert len(res["covered"]["audit (k = 2)"]) == 15 and len(res["covered"]["attack"]) == 10
    assert res["passed"], (
        [k for k, t in res["tests"].items() if t["fail"]],
        res["decile_failures"],
    )


def test_coverage_criterion_fails_below_nominal_and_only_reports_over_coverage():
    """The criterion on planted coverages (200 seeds, 3 pairs, level 0.05 / 3): 0.85 fails,
    0.94 passes (within noise of 0.95), 1.00 is reported as over-coverage, never failed."""
    tests, level = coverage_tests({"p": {"low": 170, "ok": 188, "all": 200}}, 200)
    assert level == 0.05 / 3
    assert tests["p | low"]["fail"] and not tests["p | ok"]["fail"] and not tests["p | all"]["fail"]
    assert tests["p | all"]["over"] and not tests["p | ok"]["over"]


@pytest.mark.claims
@pytest.mark.timeout(
    3600
)  # about 18 minutes on the 2-core machine; the suite's 300 s default would kill it
def test_null_suite_full_claim(tmp_path):
    """Issue 16's null suite at full size (200 seeds × every path and attack; check-record on
    10 × 4,000 records), through the runner: no (path, attack) below nominal coverage, no
    check-record decile above its nominal rate (one-sided, Bonferroni)."""
    env = {**os.environ, "MIAUDIT_BENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "null_suite", "--size", "full"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=3600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "store" / "null_suite.json").read_text())
    assert rec["passed"] is True, (
        rec["figures"]["below_nominal"],
        rec["figures"]["check_record"]["failures"],
    )
