"""``miaudit report RESULTS [--out report.html] [--markdown]``: (re-)render an audit's report.

Register with ``app.command("report")(report)``. Bad input raises InputError (exit 2 in main).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from miaudit.cli._console import console


def report(
    results: Annotated[
        Path, typer.Argument(help="Results folder of an audit (or its results.json).")
    ],
    out: Annotated[
        Path | None,
        typer.Option(
            "--out", help="HTML file to write (default: report.html in the results folder)."
        ),
    ] = None,
    markdown: Annotated[
        bool,
        typer.Option(
            "--markdown",
            help="Also print a Markdown summary (aggregates only) for a pull request on stdout.",
        ),
    ] = False,
) -> None:
    """Write the self-contained HTML report of an audit from its results (re-renders; shareable)."""
    from miaudit.report import load_results, render_markdown, write_report

    path = write_report(results, out)
    err = console(stderr=True)
    result, _ = load_results(results)  # once, for the warning and the Markdown summary
    warning = result.pseudonym_warning()
    if warning:
        typer.echo(f"warning: {warning}", err=True)
    err.print(
        f"report: {path} (shareable: aggregates and pseudonyms only)",
        highlight=False,
        soft_wrap=True,
    )
    if markdown:
        typer.echo(render_markdown(result), nl=False)
