"""How units spread over workers (issue 17): 18 MLPs on 2 worker processes × 1 thread.

Measured in one session, the same workload twice: the old default unit size (16: units of 16
and 2 models, so one worker trains 16 models while the other trains 2) and the default chosen
from the models and the workers (``even_unit_size``: 9 + 9). Wall time of
``miaudit.engine.train`` including process start and the signals file; each run gets a fresh
cache. The ratio is the figure; on a machine shared with other work both times move together
only roughly, so the run is repeated (``repeats``) and the medians are compared.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = (
    "18 MLPs on 2 workers: the default unit size splits them 9 + 9, and training wall time is "
    "lower than with the old fixed unit size of 16 (16 + 2)"
)

SIZES = {
    "full": {"models": 18, "records": 4_000, "hidden": [128, 128], "epochs": 10, "repeats": 3},
    "small": {"models": 18, "records": 600, "hidden": [16], "epochs": 2, "repeats": 1},
}


def _config(size: dict[str, object], unit_size: int | None) -> object:
    from miaudit.engine import parse_config

    return parse_config(
        {
            "seed": 0,
            "data": {
                "dataset": "purchase",
                "purchase": {"n_records": size["records"], "n_features": 100, "n_classes": 10},
            },
            "model": {
                "kind": "torch-mlp",
                "hidden": size["hidden"],
                "epochs": size["epochs"],
                "batch_size": 64,
            },
            "plan": {
                "models": size["models"],
                "pool_fraction": 1.0,
                **({"unit_size": unit_size} if unit_size else {}),
            },
            "engine": {"workers": 2, "threads": 1, "progress": False},
        }
    )


def _train_seconds(size: dict[str, object], unit_size: int | None) -> tuple[float, list[int]]:
    from miaudit.engine import train

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        run = train(_config(size, unit_size), Path(d))  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
    plan = run.plan
    return seconds, [len(plan.unit_models(u)) for u in range(plan.n_units)]


def run(size: str) -> BenchResult:
    s = SIZES[size]
    times: dict[str, list[float]] = {"old": [], "even": []}
    units: dict[str, list[int]] = {}
    for _ in range(int(s["repeats"])):  # type: ignore[call-overload]
        for name, unit_size in (("old", 16), ("even", None)):  # interleaved: same conditions
            seconds, units[name] = _train_seconds(s, unit_size)
            times[name].append(seconds)
    old, even = statistics.median(times["old"]), statistics.median(times["even"])
    figures = {
        "models": s["models"],
        "workers": 2,
        "old_units": units["old"],
        "even_units": units["even"],
        "old_s": round(old, 2),
        "even_s": round(even, 2),
        "old_runs_s": [round(t, 2) for t in times["old"]],
        "even_runs_s": [round(t, 2) for t in times["even"]],
        "speedup": round(old / even, 2),
    }
    table = "\n".join(
        [
            "| unit size | units | wall time (median) |",
            "|---|---|---|",
            f"| 16 (old default) | {' + '.join(map(str, units['old']))} | {old:.1f} s |",
            f"| from models and workers | {' + '.join(map(str, units['even']))} | {even:.1f} s |",
        ]
    )
    return BenchResult(
        name="unit_split",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=units["even"] == [9, 9] and even < old,
        notes=["2 worker processes × 1 torch thread; the machine may be shared (times are rough)"],
    )
