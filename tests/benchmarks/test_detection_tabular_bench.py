"""bench_detection_tabular at its small size (docs/serve.md, "Measured on one-hot tabular data"):
on Adult benign keys raise no cross-key alert, a tight probe cloud split over 25 keys is
detected, also with benign records between its probes, and records that shared a hashed window
with a probe run (which hid it from the fingerprints before) do not hide it from the window."""

from __future__ import annotations

import benchmarks.bench_detection_tabular as bench


def test_adult_benign_keys_quiet_and_a_tight_split_cloud_caught() -> None:
    res = bench.run("small")
    f = res.figures
    assert f["benign window"] == {}  # no alert of any detector
    assert f["σ=0.01 over 25 keys window"]["detected"] == 1
    assert f["σ=0.01 over 25 keys window"]["benign_key_alerts"] == 0
    assert f["interleaved 5×50 window"]["detected"] == 1
    assert f["interleaved 1×200 window"]["detected"] == 1
    assert f["fillers 512 window"]["detected"] == 1
    assert f["fillers 512 fingerprints"]["detected"] == 0  # the baseline shows the evasion
    assert f["round robin 300×10 window"]["detected"] == 1
    assert f["clipped decoys window"]["detected"] == 1
    assert 5 * 20 <= f["fitted_window"] <= 5_000
    assert f["fitted_window"] < f["fitted_tight_window"] <= 20_000
    # (the cost's bound is a timing: judged by the full run, not asserted here)
