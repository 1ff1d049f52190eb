"""`miaudit attack` on 1,000,000 records × 100 classes: 5 attacks, 200 bootstrap replicates each.

The outputs file (npz, float32 logits) is generated first in its own process; the audit then
runs as a real `miaudit attack` process whose wall time and peak resident memory are measured.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks._schema import MIAUDIT_WITH_PEAK_RSS, BenchResult

CLAIM = "`miaudit attack` on 1,000,000 records × 100 classes, 5 attacks × 200 bootstrap replicates: under 60 s and 4 GB peak"
SIZES = {"full": 1_000_000, "small": 50_000}
ATTACKS = "loss,confidence,entropy,modified_entropy,gap"

_GENERATE = """
import sys, numpy as np
n, c, path = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
rng = np.random.default_rng(20261128)
label = rng.integers(0, c, n)
member = np.zeros(n, np.int8); member[rng.permutation(n)[: n // 2]] = 1
logits = np.empty((n, c), np.float32)
for s in range(0, n, 100_000):  # chunked: the generator's memory is not the audit's
    e = min(n, s + 100_000)
    logits[s:e] = rng.standard_normal((e - s, c), dtype=np.float32)
    logits[np.arange(s, e), label[s:e]] += 2.0 + 1.0 * member[s:e]
np.savez(path, logits=logits, label=label, member=member)
"""


def run(size: str) -> BenchResult:
    n, c = SIZES[size], 100
    with tempfile.TemporaryDirectory(prefix="miaudit-bench-") as tmp:
        src = Path(tmp) / "outputs.npz"
        subprocess.run([sys.executable, "-c", _GENERATE, str(n), str(c), str(src)], check=True)
        rss_file = Path(tmp) / "peak_kib"
        cmd = [
            sys.executable,
            "-c",
            MIAUDIT_WITH_PEAK_RSS,
            str(rss_file),
            "attack",
            str(src),
            "--attacks",
            ATTACKS,
            "--resamples",
            "200",
            "--seed",
            "1",
            "--out",
            str(Path(tmp) / "res"),
        ]
        t0 = time.perf_counter()
        proc = subprocess.run(
            cmd, capture_output=True, text=True, check=False, env={**os.environ, "COLUMNS": "160"}
        )
        wall = time.perf_counter() - t0
        if proc.returncode != 0:
            raise RuntimeError(f"miaudit attack failed: {proc.stderr.strip()}")
        peak_gb = int(rss_file.read_text()) / 2**20
        file_gb = src.stat().st_size / 2**30
    passed = (wall < 60 and peak_gb < 4) if size == "full" else None
    table = "\n".join(
        [
            "| records | classes | attacks | replicates | input (npz) | wall time | peak memory |",
            "|---:|---:|---:|---:|---:|---:|---:|",
            f"| {n:,} | {c} | 5 | 200 | {file_gb:.2f} GB | {wall:.1f} s | {peak_gb:.2f} GB |",
        ]
    )
    return BenchResult(
        name="attack_scale",
        claim=CLAIM,
        figures={
            "records": n,
            "classes": c,
            "wall_s": round(wall, 2),
            "peak_gb": round(peak_gb, 3),
            "input_gb": round(file_gb, 3),
        },
        table=table,
        passed=passed,
        notes=[
            "Wall time and peak RSS of the whole `miaudit attack` process (start-up, loading, signals, attacks, bootstrap, writing results.json and scores.parquet)."
        ],
    )
