"""Run one or all benchmarks and record their results.

    python -m benchmarks list
    python -m benchmarks run NAME|all [--size small|full] [--write docs/benchmarks.md]
    python -m benchmarks write [docs/benchmarks.md]

Each benchmark is a module ``benchmarks/bench_<name>.py`` defining ``CLAIM`` (one line) and
``run(size) -> BenchResult``. Each runs in its own subprocess, so peak-memory figures are its
own. Results are stored as JSON in ``benchmarks/results/<name>.json`` (committed); ``--write`` rebuilds the Markdown
page from every stored result, so a page always holds each benchmark's latest measurement.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import pkgutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
# committed: docs/benchmarks.md is rebuilt from these (tests point it elsewhere)
STORE = Path(os.environ.get("MIAUDIT_BENCH_STORE", ROOT / "results"))


def names() -> list[str]:
    return sorted(
        m.name[len("bench_") :]
        for m in pkgutil.iter_modules([str(ROOT)])
        if m.name.startswith("bench_")
    )


def run_one(name: str, size: str) -> dict:
    module = importlib.import_module(f"benchmarks.bench_{name}")
    before = _load()
    result = module.run(size)
    command = f"python -m benchmarks run {name} --size {size}"
    rec = result.to_record(command=command, size=size)
    # the machine is shared: every result says how busy it was (docs quoted loads by hand before)
    rec["machine"]["load_1m"] = [before, _load()]
    return rec


def _load() -> float | None:
    """The 1-minute load average (None where the platform has none)."""
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def render(records: list[dict]) -> str:
    lines = [
        "# Benchmarks",
        "",
        "Every figure below was measured by the command shown, on the machine shown; rerun one with",
        "`python -m benchmarks run NAME --size full` or all of them with `make claims`.",
        "",
    ]
    for rec in records:
        m = rec["machine"]
        status = {True: "met", False: "NOT MET", None: "reported"}[rec.get("passed")]
        lines += [
            f"## {rec['name']}",
            "",
            f"- Claim: {rec['claim']} — **{status}**",
            f"- Command: `{rec['command']}`",
            f"- Date: {rec['date']}; machine: {m['cpu']}, {m['cores']} cores, {m['memory_gb']} GiB; commit {m.get('commit') or '?'}{_load_text(m)}",
            f"- Versions: {', '.join(f'{k} {v}' for k, v in m['versions'].items())}",
            "",
            rec["table"].rstrip(),
            "",
        ]
        lines += [f"- {n}" for n in rec.get("notes", [])]
        if rec.get("notes"):
            lines.append("")
    return "\n".join(lines)


def _load_text(m: dict) -> str:
    """The 1-minute load averages at a result's start and end, as the page prints them, if stored."""
    load = m.get("load_1m")
    if not load or None in load:
        return ""
    return f"; 1-minute load {load[0]:g} at the start, {load[1]:g} at the end"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("list")
    p_run = sub.add_parser("run")
    p_run.add_argument("name")
    p_run.add_argument("--size", choices=("small", "full"), default="full")
    p_run.add_argument(
        "--write",
        type=Path,
        default=None,
        help="rebuild this Markdown page from all stored results",
    )
    p_run.add_argument("--in-process", action="store_true", help=argparse.SUPPRESS)
    p_write = sub.add_parser(
        "write", help="rebuild the Markdown page from the stored results, without running anything"
    )
    p_write.add_argument("page", type=Path, nargs="?", default=Path("docs/benchmarks.md"))
    args = parser.parse_args(argv)

    if args.cmd == "list":
        for name in names():
            print(f"{name}: {importlib.import_module(f'benchmarks.bench_{name}').CLAIM}")
        return 0

    if args.cmd == "write":
        _write_page(args.page)
        return 0

    todo = names() if args.name == "all" else [args.name]
    unknown = [n for n in todo if n not in names()]
    if unknown:
        print(
            f"benchmark: unknown benchmark {unknown[0]!r}; known: {', '.join(names())}",
            file=sys.stderr,
        )
        return 2
    STORE.mkdir(exist_ok=True)
    failed = False
    for name in todo:
        if args.in_process:
            rec = run_one(name, args.size)
            (STORE / f"{name}.json").write_text(json.dumps(rec, indent=2), encoding="utf-8")
            print(rec["table"])
            continue
        proc = subprocess.run(
            [sys.executable, "-m", "benchmarks", "run", name, "--size", args.size, "--in-process"],
            cwd=ROOT.parent,
            check=False,
        )
        failed |= proc.returncode != 0
    if args.write:
        _write_page(args.write)
    return 1 if failed else 0


def _write_page(page: Path) -> None:
    records = [json.loads(p.read_text(encoding="utf-8")) for p in sorted(STORE.glob("*.json"))]
    records = [r for r in records if r.get("size") == "full"] or records
    page.parent.mkdir(parents=True, exist_ok=True)
    page.write_text(render(records), encoding="utf-8")
    print(f"wrote {page}")


if __name__ == "__main__":
    raise SystemExit(main())
