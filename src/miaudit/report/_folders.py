"""Reports of whatever folder a miaudit command wrote: an audit (results.json), a trade-off
(tradeoff.json, with its baseline's results under variants/) or a DP audit (dp_audit.json)."""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from miaudit.audit import TEXT_TRADEOFF_SCHEMA, DpAuditResult, TextTradeoffResult, TradeoffResult
from miaudit.errors import InputError
from miaudit.report._inputs import DpAuditSummary, TradeoffVariant

FolderKind = Literal["audit", "tradeoff", "dp-audit"]
#: The file that marks each kind of folder, in the order they are looked for.
MARKERS: tuple[tuple[str, FolderKind], ...] = (
    ("tradeoff.json", "tradeoff"),
    ("results.json", "audit"),
    ("dp_audit.json", "dp-audit"),
)


@dataclass(frozen=True)
class Folder:
    kind: FolderKind
    path: Path  # the folder
    marker: Path  # the file that says what it is


def find_folder(path: Path | str) -> Folder:
    """What kind of results ``path`` (a folder or one of the marker files) holds; InputError if none."""
    p = Path(path)
    if p.is_file():
        for name, kind in MARKERS:
            if p.name == name:
                return Folder(kind, p.parent, p)
        return Folder("audit", p.parent, p)  # a results.json under another name
    for name, kind in MARKERS:
        if (p / name).is_file():
            return Folder(kind, p, p / name)
    wanted = ", ".join(name for name, _ in MARKERS)
    raise InputError(
        "results", f"{str(p)!r} holds none of {wanted}: give the folder a miaudit command wrote"
    )


def variants_from_tradeoff(result: TradeoffResult) -> list[TradeoffVariant]:
    """A trade-off's variants as the report's :class:`TradeoffVariant` records."""
    return [
        TradeoffVariant(
            name=v.name,
            description=v.description,
            test_accuracy=v.test_accuracy,
            test_accuracy_interval=v.test_accuracy_interval,
            train_accuracy=v.train_accuracy,
            generalization_gap=v.generalization_gap,
            strongest_attack=v.strongest_attack,
            auc=v.auc,
            tpr_at_1pct_fpr=v.tpr_at_1pct_fpr,
            epsilon=v.epsilon,
            delta=v.delta,
            baseline=v.baseline,
            risk_reduction=v.risk_reduction,
            accuracy_loss=v.accuracy_loss,
            recommendation=v.recommendation,
            reason=v.reason,
            compared_with=v.compared_with,
            fault_injection=v.fault_injection,
        )
        for v in result.variants
    ]


def dp_summary_from_audit(result: DpAuditResult) -> DpAuditSummary | None:
    """A DP audit as the report's :class:`DpAuditSummary` (None when the recipe claimed no ε)."""
    if math.isinf(result.claimed_epsilon):
        return None
    return DpAuditSummary(
        claimed_epsilon=result.claimed_epsilon,
        delta=result.delta,
        accountant=result.accountant,
        method=result.method,
        empirical_epsilon_lower_bound=result.empirical_epsilon_lower_bound,
        significance=result.significance,
        max_certifiable_epsilon=result.max_certifiable_epsilon,
        trials=result.m,
        trials_unit="runs" if result.multi_run is not None else "canaries",
        notes=[
            *result.notes,
            f"verdict of this design: {result.verdict_text()}",
            *([result.multi_run.line()] if result.multi_run is not None else []),
            *([result.curve.line()] if result.curve is not None else []),
            *([result.calibration.line()] if result.calibration is not None else []),
            *([line] if (line := result.power_line()) is not None else []),
            *_gaussian_dp_note(result),
        ],
    )


def _gaussian_dp_note(result: DpAuditResult) -> list[str]:
    """The μ-GDP estimate, labelled with its family assumption (never the verdict)."""
    g = result.gaussian_dp
    if g is None:
        return []
    eps = "∞" if g.epsilon is None else f"{g.epsilon:.3f}"
    return [f"{g.label}: μ ≥ {g.mu:.3f}, ε ≈ {eps}"]


def tradeoff_baseline(folder: Folder) -> tuple[TradeoffResult, Path]:
    """The trade-off result and its baseline variant's results folder."""
    try:
        result = TradeoffResult.read(folder.marker, field="results")
    except InputError:
        _refuse_text_tradeoff(folder)
        raise
    base = next((v for v in result.variants if v.baseline), result.variants[0])
    results = folder.path / base.folder
    if not results.resolve().is_relative_to(folder.path.resolve()):
        # a link inside the folder led the report to another run's restricted scores (red team)
        raise InputError(
            "results",
            f"{str(results)!r} leads outside the trade-off folder (a link): its results are not this trade-off's",
        )
    if not (results / "results.json").is_file():
        raise InputError(
            "results",
            f"{str(folder.marker)!r} names the baseline's results {str(results / 'results.json')!r}, which is missing",
        )
    return result, results


def _refuse_text_tradeoff(folder: Folder) -> None:
    """A text trade-off has no HTML report yet: say so, and where its reports are, rather than
    'not a file this miaudit reads' (red team)."""
    try:
        text = TextTradeoffResult.read(folder.marker, field="results")
    except InputError:
        return
    names = ", ".join(f"{v.folder}/audit/report.html" for v in text.variants[:3])
    raise InputError(
        "results",
        f"{str(folder.marker)!r} is a text trade-off ({TEXT_TRADEOFF_SCHEMA}), which has no HTML "
        f"report yet: each variant's audit has its own ({names})",
    )


@dataclass(frozen=True)
class WrittenReport:
    """What :func:`write_folder_report` wrote, and the Markdown summary of the same folder."""

    kind: FolderKind
    path: Path
    markdown: str
    warning: str | None = None


def render_dp_report(result: DpAuditResult) -> str:
    """The report of a DP audit alone: the claim, its bound, and the assessment."""
    from miaudit._version import __version__
    from miaudit.report import _charts
    from miaudit.report._assessment import assess_frameworks, load_frameworks
    from miaudit.report._render import _environment

    dp = dp_summary_from_audit(result)
    context = {
        "d": result,
        "dp": dp,
        "chart": _charts.dp_chart(dp) if dp is not None else None,
        "version": __version__,
        "assessment": assess_frameworks(None, dp=dp),
        "frameworks": load_frameworks(),
    }
    return str(_environment().get_template("dp_report.html.j2").render(**context))


def render_dp_markdown(result: DpAuditResult) -> str:
    """A short Markdown summary of a DP audit for a pull request."""
    from miaudit.report._assessment import assess_frameworks
    from miaudit.report._render import _md_assessment, _md_cell

    lines = [
        f"### Differential-privacy audit: {_md_cell(result.dataset)}",
        "",
        f"**{result.verdict}.** {_md_cell(result.summary())}",
        "",
        *_md_assessment(assess_frameworks(None, dp=dp_summary_from_audit(result))),
    ]
    return "\n".join(lines).rstrip("\n") + "\n"


def write_folder_report(
    path: Path | str,
    out_html: Path | str | None = None,
    *,
    dp: DpAuditSummary | None = None,
    overwrite: bool = False,
    pdf: bool = False,
) -> WrittenReport:
    """Render the report of any folder a miaudit command wrote (audit, trade-off, DP audit) and
    write it atomically; ``out_html`` defaults to report.html in that folder.

    An ``out_html`` that exists and is not that folder's own report.html is replaced only with
    ``overwrite`` (InputError otherwise): ``miaudit report DIR --out FILE`` silently replaced a
    config, or another run's report with this run's (red team). ``pdf``: the PDF beside
    ``out_html`` (``--pdf``) is checked the same way, before anything is written."""
    from miaudit._io import write_text_atomic
    from miaudit.report._render import (
        folder_aggregates,
        load_results,
        render_markdown,
        write_report,
    )

    folder = find_folder(path)
    if folder.kind == "dp-audit":
        result = DpAuditResult.read(folder.marker, field="results")
        out = _out_path(folder.path, out_html, overwrite=overwrite, pdf=pdf)
        write_text_atomic(out, render_dp_report(result))
        return WrittenReport("dp-audit", out, render_dp_markdown(result))
    variants: list[TradeoffVariant] = []
    results = folder.marker
    if folder.kind == "tradeoff":
        tradeoff, results = tradeoff_baseline(folder)
        variants = variants_from_tradeoff(tradeoff)
        if dp is None and (folder.path / "dp_audit.json").is_file():
            dp = dp_summary_from_audit(DpAuditResult.read(folder.path / "dp_audit.json"))
    out = _out_path(folder.path, out_html, overwrite=overwrite, pdf=pdf)
    audit, run_folder = load_results(results)
    aggregates = folder_aggregates(run_folder, audit)  # once, for the HTML and the summary
    written = write_report(results, out, tradeoff=variants or None, dp=dp, aggregates=aggregates)
    md = render_markdown(audit, tradeoff=variants or None, dp=dp, classes=aggregates[1])
    return WrittenReport(folder.kind, written, md, audit.pseudonym_warning())


def _out_path(folder: Path, out_html: Path | str | None, *, overwrite: bool, pdf: bool) -> Path:
    from miaudit._io import ensure_writable_dir
    from miaudit.report._render import REPORT_FILE

    out = Path(out_html) if out_html is not None else folder / REPORT_FILE
    if out.is_dir():
        raise InputError(
            "--out",
            f"{str(out)!r} is a folder; give the report's file name, e.g. {str(out / REPORT_FILE)!r}",
        )
    if not overwrite and out.resolve() != (folder / REPORT_FILE).resolve():
        for path in (out, out.with_suffix(".pdf")) if pdf else (out,):
            if path.exists() or path.is_symlink():
                raise InputError(
                    "--out",
                    f"{str(path)!r} already exists and is not this folder's own report: pass --overwrite to replace it, or choose another file",
                )
    ensure_writable_dir(out.parent if str(out.parent) else Path("."), field="--out")
    return out
