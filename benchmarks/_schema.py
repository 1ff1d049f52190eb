"""The one result schema every benchmark returns, the machine description, and running the CLI."""

from __future__ import annotations

import contextlib
import datetime as _dt
import os
import platform
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

BENCH_SCHEMA = "miaudit.benchmark/1"


@dataclass(frozen=True)
class BenchResult:
    """What a benchmark measured.

    ``figures`` are the named numbers (seconds, GB, ratios…); ``table`` is the Markdown table
    quoted in docs/benchmarks.md; ``claim`` states what is asserted and ``passed`` whether the
    measurement met it (None when the benchmark only reports).
    """

    name: str
    claim: str
    figures: dict[str, Any]
    table: str
    passed: bool | None = None
    notes: list[str] = field(default_factory=list)

    def to_record(self, *, command: str, size: str) -> dict[str, Any]:
        return {
            "schema": BENCH_SCHEMA,
            **asdict(self),
            "command": command,
            "size": size,
            "date": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "machine": machine(),
        }


def machine() -> dict[str, Any]:
    cpu = platform.processor() or "unknown"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("model name"):
                    cpu = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    mem_gb = None
    with contextlib.suppress(ValueError, OSError):
        mem_gb = round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1)
    versions = {"python": sys.version.split()[0]}
    for mod in ("numpy", "scipy", "sklearn", "torch", "pandas", "pyarrow"):
        try:
            versions[mod] = __import__(mod).__version__
        except Exception:  # noqa: BLE001, S112 - a broken optional package is simply not listed
            continue
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gb": mem_gb,
        "platform": platform.platform(),
        "versions": versions,
        "commit": commit,
    }


def peak_rss_gb() -> float:
    """Peak resident memory of this process so far (Linux ru_maxrss is in KiB)."""
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def fmt_signed(e: object) -> str:
    """A signed estimate with its interval, e.g. ``+0.062 [+0.052, +0.070]`` (``n/m``: not measurable)."""
    point, lower, upper = (
        getattr(e, "point", None),
        getattr(e, "lower", None),
        getattr(e, "upper", None),
    )
    if point is None:
        return "n/m"
    if lower is None or upper is None:
        return f"{point:+.3f} (no CI)"
    return f"{point:+.3f} [{lower:+.3f}, {upper:+.3f}]"


#: ``python -c MIAUDIT_WITH_PEAK_RSS FILE <miaudit arguments>``: runs the CLI and writes the
#: process's own peak RSS (ru_maxrss, KiB) to FILE on exit, so a benchmark measures the audit
#: alone, not the data generator that ran before it.
MIAUDIT_WITH_PEAK_RSS = """
import resource, sys
from pathlib import Path
out = Path(sys.argv.pop(1))
try:
    from miaudit.cli import main
    main()
finally:
    out.write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss))
"""


def run_miaudit(
    args: list[str], *, cwd: Path | None = None, env: dict[str, str] | None = None
) -> tuple[str, float]:
    """``miaudit ARGS`` in a fresh interpreter (this one's Python): its stdout and wall seconds;
    RuntimeError with the end of its stderr when it fails."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-c", "from miaudit.cli import main; main()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"miaudit {' '.join(args)} failed: {proc.stderr.strip()[-500:]}")
    return proc.stdout, wall
