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
