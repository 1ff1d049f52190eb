"""``miaudit report DIR [--out report.html [--overwrite]] [--markdown] [--pdf]``: (re-)render a run's report.

DIR is the folder of an audit (results.json), a trade-off (tradeoff.json) or a DP audit
(dp_audit.json). Register with ``app.command("report")(report)``. Bad input raises InputError
(exit 2 in main), as does ``--pdf`` without a Chromium to print with.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from miaudit.cli._console import console, report_sharing


def report(
    results: Annotated[
        Path,
        typer.Argument(
            help="Folder of an audit, a trade-off or a DP audit (or its results.json, tradeoff.json or dp_audit.json)."
        ),
    ],
    out: Annotated[
        Path | None,
        typer.Option("--out", help="HTML file to write (default: report.html in the folder)."),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="Also print a Markdown summary (aggregates only) for a pull request on stdout.",
        ),
    ] = False,
    pdf: Annotated[
        bool,
        typer.Option(
            "--pdf",
            help="Also print the report to PDF beside the HTML (headless Chromium's print-to-PDF).",
        ),
    ] = False,
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace an existing --out file that is not this folder's own report.html (refused otherwise).",
        ),
    ] = False,
) -> None:
    """Write the self-contained HTML report of a run from its results (re-renders; shareable)."""
    from miaudit.report import print_pdf, write_folder_report

    if pdf:
        _check_pdf(out)
    written = write_folder_report(results, out, overwrite=overwrite, pdf=pdf)
    err = console(stderr=True)
    if written.warning:
        typer.echo(f"warning: {written.warning}", err=True)
    err.print(
        f"report: {written.path} ({report_sharing(written.path)})",
        highlight=False,
        soft_wrap=True,
    )
    if pdf:
        path = print_pdf(written.path)
        err.print(f"pdf: {path} ({report_sharing(path)})", highlight=False, soft_wrap=True)
    if markdown:
        typer.echo(written.markdown, nl=False)


def _check_pdf(out: Path | None) -> None:
    """What ``--pdf`` needs, checked before anything is written (a missing browser costs
    nothing): an HTML ``--out`` and a Chromium to print with."""
    from miaudit.errors import InputError
    from miaudit.report import find_chromium

    if out is not None and out.suffix.lower() == ".pdf":
        # the PDF goes beside the HTML with its suffix: Chromium would print the page over itself
        raise InputError(
            "--out", f"{str(out)!r} ends in .pdf: give the HTML file (the PDF is written beside it)"
        )
    if find_chromium() is None:
        raise InputError(
            "--pdf",
            "needs Chromium and none was found (install Debian's chromium, e.g. scripts/system-deps.sh, or set MIAUDIT_CHROMIUM)",
        )
