"""Every lesson's command runs, at small size, and shows what its page says."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

import pandas as pd
import pytest

import miaudit
from miaudit.audit import audit, parse_audit_config
from miaudit.audit._check_record import check_record
from miaudit.audit._demo import run_demo
from miaudit.cli import app

LESSONS = Path(__file__).resolve().parents[2] / "docs" / "lessons"


def _small(path: Path) -> dict:
    raw = tomllib.loads(path.read_text())
    raw["data"]["max_records"] = 1500
    raw["model"]["epochs"] = 15
    raw["audit"]["references"] = 2
    raw["audit"]["resamples"] = 50
    raw["engine"] = {"workers": 0, "progress": False}
    return raw


@pytest.fixture(scope="module")
def lesson1(tmp_path_factory):
    out = tmp_path_factory.mktemp("lesson1") / "out"
    return out, audit(parse_audit_config(_small(LESSONS / "overfitting.toml")), out, quiet=True)


def test_every_page_names_a_command_that_exists():
    commands = {c.name or c.callback.__name__ for c in app.registered_commands}
    pages = sorted(LESSONS.glob("*.md"))
    assert len(pages) >= 3
    for page in pages:
        runs = re.findall(r"`miaudit ([a-z-]+)", page.read_text())
        assert runs, page.name
        assert set(runs) <= commands, (page.name, set(runs) - commands)


def test_lesson1_overfitting_leaks(lesson1):
    _, result = lesson1
    assert result.utility.generalization_gap > 0.02  # the recipe overfits even at small size
    assert result.strongest().auc.lower > 0.5


def test_lesson2_output_policies(tmp_path):
    run_demo(tmp_path / "demo", pool=2000, n_resamples=20)
    outputs = tmp_path / "demo" / "outputs.parquet"
    full = miaudit.attack(outputs, attacks=["loss", "gap"], n_resamples=20)
    rounded = miaudit.attack(outputs, attacks=["loss", "gap"], n_resamples=20, policy="round:1")
    label = miaudit.attack(outputs, attacks=["gap"], n_resamples=20, policy="label-only")
    assert rounded.attack("loss").auc.point > 0.5  # rounding keeps most of the signal
    assert (
        label.attack("gap").auc == full.attack("gap").auc
    )  # label-only leaves exactly the gap attack


def test_lesson4_one_record(lesson1):
    out, _ = lesson1
    ids = pd.read_parquet(out / "scores.parquet")["record_id"].astype(str).unique()[:5].tolist()
    rows = check_record(out, ids)
    assert len(rows) == 5 and all(0 <= r.p_value <= 1 and r.n_out_references == 2 for r in rows)


def test_lesson3_dp_budget(tmp_path):
    from miaudit.audit import VariantSpec, tradeoff

    raw = _small(LESSONS / "overfitting.toml")
    raw["data"]["max_records"] = 1000
    raw["audit"]["references"] = 1  # 4 models per variant instead of 6: DP's effect still shows
    cfg = parse_audit_config(raw)
    dp = {"epsilon": 1.0, "delta": 1e-5, "accountant": "prv", "ghost_clipping": True}
    result = tradeoff(
        cfg,
        tmp_path / "dp",
        variants=[
            VariantSpec("baseline", "as given"),
            VariantSpec("dp-eps1", "DP-SGD ε = 1", {"dp": dp}),
        ],
    )
    base, priv = result.variants
    assert priv.epsilon is not None and priv.epsilon <= 1.0 + 1e-6  # the accountant's ε, spent
    assert base.epsilon is None
    assert priv.auc.point < base.auc.point  # DP at ε = 1 leaks less than the overfit baseline


def _run_cli(args: list[str]) -> str:
    from typer.testing import CliRunner

    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, (args, res.output)
    return res.stdout


def test_every_lesson_command_parses_as_printed():
    """Each command of each page's **Run:** paragraph has options its command knows."""
    import typer

    from benchmarks.bench_lessons import PAGES, commands

    group = typer.main.get_command(app)
    for page in PAGES:
        cmds = commands(LESSONS / page)
        assert cmds, page
        for args in cmds:
            with group.make_context("miaudit", list(args)) as ctx:
                cmd = group.get_command(ctx, args[0])
                assert cmd is not None, (page, args[0])
                cmd.make_context(args[0], ["1" if a == "ID" else a for a in args[1:]]).close()


def test_lesson4_as_written_ids_then_check_record(lesson1):
    """Lesson 4 as its page says: list the audited ids, then check two of them."""
    from benchmarks.bench_lessons import commands

    out, _ = lesson1
    ids_cmd, check_cmd = commands(LESSONS / "4-one-record.md")
    assert ids_cmd == ["ids", "lesson-overfit"] and check_cmd.count("ID") == 2
    listed = [ln.split("\t")[0] for ln in _run_cli(["ids", str(out)]).splitlines()]
    assert len(listed) >= 100 and len(set(listed)) == len(listed)
    filled = iter(listed[:2])
    args = [
        str(out) if a == "lesson-overfit" else next(filled) if a == "ID" else a for a in check_cmd
    ]
    shown = _run_cli(args)
    assert listed[0] in shown and listed[1] in shown


def test_pages_quote_the_benchmarked_times():
    """Each page's stated time is the lessons benchmark's (benchmarks/results/lessons.json)."""
    import json

    from benchmarks.bench_lessons import PAGES, quoted

    rec = json.loads(
        (LESSONS.parents[1] / "benchmarks" / "results" / "lessons.json").read_text(encoding="utf-8")
    )
    assert rec["size"] == "full"
    for page in PAGES:
        run = (LESSONS / page).read_text(encoding="utf-8").split("\n\n", 2)[1]
        assert quoted(rec["figures"][f"lesson{page[0]}_s"]) in run, page
        assert rec["date"][:10] in run, page


def test_readme_quotes_the_benchmarked_demo_times():
    """The README's demo times are the demo and lessons benchmarks' figures."""
    import json

    from benchmarks.bench_lessons import quoted

    root = LESSONS.parents[1]
    readme = (root / "README.md").read_text(encoding="utf-8")
    demo = json.loads((root / "benchmarks" / "results" / "demo.json").read_text(encoding="utf-8"))
    lessons = json.loads(
        (root / "benchmarks" / "results" / "lessons.json").read_text(encoding="utf-8")
    )
    line = next(ln for ln in readme.splitlines() if "`--outputs-only`:" in ln)
    assert f"({quoted(demo['figures']['wall_s'])}, `python -m benchmarks run demo`" in line
    outputs_only = lessons["figures"]["commands_s"]["miaudit demo --outputs-only"]
    assert f"`--outputs-only`: {quoted(outputs_only)}," in line


def test_lessons_1_and_4_run_as_printed_in_a_real_process(tmp_path):
    """The pages' commands as printed (a fresh interpreter each, as a reader types them) on the
    lesson config at the benchmark's small size; lessons 2 and 3 are timed as printed by
    bench_lessons at full size (their runs cost a minute and more)."""
    import shutil

    from benchmarks.bench_lessons import _shrink_config, run_lesson

    shutil.copytree(LESSONS, tmp_path / "docs" / "lessons")
    _shrink_config(tmp_path)
    first = run_lesson("1-overfitting.md", tmp_path)
    assert list(first) == ["miaudit audit docs/lessons/overfitting.toml --out lesson-overfit"]
    assert (tmp_path / "lesson-overfit" / "report.html").is_file()
    fourth = run_lesson("4-one-record.md", tmp_path)
    assert len(fourth) == 2


def test_lessons_2_and_3_run_as_printed_in_a_real_process(tmp_path):
    """Lesson 2's attack and lesson 3's trade-off as printed, in fresh interpreters: the demo's
    outputs come from the demo's own code at a 2,000-record pool (the printed `miaudit demo
    --outputs-only` is that code at 20,000, timed by bench_lessons), lesson 3 on the lesson
    config shrunk further (600 records, 5 epochs, one reference pair) so that it costs seconds."""
    import re
    import shutil

    from benchmarks.bench_lessons import _miaudit, _shrink_config, commands

    shutil.copytree(LESSONS, tmp_path / "docs" / "lessons")
    _shrink_config(tmp_path)
    cfg = tmp_path / "docs" / "lessons" / "overfitting.toml"
    text = re.sub(r"(?m)^max_records\s*=\s*\S+", "max_records = 600", cfg.read_text())
    text = re.sub(r"(?m)^epochs\s*=\s*\S+", "epochs = 5", text)
    cfg.write_text(re.sub(r"(?m)^references\s*=\s*\S+", "references = 1", text))
    demo, attack = commands(LESSONS / "2-confidence-and-output.md")
    assert demo == ["demo", "--outputs-only"]
    run_demo(tmp_path / "demo-results", pool=2000, n_resamples=20)
    _miaudit(attack, tmp_path)
    assert (tmp_path / "lesson-round" / "results.json").is_file()
    (tradeoff_cmd,) = commands(LESSONS / "3-dp-budget.md")
    _miaudit(tradeoff_cmd, tmp_path)
    assert (tmp_path / "lesson-dp" / "tradeoff.json").is_file()


def test_the_outputs_only_demo_refuses_another_runs_folder_before_writing(tmp_path):
    """A new user's walk: `miaudit demo --outputs-only` into the full demo's folder exited 2
    but had already written its restricted outputs.parquet (per-record membership) there."""
    import json

    from miaudit.errors import InputError

    out = tmp_path / "demo-results"
    out.mkdir()
    (out / "tradeoff.json").write_text("{}")
    (out / "manifest.json").write_text(json.dumps({"kind": "tradeoff", "files": ["tradeoff.json"]}))
    with pytest.raises(InputError, match="holds a `miaudit tradeoff` run"):
        run_demo(out, pool=2000, n_resamples=20)
    assert sorted(p.name for p in out.iterdir()) == ["manifest.json", "tradeoff.json"]
