"""``--json`` (machine-readable results alone on stdout), ``miaudit ids`` and
``check-record --pseudonym`` (key holder only), and record ids of any type from pandas."""

from __future__ import annotations

import json
import os
import sys

import numpy as np
import pandas as pd
import pytest

from miaudit.cli import main
from tests.conftest import simulated_outputs


def run_main(monkeypatch, capsys, *args: str) -> tuple[int, str, str]:
    monkeypatch.setattr(sys, "argv", ["miaudit", *args])
    code = 0
    try:
        main()
    except SystemExit as exc:
        code = int(exc.code or 0)
    cap = capsys.readouterr()
    return code, cap.out, cap.err


def _string_id_outputs(tmp_path):
    """Outputs saved from pandas with string ids (an object column)."""
    o = simulated_outputs(n=600, shift=2.0, seed=3)
    frame = pd.DataFrame(
        {
            "record_id": [f"patient-{i:04d}" for i in range(o.n_records)],
            "label": o.label,
            "member": o.member,
        }
        | {f"logit_{c}": o.values[:, c] for c in range(o.n_classes)}
    )
    path = tmp_path / "outputs.parquet"
    frame.to_parquet(path)
    return path, frame


@pytest.fixture(scope="module")
def attacked(tmp_path_factory):
    """One ``attack --json`` run, shared (read only) by the tests of this module."""
    tmp_path = tmp_path_factory.mktemp("attacked")
    path, frame = _string_id_outputs(tmp_path)
    out = tmp_path / "res"
    with pytest.MonkeyPatch.context() as mp, _captured() as cap:
        mp.setattr(
            sys,
            "argv",
            ["miaudit", "attack", str(path), "--out", str(out), "--resamples", "20", "--json"],
        )
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    return code, cap.out.getvalue(), cap.err.getvalue(), out, frame


class _captured:
    """stdout and stderr of a block (capsys is per test; the module's run is shared)."""

    def __enter__(self):
        import contextlib
        import io

        self.out, self.err = io.StringIO(), io.StringIO()
        self._stack = contextlib.ExitStack()
        self._stack.enter_context(contextlib.redirect_stdout(self.out))
        self._stack.enter_context(contextlib.redirect_stderr(self.err))
        return self

    def __exit__(self, *exc):
        self._stack.close()


def test_attack_json_is_the_only_thing_on_stdout(attacked):
    code, stdout, stderr, out, _ = attacked
    assert code == 0, stderr
    parsed = json.loads(stdout)  # the whole of stdout is one JSON document
    assert parsed == json.loads((out / "results.json").read_text())
    assert "AUC" in stderr and "report:" in stderr  # the summary went to stderr
    assert (out / "report.html").is_file()


def test_string_ids_from_pandas_keep_their_text(attacked, monkeypatch, capsys):
    code, _, _, out, frame = attacked
    assert code == 0
    scores = pd.read_parquet(out / "scores.parquet")
    assert scores["record_id"].tolist() == frame["record_id"].tolist()
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "check-record", str(out), "--id", "patient-0007", "--json"
    )
    assert code == 0, stderr
    (row,) = json.loads(stdout)
    assert row["record_id"] == "patient-0007"
    assert row["member_in_plan"] == bool(frame["member"][7])
    # the JSON names a record and its membership: stderr says it is restricted (it said nothing)
    assert stderr.startswith("restricted: ") and "member_in_plan" in stderr
    assert row["threshold"] == 0.05 and row["p_floor"] > 0 and 0 <= row["power"] <= 1


def test_a_repeated_id_is_one_record_checked(attacked, monkeypatch, capsys):
    """The level counted distinct records, but the footer said "0.05 / 2 records checked"."""
    out = attacked[3]
    code, stdout, stderr = run_main(
        monkeypatch,
        capsys,
        "check-record",
        str(out),
        "--id",
        "patient-0007",
        "--id",
        "patient-0007",
    )
    assert code == 0, stderr
    assert "(one record checked" in " ".join(stdout.split())


def test_p_values_are_never_rounded_onto_their_level():
    """0.049975 (100 / 2001) printed "0.05" beside "weak evidence" (p < 0.05)."""
    from miaudit.cli._records import p_text

    assert p_text(100 / 2001, 0.05) == "0.04998"
    assert p_text(0.05, 0.05) == "0.05" and p_text(0.1234, 0.05) == "0.123"
    assert p_text(0.0099996, 0.01) == "0.0099996"


def test_the_key_holder_lists_ids_and_maps_pseudonyms(attacked, monkeypatch, capsys):
    _, _, _, out, frame = attacked
    code, stdout, stderr = run_main(monkeypatch, capsys, "ids", str(out), "--json")
    assert code == 0, stderr
    listed = json.loads(stdout)
    assert [r["record_id"] for r in listed] == frame["record_id"].tolist()
    exposed = json.loads((out / "results.json").read_text())["most_exposed"][0]["pseudonym"]
    behind = next(r["record_id"] for r in listed if r["pseudonym"] == exposed)
    code, stdout, stderr = run_main(
        monkeypatch, capsys, "check-record", str(out), "--pseudonym", exposed, "--json"
    )
    assert code == 0, stderr
    assert json.loads(stdout)[0]["record_id"] == behind


@pytest.mark.parametrize("command", [["ids"], ["check-record", "--pseudonym", "p-0"]])
def test_without_the_key_one_line_refusal(attacked, monkeypatch, capsys, tmp_path, command):
    import shutil

    out = tmp_path / "res"
    shutil.copytree(attacked[3], out)
    os.chmod(out / "pseudonym.key", 0o644)  # as if someone else could read it: not the holder's
    code, stdout, stderr = run_main(monkeypatch, capsys, command[0], str(out), *command[1:])
    assert code == 2 and stdout == ""
    assert len(stderr.strip().splitlines()) == 1 and "pseudonym.key" in stderr
    (out / "pseudonym.key").unlink()
    code, stdout, stderr = run_main(monkeypatch, capsys, command[0], str(out), *command[1:])
    assert code == 2 and stdout == "" and "only the holder" in stderr


def test_an_unknown_pseudonym_is_refused(attacked, monkeypatch, capsys):
    _, _, _, out, _ = attacked
    code, _, stderr = run_main(
        monkeypatch, capsys, "check-record", str(out), "--pseudonym", "p-0000000000000000"
    )
    assert code == 2 and "--pseudonym" in stderr


def test_a_pickled_npz_array_is_refused_naming_it_and_the_fix(monkeypatch, capsys, tmp_path):
    o = simulated_outputs(n=200, seed=1)
    path = tmp_path / "outputs.npz"
    ids = np.array([f"r{i}" for i in range(200)], dtype=object)  # what pandas' .to_numpy() gives
    np.savez(path, logits=o.values, label=o.label, member=o.member, record_id=ids)
    code, stdout, stderr = run_main(monkeypatch, capsys, "attack", str(path))
    assert code == 2 and stdout == ""
    assert stderr.startswith("error: record_id:") and "astype(str)" in stderr


def test_integer_ids_keep_their_pseudonyms_as_text():
    from miaudit.audit._pseudonyms import pseudonymise
    from miaudit.data import ModelOutputs

    key = bytes(range(32))
    o = simulated_outputs(n=50, seed=2)
    as_text = ModelOutputs.from_arrays(
        logits=o.values, label=o.label, member=o.member, record_id=o.record_id.astype(object)
    )
    assert as_text.record_id.dtype.kind == "U"
    assert pseudonymise(as_text.record_id, key) == pseudonymise(o.record_id, key)


@pytest.mark.parametrize(
    ("ids", "expect"),
    [
        (np.array([b"a", b"b"]), ["a", "b"]),
        (
            np.array(["2024-01-01", "2024-01-02"], dtype="datetime64[D]"),
            ["2024-01-01", "2024-01-02"],
        ),
        (np.array([1, "b"], dtype=object), ["1", "b"]),
    ],
)
def test_ids_of_any_type_become_text(ids, expect):
    from miaudit.data import ModelOutputs

    o = ModelOutputs.from_arrays(
        logits=np.zeros((2, 2)), label=np.array([0, 1]), member=np.array([0, 1]), record_id=ids
    )
    assert o.record_id.tolist() == expect


def test_missing_ids_are_refused():
    from miaudit.data import ModelOutputs
    from miaudit.errors import InputError

    with pytest.raises(InputError, match="missing"):
        ModelOutputs.from_arrays(
            logits=np.zeros((2, 2)),
            label=np.array([0, 1]),
            member=np.array([0, 1]),
            record_id=np.array(["a", None], dtype=object),
        )


def test_raw_ids_make_the_results_and_report_restricted(monkeypatch, capsys, tmp_path):
    """Red team (a new user's walk through the docs): --raw-ids put likely members' ids in
    results.json and report.html, written 0644 and announced as shareable."""
    import stat

    path, frame = _string_id_outputs(tmp_path)
    out = tmp_path / "raw"
    args = ("attack", str(path), "--out", str(out), "--resamples", "20", "--raw-ids")
    code, stdout, stderr = run_main(monkeypatch, capsys, *args)
    assert code == 0, stderr
    listed = [
        r["pseudonym"] for r in json.loads((out / "results.json").read_text())["most_exposed"]
    ]
    assert set(listed) <= set(frame["record_id"])  # ids in clear, as asked
    for name in ("results.json", "report.html"):
        assert stat.S_IMODE(os.stat(out / name).st_mode) == 0o600, name
    said = " ".join((stdout + stderr).split())
    assert "results.json (restricted, 0600: --raw-ids" in said and "share neither" in said
    assert "report.html (restricted, 0600" in said and "(shareable" not in said
    code, _, stderr = run_main(monkeypatch, capsys, "report", str(out))  # re-rendered: still
    assert code == 0 and stat.S_IMODE(os.stat(out / "report.html").st_mode) == 0o600
    assert "restricted, 0600" in " ".join(stderr.split())
