"""bench_detection_tabular at its small size (docs/serve.md, "Measured on one-hot tabular data"):
on Adult the design before raised `spread` alerts on benign keys and today's raises none, a
tight probe cloud split over 25 keys is still detected."""

from __future__ import annotations

import benchmarks.bench_detection_tabular as bench


def test_adult_benign_keys_quiet_and_a_tight_split_cloud_caught() -> None:
    res = bench.run("small")
    f = res.figures
    assert f["benign today"] == {}  # no alert of any detector
    assert f["benign before"].get("spread", 0) > 0  # the baseline shows the problem
    assert f["σ=0.01 over 25 keys today"]["detected"] == 1
    assert f["σ=0.01 over 25 keys today"]["benign_key_alerts"] == 0
    assert f["benign pairs"]["sharing_match_threshold"] > 0.05  # hash matches alone cluster
    # (the cost's flatness is a timing: judged by the full run, not asserted here)
