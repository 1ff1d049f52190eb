"""The CLI end to end: real processes for the main path, in-process for every bad input."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from miaudit.cli import main
from tests.conftest import simulated_outputs

MIAUDIT = [sys.executable, "-c", "from miaudit.cli import main; main()"]


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["miaudit", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


@pytest.fixture(scope="module")
def outputs_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("in") / "outputs.parquet"
    simulated_outputs(n=1500, shift=1.0, seed=4).save(path)
    return path


def test_attack_end_to_end_in_a_real_process(outputs_file, tmp_path):
    out = tmp_path / "res"
    proc = subprocess.run(
        [
            *MIAUDIT,
            "attack",
            str(outputs_file),
            "--out",
            str(out),
            "--slices",
            "group",
            "--seed",
            "7",
            "--resamples",
            "50",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert "modified_entropy" in proc.stdout and "AUC" in proc.stdout
    assert "restricted" in proc.stderr  # the 0600 warning about scores.parquet
    data = json.loads((out / "results.json").read_text())
    assert data["seed"] == 7 and data["input"]["name"] == "outputs.parquet"
    assert len(data["input"]["sha256"]) == 64


def test_version(monkeypatch, capsys):
    code, out, _ = run_main(monkeypatch, capsys, "version")
    assert code == 0 and out.strip()


def _csv(tmp_path, **cols):
    path = tmp_path / "in.csv"
    pd.DataFrame(cols).to_csv(path, index=False)
    return path


BAD = {
    "nan": {
        "logit_0": [0.1, np.nan, 0.2, 0.3],
        "logit_1": [0, 0, 0, 0],
        "label": [0, 1, 0, 1],
        "member": [0, 1, 0, 1],
    },
    "one_class": {
        "logit_0": [0.1, 0.2, 0.2, 0.3],
        "logit_1": [0, 0, 0, 0],
        "label": [0, 1, 0, 1],
        "member": [1, 1, 1, 1],
    },
    "label_range": {
        "logit_0": [0.1, 0.2, 0.2, 0.3],
        "logit_1": [0, 0, 0, 0],
        "label": [0, 5, 0, 1],
        "member": [0, 1, 0, 1],
    },
    "prob_sum": {
        "prob_0": [0.1, 0.2, 0.2, 0.3],
        "prob_1": [0.1, 0.8, 0.8, 0.7],
        "label": [0, 1, 0, 1],
        "member": [0, 1, 0, 1],
    },
    "neg_prob": {
        "prob_0": [-0.1, 0.2, 0.2, 0.3],
        "prob_1": [1.1, 0.8, 0.8, 0.7],
        "label": [0, 1, 0, 1],
        "member": [0, 1, 0, 1],
    },
    "no_member": {"logit_0": [0.1, 0.2, 0.2, 0.3], "logit_1": [0, 0, 0, 0], "label": [0, 1, 0, 1]},
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_input_exits_2_with_one_line_and_writes_nothing(monkeypatch, capsys, tmp_path, case):
    path = _csv(tmp_path, **BAD[case])
    out = tmp_path / "res"
    code, _, err = run_main(monkeypatch, capsys, "attack", str(path), "--out", str(out))
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err
    assert not out.exists()


@pytest.mark.parametrize(
    "args,message",
    [
        (["--attacks", "loss,telepathy"], "unknown attack 'telepathy'"),
        (["--slices", "zipcode"], "no column 'zipcode'"),
        (["--prior", "1.5"], "--prior"),
    ],
)
def test_bad_options(monkeypatch, capsys, outputs_file, tmp_path, args, message):
    out = tmp_path / "res"
    code, _, err = run_main(
        monkeypatch, capsys, "attack", str(outputs_file), "--out", str(out), *args
    )
    assert code == 2 and message in err and len(err.strip().splitlines()) == 1
    assert not out.exists()  # nor the folder the run would have made


def test_unwritable_output_directory(monkeypatch, capsys, outputs_file, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, _, err = run_main(
        monkeypatch, capsys, "attack", str(outputs_file), "--out", str(blocker / "sub")
    )
    assert code == 2 and "--out" in err and "cannot create output directory" in err


def test_unknown_file_type_in_a_real_process(tmp_path):
    bad = tmp_path / "outputs.xlsx"
    bad.write_bytes(b"x")
    proc = subprocess.run(
        [*MIAUDIT, "attack", str(bad)], capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 2
    assert (
        proc.stderr.strip()
        == f"error: outputs: unknown file type '.xlsx' of '{bad}'; expected one of .npz, .parquet, .csv"
    )


def test_usage_error_exits_2(monkeypatch, capsys):
    code, _, _ = run_main(monkeypatch, capsys, "attack")
    assert code == 2


def test_attack_gate_on_auc_and_epsilon(monkeypatch, capsys, outputs_file, tmp_path):
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "attack",
        str(outputs_file),
        "--attacks",
        "loss",
        "--resamples",
        "50",
        "--fail-on",
        "auc.lower>0.55",
    )
    assert code == 1 and err.startswith("FAILED --fail-on: loss: auc.lower")
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "attack",
        str(outputs_file),
        "--attacks",
        "loss",
        "--resamples",
        "50",
        "--fail-on",
        "epsilon.lower>50",
        "--fail-on",
        "auc.point<0.1",
    )
    assert code == 0, err
    # A passing gate says so, with each rule's closest attack (it printed nothing before).
    passed = [line for line in err.splitlines() if line.startswith("passed --fail-on: ")]
    assert len(passed) == 1, err
    assert "epsilon.lower>50: highest epsilon.lower = " in passed[0]
    assert "; auc.point<0.1: lowest auc.point = 0." in passed[0] and "(loss)" in passed[0]
    code, _, err = run_main(
        monkeypatch,
        capsys,
        "attack",
        str(outputs_file),
        "--attacks",
        "loss",
        "--fail-on",
        "epsilon.lower>0.01",
    )
    assert code == 1 and "epsilon.lower" in err


def _attack_loss(monkeypatch, capsys, outputs_file, out, *extra: str) -> tuple[int, str, str]:
    """``miaudit attack OUTPUTS --out OUT --attacks loss --resamples 20 [extra]``."""
    return run_main(
        monkeypatch, capsys, "attack", str(outputs_file), "--out", str(out),
        "--attacks", "loss", "--resamples", "20", *extra,
    )  # fmt: skip


def test_overwrite_replaces_the_earlier_run_and_leaves_other_files(
    monkeypatch, capsys, outputs_file, tmp_path
):
    out = tmp_path / "res"
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out)
    assert code == 0, err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["kind"] == "attack" and {
        "results.json",
        "scores.parquet",
        "report.html",
    } <= set(manifest["files"])
    marked = (out / "results.json").read_text() + "\n"  # told apart from the run's own
    (out / "results.json").write_text(marked)
    # The manifest is a file anyone may write: it selects among the names a run writes, and a
    # name it adds is not removed.
    (out / "stale.bin").write_text("listed by the manifest, but not a file miaudit writes")
    manifest["files"].append("stale.bin")
    (out / "manifest.json").write_text(json.dumps(manifest))
    (out / "mine.txt").write_text("not the run's: stays")
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out, "--overwrite")
    assert code == 0, err
    assert (out / "stale.bin").exists() and (out / "mine.txt").exists()
    assert (out / "results.json").read_text() != marked  # replaced by the new run
    assert set(json.loads((out / "manifest.json").read_text())["files"]) == {
        "results.json",
        "scores.parquet",
        "report.html",
        "report.pdf",  # written later by `miaudit report --pdf`; removed by a run replacing it
    }


def test_a_crafted_manifest_removes_nothing_of_the_users(
    monkeypatch, capsys, outputs_file, tmp_path
):
    out = tmp_path / "res"
    (out / "precious").mkdir(parents=True)
    (out / "precious" / "data.csv").write_text("a,b\n1,2\n")
    (out / "notes.txt").write_text("keep me")
    (out / "manifest.json").write_text(
        json.dumps({"kind": "audit", "files": ["precious", "notes.txt", "signals"]})
    )
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out)
    # An audit's folder is refused to an attack (its files would stay beside the results) ...
    assert code == 2 and "holds a `miaudit audit` run" in err
    (out / "manifest.json").write_text(
        json.dumps({"kind": "attack", "files": ["precious", "notes.txt"]})
    )
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out)
    # ... and an attack's manifest removes only what an attack writes.
    assert code == 0, err
    assert (out / "precious" / "data.csv").read_text() == "a,b\n1,2\n"
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_folder_where_a_result_file_goes_is_refused_before_any_work(
    monkeypatch, capsys, outputs_file, tmp_path
):
    out = tmp_path / "res"
    (out / "report.html").mkdir(parents=True)
    (out / "report.html" / "mine.txt").write_text("keep me")
    for extra in ((), ("--overwrite",)):
        code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out, *extra)
        assert code == 2 and "report.html" in err and "is a folder" in err
        assert len(err.strip().splitlines()) == 1
        assert sorted(p.name for p in out.iterdir()) == ["report.html"]
        assert (out / "report.html" / "mine.txt").read_text() == "keep me"


def test_bad_input_leaves_no_output_folder(monkeypatch, capsys, tmp_path):
    bad = tmp_path / "bad.npz"
    np.savez(bad, logits=np.zeros((4, 2)), labels=np.zeros(3, dtype=int))
    out = tmp_path / "new" / "res"
    code, _, err = run_main(monkeypatch, capsys, "attack", str(bad), "--out", str(out))
    assert code == 2, err
    assert not (tmp_path / "new").exists()


def test_a_manifest_cannot_name_files_outside_its_folder(
    monkeypatch, capsys, outputs_file, tmp_path
):
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me")
    out = tmp_path / "res"
    out.mkdir()
    (out / "results.json").write_text("{}")
    (out / "manifest.json").write_text(
        json.dumps({"kind": "attack", "files": ["../victim.txt", "results.json"]})
    )
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out, "--overwrite")
    assert code == 0, err
    assert victim.read_text() == "keep me"


def test_a_full_disk_is_one_line_and_leaves_no_file(monkeypatch, capsys, outputs_file, tmp_path):
    import errno

    from miaudit.audit import _writer

    real = _writer.write_text_atomic

    def full(dest, text, **kw):
        if dest.name == "results.json":
            raise OSError(errno.ENOSPC, "No space left on device", str(dest))
        return real(dest, text, **kw)

    monkeypatch.setattr(_writer, "write_text_atomic", full)
    out = tmp_path / "res"
    code, _, err = _attack_loss(monkeypatch, capsys, outputs_file, out)
    assert code == 2 and err.strip() == f"error: {out / 'results.json'}: No space left on device"
    assert not out.exists()  # the run made the folder: nothing of it stays


def test_text_from_input_files_cannot_drive_the_terminal(monkeypatch, capsys, tmp_path):
    """Escape sequences in slice values and record ids (a red team's set the window title and
    cleared the screen) are printed as escapes by `attack`'s slice table and by `ids`."""
    from dataclasses import replace

    o = simulated_outputs(n=600, shift=1.0, seed=5)
    group = np.where(np.arange(600) % 2 == 0, "\x1b]0;PWNED\x07", "b\x1b[2J\u202e")
    ids = np.array([f"id{i}\x1b[31m" for i in range(600)])
    o = replace(o, columns={"grp": group}, record_id=ids)
    path = tmp_path / "escapes.parquet"
    o.save(path)
    out = tmp_path / "res"
    code, stdout, err = run_main(
        monkeypatch, capsys, "attack", str(path), "--out", str(out), "--slices", "grp",
        "--attacks", "loss", "--resamples", "20",
    )  # fmt: skip
    assert code == 0, err
    assert "\\x1b]0;PWNED" in stdout and "\x1b" not in stdout + err and "\u202e" not in stdout
    code, stdout, err = run_main(monkeypatch, capsys, "ids", str(out))
    assert code == 0, err
    assert "id0\\x1b[31m" in stdout and "\x1b" not in stdout
    # ... and error lines that name them (a column's name in "extra columns: ...")
    np.savez(
        tmp_path / "named.npz",
        logits=np.zeros((4, 2)), label=[0, 1, 0, 1], member=[1, 0, 1, 0],
        **{"\x1b]0;PWNED\x07": np.arange(4)},
    )  # fmt: skip
    code, _, err = run_main(
        monkeypatch, capsys, "attack", str(tmp_path / "named.npz"), "--slices", "nope"
    )
    assert code == 2 and "\\x1b]0;PWNED" in err and "\x1b" not in err


def test_the_gate_names_the_worst_attack_first(monkeypatch, capsys, outputs_file, tmp_path):
    """A learner's walk: the FAILED line named the first attack in the list, not the worst."""
    import json

    code, _, err = run_main(
        monkeypatch, capsys, "attack", str(outputs_file), "--out", str(tmp_path / "o"),
        "--attacks", "gap,loss,entropy", "--resamples", "20", "--fail-on", "auc.point>0.0",
    )  # fmt: skip
    aucs = {
        a["name"]: a["auc"]["point"]
        for a in json.loads((tmp_path / "o" / "results.json").read_text())["attacks"]
    }
    worst = max(aucs, key=aucs.__getitem__)
    failed = [line for line in err.splitlines() if line.startswith("FAILED")]
    assert code == 1 and failed[0].startswith(f"FAILED --fail-on: {worst}: auc.point")
    assert failed[0].endswith("(and 2 more)")
    assert len(set(aucs.values())) == 3  # one worst: the test tells orders apart


def test_report_out_never_replaces_another_file_unless_told(
    monkeypatch, capsys, outputs_file, tmp_path
):
    """Red team: `miaudit report DIR --out FILE` silently replaced a config, or another run's
    report.html with this run's (a shareable report of the wrong run)."""
    from miaudit.errors import InputError
    from miaudit.report import write_folder_report

    mine, other = tmp_path / "mine", tmp_path / "other"
    for out in (mine, other):
        assert _attack_loss(monkeypatch, capsys, outputs_file, out)[0] == 0
    config = tmp_path / "victim.toml"
    config.write_text("seed = 1\n")
    theirs = (other / "report.html").read_bytes()
    for target in (config, other / "report.html"):
        code, _, err = run_main(monkeypatch, capsys, "report", str(mine), "--out", str(target))
        assert code == 2 and len(err.strip().splitlines()) == 1, err
        assert "already exists and is not this folder's own report" in err and "--overwrite" in err
    assert config.read_text() == "seed = 1\n" and (other / "report.html").read_bytes() == theirs
    # its own report.html is re-rendered as before, a new file is written, and --overwrite
    # replaces what it is told to
    for args in (
        [str(mine / "report.html")],
        [str(tmp_path / "new.html")],
        [str(config), "--overwrite"],
    ):
        code, _, err = run_main(monkeypatch, capsys, "report", str(mine), "--out", *args)
        assert code == 0, err
    assert config.read_text().startswith("<!DOCTYPE html>")
    (tmp_path / "shared.pdf").write_text("someone's PDF")  # --pdf would print beside --out
    with pytest.raises(InputError, match=r"shared\.pdf' already exists"):
        write_folder_report(mine, tmp_path / "shared.html", pdf=True)
    assert not (tmp_path / "shared.html").exists()


def test_ctrl_c_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    """Typer turns a KeyboardInterrupt into exit code 130 and prints nothing: a Ctrl-C'd run
    ended silently (red team: the only lines were a worker's traceback)."""
    import miaudit.engine
    from miaudit.cli import main

    def interrupted(*_a, **_k):
        raise KeyboardInterrupt

    monkeypatch.setattr(miaudit.engine, "train", interrupted)
    (tmp_path / "c.toml").write_text('[data]\ndataset = "breast-cancer"\n')
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "error: interrupted\n"


def test_an_internal_error_has_its_own_exit_status(tmp_path, monkeypatch, capsys) -> None:
    """Red team: a miaudit bug and a failing --fail-on gate both exited 1, so CI could not tell
    "the model leaks past the rule" from "miaudit crashed"."""
    import miaudit.engine
    from miaudit.cli import main

    def broken(*_a, **_k):
        raise RuntimeError("a bug")

    monkeypatch.setattr(miaudit.engine, "train", broken)
    (tmp_path / "c.toml").write_text('[data]\ndataset = "breast-cancer"\n')
    with pytest.raises(SystemExit) as exit_:
        main(["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")])
    assert exit_.value.code == 3
    assert capsys.readouterr().err.startswith("error: internal error (RuntimeError: a bug)")


def test_raw_ids_on_stdout_are_said_to_be_restricted(monkeypatch, capsys, outputs_file, tmp_path):
    """Red team: with --raw-ids --json stdout carried the most exposed records' ids (mostly
    members) while stderr named only the files as restricted; CI logs are often world-readable."""
    for raw in (True, False):
        extra = ["--raw-ids"] if raw else []
        code, stdout, err = run_main(
            monkeypatch,
            capsys,
            *("attack", str(outputs_file), "--attacks", "loss", "--resamples", "40"),
            *("--out", str(tmp_path / str(raw)), "--json", *extra),
        )
        assert code == 0 and stdout.lstrip().startswith("{")
        assert ("note: stdout holds the results with --raw-ids" in err) is raw
