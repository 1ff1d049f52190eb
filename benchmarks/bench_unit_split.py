"""How units spread over workers (issue 17): 18 MLPs on 2 worker processes × 1 thread.

Measured in one session, the same workload twice: the old default unit size (16: units of 16
and 2 models, so one worker trains 16 models while the other trains 2) and today's default,
an even number of units filled evenly (``even_unit_size(18, 2)``: 9 + 9), which depends on the
number of models only, never on the workers (it is part of the cache key). Wall time of
``miaudit.engine.train`` including process start and the signals file; each run gets a fresh
cache. On a machine shared with other work both times move together only roughly (the run is
repeated, ``repeats``, and medians compared), and when other work already fills the cores no
split can help; so the critical path on two free cores is estimated too: each unit's time
measured one unit at a time in this process, and the slowest worker's total under the
executor's in-order assignment.
"""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = (
    "18 MLPs on 2 workers: the default unit size splits them 9 + 9, and training's critical path "
    "on two free cores is shorter than with the old fixed unit size of 16 (16 + 2); measured "
    "wall times reported beside it"
)

SIZES = {
    "full": {"models": 18, "records": 4_000, "hidden": [128, 128], "epochs": 10, "repeats": 3},
    "small": {"models": 18, "records": 600, "hidden": [16], "epochs": 2, "repeats": 1},
}


def _config(size: dict[str, object], unit_size: int | None, workers: int = 2) -> object:
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
            "engine": {"workers": workers, "threads": 1, "progress": False},
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


def _unit_seconds(size: dict[str, object], unit_size: int | None) -> list[float]:
    """Each unit's training time, one unit at a time in this process (workers = 0)."""
    from miaudit.engine import train

    started: dict[int, float] = {}
    took: dict[int, float] = {}

    def seen(event: tuple[str, int, int, int]) -> None:
        kind, unit = event[0], event[1]
        started.setdefault(unit, time.perf_counter())
        if kind == "done":
            took[unit] = time.perf_counter() - started[unit]

    cfg = _config(size, unit_size, workers=0)
    with tempfile.TemporaryDirectory() as d:
        train(cfg, Path(d), on_event=seen)  # type: ignore[arg-type]
    return [took[u] for u in sorted(took)]


def _critical_path(unit_seconds: list[float], workers: int = 2) -> float:
    """Wall time of units handed in order to the first free of ``workers`` dedicated workers."""
    free = [0.0] * workers
    for t in unit_seconds:
        i = free.index(min(free))
        free[i] += t
    return max(free)


def run(size: str) -> BenchResult:
    s = SIZES[size]
    times: dict[str, list[float]] = {"old": [], "even": []}
    units: dict[str, list[int]] = {}
    for _ in range(int(s["repeats"])):  # type: ignore[call-overload]
        for name, unit_size in (("old", 16), ("even", None)):  # interleaved: same conditions
            seconds, units[name] = _train_seconds(s, unit_size)
            times[name].append(seconds)
    old, even = statistics.median(times["old"]), statistics.median(times["even"])
    path = {
        name: _critical_path(_unit_seconds(s, unit_size))
        for name, unit_size in (("old", 16), ("even", 9))
    }
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
        "old_critical_path_s": round(path["old"], 2),
        "even_critical_path_s": round(path["even"], 2),
        "critical_path_speedup": round(path["old"] / path["even"], 2),
    }
    table = "\n".join(
        [
            "| unit size | units | wall time (median) | critical path on 2 free cores |",
            "|---|---|---|---|",
            f"| 16 (old default) | {' + '.join(map(str, units['old']))} | {old:.1f} s | {path['old']:.1f} s |",
            f"| default (from the models) | {' + '.join(map(str, units['even']))} | {even:.1f} s | {path['even']:.1f} s |",
        ]
    )
    return BenchResult(
        name="unit_split",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=units["even"] == [9, 9] and path["even"] < path["old"],
        notes=["2 worker processes × 1 torch thread; the machine may be shared (times are rough)"],
    )
