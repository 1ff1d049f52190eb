"""`miaudit demo` end to end (the README's main job): under 10 minutes on this machine."""

from __future__ import annotations

import tempfile
from pathlib import Path

from benchmarks._schema import BenchResult, run_miaudit

CLAIM = "`miaudit demo` (overfit MLP on Adult, 10 models, DP-SGD ε = 4, weight decay, label-only policy, HTML report) finishes in under 10 minutes"


def run(size: str) -> BenchResult:
    with tempfile.TemporaryDirectory(prefix="miaudit-demo-") as tmp:
        args = ["demo", "--out", str(Path(tmp) / "demo")] + (
            [] if size == "full" else ["--outputs-only"]
        )
        _, wall = run_miaudit(args)
        report = (Path(tmp) / "demo" / "report.html").is_file()
    table = "\n".join(
        [
            "| command | wall time | report written |",
            "|---|---:|---|",
            f"| `miaudit {' '.join(args[:1] + args[3:])}` | {wall:.0f} s | {'yes' if report else 'no'} |",
        ]
    )
    return BenchResult(
        name="demo",
        claim=CLAIM,
        figures={"wall_s": round(wall, 1), "report": report},
        table=table,
        passed=(wall < 600 and report) if size == "full" else None,
    )
