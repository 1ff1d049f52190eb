"""miaudit audit end to end at small size: engine → LOMO attacks → results; re-runs; check-record; gate."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from miaudit.audit import AuditResult, audit, load_audit_config
from miaudit.audit._check_record import check_record
from miaudit.errors import InputError
from tests.audit.conftest import CONFIG


def test_results_and_files(run):
    d, result = run
    out = d / "out"
    assert AuditResult.from_json((out / "results.json").read_text()) == result
    assert (
        result.reference.models == 6
        and result.reference.references == 2
        and result.reference.targets == 6
    )
    assert result.input.n_records == result.reference.pairs == 6 * result.reference.pool_records
    assert {a.name for a in result.attacks} == {
        "loss",
        "lira_online",
        "lira_offline",
        "rmia_online",
        "rmia_offline",
        "ml_leaks",
    }
    assert 0.9 < result.utility.train_accuracy <= 1.0 and result.utility.generalization_gap > 0
    for name in ("scores.parquet", "signals/signals.npz", "pseudonym.key"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600, name
    scores = pd.read_parquet(out / "scores.parquet")
    assert len(scores) == result.reference.pairs and set(scores["target"]) == set(range(6))
    text = (out / "results.json").read_text()
    assert '"member"' not in text and all(r.pseudonym.startswith("p-") for r in result.most_exposed)
    # offline RMIA's a, cross-fitted per target, is reported (one value per target, on the grid)
    cal = json.loads(text)["reference"]["rmia_offline_a"]
    assert cal["method"].startswith("cross-fitted") and len(cal["per_target"]) == 6
    assert all(a in [round(0.1 * i, 1) for i in range(11)] for a in cal["per_target"])


def test_the_recorded_config_is_the_one_that_ran_and_reads_back(run):
    """A new user's walk: audit.json said plan.models = 16 (the engine's default, which an audit
    neither uses nor accepts) beside 6 models trained."""
    from miaudit.audit import parse_audit_config

    d, result = run
    recorded = json.loads((d / "out" / "audit.json").read_text())
    assert "models" not in recorded["plan"]
    assert json.loads((d / "out" / "train.json").read_text())["plan"]["models"] == 6
    again = parse_audit_config(recorded)  # a config again, as it ran
    assert again.n_models() == result.reference.models == 6


def test_reference_attacks_beat_loss_at_low_fpr(run):
    """Small instance of issue 4's first claim: paired TPR@1 %FPR(best of LiRA, RMIA) − loss > 0."""
    _, result = run
    best = max(
        ("lira_online", "lira_offline", "rmia_online", "rmia_offline"),
        key=lambda n: result.attack(n).tpr_at_fpr["tpr@1%fpr"].point,
    )
    diff = next(
        c for c in result.comparisons if c.attack == best and c.metric == "tpr@1%fpr"
    ).difference
    assert diff.lower > 0, diff


def test_rerun_reuses_the_cache_and_replaces_its_own_results(run, capsys):
    d, first = run
    again = audit(d / "audit.toml", d / "out", quiet=False)
    said = capsys.readouterr().out + capsys.readouterr().err
    assert "trained 0 unit(s), reused 2 verified unit(s)" in said  # 6 models: 3 + 3
    assert (
        again.model_copy(update={"created_at": first.created_at}) == first
    )  # bit-identical numbers


def test_other_config_does_not_overwrite(run):
    d, _ = run
    (d / "other.toml").write_text(CONFIG.replace("seed = 3", "seed = 4"))
    before = (d / "out" / "results.json").read_bytes()
    with pytest.raises(InputError, match="already exists"):
        audit(d / "other.toml", d / "out", quiet=True)
    assert (d / "out" / "results.json").read_bytes() == before


def test_check_record_gives_calibrated_evidence(run):
    """The test is valid (non-members fall below 0.05 at most ~5 % of the time) and has power."""
    d, _ = run
    scores = pd.read_parquet(d / "out" / "scores.parquet")
    ids = [str(i) for i in scores[scores["target"] == 0]["record_id"]]
    rows = check_record(d / "out", ids, target=0)
    assert all(r.n_out_references == 2 and r.n_in_references == 2 for r in rows)  # k = 2 pairs
    non = np.array([r.p_value for r in rows if not r.member_in_plan])
    mem = np.array([r.p_value for r in rows if r.member_in_plan])
    # ~700 non-members: binomial SD of a 5 % rate is 0.8 points, so 8 % is ~4 SD above a valid
    # test. (A pooled variance makes it conservative here: about 2 % measured.)
    assert (non < 0.05).mean() <= 0.08, (non < 0.05).mean()
    assert (mem < 0.05).mean() > (non < 0.05).mean()
    assert np.median(mem) < np.median(non)
    with pytest.raises(InputError, match="not among"):
        check_record(d / "out", ["no-such-id"])


def _main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    from miaudit.cli import main

    monkeypatch.setattr(sys, "argv", ["miaudit", *args])
    try:
        main()
        code = 0
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def test_cli_gate_and_check_record(run, monkeypatch, capsys):
    d, _ = run
    cfg, out = str(d / "audit.toml"), str(d / "out")
    code, _, err = _main(
        monkeypatch, capsys, "audit", cfg, "--out", out, "--fail-on", "tpr@1%fpr.upper>0.01"
    )
    assert code == 1 and "FAILED --fail-on" in err
    code, stdout, err = _main(
        monkeypatch, capsys, "audit", cfg, "--out", out, "--fail-on", "auc.lower>0.99"
    )
    assert code == 0, err
    assert "offline RMIA a = " in stdout + err and "cross-fitted per target" in stdout + err
    code, _, err = _main(monkeypatch, capsys, "audit", cfg, "--out", out, "--fail-on", "auc>>1")
    assert code == 2 and err.startswith("error: --fail-on")
    rid = str(pd.read_parquet(d / "out" / "scores.parquet")["record_id"].iloc[0])
    # one real process: the installed entry point end to end
    cr = subprocess.run(
        [
            sys.executable,
            "-c",
            "from miaudit.cli import main; main()",
            "check-record",
            out,
            "--id",
            rid,
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cr.returncode == 0 and "p-value" in cr.stdout and "Bonferroni" in cr.stdout


@pytest.mark.parametrize(
    "patch,message",
    [
        (("references = 2", "references = 0"), "audit.references"),
        (('"ml_leaks"]', '"telepathy"]'), "unknown attack 'telepathy'"),
        (("[plan]", "[plan]\nmodels = 8"), "plan.models"),
        (("hidden = [64]", "hidden = [0]"), "model.hidden"),
    ],
)
def test_bad_configs_name_the_field(tmp_path, patch, message):
    p = tmp_path / "bad.toml"
    p.write_text(CONFIG.replace(*patch))
    with pytest.raises(InputError, match=message):
        load_audit_config(p)


def test_one_reference_pair_audits_every_attack_and_says_what_k_1_changes():
    """Issue 16, item 6, through the audit: k = 1 (4 models) runs LiRA and offline RMIA — no
    refusal, LiRA scores on φ's scale (the old σ floor gave ~1e61) — and states what k = 1 does."""
    from miaudit.audit import parse_audit_config
    from miaudit.audit._reference_audit import attack_store
    from miaudit.data import SignalsStore

    rng = np.random.default_rng(0)
    half = rng.random((2, 500)) < 0.5
    keep = np.stack([half[0], ~half[0], half[1], ~half[1]])
    pop = np.zeros(500, dtype=bool)
    pop[:100] = True
    keep[:, pop] = False
    y = rng.integers(0, 3, 500)
    logits = rng.normal(size=(4, 500, 3)) + 2.0 * keep[..., None] * np.eye(3)[y][None]
    store = SignalsStore.from_arrays(
        logits=logits.astype(np.float32), label=y, keep=keep, population=pop
    )
    cfg = parse_audit_config(
        {
            "data": {"dataset": "digits"},
            "audit": {
                "references": 1,
                "resamples": 20,
                "attacks": ["lira_online", "lira_offline", "rmia_offline"],
            },
        }
    )
    run = attack_store(store, cfg)
    assert all(np.abs(s).max() < 1e3 for s in run.scores.values())
    assert all(
        run.result.attack(a).auc.lower > 0.6
        for a in ("lira_online", "lira_offline", "rmia_offline")
    )
    assert any(n.startswith("k = 1:") for n in run.result.notes)
    # The console said "cross-fitted" though k = 1 leaves nothing to cross-fit on (a new user's walk)
    from rich.console import Console

    from miaudit.cli._summary import print_summary

    console = Console(record=True, width=200)
    print_summary(run.result, console)
    said = console.export_text()
    assert "the stated default: too few pairs" in said and "cross-fitted" not in said
