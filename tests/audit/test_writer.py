"""The output folder's checks before any work (miaudit.audit._writer)."""

from __future__ import annotations

import json

import pytest

from miaudit.audit._writer import folder_kind, prepare_out
from miaudit.errors import InputError


def test_a_link_where_an_audit_writes_its_signals_folder_is_refused(tmp_path):
    """Red team: `audit --signals` wrote its restricted signals.npz wherever out/signals
    pointed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    out = tmp_path / "out"
    out.mkdir()
    (out / "signals").symlink_to(elsewhere)
    with pytest.raises(InputError, match="is a link where miaudit writes its 'signals' folder"):
        prepare_out(out, overwrite=True, kind="audit")
    assert list(elsewhere.iterdir()) == []


def test_a_manifest_only_selects_among_the_files_its_kind_writes(tmp_path):
    (tmp_path / "manifest.json").write_text(
        json.dumps({"kind": "attack", "files": ["results.json", "notes.txt", "..", "signals"]})
    )
    # report.pdf: written by `miaudit report` later, listed by no manifest, always the run's
    assert folder_kind(tmp_path) == ("attack", ("results.json", "report.pdf"))
    (tmp_path / "manifest.json").write_text(json.dumps({"kind": "rm -rf", "files": ["x"]}))
    assert folder_kind(tmp_path) == (None, ())


def _earlier_audit(out, config: str) -> set[str]:
    out.mkdir()
    (out / "results.json").write_text(json.dumps({"config_sha256": config}))
    for name in ("scores.parquet", "report.html", "audit.json", "train.json", "pseudonym.key"):
        (out / name).write_text("x")
    (out / "signals").mkdir()
    (out / "signals" / "signals.npz").write_text("x")
    files = ["results.json", "scores.parquet", "report.html", "audit.json", "train.json", "signals"]
    (out / "manifest.json").write_text(json.dumps({"kind": "audit", "files": files}))
    return {p.name for p in out.iterdir()}


def test_an_overwriting_audit_drops_the_replaced_runs_results_before_it_trains(tmp_path):
    """Red team: an --overwrite audit that failed after training left the old results beside
    its new signals (check-record answered from the mix)."""
    from miaudit.audit._writer import drop_replaced_run

    out = tmp_path / "out"
    _earlier_audit(out, "config-a")
    drop_replaced_run(out, kind="audit")
    assert {p.name for p in out.iterdir()} == {"pseudonym.key", "signals"}
    assert (out / "signals" / "signals.npz").exists()  # the run replaces its folder itself


AUDIT_CONFIG = """
seed = 3
[data]
dataset = "digits"
[model]
kind = "torch-mlp"
hidden = [8]
epochs = 1
[audit]
references = 1
attacks = ["loss"]
"""


def test_a_rerun_of_the_same_config_drops_its_results_before_it_trains(tmp_path, monkeypatch):
    """Red team: a re-run of the same config after the data file's contents changed (same
    path, so the same config digest), interrupted after training, left the new signals beside
    the old run's results.json, scores.parquet, report.html and manifest.json; check-record
    and report read the mix. The earlier results now go before training starts."""
    import miaudit.engine
    from miaudit.audit._pseudonyms import KEY_FILE, new_key
    from miaudit.audit._reference_audit import config_digest, load_audit_config, run_audit

    (tmp_path / "audit.toml").write_text(AUDIT_CONFIG)
    cfg = load_audit_config(tmp_path / "audit.toml")
    out = tmp_path / "out"
    _earlier_audit(out, config_digest(cfg))
    (out / KEY_FILE).write_bytes(new_key())
    (out / KEY_FILE).chmod(0o600)

    def interrupted(*_args, **_kwargs):
        assert not (out / "results.json").exists(), "training started beside the old results"
        raise KeyboardInterrupt  # Ctrl-C while training

    monkeypatch.setattr(miaudit.engine, "train", interrupted)
    with pytest.raises(KeyboardInterrupt):
        run_audit(cfg, out, quiet=True)
    assert {p.name for p in out.iterdir()} == {KEY_FILE, "signals"}


def test_an_overwriting_signals_audit_replaces_any_earlier_run(tmp_path):
    """Red team: `audit --signals --overwrite` into a config audit's folder kept its train.json
    and listed it as its own; no config digest: any earlier results are replaced."""
    from miaudit.audit._writer import drop_replaced_run

    out = tmp_path / "out"
    _earlier_audit(out, "config-a")
    drop_replaced_run(out, kind="audit")
    assert {p.name for p in out.iterdir()} == {"pseudonym.key", "signals"}


def _returns_within(seconds: float, work, fifo) -> BaseException | None:
    """What ``work()`` raised, failing the test if it is still blocked after ``seconds`` (then
    a writer opens ``fifo`` and closes it, so that the blocked read ends and the test does too)."""
    import os
    import threading

    raised: list[BaseException | None] = []

    def run() -> None:
        try:
            work()
            raised.append(None)
        except BaseException as exc:  # handed back to the test, whatever it is
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
        thread.join(5)
        pytest.fail(f"blocked reading {fifo}")
    return raised[0]


@pytest.mark.parametrize("name", ["manifest.json", "results.json"])
def test_a_fifo_in_the_out_folder_is_refused_not_waited_on(tmp_path, name):
    """Red team: a FIFO at OUT/manifest.json or OUT/results.json hung a re-run for ever, before
    any work and with no output."""
    import os

    out = tmp_path / "out"
    _earlier_audit(out, "config-a")
    (out / "pseudonym.key").unlink()  # the fixture's is not a key: a fresh one is made
    (out / name).unlink()
    os.mkfifo(out / name)
    raised = _returns_within(
        10,
        lambda: prepare_out(out, overwrite=False, same_config="config-a", kind="audit"),
        out / name,
    )
    assert isinstance(raised, InputError), raised
    assert str(out / name) in str(raised) and "not a regular file" in str(raised)


@pytest.mark.parametrize("name", ["manifest.json", "results.json"])
def test_a_link_or_a_huge_file_in_the_out_folder_is_refused(tmp_path, name):
    """Red team: a link to /dev/zero at OUT/manifest.json was read until memory ran out. A link
    is not followed (here to a small file, the same path as /dev/zero), and a file larger than
    miaudit writes there is not read."""
    out = tmp_path / "out"
    _earlier_audit(out, "config-a")
    (out / "pseudonym.key").unlink()  # the fixture's is not a key: a fresh one is made
    moved = tmp_path / f"elsewhere-{name}"
    (out / name).rename(moved)
    (out / name).symlink_to(moved)
    with pytest.raises(InputError, match="a link is refused"):
        prepare_out(out, overwrite=False, same_config="config-a", kind="audit")
    (out / name).unlink()
    with (out / name).open("wb") as fh:
        fh.truncate(65 << 20)  # sparse: past both caps, nothing written
    with pytest.raises(InputError, match=r"is \d+ bytes, not a"):
        prepare_out(out, overwrite=False, same_config="config-a", kind="audit")


def _write(out, key: bytes, results_json: str) -> None:
    import numpy as np

    from miaudit.audit._writer import write_run

    n = 4
    write_run(
        out,
        key,
        results_json,
        np.arange(n),
        np.array([1, 0, 1, 0]),
        np.zeros(n, dtype=np.int64),
        {"loss": np.linspace(0, 1, n)},
        quiet=True,
    )


def test_the_run_that_loses_the_key_race_removes_nothing_of_the_winners(tmp_path, monkeypatch):
    """Red team: two runs of one config into one folder at once; the one whose key lost the
    race removed the winner's fresh results.json and scores.parquet, then was refused (the
    winner had exited 0 and printed its results' path)."""
    from miaudit.audit import _writer
    from miaudit.audit._pseudonyms import KEY_FILE

    monkeypatch.setattr(_writer, "_check_reads_back", lambda _json: None)
    out = tmp_path / "out"
    loser_key = prepare_out(out, overwrite=False)  # both runs prepared an empty folder
    winner_key = prepare_out(out, overwrite=False)
    assert loser_key != winner_key
    _write(out, winner_key, '{"run": "winner"}')
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(InputError, match="another run created a different pseudonym key"):
        _write(out, loser_key, '{"run": "loser"}')
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert (out / KEY_FILE).read_bytes() == winner_key


def test_the_run_folder_miaudit_makes_is_0700_whatever_the_umask(tmp_path):
    """Red team: under umask 000 an attack's or audit's --out folder was created 0777."""
    import os
    import stat

    old = os.umask(0)
    try:
        prepare_out(tmp_path / "out", overwrite=False)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "out").stat().st_mode) == 0o700


def test_an_overwrite_removes_the_earlier_runs_pdf_report(tmp_path):
    """New-user walkthrough: `miaudit report --pdf` wrote report.pdf, which no manifest lists,
    and an `attack --overwrite` with another model's outputs kept it, shareable, beside the new
    results."""
    import miaudit
    from tests.simulate import simulated_outputs

    out = tmp_path / "run"
    miaudit.attack(simulated_outputs(n=400, seed=1), n_resamples=0, out=out, quiet=True)
    (out / "report.pdf").write_bytes(b"%PDF-1.4 the earlier run's report")
    miaudit.attack(
        simulated_outputs(n=400, seed=2), n_resamples=0, out=out, overwrite=True, quiet=True
    )
    assert not (out / "report.pdf").exists()
    assert folder_kind(out)[1] == ("results.json", "scores.parquet", "report.html", "report.pdf")
