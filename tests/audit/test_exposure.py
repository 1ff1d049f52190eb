"""``miaudit exposure`` end to end on a tiny LM: exposure rises with repetitions, outputs are
restricted and complete (HF folders, keep matrix), the target's membership is audited through the
shared sequence signals and text attacks (results, report, check-record), bad input leaves
nothing; ``miaudit demo --text`` runs the same path. DP fine-tuning and dedup run through
``miaudit tradeoff`` (tests/audit/test_tradeoff_text.py)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("transformers")
pytest.importorskip("peft")
pytest.importorskip("faker")

from miaudit.cli import main

TINY = """
seed = 1
references = 2
resamples = 50
cache = "cache"

[data]
records = 60
population = 12

[model.architecture]
vocab_size = 300
context = 48
width = 32
layers = 1
heads = 2

[model.pretrain]
records = 200
epochs = 1

[model.finetune]
epochs = 6
learning_rate = 0.003
batch_size = 8

[canaries]
digits = 3
per_level = 3
never_inserted = 3
repetitions = [1, 16]
"""


def _config(tmp_path: Path, extra: str = "") -> Path:
    path = tmp_path / "exposure.toml"
    path.write_text(TINY + extra, encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("exposure")
    main(["exposure", str(_config(tmp)), "--out", str(tmp / "out")])
    return tmp / "out"


def test_exposure_rises_with_repetitions(run: Path) -> None:
    summary = json.loads((run / "exposure-summary.json").read_text())
    mean = {lv["repetitions"]: lv["mean_exposure"] for lv in summary["levels"]}
    assert set(mean) == {0, 1, 16} and summary["method"] == "exact"
    assert mean[16] > mean[1] and mean[16] > mean[0] + 2.0
    shared = json.dumps(summary)  # aggregates only: no canary text, no secret, no record
    canaries = json.loads((run / "exposure.json").read_text())["canaries"]
    assert '"text"' not in shared and "canaries" not in summary
    assert not any(c["prefix"] in shared or f'"{c["secret"]}"' in shared for c in canaries)


def test_every_output_is_restricted_and_the_models_are_hf_folders(run: Path) -> None:
    for path in run.rglob("*"):
        mode = stat.S_IMODE(path.stat().st_mode)
        assert mode & 0o077 == 0, (path, oct(mode))
    for name in ("target", "reference-1", "reference-2"):
        assert {"config.json", "model.safetensors", "tokenizer.json"} <= {
            p.name for p in (run / "models" / name).iterdir()
        }
    record = json.loads((run / "exposure.json").read_text())
    assert len(record["canaries"]) == 9 and all(c["rank"] >= 1 for c in record["canaries"])
    with np.load(run / "membership.npz") as z:
        assert z["keep"].shape == (3, 60) and z["keep"].sum(1).tolist() == [30, 30, 30]
        assert z["mean_token_logprob"].shape == (3, 60)
    assert len((run / "records.jsonl").read_text().splitlines()) == 72
    assert not [p for p in run.iterdir() if p.name.startswith(".staging")]


def test_existing_results_are_not_overwritten(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = (run / "exposure.json").read_bytes()
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(run.parent / "exposure.toml"), "--out", str(run)])
    assert exc.value.code == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (run / "exposure.json").read_bytes() == before


@pytest.mark.parametrize(
    "extra, field",
    [("\n[dedup]\nthreshold = 2.0\n", "dedup.threshold"), ("\ncolour = 1\n", "colour")],
)
def test_bad_config_exits_2_with_one_line_and_no_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: str, field: str
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(_config(tmp_path, extra)), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and len(err) == 1 and field in err[0]
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("marker", ["tradeoff.json", "results.json", "audit.json"])
def test_another_commands_folder_is_refused_before_any_training(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], marker: str
) -> None:
    """A new user's walk: `miaudit demo --text` shares `miaudit demo`'s default folder and
    started minutes of fine-tuning into it (its files would have joined the trade-off's)."""
    out = tmp_path / "demo-results"
    out.mkdir()
    (out / marker).write_text("{}")
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(_config(tmp_path)), "--out", str(out), "--overwrite"])
    err = capsys.readouterr().err
    assert exc.value.code == 2 and f"({marker}): choose another folder" in err
    assert sorted(p.name for p in out.iterdir()) == [marker]


def test_a_dp_claim_no_sigma_meets_is_refused_before_pretraining(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Checked on the fine-tuning set as the run makes it, after [dedup] too (with [dedup] the
    check was skipped, and the error came after minutes of pre-training and fine-tuning)."""
    path = tmp_path / "exposure.toml"
    lora = TINY.replace("[model.finetune]\n", '[model.finetune]\nmethod = "lora"\n')
    path.write_text(lora + '[model.finetune.dp]\nepsilon = 1e-6\naccountant = "rdp"\n[dedup]\n')
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(path), "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err.splitlines()
    assert exc.value.code == 2 and len(err) == 1
    assert err[0].startswith("error: model.finetune.dp.epsilon: ε = 1e-06 is too small")
    assert not (tmp_path / "cache").exists()  # nothing pre-trained
    # The text trade-off's up-front check (no sizes given) computes them through [dedup] too.
    from miaudit.audit import load_exposure_config
    from miaudit.audit._exposure import check_exposure_dp
    from miaudit.errors import InputError

    with pytest.raises(InputError, match=r"^model\.finetune\.dp\.epsilon: ε = 1e-06"):
        check_exposure_dp(load_exposure_config(path))
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


def test_sigterm_mid_run_leaves_no_staging_folder(tmp_path: Path) -> None:
    """A new user's walk: `timeout` killed `miaudit demo --text` and left fine-tuned weights in
    `.staging-exposure-*` inside --out. SIGTERM now unwinds as Ctrl-C does (exit 143)."""
    import os
    import signal
    import subprocess
    import sys
    import time

    out = tmp_path / "out"
    env = {**os.environ, "MIAUDIT_CACHE": str(tmp_path / "cache")}
    proc = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "from miaudit.cli import main; main()",
            "exposure",
            str(_config(tmp_path)),
            "--out",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob(".staging-exposure-*")) and time.monotonic() < deadline:
        assert proc.poll() is None, "the run ended before it staged"
        time.sleep(0.05)
    assert list(out.glob(".staging-exposure-*")), "the run never staged"
    time.sleep(0.5)  # inside the run's work
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=60) == 143
    # the --out folder this run made goes too: a learner's timeout left an empty one
    assert not out.exists()


def test_a_failed_run_leaves_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import miaudit.models

    def boom(*args: object, **kwargs: object) -> None:
        raise OSError(28, "No space left on device", "model.safetensors")

    monkeypatch.setattr(miaudit.models, "finetune_lm", boom)
    with pytest.raises(SystemExit) as exc:
        main(["exposure", str(_config(tmp_path)), "--out", str(tmp_path / "out")])
    assert exc.value.code == 2
    assert not (tmp_path / "out").exists()  # the folder it made goes with the failure


def test_membership_is_audited_by_the_text_attacks_on_the_shared_signals(run: Path) -> None:
    from miaudit.audit import AuditResult
    from miaudit.metrics import roc_auc_score
    from miaudit.signals import load_sequence_signals

    result = AuditResult.from_json((run / "audit" / "results.json").read_text())
    names = [a.name for a in result.attacks]
    assert names[0] == "text_loss" and names[-1] == "blind_ngram"
    assert {
        "zlib",
        "min_k",
        "min_k_plus",
        "reference_ratio",
        "text_lira_offline",
        "text_rmia_offline",
    } <= set(names)
    assert result.input.n_records == 60 and result.input.n_members == 30  # population apart
    store = load_sequence_signals(run / "sequence-signals.npz")
    assert store.roles == ("target", "base", "reference", "reference")
    assert int(store.population.sum()) == 12 and not store.keep[1].any()
    # The loss attack's AUC is the roster's mean token log-probability's, as saved.
    with np.load(run / "membership.npz") as z:
        auc = roc_auc_score(z["keep"][0].astype(int), z["mean_token_logprob"][0])
    assert result.attacks[0].auc.point == pytest.approx(auc, abs=1e-9)
    summary = json.loads((run / "exposure-summary.json").read_text())
    assert summary["loss_attack_auc"] == pytest.approx(auc, abs=1e-9)
    assert summary["membership"]["strongest"] in names[:-1]
    assert summary["heldout"]["records"] == 30 and summary["heldout"]["perplexity"] > 1
    shared = (run / "audit" / "results.json").read_text() + (
        run / "audit" / "report.html"
    ).read_text()
    record = json.loads((run / "exposure.json").read_text())
    assert not any(c["prefix"] in shared for c in record["canaries"])
    pool = [json.loads(line)["text"] for line in (run / "records.jsonl").read_text().splitlines()]
    assert not any(t in shared for t in pool)  # texts are personal data: never in the results


def test_check_record_places_a_fine_tuning_record(
    run: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with np.load(run / "membership.npz") as z:
        member = int(np.flatnonzero(z["keep"][0])[0])
    capsys.readouterr()
    main(["check-record", str(run / "audit"), "--id", str(member), "--json"])
    (row,) = json.loads(capsys.readouterr().out)
    assert row["record_id"] == str(member) and row["member_in_plan"] is True
    assert 0 < row["p_value"] <= 1 and row["n_nonmembers"] == 30


def test_demo_text_runs_the_membership_audit(
    run: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """``miaudit demo --text`` on the tiny config (the real one takes minutes): the text
    attacks and the blind baseline are printed from the shared path's results."""
    import miaudit.audit
    from miaudit.audit import load_exposure_config, text_demo_config

    assert text_demo_config().data.population > 0 and text_demo_config().references >= 2
    tiny = load_exposure_config(_config(tmp_path)).model_copy(
        update={"references": 0, "cache": run.parent / "cache"}  # the module run's cached base
    )
    monkeypatch.setattr(miaudit.audit, "text_demo_config", lambda: tiny)
    main(["demo", "--text", "--out", str(tmp_path / "demo")])
    captured = capsys.readouterr()
    printed = captured.out
    assert "text_loss" in printed and "min_k_plus" in printed and "blind_ngram" in printed
    assert (tmp_path / "demo" / "audit" / "report.html").is_file()
    # Outside a terminal each step is a line on stderr (a spinner there printed nothing for
    # the minutes the real demo takes: a new user's walk with its output in a log).
    steps = [line for line in captured.err.splitlines() if line.startswith("… ")]
    assert any("fine-tuning the target" in s for s in steps) and len(steps) >= 4
    # the module's run pre-trained the base: this one says it reuses it (a learner saw
    # "(cached)" through minutes of first-time pre-training)
    assert any(s.startswith("… reusing the pre-trained base model from the cache") for s in steps)


def test_a_pool_too_small_for_the_blind_baseline_is_refused_when_read() -> None:
    """Red team: 4 records were accepted and failed after fine-tuning (the blind baseline's 5
    folds stratified by membership need 5 members and 5 non-members)."""
    from miaudit.audit import parse_exposure_config
    from miaudit.errors import InputError

    with pytest.raises(InputError) as info:
        parse_exposure_config({"data": {"records": 4}})
    assert info.value.field == "data.records"
    assert parse_exposure_config({"data": {"records": 10}}).data.records == 10
