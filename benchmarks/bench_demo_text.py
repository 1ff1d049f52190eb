"""`miaudit demo --text` end to end with an empty cache (issue 21): under 10 minutes here.

The demo pre-trains the default ≈ 2 M-parameter LM on 3,000 public records, fine-tunes it on
750 members with 30 canaries, trains a reference pair, and runs exposure and the membership
audit (docs/text.md). The cache is a fresh temporary folder, so pre-training is included: the
first run a user makes. Every size runs the same command (it has no smaller form); only the full
size decides the claim. Wall time depends on the machine's load, recorded beside it.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from benchmarks._schema import BenchResult, run_miaudit

CLAIM = "`miaudit demo --text` (≈ 2 M-parameter LM pre-trained, fine-tuned with canaries, a reference pair, exposure and membership audit, HTML report) finishes in under 10 minutes with an empty cache"


def run(size: str) -> BenchResult:
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="miaudit-demo-text-") as tmp:
        out = Path(tmp) / "demo"
        env = {**os.environ, "MIAUDIT_CACHE": str(Path(tmp) / "cache")}
        _, wall = run_miaudit(["demo", "--text", "--out", str(out)], env=env)
        report = (out / "audit" / "report.html").is_file()
    end_load = os.getloadavg()[0]
    table = "\n".join(
        [
            "| command | cache | wall time | report written | 1-minute load (start, end) |",
            "|---|---|---:|---|---|",
            f"| `miaudit demo --text` | empty | {wall:.0f} s | {'yes' if report else 'no'} | "
            f"{load:.1f}, {end_load:.1f} |",
        ]
    )
    return BenchResult(
        name="demo_text",
        claim=CLAIM,
        figures={"wall_s": round(wall, 1), "report": report, "load": [load, end_load]},
        table=table,
        passed=(wall < 600 and report) if size == "full" else None,
    )
