"""``miaudit report`` reads results.json as untrusted input (red team): NaN, impossible figures,
a family bound over its attack's point and oversized files are one line, exit 2, nothing
written; the PR summary escapes every string and carries the results' warnings; the most-exposed
section says what its list shows (ties, whether the attack beats chance), not a tautology."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest

from miaudit.audit import AuditResult
from miaudit.report import render_markdown, render_report
from tests.report.test_assessment import run_main

_ROC = ("fpr", "tpr", "tpr_lower", "tpr_upper")
GOLDEN = Path(__file__).resolve().parents[1] / "golden" / "expected"


def _edited(folder: Path, tmp_path: Path, edit) -> Path:  # type: ignore[no-untyped-def]
    copy = tmp_path / "run"
    shutil.copytree(folder, copy)
    (copy / "report.html").unlink(missing_ok=True)
    d = json.loads((copy / "results.json").read_text())
    text = edit(d)
    (copy / "results.json").write_text(
        text if isinstance(text, str) else json.dumps(d, allow_nan=True)
    )
    return copy


def _set(path: str, value: object):  # type: ignore[no-untyped-def]
    """An edit setting ``d[a][b]…`` (dotted, list indices as numbers) to ``value``."""

    def edit(d: dict) -> None:  # type: ignore[type-arg]
        *head, last = [int(k) if k.isdigit() else k for k in path.split(".")]
        for k in head:
            d = d[k]
        d[last] = value

    return edit


@pytest.mark.parametrize(
    ("edit", "said"),
    [
        (_set("attacks.0.auc.point", float("nan")), "NaN or Infinity"),
        (_set("attacks.0.auc.upper", float("inf")), "NaN or Infinity"),
        (_set("bootstrap.confidence", float("nan")), "NaN or Infinity"),
        (_set("attacks.0.auc", {"point": 2.0, "lower": 1.9, "upper": 2.1}), "attacks.0.auc.point"),
        (_set("attacks.0.auc", {"point": 0.5, "lower": 0.9, "upper": 0.1}), "attacks.0.auc"),
        (_set("attacks.1.tpr_at_fpr.tpr@1%fpr.lower", -0.2), "tpr@1%fpr.lower"),
        (_set("attacks.0.advantage.point", 1.5), "attacks.0.advantage.point"),
        (_set("input.n_nonmembers", -5), "input.n_nonmembers"),
        (_set("input.n_records", 7), "n_records"),
        (_set("input.kind", "<img src=https://evil.example/k.png>"), "input.kind"),
        (_set("bootstrap.confidence", 1.5), "bootstrap.confidence"),
        (_set("family.lower.loss.auc", 0.95), "family.lower.loss.auc"),
        (_set("most_exposed.0.ties", -3), "most_exposed.0"),
        # red team: an emptied family read "not detected … for all 0 attack and metric pairs"
        (_set("family.lower", {}), "no bound for any measured attack"),
        (lambda d: d["attacks"].append(d["attacks"][0]), "an attack named twice"),
        # red team: "ε ≈ -2" rendered in a shareable report
        (_set("attacks.0.implied_epsilon.point", -2.0), "implied_epsilon.point"),
        (_set("attacks.0.implied_epsilon.lower_bound", -3.0), "implied_epsilon.lower_bound"),
        (_set("attacks.0.roc", dict.fromkeys(_ROC, [0.5] * 2000)), "miaudit writes at most 1,000"),
        (lambda d: " " * (17 * 2**20) + json.dumps(d), "larger than 16 MiB"),
        # red team: 10^40 members and a group of 10^30 records rendered in full
        (
            lambda d: d["input"].update(
                n_members=10**40, n_records=10**40 + d["input"]["n_nonmembers"]
            ),
            "input.n_records",
        ),
        (_set("slices.0.n_records", 10**30), "hold more records than the audit's"),
        (_set("family.permutation_p", 1e-12), "family.permutation_p"),  # 999 relabellings: ≥ 1/1000
    ],
)
def test_impossible_results_are_one_line_and_no_report(outputs_run, tmp_path, edit, said):
    folder, _ = outputs_run
    run = _edited(folder, tmp_path, edit)
    code, err = run_main(["report", str(run), "--markdown"])
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert code == 2, err
    assert len(lines) == 1 and "results" in lines[0] and said in lines[0], err
    assert not (run / "report.html").exists()


def test_every_results_miaudit_writes_reads(outputs_run, reference_run):
    """The golden results (stripped of their dates) and the tests' runs pass every check."""
    for name in ("attack.json", "audit.json"):
        d = json.loads((GOLDEN / name).read_text())
        AuditResult.from_json(json.dumps({**d, "created_at": "2025-01-01T00:00:00+00:00"}))
    for folder, _ in (outputs_run, reference_run):
        AuditResult.read(folder / "results.json")
    code, err = run_main(["report", str(outputs_run[0]), "--out", str(outputs_run[0] / "r.html")])
    assert code == 0, err


def test_markdown_escapes_the_version_and_carries_warnings(outputs_run):
    _, result = outputs_run
    warning = (
        "WARNING: every attack's AUC interval lies below 0.5 <img src=https://evil.example/w.png>"
    )
    crafted = result.model_copy(
        update={"tool_version": "<img src=https://evil.example/v.png>", "notes": [warning]}
    )
    md = render_markdown(crafted)
    assert not re.search(r"(?<!\\)<img", md)  # every one escaped
    assert "miaudit \\<img src=https\\:" in md
    assert "> **WARNING: every attack's AUC interval lies below 0.5 \\<img" in md


def test_markdown_gives_distinct_records_of_a_reference_audit():
    d = json.loads((GOLDEN / "audit.json").read_text())
    r = AuditResult.from_json(json.dumps({**d, "created_at": "2025-01-01T00:00:00+00:00"}))
    assert r.reference is not None
    md = render_markdown(r)
    assert f"{r.input.n_records:,} pairs of {r.reference.pool_records:,} distinct records" in md


def test_most_exposed_shows_ties_and_whether_it_is_evidence(outputs_run):
    _, result = outputs_run
    tied = [e.model_copy(update={"ties": 1294}) for e in result.most_exposed]
    assert result.family is not None
    chance = result.family.model_copy(
        update={"lower": {a: dict.fromkeys(m, 0.4) for a, m in result.family.lower.items()}}
    )
    null = result.model_copy(
        update={
            "most_exposed": tied,
            "family": chance,
            "input": result.input.model_copy(update={"n_records": 2000}),
        }
    )
    html = render_report(null)
    assert "other records with this score" in html
    assert '<td class="num">1,294</td>' in html
    assert "percentile of" not in html  # "scores at the 100 percentile": true of every run
    assert "reach score percentile" not in html
    assert "1,295 of 2,000 records (64.8%) share" in html
    assert "no evidence that any record is exposed" in html
    assert "Duplicated and outlying records are typical here" not in html
    leaking = render_report(result)
    assert "no evidence that any record is exposed" not in leaking
    assert "ranks members above non-members beyond noise" in leaking
