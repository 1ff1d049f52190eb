"""Small instances of issue 4's statistical claims: references, RMIA vs LiRA, the null audit."""

from __future__ import annotations

import tomllib

from miaudit.audit import parse_audit_config
from miaudit.audit._power import null_audit, reference_power
from miaudit.data import load_signals
from tests.audit.conftest import CONFIG


def test_more_references_do_not_hurt_and_rmia_beats_lira_with_one(run):
    d, _ = run
    cfg = parse_audit_config(tomllib.loads(CONFIG))
    store = load_signals(d / "out" / "signals" / "signals.npz")
    ev = reference_power(
        store,
        cfg,
        [1, 2],
        ["lira_offline", "rmia_offline", "lira_online", "rmia_online"],
        n_resamples=200,
        seed=1,
    )
    # k = 1: offline RMIA beats offline LiRA with fixed variance (paired AUC interval above 0)
    assert ev.difference("rmia_offline@k=1", "lira_offline@k=1", "auc").lower > 0
    # doubling k never costs more than 0.01 AUC beyond noise
    for name in ("lira_offline", "rmia_offline", "lira_online", "rmia_online"):
        assert ev.difference(f"{name}@k=2", f"{name}@k=1", "auc").lower >= -0.01, name


def test_null_audit_covers_chance_for_every_attack(tmp_path):
    cfg = parse_audit_config(tomllib.loads(CONFIG))
    attacks = [
        "loss",
        "lira_online",
        "lira_offline",
        "rmia_online",
        "rmia_offline",
        "shadow",
        "ml_leaks",
    ]
    cfg = cfg.model_copy(update={"audit": cfg.audit.model_copy(update={"attacks": attacks})})
    result = null_audit(cfg, tmp_path / "null", seed=0)
    assert result.confidence == 1 - 0.05 / len(attacks)  # Bonferroni over the attacks
    assert all(result.covers_chance().values()), result.auc
