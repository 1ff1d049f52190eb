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

A second section measures the reason docs/scale.md gives for two units rather than four: the
demo's MLP (its bundled config: Adult, 6,000 records, 256 × 256, 60 epochs), 6 and 10 models
on 2 workers × 1 thread, in the default layout (two units: 3 + 3 and 5 + 5) against the layout
an even split over four workers would give (``even_unit_size(n, 4)``: units of 2 and 3, so
2 + 2 + 2 and 3 + 3 + 3 + 1). Each run's units report their own CPU time in the worker that
trained them (``cpu_seconds`` in each unit's manifest); the critical path is the slowest
worker's total of those under the in-order assignment, steadier on a shared machine than the
wall time reported beside it.
"""

from __future__ import annotations

import json
import statistics
import tempfile
import time
import tomllib
from pathlib import Path

from benchmarks._schema import BenchResult

CLAIM = (
    "18 MLPs on 2 workers: the default unit size splits them 9 + 9, and training's critical path "
    "on two free cores is shorter than with the old fixed unit size of 16 (16 + 2); and for 6 "
    "and 10 of the demo's MLPs the default two units have a shorter critical path of worker CPU "
    "time than the units of 2 and 3 an even split over four workers gives; measured wall times "
    "reported beside both"
)

SIZES = {
    "full": {"models": 18, "records": 4_000, "hidden": [128, 128], "epochs": 10, "repeats": 3},
    "small": {"models": 18, "records": 600, "hidden": [16], "epochs": 2, "repeats": 1},
}

#: Two units against four (docs/scale.md, "Units"): the demo's MLP at full size.
LAYOUT_SIZES: dict[str, dict[str, object]] = {
    "full": {"models": [6, 10], "repeats": 3},
    "small": {"models": [6, 10], "repeats": 1, "max_records": 600, "hidden": [16], "epochs": 2},
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


def _demo_config(size: dict[str, object], models: int, unit_size: int | None) -> object:
    """The bundled demo's data and model (``miaudit demo``), ``models`` models in units of
    ``unit_size`` (None: the default layout) on 2 workers × 1 thread; the small size shrinks
    the records, the network and the epochs."""
    from importlib import resources

    from miaudit.engine import parse_config

    demo = tomllib.loads(
        (resources.files("miaudit.audit") / "_bundled" / "demo.toml").read_text(encoding="utf-8")
    )
    data = {
        **demo["data"],
        **({"max_records": size["max_records"]} if "max_records" in size else {}),
    }
    model = {**demo["model"], **{k: size[k] for k in ("hidden", "epochs") if k in size}}
    return parse_config(
        {
            "seed": demo["seed"],
            "data": data,
            "model": model,
            "plan": {
                "models": models,
                "pool_fraction": demo["plan"]["pool_fraction"],
                **({"unit_size": unit_size} if unit_size else {}),
            },
            "engine": {"workers": 2, "threads": 1, "progress": False},
        }
    )


def _layout_run(
    size: dict[str, object], models: int, unit_size: int | None
) -> tuple[float, list[int], list[float]]:
    """One training run on 2 workers: wall seconds, the models in each unit, and each unit's
    CPU seconds in the worker that trained it (from the units' manifests)."""
    from miaudit.engine import train

    with tempfile.TemporaryDirectory() as d:
        start = time.perf_counter()
        run = train(_demo_config(size, models, unit_size), Path(d))  # type: ignore[arg-type]
        seconds = time.perf_counter() - start
        infos = sorted(
            (
                json.loads(p.read_text(encoding="utf-8"))["info"]
                for p in (run.cache / "units").glob("*/manifest.json")
            ),
            key=lambda info: int(info["unit"]),
        )
    return seconds, [len(i["models"]) for i in infos], [float(i["cpu_seconds"]) for i in infos]


def _two_against_four(size: str) -> dict[str, dict[str, object]]:
    """Per number of models: the default layout against ``even_unit_size(n, 4)``, interleaved
    runs; medians of the wall time and of the critical path of worker CPU time."""
    from miaudit.engine._plan import even_unit_size

    s = LAYOUT_SIZES[size]
    out: dict[str, dict[str, object]] = {}
    for n in s["models"]:  # type: ignore[attr-defined]
        four = even_unit_size(n, 4)
        wall: dict[str, list[float]] = {"two": [], "four": []}
        path: dict[str, list[float]] = {"two": [], "four": []}
        units: dict[str, list[int]] = {}
        for _ in range(int(s["repeats"])):  # type: ignore[call-overload]
            for name, unit_size in (("two", None), ("four", four)):  # interleaved
                seconds, units[name], cpu = _layout_run(s, n, unit_size)
                wall[name].append(round(seconds, 2))
                path[name].append(round(_critical_path(cpu), 2))
        med = {
            k: {"wall": statistics.median(wall[k]), "path": statistics.median(path[k])}
            for k in wall
        }
        out[str(n)] = {
            "two_units": units["two"],
            "four_worker_units": units["four"],
            "four_worker_unit_size": four,
            "two_wall_s": round(med["two"]["wall"], 2),
            "four_wall_s": round(med["four"]["wall"], 2),
            "two_runs_wall_s": wall["two"],
            "four_runs_wall_s": wall["four"],
            "two_critical_path_cpu_s": round(med["two"]["path"], 2),
            "four_critical_path_cpu_s": round(med["four"]["path"], 2),
            "two_runs_critical_path_cpu_s": path["two"],
            "four_runs_critical_path_cpu_s": path["four"],
            # how much longer the four-worker layout takes, in % of the default's
            "four_extra_critical_path_pct": round(
                100 * (med["four"]["path"] / med["two"]["path"] - 1), 1
            ),
            "four_extra_wall_pct": round(100 * (med["four"]["wall"] / med["two"]["wall"] - 1), 1),
        }
    return out


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
    layouts = _two_against_four(size)
    figures["two_against_four"] = layouts
    table = "\n".join(
        [
            "| unit size | units | wall time (median) | critical path on 2 free cores |",
            "|---|---|---|---|",
            f"| 16 (old default) | {' + '.join(map(str, units['old']))} | {old:.1f} s | {path['old']:.1f} s |",
            f"| default (from the models) | {' + '.join(map(str, units['even']))} | {even:.1f} s | {path['even']:.1f} s |",
            "",
            "| demo's MLPs | units | wall time (median) | critical path of worker CPU time (median) |",
            "|---|---|---|---|",
            *(
                row
                for n, f in layouts.items()
                for row in (
                    f"| {n}, default (two units) | {' + '.join(map(str, f['two_units']))} | {f['two_wall_s']:.1f} s | {f['two_critical_path_cpu_s']:.1f} s |",
                    f"| {n}, units of {f['four_worker_unit_size']} (even over four workers) | {' + '.join(map(str, f['four_worker_units']))} | {f['four_wall_s']:.1f} s ({f['four_extra_wall_pct']:+.0f} %) | {f['four_critical_path_cpu_s']:.1f} s ({f['four_extra_critical_path_pct']:+.0f} %) |",
                )
            ),
        ]
    )
    return BenchResult(
        name="unit_split",
        claim=CLAIM,
        figures=figures,
        table=table,
        passed=units["even"] == [9, 9]
        and path["even"] < path["old"]
        and all(
            f["two_critical_path_cpu_s"] < f["four_critical_path_cpu_s"]  # type: ignore[operator]
            for f in layouts.values()
        ),
        notes=[
            "2 worker processes × 1 torch thread; the machine may be shared (times are rough)",
            "demo's MLPs: the bundled demo config's data and model (Adult, 6,000 records, 256 × 256, "
            "60 epochs, batch 64); critical path: each unit's CPU time in its worker "
            "(manifest cpu_seconds), handed in order to the first free of 2 workers",
        ],
    )
