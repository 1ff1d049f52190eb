"""The GPU benchmark at small size, through the one runner: on a machine without a CUDA GPU it
reports "no GPU present" and claims nothing; with one, it compares the two audits."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

ROOT = Path(__file__).resolve().parents[2]


def test_gpu_small_instance(tmp_path: Path) -> None:
    env = {**os.environ, "MIAUDIT_BENCH_STORE": str(tmp_path / "store")}
    proc = subprocess.run(
        [sys.executable, "-m", "benchmarks", "run", "gpu", "--size", "small"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    rec = json.loads((tmp_path / "store" / "gpu.json").read_text())
    fig = rec["figures"]
    assert rec["schema"] == "miaudit.benchmark/1" and rec["size"] == "small"
    assert fig["models"] == 6 and fig["cpu_models_per_s"] > 0
    assert set(fig["auc_cpu"]) == {
        "loss",
        "lira_online",
        "lira_offline",
        "rmia_online",
        "rmia_offline",
    }
    if not torch.cuda.is_available():
        assert fig["gpu"] == "no GPU present" and rec["passed"] is None
        assert fig["gpu_models_per_s"] is None and fig["gpu_cpu_ratio"] is None
        assert "no GPU present" in rec["table"]
    else:
        assert rec["passed"] is True, rec["table"]  # the two audits' AUCs agree
        assert fig["gpu_models_per_s"] > 0 and fig["gpu_cpu_ratio"] > 0


def test_without_a_gpu_the_full_size_runs_nothing(monkeypatch) -> None:
    import benchmarks.bench_gpu as bench

    monkeypatch.setattr(bench, "gpu_name", lambda: None)
    monkeypatch.setattr(bench, "audit_on", lambda *a: pytest.fail("audited without a GPU"))
    res = bench.run("full")
    assert res.passed is None and res.figures["gpu"] == "no GPU present"
    assert res.figures["models"] == 16 and res.figures["cpu_models_per_s"] is None
