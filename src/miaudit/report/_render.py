"""Render an audit's results as one self-contained HTML file, or as a Markdown summary."""

from __future__ import annotations

import functools
import re
import unicodedata
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypeVar

from markupsafe import Markup, escape
from pydantic import BaseModel, ValidationError

from miaudit.audit import AuditResult, SliceAttack, SliceResult
from miaudit.errors import InputError
from miaudit.metrics import Estimate
from miaudit.report import _charts
from miaudit.report._assessment import AssessmentRow, assess_frameworks, load_frameworks
from miaudit.report._budget import budget_section
from miaudit.report._controls import attacker_profile, exposure_evidence, recommend
from miaudit.report._design import design_limits
from miaudit.report._format import _num, _pct, format_estimate, share
from miaudit.report._inputs import DpAuditSummary, ScoreHistogram, TradeoffVariant
from miaudit.report._verdict import RISK_THRESHOLDS, RiskAssessment, assess_risk

REPORT_FILE = "report.html"
_M = TypeVar("_M", bound=BaseModel)


def _est_html(e: Estimate | None, *, pct: bool = False, signed: bool = False) -> Markup:
    text = format_estimate(e, pct=pct, signed=signed)
    if text.startswith("not measurable") or text == "n/a":
        # short in a table cell; the non-members it needs are in "What this design can measure"
        short = "n/a" if text == "n/a" else "not measurable"
        return Markup('<span class="status" title="{}">{}</span>').format(text, short)
    if text.endswith("(interval not reliable)"):
        return Markup('{} <span class="ci status">(interval not reliable)</span>').format(
            text.removesuffix(" (interval not reliable)")
        )
    if " [" in text:
        point, rest = text.split(" [", 1)
        return Markup('{} <span class="ci">[{}</span>').format(point, rest)
    return Markup(escape(text))


def _breakable(name: str) -> Markup:
    """A snake_case name that may wrap after its underscores (long attack names in narrow tables)."""
    return Markup("_<wbr>").join(escape(part) for part in name.split("_"))


def _tprname(key: str) -> str:
    return key.replace("tpr@", "TPR at ").replace("%fpr", "% FPR")


@functools.cache
def _environment():  # type: ignore[no-untyped-def]
    from jinja2 import Environment, PackageLoader, StrictUndefined

    env = Environment(
        loader=PackageLoader("miaudit.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )
    env.filters.update(
        est=_est_html,
        pct=_pct,
        num=_num,
        share=share,
        thousands=lambda v: f"{v:,}",
        tprname=_tprname,
        breakable=_breakable,
    )
    return env


def _coerce_list(value: object, model: type[_M], field: str) -> list[_M]:
    if value is None:
        return []
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence):
        raise InputError(field, f"expected a list of {model.__name__}, got {type(value).__name__}")
    return [_coerce(v, model, f"{field}[{i}]") for i, v in enumerate(value)]


def _coerce(value: object, model: type[_M], field: str) -> _M:
    if isinstance(value, model):
        return value
    if isinstance(value, dict):
        try:
            return model.model_validate(value)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(p) for p in first["loc"])
            raise InputError(field, f"{where + ': ' if where else ''}{first['msg']}") from None
    raise InputError(field, f"expected {model.__name__}, got {type(value).__name__}")


def _check_result(result: object) -> AuditResult:
    if not isinstance(result, AuditResult):
        raise InputError(
            "result",
            f"expected an AuditResult (load one with AuditResult.from_json), got {type(result).__name__}",
        )
    if not result.attacks:
        raise InputError("result", "holds no attack results: nothing to report")
    return result


def _group_tables(
    result: AuditResult, classes: Sequence[SliceResult]
) -> list[tuple[str, list[tuple[SliceResult, SliceAttack | None]]]]:
    focus = result.exposure_attack or result.attacks[0].name
    tables: dict[str, list[tuple[SliceResult, SliceAttack | None]]] = {}
    for s in [*classes, *result.slices]:
        a = next((x for x in s.attacks if x.attack == focus), None)
        title = "Per class" if s.column in ("class", "label") else f"By {s.column}"
        tables.setdefault(title, []).append((s, a))
    return list(tables.items())


def _exposure_column(r: AuditResult) -> tuple[str, str]:
    """(header, explanation) of the most-exposed table's figure: the score percentile after an
    audit of saved outputs, the share of models flagging the record after a reference audit."""
    if any(e.flagged_by_percent is not None for e in r.most_exposed):
        return (
            "% of models flagging it",
            "Percentage of the models that trained on a record that flag it at the strongest attack's 1 % FPR threshold.",
        )
    return (
        "score percentile",
        f"Score percentile: where the record's {r.exposure_attack} score lies among all scored records.",
    )


def _in_attack_order(hist: list[ScoreHistogram], r: AuditResult) -> list[ScoreHistogram]:
    """The histograms in the results' attack order; InputError for an attack not in them."""
    known = {a.name for a in r.attacks}
    for h in hist:
        if h.attack not in known:
            raise InputError(
                "histograms",
                f"attack {h.attack!r} is not in these results; have: {', '.join(sorted(known))}",
            )
    order = {a.name: i for i, a in enumerate(r.attacks)}
    return sorted(hist, key=lambda h: order[h.attack])


def _charts_of(
    r: AuditResult,
    hist: list[ScoreHistogram],
    variants: list[TradeoffVariant],
    dp: DpAuditSummary | None,
) -> dict[str, Markup | None]:
    """Each section's chart (None: the section has none)."""
    return {
        "attacks": _charts.attack_summary_chart(r.attacks),
        "roc": _charts.roc_chart(r),
        "scores": _charts.histogram_chart(hist) if hist else None,
        "utility": _charts.utility_chart(r.utility.train_accuracy, r.utility.test_accuracy)
        if r.utility
        else None,
        "tradeoff": _charts.tradeoff_chart(variants) if variants else None,
        "dp": _charts.dp_chart(dp) if dp else None,
    }


def _toc(tradeoff: bool, dp: bool) -> list[tuple[str, str]]:
    toc = [
        ("verdict", "Verdict"),
        ("threat-model", "Threat model"),
        ("roc", "ROC"),
        ("scores", "Score distributions"),
        ("attacks", "Attacks"),
        ("utility", "Accuracy"),
        ("groups", "Groups"),
        ("exposed", "Most exposed"),
    ]
    if tradeoff:
        toc.append(("tradeoff", "Trade-off"))
    if dp:
        toc.append(("dp", "Differential privacy"))
    toc += [("controls", "Controls"), ("assessment", "Assessment"), ("method", "Method")]
    return toc


def render_report(
    result: AuditResult,
    *,
    histograms: Sequence[ScoreHistogram] | None = None,
    tradeoff: Sequence[TradeoffVariant] | None = None,
    dp: DpAuditSummary | None = None,
    classes: Sequence[SliceResult] | None = None,
    scores_note: str | None = None,
) -> str:
    """The audit report as one self-contained HTML document (inline SVG charts, no scripts).

    Args:
        result: the audit's shareable results.
        histograms: per-attack member/non-member score counts (see :func:`score_histograms`);
            the distributions section says how to get them when absent.
        tradeoff: variants of a trade-off run; the trade-off section is omitted when absent.
        dp: a DP claim and its audit; the DP section is omitted when absent.
        classes: per-class rows (slices of column ``class``), e.g. from scores.parquet.
        scores_note: why score distributions are missing, shown in their place.
    """
    r = _check_result(result)
    hist = _coerce_list(histograms, ScoreHistogram, "histograms")
    variants = _coerce_list(tradeoff, TradeoffVariant, "tradeoff")
    dp_ = None if dp is None else _coerce(dp, DpAuditSummary, "dp")
    class_rows = _coerce_list(classes, SliceResult, "classes")
    hist = _in_attack_order(hist, r)

    risk = assess_risk(r)
    charts = _charts_of(r, hist, variants, dp_)
    toc = _toc(bool(variants), dp_ is not None)
    tpr_keys = list(dict.fromkeys(k for a in r.attacks for k in a.tpr_at_fpr))
    exposure_header, exposure_note = _exposure_column(r)
    context: dict[str, Any] = {
        "r": r,
        "risk": risk,
        "thresholds": RISK_THRESHOLDS,
        "conf": f"{r.bootstrap.confidence * 100:g}%",
        "unit": "pairs" if r.reference is not None else "records",
        "charts": charts,
        "toc": toc,
        "profiles": {a.name: attacker_profile(a.name) for a in r.attacks},
        "fpr_floor": _pct(1 / max(r.input.n_nonmembers, 1)),
        "histograms": hist,
        "clipped": any(h.clipped for h in hist),
        "scores_note": scores_note,
        "tpr_keys": tpr_keys,
        "ppv_na": any(format_estimate(a.ppv) == "n/a" for a in r.attacks),
        "operating_points": [a for a in r.attacks if a.operating_point is not None],
        "group_tables": _group_tables(r, class_rows),
        "has_classes": bool(class_rows),
        "exposure_note": exposure_note,
        "exposure_header": exposure_header,
        # ties are counted by audits of saved outputs (a reference audit's figure is a share of models)
        "exposure_ties": all(e.flagged_by_percent is None for e in r.most_exposed),
        "exposure_evidence": exposure_evidence(r) or ("", False),
        **_later_sections(r, risk, variants, dp_, class_rows),
    }
    return str(_environment().get_template("report.html.j2").render(**context))


def _later_sections(
    r: AuditResult,
    risk: RiskAssessment,
    variants: list[TradeoffVariant],
    dp_: DpAuditSummary | None,
    class_rows: list[SliceResult],
) -> dict[str, Any]:
    """The context of the sections after the attacks: trade-off, DP, controls, the budget
    curve, what the design can measure, and the assessment."""
    return {
        "tradeoff": variants,
        "dp": dp_,
        "controls": recommend(r, risk, tradeoff=variants, dp=dp_, classes=class_rows),
        "budget": budget_section(r),
        "design": design_limits(r),
        "assessment": assess_frameworks(r, dp=dp_, tradeoff=variants, classes=class_rows),
        "frameworks": load_frameworks(),
    }


#: Markdown's active characters: text in the summary may come from input files (a file's,
#: dataset's or attack's name), and ``![t](https://…)`` or ``<img src=…>`` would render as a
#: tracking image in a pull request; escaped, every character shows as written.
_MD_ACTIVE = re.compile(r"([\\`*_\[\]<>~])")  # no link or image without its brackets


_MD_AUTOLINK = re.compile(r"(?i)\b(https?|ftp)(:)|\b(www)(\.)")


def _md_cell(text: str) -> str:
    """Text as literal Markdown on one line of a table or paragraph: no markup, no line break of
    any kind (a carriage return forged a heading in a pull request), no bare link, no mention
    or issue reference (a word joiner after ``@`` and ``#``), no character reference (``&#64;``
    showed as ``@``), no invisible format characters (bidi overrides, zero-width spaces)."""
    one_line = "".join(c for c in " ".join(text.splitlines()) if unicodedata.category(c) != "Cf")
    escaped = _MD_ACTIVE.sub(r"\\\1", one_line.replace("&", "&amp;")).replace("|", "\\|")
    linked = _MD_AUTOLINK.sub(r"\1\3\\\2\4", escaped)
    return linked.replace("@", "@\u2060").replace("#", "#\u2060")


def _md_code(text: str) -> str:
    """Text in a code span: nothing in it renders, but a backtick would end the span."""
    return " ".join(text.splitlines()).replace("`", "'").replace("|", "\\|")


def _md_setup(r: AuditResult) -> str:
    if r.reference is not None:
        ref = r.reference
        if ref.reference_choice is not None:
            return (
                f"Reference-model audit of models trained elsewhere ({_md_cell(ref.dataset)}): {ref.models} models, {ref.targets} target(s) attacked; "
                f"references: {_md_cell(ref.reference_choice)}; pool: {_md_cell(ref.pool or '')}."
            )
        return (
            f"Reference-model audit of the recipe on {_md_cell(ref.dataset)}: {ref.models} models, {ref.references} reference pair(s) "
            f"per target, {ref.targets} targets attacked; the attacker knows the recipe and holds {ref.population_records:,} population records."
        )
    return f"Audit of one model's saved outputs ({_md_cell(r.input.kind)}); no reference models, so LiRA and RMIA were not run."


def _md_tradeoff(variants: Sequence[TradeoffVariant]) -> list[str]:
    if not variants:
        return []
    out = [
        "#### Privacy–utility trade-off (strongest attack per variant)",
        "",
        "| variant | claimed ε | test accuracy | AUC | TPR at 1% FPR | verdict |",
        "|---|---|---|---|---|---|",
    ]
    for v in variants:
        eps = "—" if v.epsilon is None else _num(v.epsilon)
        if v.epsilon is not None and v.delta is not None:
            eps += f" (δ = {_num(v.delta)})"
        if v.fault_injection:
            eps += f" VOID: fault injection on ({v.fault_injection})"
        cells = [
            v.name,
            eps,
            format_estimate(v.test_accuracy_interval, pct=True)
            if v.test_accuracy_interval
            else _pct(v.test_accuracy),
            format_estimate(v.auc),
            format_estimate(v.tpr_at_1pct_fpr, pct=True),
            v.recommendation or "—",
        ]
        out.append("| " + " | ".join(_md_cell(c) for c in cells) + " |")
    out.append("")
    return out


def _md_design(r: AuditResult) -> list[str]:
    d = design_limits(r)
    if not d.unmeasurable:
        return []
    needs = "; ".join(
        f"TPR at {_pct(m.fpr)} FPR needs {m.needs_nonmembers:,}" for m in d.unmeasurable
    )
    return [
        f"With {d.nonmembers:,} non-member {d.unit} the smallest FPR measured reliably is {_pct(d.smallest_reliable_fpr)}; {needs}.",
        "",
    ]


def _md_assessment(rows: Sequence[AssessmentRow]) -> list[str]:
    """One bullet per framework: what it asks, what this run shows, what it cannot show."""
    out = [
        "#### Assessment (evidence for your own assessment; no statement that the system meets these texts)",
        "",
    ]
    for row in rows:
        f = row.framework
        scope = f" Applies to: {f.scope}." if f.scope else ""
        out.append(
            f"- **{_md_cell(f.name)}** ({_md_cell(f.edition)}). Asks: {_md_cell(f.asks)}{scope} "
            f"Shows: {_md_cell(' '.join(row.shows))} Cannot show: {_md_cell(row.cannot)} "
            f"Controls: {_md_cell('; '.join(f'{side}: {text}' for side, text in row.controls))}."
        )
    out.append("")
    return out


def _md_warnings(r: AuditResult) -> list[str]:
    """The results' warnings (notes that start ``WARNING:``, e.g. every AUC interval below
    chance: the inputs look wrong), as the HTML report shows them: a pull request's reader
    otherwise saw the verdict without them (red team)."""
    out = [f"> **{_md_cell(n)}**" for n in r.notes if n.startswith("WARNING:")]
    return [*out, ""] if out else []


# Long: the summary's sections in reading order, each a few lines of Markdown.
def render_markdown(
    result: AuditResult,
    *,
    tradeoff: Sequence[TradeoffVariant] | None = None,
    dp: DpAuditSummary | None = None,
    classes: Sequence[SliceResult] = (),
) -> str:
    """A short Markdown summary for a pull request: aggregates only, no ids or pseudonyms.
    ``classes``: the per-class rows the HTML report takes from the run's restricted scores, so
    that both name the same most exposed group."""
    r = _check_result(result)
    risk = assess_risk(r)
    conf = f"{r.bootstrap.confidence * 100:g}%"
    tpr_keys = list(dict.fromkeys(k for a in r.attacks for k in a.tpr_at_fpr))
    unit = "pairs" if r.reference is not None else "records"
    # A pair is a (model, record): the distinct records are the pool's (the HTML says so too)
    distinct = (
        f" of {r.reference.pool_records:,} distinct records" if r.reference is not None else ""
    )
    lines = [
        f"### Membership-inference audit: {_md_cell(r.input.name)}",
        "",
        f"**Risk: {risk.level.upper()}.** {_md_cell(risk.explanation)}",
        "",
        *_md_warnings(r),
        f"{r.input.n_records:,} {unit}{distinct} ({r.input.n_members:,} members, {r.input.n_nonmembers:,} non-members); "
        f"{conf} intervals from {r.bootstrap.replicates} bootstrap replicates; miaudit {_md_cell(r.tool_version)}, seed {r.seed}.",
        "",
        _md_setup(r),
        "",
        "| attack | AUC | " + " | ".join(_tprname(k) for k in tpr_keys) + " | advantage |",
        "|---|---|" + "---|" * len(tpr_keys) + "---|",
    ]
    for a in r.attacks:
        cells = [
            format_estimate(a.auc),
            *(format_estimate(a.tpr_at_fpr.get(k), pct=True) for k in tpr_keys),
            format_estimate(a.advantage),
        ]
        lines.append(f"| `{_md_code(a.name)}` | " + " | ".join(_md_cell(c) for c in cells) + " |")
    lines.append("")
    if r.utility is not None:
        u = r.utility
        lines.append(
            f"Train accuracy {u.train_accuracy * 100:.1f}%, test accuracy {format_estimate(u.test_accuracy_interval, pct=True) if u.test_accuracy_interval else f'{u.test_accuracy * 100:.1f}%'}, generalisation gap {u.generalization_gap * 100:.1f} points."
        )
        lines.append("")
    if r.most_exposed:
        lines.append(f"{len(r.most_exposed)} most exposed records are listed in the HTML report.")
        lines.append("")
    lines += _md_tradeoff(tradeoff or ())
    lines += _md_design(r)
    lines += _md_assessment(
        assess_frameworks(r, dp=dp, tradeoff=tradeoff or (), classes=list(classes))
    )
    levels = "; ".join(
        f"{t.level}: AUC ≥ {t.auc:.2f} or TPR at 1% FPR ≥ {t.tpr * 100:g}%"
        for t in RISK_THRESHOLDS[:2]
    )
    lines.append(
        f"<sub>Risk levels use {conf} lower bounds ({levels}; low: any interval above chance). Not measurable / interval not reliable are never zero.</sub>"
    )
    return "\n".join(lines) + "\n"


def load_results(path: Path | str) -> tuple[AuditResult, Path]:
    """Read results.json (or the folder holding it); returns the result and its folder."""
    p = Path(path)
    if p.is_dir():
        p = p / "results.json"
    if not p.is_file():
        raise InputError(
            "results", f"{str(p)!r} not found: give a results folder or its results.json"
        )
    result = AuditResult.read(p)
    warning = result.pseudonym_warning()
    if warning and f"pseudonyms: {warning}" not in result.notes:
        # Shown in the report (and by `miaudit report`) so a reader knows before sharing it.
        result = result.model_copy(update={"notes": [*result.notes, f"pseudonyms: {warning}"]})
    return result, p.parent


def folder_aggregates(
    folder: Path, result: AuditResult
) -> tuple[list[ScoreHistogram], list[SliceResult], str | None]:
    """Score histograms, per-class rows and a note from the run's restricted scores.parquet in
    ``folder`` (:func:`~miaudit.report._scores.aggregates_from_scores`), or none without it."""
    from miaudit.report._scores import aggregates_from_scores

    scores = folder / "scores.parquet"
    if not scores.is_file():
        return [], [], None
    return aggregates_from_scores(scores, result)


def write_report(
    results_dir_or_json: Path | str,
    out_html: Path | str | None = None,
    *,
    tradeoff: Sequence[TradeoffVariant] | None = None,
    dp: DpAuditSummary | None = None,
    aggregates: tuple[list[ScoreHistogram], list[SliceResult], str | None] | None = None,
) -> Path:
    """Render the report of a results folder (or results.json) and write it atomically, 0644,
    or 0600 when the results name records in clear (``--raw-ids``: most-exposed records, most
    of them members, by their ids).

    When the folder also holds the run's restricted scores.parquet, the report adds score
    distributions and a per-class table computed from it: counts and aggregates only.
    ``out_html`` defaults to report.html in the results folder. Returns the path written.
    ``aggregates``: :func:`folder_aggregates` of the folder when the caller has them already
    (they are read from scores.parquet and resampled otherwise).
    """
    from miaudit._io import ensure_writable_dir, write_text_atomic

    result, folder = load_results(results_dir_or_json)
    out = Path(out_html) if out_html is not None else folder / REPORT_FILE
    if out.is_dir():
        raise InputError(
            "--out",
            f"{str(out)!r} is a folder; give the report's file name, e.g. {str(out / REPORT_FILE)!r}",
        )
    ensure_writable_dir(out.parent if str(out.parent) else Path("."), field="--out")
    histograms, classes, note = aggregates or folder_aggregates(folder, result)
    html = render_report(
        result, histograms=histograms, tradeoff=tradeoff, dp=dp, classes=classes, scores_note=note
    )
    write_text_atomic(out, html, restricted=result.pseudonymisation.raw_ids)
    return out
