"""The HTML report and the Markdown summary: sections, statuses, privacy, bad input."""

from __future__ import annotations

import os
import re
import stat

import numpy as np
import pytest
from typer.testing import CliRunner

import miaudit.report
from miaudit.audit import AuditResult, FamilyBounds
from miaudit.errors import InputError
from miaudit.metrics import Estimate
from miaudit.report import (
    RISK_THRESHOLDS,
    ScoreHistogram,
    assess_risk,
    format_estimate,
    load_results,
    render_markdown,
    render_report,
    score_histograms,
    write_report,
)
from miaudit.report._format import share

from .conftest import ID_BASE, dp_summary

PSEUDONYM = re.compile(r"p-[0-9a-f]{16}")
RAW_ID = re.compile(rf"\b{str(ID_BASE)[:3]}\d{{4}}\b")


def _sections(html: str) -> set[str]:
    return set(re.findall(r'<section id="([^"]+)"', html))


def _charts(html: str) -> set[str]:
    return set(re.findall(r'data-chart="([^"]+)"', html))


def test_public_names_are_pinned():
    assert sorted(miaudit.report.__all__) == sorted(
        [
            "CONTROLS",
            "REPORT_FILE",
            "RISK_THRESHOLDS",
            "AssessmentRow",
            "AttackerProfile",
            "Control",
            "DesignLimits",
            "DpAuditSummary",
            "Framework",
            "RiskAssessment",
            "RiskLevel",
            "RiskThreshold",
            "ScoreHistogram",
            "TradeoffVariant",
            "WrittenReport",
            "assess_frameworks",
            "assess_risk",
            "attacker_profile",
            "class_breakdown",
            "design_limits",
            "dp_summary_from_audit",
            "find_chromium",
            "find_folder",
            "format_estimate",
            "interval_decimals",
            "load_frameworks",
            "load_results",
            "needed_nonmembers",
            "print_pdf",
            "recommend",
            "render_dp_markdown",
            "render_dp_report",
            "render_markdown",
            "render_report",
            "score_histograms",
            "variants_from_tradeoff",
            "write_folder_report",
            "write_report",
        ]
    )
    for name in miaudit.report.__all__:
        assert hasattr(miaudit.report, name)


def test_sections_from_results_alone(outputs_run):
    _, result = outputs_run  # in memory: undefined rates are NaN here (null in results.json)
    html = render_report(result)
    assert _sections(html) == {
        "verdict",
        "threat-model",
        "roc",
        "scores",
        "attacks",
        "utility",
        "groups",
        "exposed",
        "controls",
        "assessment",
        "method",
    }
    assert _charts(html) == {"attacks", "roc"}
    assert "Not available: results.json carries no score distributions" in html
    assert "Not recorded: an audit from saved outputs" in html
    assert not re.search(r"\bnan\b", re.sub(r"<svg.*?</svg>", "", html, flags=re.S), re.I)
    for control in ("regularisation", "dp", "output", "access", "monitoring", "minimisation"):
        assert f'id="control-{control}"' in html
    assert "does not see attacks that need one query per record" in html
    for t in RISK_THRESHOLDS:  # the thresholds are stated
        assert t.meaning in html


def test_optional_sections_render_when_present(full_report, outputs_run):
    _, html = full_report
    assert {"tradeoff", "dp"} <= _sections(html)
    assert _charts(html) == {"attacks", "roc", "scores", "utility", "tradeoff", "dp", "budget"}
    assert "Per class" in html and "class = 9" in html
    assert "PASSED" in html and "can certify at most ε = 5.8" in html
    assert "weight decay 5e-4" in html and "DP-SGD ε=4" in html
    assert "reference-model audit" in html and "population records" in html
    failed = render_report(outputs_run[1], dp=dp_summary(bound=4.5))
    assert "FAILED" in failed and "has a bug" in failed
    assert "dp" in _sections(failed) and "tradeoff" not in _sections(failed)


def test_statuses_are_words_never_zero(outputs_run):
    _, result = outputs_run
    a = result.attacks[0]
    # ~300 non-members: TPR at 1 % and 0.1 % FPR cannot be measured (n0·α < 10), and say what would do
    assert a.tpr_at_fpr["tpr@0.1%fpr"].status == "not_measurable"
    assert (
        a.tpr_at_fpr["tpr@1%fpr"].status == "not_measurable"
        and a.tpr_at_fpr["tpr@1%fpr"].needs_nonmembers == 1000
    )
    html = render_report(result)
    assert "not measurable (needs ≥ 1,000 non-members)" in html
    assert (
        format_estimate(Estimate(point=None, status="not_measurable"), pct=True) == "not measurable"
    )
    assert (
        format_estimate(Estimate(point=0.0, status="interval_not_reliable"), pct=True)
        == "0% (interval not reliable)"
    )
    # an interval 2 points wide justifies 1 decimal (the rounding rule, docs/method.md §16)
    assert (
        format_estimate(Estimate(point=0.0, lower=0.0, upper=0.02), pct=True) == "0.0% [0.0%, 2.0%]"
    )
    md = render_markdown(result)
    assert "not measurable" in md
    # the not-measurable rate is never drawn as 0 in a table cell of the attack table
    attacks = html[html.index('<section id="attacks">') :]
    row = re.search(r"<code>loss</code></td>(.*?)</tr>", attacks, re.S)
    # TPR at 1 % and 0.1 % FPR and the PPV at 1 % FPR: each in words, none drawn as 0
    # (the cell says "not measurable"; its title says how many non-members it needs)
    assert row is not None and row.group(1).count(">not measurable</span>") == 3


def test_no_raw_ids_and_no_membership_column(outputs_run, outputs_report):
    _, result = outputs_run
    _, html = outputs_report
    assert not RAW_ID.search(html), "a raw record id reached the report"
    assert len(set(PSEUDONYM.findall(html))) == len(result.most_exposed) > 0
    headers = {h.strip().lower() for h in re.findall(r"<th[^>]*>(.*?)</th>", html, re.S)}
    assert not headers & {"member", "membership", "is_member", "in training", "record_id"}
    assert "record id (raw)" not in html and "contains raw record ids" not in html
    # raw ids asked for: shown, and flagged
    raw = result.model_copy(
        update={"pseudonymisation": result.pseudonymisation.model_copy(update={"raw_ids": True})}
    )
    raw_html = render_report(raw)
    assert "record id (raw)" in raw_html and "contains raw record ids" in raw_html


def test_markdown_holds_aggregates_only(reference_run, outputs_run):
    for _, result in (reference_run, outputs_run):
        md = render_markdown(result)
        assert not PSEUDONYM.search(md)
        assert not RAW_ID.search(md)
        assert f"{len(result.most_exposed)} most exposed records" in md
        assert f"**Risk: {assess_risk(result).level.upper()}.**" in md
        for a in result.attacks:
            assert f"`{a.name}`" in md
        assert "<svg" not in md and "<table" not in md
    assert "generalisation gap" in render_markdown(reference_run[1])


@pytest.mark.parametrize("which", ["outputs_report", "full_report"])
def test_self_contained_no_external_resources(which, request):
    _, html = request.getfixturevalue(which)
    assert "<script" not in html.lower()
    assert "<link" not in html.lower() and "@import" not in html and "@font-face" not in html
    assert not re.search(r"\s(src|srcset|poster|action)=", html)
    assert re.findall(r"url\((?!#)", html) == []
    # the only absolute URLs are XML namespace names, which browsers never fetch
    assert set(re.findall(r"https?://[^\s\"'<>)]+", html)) <= {
        "http://www.w3.org/2000/svg",
        "http://www.w3.org/1999/xlink",
    }
    assert "default-src 'none'" in html
    assert len(html) < 400_000


def test_write_report_atomic_shareable_default_path(outputs_run, outputs_report):
    folder, _ = outputs_run
    out, html = outputs_report
    assert out == folder / "report.html"
    assert stat.S_IMODE(os.stat(out).st_mode) == 0o644
    assert not [p for p in folder.iterdir() if p.name.startswith(".report.html")]
    assert "scores" in _charts(html) and "Per class" in html and "By group" in html


def test_scores_of_another_run_are_ignored_with_a_note(outputs_run, tmp_path):
    folder, result = outputs_run
    (tmp_path / "results.json").write_text(result.to_json())
    import pyarrow.parquet as pq

    pq.write_table(
        pq.read_table(folder / "scores.parquet").slice(0, 100), tmp_path / "scores.parquet"
    )
    html = write_report(tmp_path).read_text()
    assert "scores" not in _charts(html)
    assert "belongs to another run" in html


def test_score_histograms_count_every_record():
    rng = np.random.default_rng(0)
    member = rng.integers(0, 2, 1000)
    s = rng.normal(size=1000)
    s[:3] = [np.inf, -np.inf, 50.0]
    hist = score_histograms(member, {"a": s, "flat": np.ones(1000)}, bins=20)
    for h in hist:
        assert sum(h.members) == member.sum() and sum(h.nonmembers) == (member == 0).sum()
        assert len(h.edges) == 21
    assert hist[0].clipped and not hist[1].clipped
    with pytest.raises(ValueError, match="strictly increasing"):
        ScoreHistogram(attack="a", edges=[0, 1, 1], members=[1, 1], nonmembers=[1, 1])


@pytest.mark.parametrize(
    ("auc", "tpr", "level"),
    [
        ((0.85, 0.82, 0.88), (0.02, 0.015, 0.03), "high"),
        ((0.70, 0.65, 0.75), (0.12, 0.10, 0.14), "high"),
        ((0.62, 0.60, 0.64), (0.02, 0.015, 0.03), "moderate"),
        ((0.55, 0.52, 0.58), (0.02, 0.011, 0.03), "low"),
        ((0.51, 0.49, 0.53), (0.012, 0.008, 0.02), "not detected"),
    ],
)
def test_risk_levels_follow_stated_thresholds(outputs_run, auc, tpr, level):
    _, result = outputs_run
    a = result.attacks[0].model_copy(
        update={
            "auc": Estimate(point=auc[0], lower=auc[1], upper=auc[2]),
            "tpr_at_fpr": {"tpr@1%fpr": Estimate(point=tpr[0], lower=tpr[1], upper=tpr[2])},
        }
    )
    r = result.model_copy(update={"attacks": [a], "family": None})  # results written before
    assert assess_risk(r).level == level
    if level != "not detected":
        assert "not corrected for the number of attacks" in assess_risk(r).explanation
    # the same bounds, holding together for the family (what an audit writes now)
    family = FamilyBounds(
        confidence=0.95,
        method="max-t",
        metrics=["auc", "tpr@1%fpr"],
        lower={a.name: {"auc": auc[1], "tpr@1%fpr": tpr[1]}},
    )
    together = assess_risk(result.model_copy(update={"attacks": [a], "family": family}))
    assert together.level == level
    if level != "not detected":
        assert "holding together for all 2 attack and metric pairs" in together.explanation
    # an unreliable TPR never raises the level
    b = a.model_copy(
        update={
            "auc": Estimate(point=0.5, lower=0.45, upper=0.55),
            "tpr_at_fpr": {"tpr@1%fpr": Estimate(point=0.5, status="interval_not_reliable")},
        }
    )
    none = assess_risk(result.model_copy(update={"attacks": [b], "family": None}))
    assert none.level == "not detected" and "AUC up to 0.550" in none.explanation


def test_the_verdict_reads_the_familys_bounds_not_each_attacks_own(outputs_run) -> None:
    """A learner's 60 null models: the best of each attack's own 95 % bounds called 7 of them
    "detectable beyond noise". An attack whose own bound is above chance but whose bound in
    the family is not leaves the verdict at "not detected"."""
    _, result = outputs_run
    a = result.attacks[0].model_copy(
        update={
            "auc": Estimate(point=0.53, lower=0.505, upper=0.56),
            "tpr_at_fpr": {"tpr@1%fpr": Estimate(point=0.012, lower=0.004, upper=0.03)},
        }
    )
    family = FamilyBounds(
        confidence=0.95,
        method="max-t",
        metrics=["auc", "tpr@1%fpr"],
        lower={a.name: {"auc": 0.49, "tpr@1%fpr": 0.002}},
    )
    assert assess_risk(result.model_copy(update={"attacks": [a], "family": None})).level == "low"
    judged = assess_risk(result.model_copy(update={"attacks": [a], "family": family}))
    assert judged.level == "not detected"


def test_bad_input_names_the_input(outputs_run, tmp_path):
    folder, result = outputs_run
    cases = [
        (lambda: render_report("results.json"), "result"),  # type: ignore[arg-type]
        (lambda: render_report(result.model_copy(update={"attacks": []})), "result"),
        (lambda: render_markdown(None), "result"),  # type: ignore[arg-type]
        (
            lambda: render_report(
                result,
                histograms=[
                    ScoreHistogram(attack="nope", edges=[0, 1], members=[1], nonmembers=[1])
                ],
            ),
            "histograms",
        ),
        (
            lambda: render_report(result, tradeoff=[{"name": "x", "test_accuracy": 1.5}]),
            "tradeoff[0]",
        ),
        (lambda: render_report(result, dp={"claimed_epsilon": -1}), "dp"),
        (lambda: render_report(result, dp="eps=4"), "dp"),  # type: ignore[arg-type]
        (lambda: write_report(tmp_path / "missing"), "results"),
        (lambda: write_report(folder, tmp_path), "--out"),
    ]
    (tmp_path / "bad.json").write_text('{"schema_version": "miaudit.results/1"}')
    (tmp_path / "junk.json").write_text("not json")
    cases += [
        (lambda: write_report(tmp_path / "bad.json"), "results"),
        (lambda: load_results(tmp_path / "junk.json"), "results"),
    ]
    for call, field in cases:
        with pytest.raises(InputError) as info:
            call()
        assert info.value.field == field, (field, str(info.value))


def test_cli_report_writes_html_and_prints_markdown(outputs_run, tmp_path):
    import typer

    from miaudit.cli._report import report

    app = typer.Typer()
    app.command("report")(report)
    app.command("noop")(lambda: None)  # a second command keeps `report` a subcommand
    folder, _result = outputs_run
    out = tmp_path / "shared" / "audit.html"
    res = CliRunner().invoke(app, ["report", str(folder), "--out", str(out), "--markdown"])
    assert res.exit_code == 0, res.output
    assert out.is_file() and "<!DOCTYPE html>" in out.read_text()
    assert "### Membership-inference audit" in res.stdout and not PSEUDONYM.search(res.stdout)
    bad = CliRunner().invoke(app, ["report", str(tmp_path / "nothing")])
    assert isinstance(bad.exception, InputError) and bad.exception.field == "results"


def test_markdown_is_the_same_after_a_json_round_trip(outputs_run):
    _, result = outputs_run
    assert render_markdown(AuditResult.from_json(result.to_json())) == render_markdown(result)


def test_markdown_renders_names_from_input_files_as_text(outputs_run):
    """A red team's input name put a tracking image and raw HTML into the pull-request
    Markdown; names are escaped, and an attack name cannot leave its code span."""
    _, result = outputs_run
    name = "![t](https://evil.example/t.png) <img src=x> [click](https://evil.example)"
    attack = result.attacks[0].model_copy(update={"name": "a`<img src=x>`"})
    crafted = result.model_copy(
        update={
            "input": result.input.model_copy(update={"name": name}),
            "attacks": [attack, *result.attacks[1:]],
        }
    )
    md = render_markdown(crafted)
    title = md.splitlines()[0]
    assert title.endswith(
        r"!\[t\](https\://evil.example/t.png) \<img src=x\> \[click\](https\://evil.example)"
    )  # a bare link does not autolink either
    assert "`a'<img src=x>'`" in md


def test_names_are_drawn_as_text_and_roc_lists_must_agree(outputs_run):
    """Red team: an attack name "$\\foo{$" was parsed as math and crashed the charts, and ROC
    lists of different lengths were an internal error."""
    import pydantic

    from miaudit.audit._results import RocCurve

    _, result = outputs_run
    attack = result.attacks[0].model_copy(update={"name": "$\\foo{$"})
    html = render_report(result.model_copy(update={"attacks": [attack, *result.attacks[1:]]}))
    assert "$\\foo{$" in html
    with pytest.raises(pydantic.ValidationError, match="one value per FPR"):
        RocCurve(fpr=[0.1, 0.2], tpr=[0.5], tpr_lower=[0.4], tpr_upper=[0.6])


def test_controls_follow_the_tradeoff_verdicts(outputs_run):
    """DP best by the rule (larger paired risk reduction within the accuracy tolerance) makes the
    DP control "recommended"; a regulariser whose reduction's interval includes 0 does not."""
    from miaudit.metrics import Estimate
    from miaudit.report import recommend
    from miaudit.report._verdict import assess_risk
    from tests.report.conftest import variants

    _, result = outputs_run
    base, wd, dp = variants()
    wd = wd.model_copy(
        update={
            "recommendation": "not recommended",
            "reason": "risk reduction +0.010 AUC [-0.010, +0.030]: its interval does not lie above 0",
            "risk_reduction": Estimate(point=0.01, lower=-0.01, upper=0.03),
            "accuracy_loss": Estimate(point=0.0, lower=0.0, upper=0.0),
        }
    )
    dp = dp.model_copy(
        update={
            "recommendation": "best",
            "reason": "risk reduction +0.150 AUC [+0.130, +0.170]; accuracy loss at most 0.2 points (tolerance 1)",
            "risk_reduction": Estimate(point=0.15, lower=0.13, upper=0.17),
            "accuracy_loss": Estimate(point=-0.004, lower=-0.01, upper=0.002),
        }
    )
    controls = {c.key: c for c in recommend(result, assess_risk(result), tradeoff=[base, wd, dp])}
    assert (
        controls["dp"].priority == "recommended" and "DP-SGD ε=4 is best" in controls["dp"].because
    )
    assert (
        controls["regularisation"].priority != "recommended"
        and "no variant of this kind met the rule" in controls["regularisation"].because
    )
    html = render_report(result, tradeoff=[base, wd, dp])
    assert (
        "not recommended" in html
        and "its interval does not lie above 0" in html
        and '0.150 <span class="ci">[0.130, 0.170]</span>' in html
    )


def test_most_exposed_figure_is_named_by_its_meaning(reference_run, outputs_run):
    """After a reference audit the exposure figure is the share of models flagging a record, not
    a score percentile: the table header, its note and the minimisation control all say so (the
    control used to print "score percentile" after an audit)."""
    from miaudit.report._controls import recommend

    _, ref = reference_run
    _, out = outputs_run
    assert ref.most_exposed and all(
        e.score_percentile is None and e.flagged_by_percent is not None for e in ref.most_exposed
    )
    assert out.most_exposed and all(
        e.flagged_by_percent is None and e.score_percentile is not None for e in out.most_exposed
    )
    for result, right, wrong in (
        (ref, "% of models flagging it", "score percentile"),
        (out, "score percentile", "% of models flagging it"),
    ):
        html = render_report(result)
        exposed = html[html.index('<section id="exposed">') :]
        exposed = exposed[: exposed.index("</section>")]
        assert right in exposed and wrong not in exposed
        minimisation = next(
            c for c in recommend(result, assess_risk(result)) if c.key == "minimisation"
        )
        # never "score percentile 100", true of every audit of saved outputs (red team)
        assert "score percentile" not in minimisation.because
        assert ("of the models" in minimisation.because) == (result is ref), minimisation.because
    top = ref.most_exposed[0].flagged_by_percent
    control = next(c for c in recommend(ref, assess_risk(ref)) if c.key == "minimisation")
    assert f"flagged by {share(top)}% of the models that trained on it" in control.because


def test_results_2_are_read_with_the_exposure_figure_split(reference_run, outputs_run):
    """A /2 results file (one score_percentile for both meanings) reads as /3, the figure moved
    to the field of its meaning by the kind of audit."""
    import json

    from miaudit.audit import AuditResult

    for (_, result), field in (
        (reference_run, "flagged_by_percent"),
        (outputs_run, "score_percentile"),
    ):
        data = json.loads(result.to_json())
        data["schema_version"] = "miaudit.results/2"
        for e in data["most_exposed"]:  # as /2 wrote it: one field for both meanings
            figure = e.pop(field)
            e.pop("score_percentile", None), e.pop("flagged_by_percent", None)
            e["score_percentile"] = figure
        back = AuditResult.from_json(json.dumps(data))
        assert back == result
    data["schema_version"] = "miaudit.results/9"
    with pytest.raises(ValueError, match="schema_version"):
        AuditResult.from_json(json.dumps(data))


def test_tradeoff_epsilon_is_shown_with_its_delta(outputs_run):
    """A DP variant's ε is never shown without the δ of its claim (HTML table and Markdown)."""
    from miaudit.report._render import _md_tradeoff
    from tests.report.conftest import variants

    _, result = outputs_run
    base, wd, dp = variants()
    assert dp.epsilon is not None
    dp = dp.model_copy(update={"delta": 1e-5})
    html = render_report(result, tradeoff=[base, wd, dp])
    assert "δ = 1e-5" in html, "no δ beside ε in the HTML"
    md = "\n".join(_md_tradeoff([base, wd, dp]))
    assert "(δ = " in md
    assert md.count("(δ = ") == 1  # only the DP variant has a claim


def test_a_scores_file_that_bombs_is_refused_with_a_note_not_read(outputs_run, tmp_path):
    """scores.parquet was read by pyarrow whole, without the bounds every other input file has
    (a 65 KB file whose dictionary-encoded column holds one 200 KiB string per row is 1 GB once
    read): the report now reads it through the same reader, and says why it shows no scores."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, result = outputs_run
    (tmp_path / "results.json").write_text(result.to_json())
    table = pq.read_table(folder / "scores.parquet")
    n = table.num_rows
    bomb = pa.DictionaryArray.from_arrays(pa.array(np.zeros(n, dtype=np.int32)), ["A" * 200_000])
    pq.write_table(table.append_column("note", bomb), tmp_path / "scores.parquet")
    assert (tmp_path / "scores.parquet").stat().st_size < 1_000_000
    html = write_report(tmp_path).read_text()
    assert "scores" not in _charts(html)
    assert "scores.parquet could not be read" in html and "200,000 bytes" in html


@pytest.mark.parametrize(
    ("column", "values", "said"),
    [
        ("member", lambda n: np.full(n, 2), "membership values other than 0 and 1"),
        ("member", lambda n: np.full(n, np.nan), "membership values other than 0 and 1"),
        ("member", lambda n: np.full(n, 0.5), "membership values other than 0 and 1"),
        ("label", lambda n: np.zeros((n, 2), dtype=np.int64), "not one value per row"),
    ],
)
def test_a_crafted_scores_file_leaves_a_note_and_the_report_is_made(
    outputs_run, tmp_path, column, values, said
):
    """Red team: a member column of 2s stopped the report (exit 2, naming an internal y_true), a
    2-D label column was an internal error (exit 3), and NaN or 0.5 members were drawn as
    members without a word. Each now leaves a note; the report is made from results.json."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder, result = outputs_run
    (tmp_path / "results.json").write_text(result.to_json())
    table = pq.read_table(folder / "scores.parquet")
    v = values(table.num_rows)
    array = pa.array(list(v)) if v.ndim == 2 else pa.array(v)
    i = table.column_names.index(column)
    pq.write_table(table.set_column(i, column, array), tmp_path / "scores.parquet")
    html = write_report(tmp_path).read_text()
    assert "scores" not in _charts(html)
    assert said in html


def test_class_rows_of_one_models_records_are_tested_by_relabelling():
    """Red team: the report's per-class rows, read on their bootstrap bound alone, named a class
    of a null model "most exposed" in 16 of 160 runs (nominal 2.5 %). One model's records are
    now relabelled within each class (adjusted over the classes); pairs of several models are
    not (the design ties a record's memberships together)."""
    from miaudit.report._scores import class_breakdown

    rng = np.random.default_rng(0)
    label = np.repeat(np.arange(4), 100)
    member = np.tile(np.r_[np.ones(50), np.zeros(50)], 4).astype(int)
    score = rng.normal(size=400) + 3.0 * member * (label == 2)  # class 2 leaks
    rows = class_breakdown(member, label, {"loss": score}, attacks=["loss"], seed=1)
    p = {r.value: r.attacks[0].auc_permutation_p for r in rows}
    assert p["2"] == pytest.approx(0.001) and all(p[c] > 0.05 for c in ("0", "1", "3"))
    pairs = class_breakdown(
        member, label, {"loss": score}, attacks=["loss"], groups=np.arange(400) // 2, seed=1
    )
    assert all(r.attacks[0].auc_permutation_p is None for r in pairs)
