"""The text exposure benchmark runs end to end (a tiny instance of its small size)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("transformers")
pytest.importorskip("opacus")

from benchmarks import bench_text_exposure


def test_tiny_instance_records_every_figure(monkeypatch: pytest.MonkeyPatch) -> None:
    real = bench_text_exposure._config

    def tiny(size: str, seed: int, *, dp: bool, dedup: bool) -> dict[str, Any]:
        cfg = real(size, seed, dp=dp, dedup=dedup)
        cfg["data"]["records"] = 40
        cfg["model"]["architecture"] = {"vocab_size": 300, "width": 32, "layers": 1, "heads": 2}
        cfg["model"]["pretrain"] = {"records": 150, "epochs": 1}
        cfg["model"]["finetune"]["epochs"] = 2
        # 12 canaries need a space of 1,200 candidates at least (100 per canary)
        cfg["canaries"] = {"digits": 4, "per_level": 3, "never_inserted": 3}
        return cfg

    monkeypatch.setattr(bench_text_exposure, "_config", tiny)
    result = bench_text_exposure.run("small")
    assert set(result.figures["mean_exposure"]) == {"plain", "dp", "dedup"}
    assert result.figures["dedup"]["exact_removed"] == 3 * 3 + 3 * 15  # 4× and 16× canaries
    assert result.figures["dp_epsilon"] <= 8.0 + 1e-6
    assert "group privacy" in result.table and result.passed in (True, False)
