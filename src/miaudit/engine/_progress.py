"""Training progress: in a terminal, rich bars (one for the run's units, one per unit in
flight); elsewhere (a pipe, a file, a CI log), plain lines without bars or ANSI codes: a unit's
start, its quarters, and each unit done with the run's count and time."""

from __future__ import annotations

import threading
import time

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
        console = console or Console(stderr=True)
        self.enabled = enabled
        self.step_name = step_name
        #: Plain lines instead of bars: the console is not a terminal (CI logs get lines).
        self.plain = enabled and not console.is_terminal
        self._console = console
        self._n_units = n_units
        self._units_done = 0
        self._start = time.perf_counter()
        self._lock = threading.Lock()
        self._tasks: dict[int, TaskID] = {}
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=console,
            disable=not enabled or self.plain,
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
            if self.plain:
                self._line(kind, unit, done, total)
            elif kind == "step":
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

    def _line(self, kind: str, unit: int, done: int, total: int) -> None:
        """One plain line at a unit's first step, each quarter of its steps, and its end."""
        if kind == "step":
            quarter = {total * q // 4 for q in (1, 2, 3)} if total >= 4 else set()
            if done == 1 or done in quarter:
                self._say(f"unit {unit}: {self.step_name} {done}/{total}")
        elif kind == "done":
            self._units_done += 1
            self._say(
                f"unit {unit} done: {self._units_done}/{self._n_units} units, "
                f"{time.perf_counter() - self._start:.1f} s"
            )

    def _say(self, text: str) -> None:
        self._console.print(text, markup=False, highlight=False, soft_wrap=True)
