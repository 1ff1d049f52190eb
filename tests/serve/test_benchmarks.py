"""The service's benchmarks: detection at small size in the ordinary suite; the guard's latency
claim at full size in the claims tier."""

from __future__ import annotations

import pytest


def test_detection_benchmark_small() -> None:
    from benchmarks.bench_detection import run

    res = run("small")
    f = res.figures
    assert f["noise σ=0.1 (50/record)"]["detection_rate"] == 1.0
    assert f["boundary distance (≤300/record)"]["detection_rate"] == 1.0
    assert f["noise σ=0.01 split over 25 keys"]["detectors"] == ["spread"]
    assert f["one query per record (gap, LiRA/RMIA traffic)"]["detection_rate"] == 0.0
    assert f["benign"]["alerts"] == 0
    assert f["hidden in bulk"]["detected"] == 2  # uniform samples of 512 rows: 0 of 3
    assert f["hidden in bulk"]["benign_bulk_alerts"] == 0
    decoys = f["crowded decoys"]  # reported: detection among crowded decoys varies by run
    assert decoys["rows"] == 9_994 and decoys["default"]["no_decoys"]["detected"] == 2
    assert len(decoys["calibrated"]["decoys"]["probe_rows_sampled"]) == 2
    assert res.passed is True


@pytest.mark.slow
def test_wal_benchmark_small() -> None:
    """A real 2-worker server under a paced and a saturating load: the WAL's largest size is
    measured in both phases (docs/serve.md, Databases); sizes are figures, not asserted."""
    from benchmarks.bench_wal import run

    f = run("small").figures
    for phase in ("paced", "saturated"):
        assert f[phase]["errors"] == 0 and f[phase]["answers_per_s"] > 0
        assert f[phase]["largest_wal_bytes"] > 0 and f[phase]["largest_wal_mib_per_5s"]
    assert f["workers"] == 2 and f["wal_force_frames"] == 4 * f["wal_restart_frames"]


@pytest.mark.claims
def test_guard_p99_overhead_claim() -> None:
    from benchmarks.bench_guard import run

    res = run("full")
    assert res.figures["guarded_errors"] == 0 and res.figures["unguarded_errors"] == 0
    assert res.passed, res.table
