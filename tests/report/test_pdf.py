"""``miaudit report DIR --pdf``: headless Chromium prints the report; poppler reads it back.

The PDF's pages are rendered (pdftoppm) and its text extracted (pdftotext): the page count is
what the PDF says, every page has ink, and the sections and framework names are in the text.
Skipped where Chromium or poppler-utils is missing, except under CI (scripts/system-deps.sh).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from miaudit.cli import app
from tests.report.test_assessment import run_main


def _need(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if not missing:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"missing {missing} (scripts/system-deps.sh installs them)")
    pytest.skip(f"missing {missing}")


@pytest.fixture(scope="module")
def printed(outputs_run, tmp_path_factory):
    _need("chromium", "pdftoppm", "pdftotext", "pdfinfo")
    folder, _ = outputs_run
    copy = tmp_path_factory.mktemp("pdf") / "run"
    shutil.copytree(folder, copy)
    res = CliRunner().invoke(app, ["report", str(copy), "--pdf"])
    assert res.exit_code == 0, res.output
    return copy / "report.pdf"


def test_pdf_pages_render_and_hold_the_report(printed, tmp_path):
    info = subprocess.run(["pdfinfo", str(printed)], capture_output=True, text=True, check=True)
    pages = int(re.search(r"^Pages:\s+(\d+)", info.stdout, re.M).group(1))
    assert 3 <= pages <= 30, pages
    subprocess.run(["pdftoppm", "-r", "20", "-png", str(printed), str(tmp_path / "p")], check=True)
    images = sorted(tmp_path.glob("p-*.png"))
    assert len(images) == pages
    assert all(p.stat().st_size > 500 for p in images)  # each page has something drawn
    text = subprocess.run(
        ["pdftotext", "-layout", str(printed), "-"], capture_output=True, text=True, check=True
    ).stdout
    for needed in (
        "Membership-inference audit",
        "Verdict",
        "Assessment against",
        "EDPB Opinion 28/2024",
        "Method and provenance",
    ):
        assert needed in text, needed
    assert text.count("\f") >= pages - 1  # one form feed between pages


def test_pdf_without_chromium_is_a_one_line_error(outputs_run, tmp_path, monkeypatch):
    folder, _ = outputs_run
    monkeypatch.setenv("MIAUDIT_CHROMIUM", str(tmp_path / "no-such-browser"))
    code, err = run_main(["report", str(folder), "--out", str(tmp_path / "r.html"), "--pdf"])
    assert code == 2
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert len(lines) == 1 and "Chromium" in lines[0], err
    assert not (tmp_path / "r.html").exists()  # checked before anything is written


@pytest.mark.parametrize("mode", [0o600, 0o644])
def test_pdf_is_as_restricted_as_its_html(tmp_path, monkeypatch, mode):
    """A --raw-ids report is written 0600; its PDF holds the same raw ids and was 0644 (red
    team). A stand-in Chromium writes the PDF: only the mode is checked here."""
    from miaudit.report import print_pdf

    fake = tmp_path / "chromium"
    fake.write_text(
        '#!/bin/sh\nfor a in "$@"; do case "$a" in --print-to-pdf=*) '
        'printf %s "%PDF-1.4" > "${a#--print-to-pdf=}";; esac; done\n'
    )
    fake.chmod(0o755)
    monkeypatch.setenv("MIAUDIT_CHROMIUM", str(fake))
    html = tmp_path / "r.html"
    html.write_text("<p>record id (raw)</p>")
    html.chmod(mode)
    pdf = print_pdf(html)
    assert pdf.stat().st_size > 0
    assert pdf.stat().st_mode & 0o777 == mode
