"""Trade-off and DP-audit files are untrusted input to ``miaudit report``: crafted ones are
refused in one line (exit 2), never rendered with wrong numbers or markup (red team, 2026-12-07)."""

from __future__ import annotations

import copy
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from miaudit.audit import DpAuditResult, TradeoffResult
from miaudit.errors import InputError
from miaudit.report import write_folder_report
from miaudit.report._folders import render_dp_markdown
from miaudit.report._render import _md_cell

GOLDEN = Path(__file__).parents[1] / "golden" / "expected"
DP = json.loads((GOLDEN / "dp_audit.json").read_text())
TRADEOFF = json.loads((GOLDEN / "tradeoff.json").read_text())

Edit = Callable[[dict[str, Any]], None]


def _write(tmp_path: Path, name: str, data: dict[str, Any], edit: Edit) -> Path:
    data = copy.deepcopy(data)
    edit(data)
    folder = tmp_path / "run"
    folder.mkdir()
    (folder / name).write_text(json.dumps(data))
    return folder


def _set(path: str, value: object) -> Edit:
    def edit(d: dict[str, Any]) -> None:
        *keys, last = path.split(".")
        for k in keys:
            d = d[int(k)] if k.isdigit() else d[k]  # type: ignore[index]
        d[int(last) if last.isdigit() else last] = value  # type: ignore[index]

    return edit


def _refused(folder: Path, match: str) -> None:
    with pytest.raises(InputError, match=match):
        write_folder_report(folder)
    assert not (folder / "report.html").exists()


def test_the_golden_files_still_read() -> None:
    assert DpAuditResult.from_json(json.dumps(DP)).verdict == "PASSED"
    assert len(TradeoffResult.from_json(json.dumps(TRADEOFF)).variants) == 4


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (_set("empirical_epsilon_lower_bound", 5.0), "exceeds the design's ceiling"),
        (_set("verdict", "FAILED"), "verdict FAILED does not follow"),
        (_set("p_value", 1e-9), "p_value does not follow"),
        (_set("p_value", None), "p_value must be given"),
        (_set("empirical_epsilon_lower_bound", 1.8), "bound does not follow"),
        (_set("max_certifiable_epsilon", 1000.0), "max_certifiable_epsilon does not follow"),
        (_set("max_certifiable_epsilon", float("inf")), "NaN or Infinity"),
        (_set("v", 999), "0 <= v <= r <= m"),
        (_set("m", 0), "0 <= v <= r <= m"),
        (_set("claimed_epsilon", float("nan")), "NaN or Infinity"),
        (_set("claimed_epsilon", -1.0), "claimed_epsilon"),
        (_set("empirical_epsilon_lower_bound", float("nan")), "NaN or Infinity"),
        (_set("significance", 2.0), "significance"),
        (_set("delta", 1.0), "delta"),
        (_set("p_value", 3.0), "p_value"),
        (_set("test_accuracy", [7.0]), "test accuracies"),
    ],
)
def test_a_dp_audit_file_whose_numbers_contradict_its_verdict_is_refused(
    tmp_path: Path, edit: Edit, match: str
) -> None:
    """The report said 'PASSED' beside 'the claim does not hold' (bound 5 > claim), 'the bound
    exceeds the claim' under a bound of 0, and NaN or negative ε were internal errors."""
    _refused(_write(tmp_path, "dp_audit.json", DP, edit), match)


def test_a_schema_1_file_that_failed_its_claim_still_reads() -> None:
    """Schema 1 had no p-value and failed a claim its bound exceeded (second read: such a file
    was refused, though older FAILED audits are the ones people keep)."""
    from miaudit.metrics import one_run_epsilon_lower_bound

    d = json.loads(
        (Path(__file__).parents[1] / "dp" / "data" / "dp_audit_schema1.json").read_text()
    )
    d["v"] = d["r"]
    d["empirical_epsilon_lower_bound"] = one_run_epsilon_lower_bound(
        d["m"], d["r"], d["v"], delta=d["delta"], significance=d["significance"]
    )
    assert d["empirical_epsilon_lower_bound"] > d["claimed_epsilon"]
    d["verdict"] = "FAILED"
    assert DpAuditResult.from_json(json.dumps(d)).verdict == "FAILED"
    d["verdict"] = "PASSED"
    with pytest.raises(InputError, match="verdict PASSED does not follow"):
        DpAuditResult.from_json(json.dumps(d))


def test_an_infinite_curve_point_round_trips() -> None:
    from miaudit.audit._dp_curve import CurvePoint

    point = CurvePoint(delta=1e-9, epsilon=float("inf"), p_value=1.0)
    assert CurvePoint.model_validate_json(point.model_dump_json()).epsilon == float("inf")


def test_a_whole_curve_test_must_follow_from_its_points() -> None:
    from miaudit.audit._dp_curve import CurveTest

    points = [
        {"delta": 1e-5, "epsilon": 1.0, "p_value": 0.3},
        {"delta": 1e-6, "epsilon": 2.0, "p_value": 0.9},
    ]
    ok = CurveTest.model_validate(
        {"points": points, "smallest_p_value": 0.3, "adjusted_p_value": 0.6, "rejected": False}
    )
    assert ok.adjusted_p_value == 0.6
    for bad in (
        {"points": [], "smallest_p_value": 0.3, "adjusted_p_value": 0.6, "rejected": False},
        {"points": points, "smallest_p_value": 0.3, "adjusted_p_value": 0.01, "rejected": True},
    ):
        with pytest.raises(ValueError, match=r"points|adjusted"):
            CurveTest.model_validate(bad)


@pytest.mark.parametrize(
    ("edit", "match"),
    [
        (
            _set("variants.0.auc", {"point": -4.0, "lower": -5.0, "upper": -3.0}),
            r"auc must lie in \[0, 1\]",
        ),
        (
            _set("variants.1.risk_reduction", {"point": 0.05, "lower": 0.9, "upper": -0.9}),
            "risk_reduction's interval is reversed",
        ),
        (_set("variants.0.auc", {"point": float("nan")}), "NaN or Infinity"),
        (_set("variants.0.auc", {"point": 1e308}), "auc must lie"),
        (_set("variants.0.test_accuracy", 7.0), "test_accuracy"),
        (_set("variants.0.epsilon", -3.0), "epsilon"),
        (_set("variants", []), "variants"),
        (_set("variants.0.folder", "/tmp/elsewhere"), "inside the trade-off folder"),
        (_set("variants.0.folder", "variants/../../elsewhere"), "inside the trade-off folder"),
        (lambda d: d.__setitem__("variants", d["variants"] * 100), "variants"),
    ],
)
def test_a_crafted_tradeoff_file_is_refused(tmp_path: Path, edit: Edit, match: str) -> None:
    """The shared report printed 'AUC -4.0 [-5.0, -3.0]' and '[0.900, -0.900]'; an empty list,
    an accuracy of 7 and reversed intervals were internal errors; a folder outside the trade-off
    read another run's results."""
    _refused(_write(tmp_path, "tradeoff.json", TRADEOFF, edit), match)


def test_a_point_outside_its_interval_is_drawn_not_an_internal_error(tmp_path: Path) -> None:
    """A percentile interval may leave out its point; the chart refused negative error bars."""
    from miaudit.metrics import Estimate
    from miaudit.report._charts import _interval

    assert _interval(Estimate(point=0.99, lower=0.5, upper=0.51)) == (0.99, 0.49, 0.0)


def test_a_variant_folder_that_is_a_link_out_of_the_tradeoff_is_refused(tmp_path: Path) -> None:
    """Red team: variants/baseline as a link to another run's folder put its restricted scores'
    aggregates into this trade-off's shareable report."""
    folder = _write(tmp_path, "tradeoff.json", TRADEOFF, lambda d: None)
    elsewhere = tmp_path / "other-run"
    elsewhere.mkdir()
    (elsewhere / "results.json").write_text("{}")
    (folder / "variants").mkdir()
    (folder / "variants" / "baseline").symlink_to(elsewhere, target_is_directory=True)
    _refused(folder, "leads outside the trade-off folder")


def test_files_nested_past_reason_or_too_large_or_not_regular_are_one_line(tmp_path: Path) -> None:
    deep = tmp_path / "deep"
    deep.mkdir()
    (deep / "dp_audit.json").write_text("[" * 200_000 + "]" * 200_000)
    _refused(deep, "nested past reason")
    big = tmp_path / "big"
    big.mkdir()
    (big / "tradeoff.json").write_text(" " * (16 * 2**20 + 1))
    _refused(big, "larger than 16 MiB")
    fifo = tmp_path / "fifo"
    fifo.mkdir()
    os.mkfifo(fifo / "dp_audit.json")
    with pytest.raises(InputError, match="not a regular file"):
        DpAuditResult.read(fifo / "dp_audit.json")


def test_the_dp_markdown_summary_escapes_names_from_the_file() -> None:
    crafted = "<img src=https://evil.example/t.png>![t](https://evil.example/x.png)"
    d = copy.deepcopy(DP)
    d["dataset"] = d["accountant"] = crafted
    d["gaussian_dp"]["label"] = crafted
    md = render_dp_markdown(DpAuditResult.from_json(json.dumps(d)))
    import re

    assert not re.search(r"(?<!\\)[<\[]", md)  # every bracket escaped: no tag, link or image
    assert "https://" not in md  # no bare link


def test_markdown_cells_break_no_line_link_or_mention() -> None:
    cell = _md_cell("dp\r\r# INJECTED\u2028see https://x.example www.y.example @team")
    assert "\r" not in cell and "\u2028" not in cell and "\n" not in cell
    assert "https\\://" in cell and "www\\." in cell and "@team" not in cell
    tricky = _md_cell("&#64;octocat org/repo#2 \u202edesrever\u200b")
    assert "&#64;" not in tricky and "#2" not in tricky  # no character reference, no issue link
    assert "\u202e" not in tricky and "\u200b" not in tricky  # no invisible format characters


def test_pdf_over_its_own_html_is_refused(tmp_path: Path, monkeypatch, capsys) -> None:
    """--out r.pdf --pdf wrote the HTML to r.pdf and Chromium printed it over itself."""
    import sys

    from miaudit.cli import main

    folder = _write(tmp_path, "dp_audit.json", DP, lambda d: None)
    monkeypatch.setattr(
        sys, "argv", ["miaudit", "report", str(folder), "--out", str(tmp_path / "r.pdf"), "--pdf"]
    )
    with pytest.raises(SystemExit) as exc:
        main()
    assert exc.value.code == 2 and "ends in .pdf" in capsys.readouterr().err
    assert not (tmp_path / "r.pdf").exists()


def test_a_text_tradeoff_says_where_its_reports_are(tmp_path: Path) -> None:
    text = {
        "schema": "miaudit.text-tradeoff/1",
        "dataset": "synthetic-text",
        "seed": 0,
        "notes": [],
        "variants": [
            {
                "name": "plain",
                "description": "the recipe as given",
                "folder": "variants/plain",
                "heldout_loss": 2.0,
                "heldout_perplexity": 7.4,
                "strongest_attack": "loss",
                "auc": {"point": 0.6},
                "tpr@1%fpr": {"point": 0.02},
                "blind_auc": None,
                "exposure": [],
            }
        ],
    }
    folder = _write(tmp_path, "tradeoff.json", text, lambda d: None)
    _refused(folder, r"text trade-off .*\(variants/plain/audit/report.html\)")
