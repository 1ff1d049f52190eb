"""bench_qmia at small size through the one runner (the full size: ``python -m benchmarks run
qmia --size full``, stored in benchmarks/results/qmia.json)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_qmia_small_instance(tmp_path: Path) -> None:
    env = {**os.environ, "MIAUDIT_BENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "qmia", "--size", "small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=1200,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "store" / "qmia.json").read_text())
    assert rec["size"] == "small" and rec["passed"] is None
    for name in ("adult", "purchase"):
        fig = rec["figures"][name]
        assert fig["models"] == 10 and fig["population_records"] == 600
        assert {
            "qmia",
            "loss",
            "lira_offline@k=1",
            "rmia_offline@k=1",
            "lira_online@k=4",
            "combined@k=4",
        } <= set(fig["tpr1"])
        assert fig["auc"]["qmia"] > 0.5  # the overfit MLPs leak; QMIA sees it without references
