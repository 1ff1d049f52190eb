"""The million-record and scaling benchmarks at small size, through the one runner."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[2]


def test_million_small_instance(tmp_path: Path) -> None:
    env = {**os.environ, "MIAUDIT_BENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "million", "--size", "small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "store" / "million.json").read_text())
    fig = rec["figures"]
    assert (
        rec["schema"] == "miaudit.benchmark/1" and rec["size"] == "small" and rec["passed"] is True
    )
    assert fig["records"] == 50_000 and fig["models"] == 16 and 0 < fig["peak_rss_gb"] < 4
    assert set(fig["auc"]) == {"loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline"}
    assert all(0.6 < a < 0.9 for a in fig["auc"].values())  # the synthetic members are detectable
    comb = fig["combined"]  # its own process; 45,000 pool records: the stacker's cap applies
    assert set(comb["auc"]) == {"combined"} and 0.6 < comb["auc"]["combined"] < 0.95
    assert 0 < comb["peak_rss_gb"] < 4 and comb["pairs"] == fig["pairs"]


def test_growth_exponents() -> None:
    from benchmarks.bench_scaling import exponent, last_step

    n = [1_000, 4_000, 16_000]
    assert exponent(n, [2.0 * x for x in n]) == pytest.approx(1.0)
    assert exponent(n, [x**2 for x in n]) == pytest.approx(2.0)
    assert last_step(n, [5.0 + 0 * x for x in n]) == pytest.approx(0.0)
    # n log n: slightly above 1, by log(log 16000 / log 4000) / log 4
    assert last_step(n, list(np.array(n) * np.log(n))) == pytest.approx(
        1 + np.log(np.log(16_000) / np.log(4_000)) / np.log(4)
    )
