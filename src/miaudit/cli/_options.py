"""Options that several commands take, declared once (the same flag, type and help everywhere)."""

from __future__ import annotations

from typing import Annotated

import typer

TrustCode = Annotated[
    bool,
    typer.Option(
        "--trust-code",
        help="Allow the config to name code (e.g. an estimator outside scikit-learn), which is imported and run; see docs/security.md.",
    ),
]
Executor = Annotated[
    str | None,
    typer.Option(
        help='Where units train: "local" (worker processes) or "ray" (Ray tasks); overrides engine.executor.'
    ),
]
Address = Annotated[
    str | None,
    typer.Option(
        help='Ray cluster address ("auto": the cluster of this machine; default: a local one); overrides engine.address.'
    ),
]
AsJson = Annotated[
    bool,
    typer.Option(
        "--json",
        help="Print the results as JSON on stdout and nothing else there (summary, progress and notes go to stderr).",
    ),
]
