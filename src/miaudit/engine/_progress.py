"""Rich progress bars: one for the run's units, one per unit in flight."""

from __future__ import annotations

import threading

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from miaudit.engine._unit import Event


class UnitProgress:
    def __init__(
        self, n_units: int, step_name: str, console: Console | None = None, enabled: bool = True
    ) -> None:
        self.enabled = enabled
        self.step_name = step_name
        self._lock = threading.Lock()
        self._tasks: dict[int, TaskID] = {}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console or Console(stderr=True),
            disable=not enabled,
            transient=False,
        )
        self.overall = self.progress.add_task("units", total=n_units)

    def __enter__(self) -> UnitProgress:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.__exit__(*exc)  # type: ignore[arg-type]

    def __call__(self, event: Event) -> None:
        kind, unit, done, total = event
        with self._lock:
            if kind == "step":
                task = self._tasks.get(unit)
                if task is None:
                    task = self._tasks[unit] = self.progress.add_task(
                        f"unit {unit} {self.step_name}", total=total
                    )
                self.progress.update(task, completed=done)
            elif kind == "done":
                task = self._tasks.pop(unit, None)
                if task is not None:
                    self.progress.remove_task(task)
                self.progress.advance(self.overall)
