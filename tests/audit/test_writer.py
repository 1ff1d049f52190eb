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
    assert folder_kind(tmp_path) == ("attack", ("results.json",))
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
    drop_replaced_run(out, kind="audit", same_config="config-b")
    assert {p.name for p in out.iterdir()} == {"pseudonym.key", "signals"}
    assert (out / "signals" / "signals.npz").exists()  # the run replaces its folder itself


def test_a_rerun_of_the_same_config_keeps_its_files(tmp_path):
    from miaudit.audit._writer import drop_replaced_run

    out = tmp_path / "out"
    before = _earlier_audit(out, "config-a")
    drop_replaced_run(out, kind="audit", same_config="config-a")
    assert {p.name for p in out.iterdir()} == before


def test_an_overwriting_signals_audit_replaces_any_earlier_run(tmp_path):
    """Red team: `audit --signals --overwrite` into a config audit's folder kept its train.json
    and listed it as its own; no config digest: any earlier results are replaced."""
    from miaudit.audit._writer import drop_replaced_run

    out = tmp_path / "out"
    _earlier_audit(out, "config-a")
    drop_replaced_run(out, kind="audit", same_config=None)
    assert {p.name for p in out.iterdir()} == {"pseudonym.key", "signals"}
