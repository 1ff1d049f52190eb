"""The lessons' commands exactly as their pages print them, timed; each page quotes its figure.

Each page's **Run:** paragraph is read for its `miaudit ...` commands, which run in that order
in a fresh folder holding docs/lessons (lesson 4 after lesson 1, whose results it reads; its
``ID`` placeholders are filled from `miaudit ids`, as the page says to). ``--size small`` runs
them on a smaller config (1,500 records, 15 epochs, 2 reference pairs) as a quick check.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import tempfile
import time
import tomllib
from pathlib import Path

from benchmarks._schema import BenchResult, run_miaudit

LESSONS = Path(__file__).resolve().parents[1] / "docs" / "lessons"
PAGES = ("1-overfitting.md", "2-confidence-and-output.md", "3-dp-budget.md", "4-one-record.md")
CLAIM = "each lesson's commands, as its page prints them, run to completion; the page quotes the time measured here"


def commands(page: Path) -> list[list[str]]:
    """The `miaudit ...` commands of a page's **Run:** paragraph, as argument lists."""
    text = page.read_text(encoding="utf-8")
    run = re.search(r"\*\*Run:\*\*(.*?)(?:\n\n|$)", text, re.S)
    if run is None:
        raise ValueError(f"{page.name}: no **Run:** paragraph")
    return [shlex.split(c)[1:] for c in re.findall(r"`(miaudit [^`]+)`", run.group(1))]


def quoted(seconds: float) -> str:
    """How a page quotes a measured time: ``40 s``, ``2 min 5 s``."""
    s = round(seconds)
    return f"{s} s" if s < 90 else f"{s // 60} min {s % 60} s"


def _miaudit(args: list[str], cwd: Path) -> str:
    return run_miaudit(args, cwd=cwd)[0]


#: The small size's settings, replacing the lesson config's (key = value lines).
SMALL = {"max_records": "1500", "epochs": "15", "references": "2"}


def _shrink_config(root: Path) -> None:
    """The small size: the lessons' config on fewer records, epochs and references."""
    path = root / "docs" / "lessons" / "overfitting.toml"
    text = path.read_text(encoding="utf-8")
    for key, value in SMALL.items():
        text, n = re.subn(rf"(?m)^{key}\s*=\s*\S+", f"{key} = {value}", text)
        if n != 1:
            raise ValueError(f"overfitting.toml: expected one {key} line, found {n}")
    tomllib.loads(text)  # still a valid config
    path.write_text(text, encoding="utf-8")


def run_lesson(page: str, root: Path) -> dict[str, float]:
    """Seconds each of a page's commands took in ``root`` (keyed by the command as printed);
    ``ID`` placeholders are filled from `miaudit ids`, as the page says to."""
    times: dict[str, float] = {}
    ids: list[str] = []
    for printed in commands(LESSONS / page):
        args = printed
        if "ID" in args and not ids:
            ids = [ln.split("\t")[0] for ln in _miaudit(["ids", args[1]], root).splitlines()]
        filled = iter(ids)
        args = [next(filled) if a == "ID" else a for a in args]
        t0 = time.perf_counter()
        out = _miaudit(args, root)
        times["miaudit " + shlex.join(printed)] = round(time.perf_counter() - t0, 1)
        if args[0] == "ids":
            ids = [ln.split("\t")[0] for ln in out.splitlines()]
    return times


def run(size: str) -> BenchResult:
    load_start = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="miaudit-lessons-") as tmp:
        root = Path(tmp)
        shutil.copytree(LESSONS, root / "docs" / "lessons")
        if size != "full":
            _shrink_config(root)
        per_page = {page: run_lesson(page, root) for page in PAGES}
    totals = {page: sum(t.values()) for page, t in per_page.items()}
    rows = [
        f"| {page.removesuffix('.md')} | `{cmd}` | {quoted(s)} |"
        for page, times in per_page.items()
        for cmd, s in times.items()
    ]
    return BenchResult(
        name="lessons",
        claim=CLAIM,
        figures={
            **{f"lesson{page[0]}_s": round(s, 1) for page, s in totals.items()},
            "commands_s": {cmd: s for times in per_page.values() for cmd, s in times.items()},
        },
        table="\n".join(["| lesson | command | wall time |", "|---|---|---:|", *rows]),
        passed=True,
        notes=[
            f"1-minute load average {load_start:.1f} at the start, {os.getloadavg()[0]:.1f} at the end "
            "(a shared machine: times scale with the load)"
        ],
    )
