"""The own-model benchmark (user's torch-module and XGBoost references vs the loss attack) at
small size, through the one runner: it stays runnable and reports a paired difference."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_own_model_small_instance(tmp_path: Path) -> None:
    pytest.importorskip("xgboost")
    env = {**os.environ, "MIAUDIT_BENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "own_model", "--size", "small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "store" / "own_model.json").read_text())
    assert rec["passed"] is None  # the claim is judged at full size only
    assert set(rec["figures"]) == {"torch-module (user's CNN)", "python (user's XGBoost)"}
    for fig in rec["figures"].values():
        assert fig["models"] == 6 and fig["records"] == 1797
        diff = fig["tpr1_best_minus_loss"]
        assert diff["lower"] <= diff["point"] <= diff["upper"]
    # Even 20 trees memorise digits: the XGBoost references find members the loss attack misses.
    assert rec["figures"]["python (user's XGBoost)"]["tpr1_best_minus_loss"]["lower"] > 0
