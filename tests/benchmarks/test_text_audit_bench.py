"""bench_text_audit and bench_text_blind run end to end (tiny instances of their small sizes)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

pytest.importorskip("transformers")

from benchmarks import bench_text_audit, bench_text_blind


def test_keep_matrix_gives_every_record_half_its_references_in() -> None:
    keep = bench_text_audit.keep_matrix(50, 4, seed=0)
    assert keep.shape == (5, 50) and keep[0].sum() == 25
    assert (keep[1:].sum(0) == 2).all()  # complementary pairs: exactly 2 IN and 2 OUT


def test_text_audit_tiny_instance_records_every_attack(
    monkeypatch: pytest.MonkeyPatch, tmp_path
) -> None:
    def tiny(size: str) -> dict[str, Any]:
        return {
            "pool": 80,
            "population": 20,
            "references": 2,
            "architecture": {"vocab_size": 300, "width": 32, "layers": 1, "heads": 2},
        }

    recipe = {**bench_text_audit.RECIPE, "pretrain": {"records": 150, "epochs": 1}}
    recipe["finetune"] = {**recipe["finetune"], "epochs": 2}
    monkeypatch.setattr(bench_text_audit, "settings", tiny)
    monkeypatch.setattr(bench_text_audit, "RECIPE", recipe)
    monkeypatch.setattr(bench_text_audit, "RESAMPLES", 20)
    monkeypatch.setenv("MIAUDIT_CACHE", str(tmp_path))
    result = bench_text_audit.run("small")
    rows = result.figures["attacks"]
    assert set(rows) == {*bench_text_audit.ATTACKS, "blind_ngram"}
    assert result.figures["n_nonmembers"] == 40
    # 40 non-members cannot measure a TPR at 1 % FPR: said so, never reported as a number
    assert rows["text_loss"]["tpr_at_1pct"][0] is None and result.passed is False
    assert all(0.0 <= r["auc"][0] <= 1.0 for r in rows.values())
    assert "not measurable" in result.table


def test_text_blind_tiny_instance_flags_the_shifted_split(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(
        bench_text_blind, "sizes", lambda size: {"seeds": 4, "shifted_seeds": 2, "pool": 80}
    )
    result = bench_text_blind.run("small")
    assert result.figures["shifted_flagged"] == 2  # clinical notes vs discharge summaries
    lo, hi = result.figures["fair_excluded_share_interval"]
    assert 0.0 <= lo <= result.figures["fair_excluded_share"] <= hi <= 1.0


def test_fair_split_is_a_random_half_of_mixed_families() -> None:
    texts, member = bench_text_blind.fair_split(3, 40)
    assert len(texts) == 40 and member.sum() == 20
    again, member2 = bench_text_blind.fair_split(3, 40)
    assert again == texts and np.array_equal(member, member2)
