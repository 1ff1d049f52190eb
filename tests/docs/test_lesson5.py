"""Lesson 5 (docs/lessons/5-text-memory.md): its commands parse as printed, its config is the
exposure benchmark's (plain, and with the DP or dedup lines uncommented, exactly as the page says),
and the figures it quotes are the stored benchmark results'. Nothing is trained: the runs are
the benchmarks' (tests/benchmarks)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "lessons" / "5-text-memory.md"
CONFIG = ROOT / "docs" / "lessons" / "5-secrets.toml"


def _result(name: str) -> dict:
    return json.loads((ROOT / "benchmarks" / "results" / f"{name}.json").read_text("utf-8"))


def uncommented(text: str, header: str) -> str:
    """The config with the commented block that starts at ``# [header]`` uncommented."""
    lines = text.splitlines()
    start = lines.index(f"# [{header}]")
    for i in range(start, len(lines)):
        if not lines[i].startswith("# "):
            break
        lines[i] = lines[i][2:]
    return "\n".join(lines) + "\n"


def test_the_run_paragraph_parses_as_printed() -> None:
    import typer

    from benchmarks.bench_lessons import commands
    from miaudit.cli import app

    cmds = commands(PAGE)
    assert cmds == [
        ["demo", "--text"],
        ["exposure", "docs/lessons/5-secrets.toml", "--out", "lesson-secrets"],
    ]
    group = typer.main.get_command(app)
    for args in cmds:
        with group.make_context("miaudit", list(args)) as ctx:
            cmd = group.get_command(ctx, args[0])
            assert cmd is not None, args[0]
            cmd.make_context(args[0], list(args[1:])).close()
    assert (ROOT / cmds[1][1]).is_file()


@pytest.mark.parametrize(
    ("block", "dp", "dedup"),
    [(None, False, False), ("model.finetune.dp", True, False), ("dedup", False, True)],
)
def test_the_config_is_the_benchmarks(block: str | None, dp: bool, dedup: bool) -> None:
    """What the page quotes was measured on this config: the plain model, and the page's two
    edits (uncomment DP, uncomment dedup) give the benchmark's other two models."""
    from benchmarks.bench_text_exposure import _config
    from miaudit.audit import parse_exposure_config

    text = CONFIG.read_text(encoding="utf-8")
    if block is not None:
        text = uncommented(text, block)
    page = parse_exposure_config(tomllib.loads(text))
    assert page == parse_exposure_config(_config("full", 0, dp=dp, dedup=dedup))
    assert _result("text_exposure")["size"] == "full"


def test_the_page_quotes_the_exposure_benchmark() -> None:
    rec = _result("text_exposure")
    page = " ".join(PAGE.read_text(encoding="utf-8").split())  # the page wraps its lines
    assert rec["date"] in page
    means = rec["figures"]["mean_exposure"]
    for model in ("plain", "dp", "dedup"):
        for level in ("0", "1", "4", "16"):
            assert f"{means[model][level]:.2f}" in page, (model, level)
    for key in ("dp_reduction_16x_paired", "dedup_reduction_16x_paired", "rise_16_minus_1"):
        point, lo, hi = rec["figures"][key]
        assert f"{point:.2f} [{lo:.2f}, {hi:.2f}]" in page, key


def test_the_page_has_no_placeholder_left() -> None:
    assert not re.search(r"[A-Z]+_[A-Z_]*PLACEHOLDER|EXPOSURE_[A-Z]+", PAGE.read_text("utf-8"))


def test_the_page_quotes_the_membership_benchmark() -> None:
    rec = _result("text_audit")
    page = " ".join(PAGE.read_text(encoding="utf-8").split())  # the page wraps its lines
    assert f"--size {rec['size']}`, {rec['date']}" in page
    for name in (
        "text_loss",
        "zlib",
        "min_k_plus",
        "reference_ratio",
        "text_lira_online",
        "blind_ngram",
    ):
        point, lo, hi = rec["figures"]["attacks"][name]["auc"]
        assert f"{point:.3f} [{lo:.3f}, {hi:.3f}]" in page, name


def test_the_page_quotes_the_blind_baseline_benchmark() -> None:
    rec = _result("text_blind")
    f = rec["figures"]
    lo, hi = f["fair_excluded_share_interval"]
    page = " ".join(PAGE.read_text(encoding="utf-8").split())
    assert f"excluded chance on {f['fair_excluded']} ({f['fair_excluded_share']:.1%}" in page
    assert f"{lo:.1%}–{hi:.1%}" in page and rec["date"] in page
    assert f"On {f['shifted_flagged']} of {f['shifted_seeds']} shifted splits" in page


def _pct(share: float) -> str:
    """A share as the page writes it ("5.9 %")."""
    return f"{100 * share:.1f} %"


def test_the_page_quotes_the_confirmatory_membership_run() -> None:
    rec = _result("text_audit_confirm")
    page = " ".join(PAGE.read_text(encoding="utf-8").split())
    rows = rec["figures"]["attacks"]
    assert rec["size"] == "full" and rec["figures"]["primary"] == "text_rmia_online"
    rmia, loss = rows["text_rmia_online"]["tpr_at_1pct"][0], rows["text_loss"]["tpr_at_1pct"][0]
    ratio, lo, hi = rows["text_rmia_online"]["tpr_ratio_to_loss"]
    assert f"RMIA found {_pct(rmia)} of the members against the loss's {_pct(loss)}" in page
    assert f"{ratio:.1f} times as many (paired interval {lo:.1f} to {hi:.1f})" in page
