"""docs/own-model.md's examples of the user's own training code run as written: each example's
files (marked ``<!-- own-model: folder/file -->``) are written to a folder and its config is
audited through the command line with ``--trust-code``; a rerun reuses every cached unit."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "own-model.md"
MARKED = re.compile(r"<!-- own-model: (\S+) -->\n```\w*\n(.*?)```", re.S)


def examples() -> dict[str, dict[str, str]]:
    """folder → {file name: text}, as the page shows them."""
    out: dict[str, dict[str, str]] = {}
    for path, text in MARKED.findall(DOC.read_text(encoding="utf-8")):
        folder, _, name = path.partition("/")
        out.setdefault(folder, {})[name] = text
    return out


def test_the_page_has_the_three_examples() -> None:
    assert set(examples()) == {"pipeline", "xgboost", "torch"}
    assert all("audit.toml" in files for files in examples().values())


@pytest.mark.parametrize("folder", ["pipeline", "xgboost", "torch"])
def test_each_example_audits_as_written(folder, tmp_path, monkeypatch, capsys) -> None:
    if folder == "xgboost":
        pytest.importorskip("xgboost")
    from miaudit.cli import main

    project = tmp_path / folder
    project.mkdir()
    modules = []
    for name, text in examples()[folder].items():
        (project / name).write_text(text)
        if name.endswith(".py"):
            modules.append(name[:-3])
    monkeypatch.chdir(project)

    def run(*args: str) -> None:
        monkeypatch.setattr(sys, "argv", ["miaudit", *args])
        try:
            main()
        except SystemExit as exc:
            assert not exc.code, capsys.readouterr().err  # noqa: PT017 - the CLI's exit status
        return None

    try:
        run("audit", "audit.toml", "--out", "results", "--trust-code")
        results = json.loads((project / "results" / "results.json").read_text())
        assert results["attacks"] and (project / "results" / "report.html").is_file()
        capsys.readouterr()
        run("audit", "audit.toml", "--out", "results", "--trust-code", "--overwrite")
        assert re.search(r"reusing (\d+) of \1 unit", capsys.readouterr().err)
        import pandas as pd

        ids = pd.read_parquet(project / "results" / "scores.parquet")["record_id"].astype(str)
        # The page's own check-record command where it has one; else a record of the pool.
        shown = re.findall(r"check-record results --id (\S+)", DOC.read_text(encoding="utf-8"))
        record = shown[0] if folder == "pipeline" else ids.iloc[0]
        assert record in set(ids)
        run("check-record", "results", "--id", record)
        assert record in capsys.readouterr().out
    finally:
        for name in modules:
            sys.modules.pop(name, None)
