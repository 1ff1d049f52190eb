"""``miaudit check-record`` (was this record in the training data?) and ``miaudit ids`` (the
records it can answer about, for the key holder). Register with ``app.command``."""

from __future__ import annotations

import dataclasses
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from miaudit.cli._console import console, plain
from miaudit.cli._options import AsJson
from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.audit import RecordEvidence

RESTRICTED_NOTE = (
    "Record ids are personal data: only the holder of the run's pseudonym key "
    "(pseudonym.key, 0600, in the run's folder) can list them or map pseudonyms to them; "
    "anyone else is refused."
)


# Long: over 60 lines only through its command-line option declarations; the body is short.
def check_record_cmd(
    results: Annotated[
        Path, typer.Argument(help="Folder of a `miaudit audit` or `miaudit attack` run.")
    ],
    ids: Annotated[
        list[str] | None, typer.Option("--id", help="Record id to check (repeat for several).")
    ] = None,
    pseudonyms: Annotated[
        list[str] | None,
        typer.Option(
            "--pseudonym",
            help="A record's pseudonym from the run's report or results.json (repeat for several): key holder only. "
            + RESTRICTED_NOTE,
        ),
    ] = None,
    target: Annotated[
        int | None,
        typer.Option(
            help="Index of the audited model (default: the run's target — an external target when the audit had one — else 0)."
        ),
    ] = None,
    attack: Annotated[
        str | None,
        typer.Option(
            help="Audits from saved outputs: the attack whose score is ranked (default: the strongest)."
        ),
    ] = None,
    as_json: AsJson = False,
) -> None:
    """Was this record in the training data? A per-record p-value (and LiRA's likelihood ratio where references allow)."""
    from miaudit.audit import check_record, records_of_pseudonyms

    asked = list(ids or [])
    if pseudonyms:
        asked += records_of_pseudonyms(results, list(pseudonyms))
    if not asked:
        raise InputError("--id", "give at least one --id or --pseudonym")
    rows = check_record(results, asked, target=target, attack=attack)
    warn = console(stderr=True)
    warning = calibration_warning(rows[0])
    if as_json:  # stdout holds the JSON alone; what the table says beside it goes to stderr
        if warning:
            warn.print(f"warning: {warning}", soft_wrap=True, highlight=False)
        warn.print(f"restricted: {JSON_NOTE}", soft_wrap=True, highlight=False)
        sys.stdout.write(json.dumps([dataclasses.asdict(r) for r in rows], indent=2) + "\n")
        return
    _print_table(rows, warning)


#: check-record's answers name records and their membership in the plan: not shareable.
JSON_NOTE = (
    "these answers name records by their ids and give each one's membership in the audit's plan "
    "(member_in_plan, the training roster): keep them with the run's restricted files, never in a "
    "ticket, a CI log or a pull request"
)


def p_text(p: float, threshold: float) -> str:
    """``p`` in 3 significant digits, more where those would round it onto or across the
    verdict's level (0.049975 printed "0.05" beside "weak evidence at p < 0.05")."""
    for digits in range(3, 10):
        text = f"{p:.{digits}g}"
        if (float(text) < threshold) == (p < threshold):
            return text
    return repr(p)


def _print_table(rows: list[RecordEvidence], warning: str | None) -> None:
    from rich.table import Table

    out = console()
    first = rows[0]
    table = Table(
        title=f"{first.model[:1].upper()}{first.model[1:]}: was the record in its training data?"
    )
    saved = first.attack is not None
    cols = (
        ("record", "p-value", f"{first.attack} score", "non-members", "verdict", "in the input")
        if saved
        else (
            "record",
            "p-value",
            "p, references alone",
            "log LR",
            "OUT refs",
            "IN refs",
            "verdict",
            "in plan",
        )
    )
    for col in cols:
        table.add_column(col)
    for r in rows:
        member = "member" if r.member_in_plan else "non-member"
        figures: tuple[str, ...]
        if saved:
            figures = (f"{r.score:.4g}", str(r.n_nonmembers))
        else:
            llr = "n/a" if r.log_likelihood_ratio is None else f"{r.log_likelihood_ratio:.3g}"
            p_refs = "n/a" if r.p_references is None else f"{r.p_references:.3g}"
            figures = (p_refs, llr, str(r.n_out_references), str(r.n_in_references))
        p = p_text(r.p_value, r.threshold)
        table.add_row(plain(r.record_id), p, *figures, r.verdict, member)
    out.print(table)
    if warning:
        console(stderr=True).print(f"warning: {warning}", soft_wrap=True, highlight=False)
    out.print(
        f"p-value: the chance, for a record that was not in the training data, of a score at least this high; method: {first.method}. "
        + _levels(first, len({r.record_id for r in rows}))
        + f" '{'in the input' if saved else 'in plan'}' is the audit's own ground truth (restricted)"
        + (
            ""
            if saved or first.model.startswith("your model")
            else ": the audit's random split, not the training set of a model you deployed"
        )
        + "."
        + (
            ""
            if saved
            else " 'p, references alone': the reference test's own p-value, before it is ranked among this model's non-members. "
            "'log LR': LiRA's online log-likelihood ratio from the record's IN and OUT references (above 0: more like a member); "
            "it is a score, not a p-value, and uses the references alone, so it can disagree with the p-value."
        ),
        soft_wrap=True,
    )


def _levels(first: RecordEvidence, n: int) -> str:
    """The verdicts' level, the smallest p the test can give, and its power, in words."""
    t = first.threshold
    text = f"Verdicts: strong / evidence / weak below {t / 50:.3g} / {t / 5:.3g} / {t:.3g}" + (
        f" (0.05 / {n} records checked, Bonferroni)."
        if n > 1
        else " (one record checked: checking several divides 0.05 by their number, Bonferroni)."
    )
    if first.p_floor is not None:
        text += f" This test's smallest p-value here: {first.p_floor:.3g}."
    if first.power is not None:
        text += (
            f" Its power on this model: {first.power:.0%} of the model's known members fall below "
            f"{t:.3g} (a 'no evidence' says little where this is small)."
        )
    return text


def ids_cmd(
    results: Annotated[
        Path, typer.Argument(help="Folder of a `miaudit audit` or `miaudit attack` run.")
    ],
    as_json: AsJson = False,
) -> None:
    """List the audited record ids that check-record answers about, with their pseudonyms (restricted: key holder only)."""
    from miaudit.audit import audited_records

    records = audited_records(results)
    if as_json:
        sys.stdout.write(json.dumps([dataclasses.asdict(r) for r in records], indent=2) + "\n")
        return
    for r in records:
        sys.stdout.write(f"{plain(r.record_id)}\t{plain(r.pseudonym)}\n")
    console(stderr=True).print(
        f"{len(records)} record(s): id, pseudonym. Restricted: record ids are personal data; keep this list with the run's restricted files.",
        soft_wrap=True,
    )


ids_cmd.__doc__ = f"{ids_cmd.__doc__}\n\n{RESTRICTED_NOTE}"


def calibration_warning(r: RecordEvidence) -> str | None:
    """What to say when a reference audit's references do not reproduce the audited model:
    their test alone puts significantly more than 5 % of its known non-members below 0.05
    (one-sided binomial test at 0.001)."""
    from scipy.stats import binomtest

    if r.null_rate is None or r.n_nonmembers is None or r.n_nonmembers < 1:
        return None
    n = r.n_nonmembers + (0 if r.member_in_plan else 1)  # the model's known non-members
    hits = round(r.null_rate * n)
    if binomtest(hits, n, 0.05, alternative="greater").pvalue >= 0.001:
        return None
    return (
        f"the references do not reproduce this model's training: against them alone {r.null_rate:.0%} of its "
        f"{n} known non-members get p < 0.05 (5% expected), so the 'p, references alone' column would accuse "
        f"non-members; the p-values are ranked among those non-members instead (smallest possible: {1 / (1 + n):.2g})"
    )
