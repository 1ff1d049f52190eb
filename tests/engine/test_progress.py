"""Progress where there is no terminal (a pipe, a CI log): plain lines, no bars, no ANSI."""

from __future__ import annotations

import io

from rich.console import Console

from miaudit.engine._progress import UnitProgress


def test_plain_lines_when_not_a_terminal() -> None:
    buf = io.StringIO()
    console = Console(file=buf, stderr=True)
    assert not console.is_terminal
    with UnitProgress(2, "epoch", console) as bars:
        for unit in (0, 1):
            for step in range(1, 9):
                bars(("step", unit, step, 8))
            bars(("done", unit, 8, 8))
    lines = buf.getvalue().splitlines()
    assert lines[:4] == [
        "unit 0: epoch 1/8",
        "unit 0: epoch 2/8",
        "unit 0: epoch 4/8",
        "unit 0: epoch 6/8",
    ]
    assert lines[4].startswith("unit 0 done: 1/2 units, ")
    assert lines[-1].startswith("unit 1 done: 2/2 units, ")
    assert "\x1b[" not in buf.getvalue()
    assert not any(c in buf.getvalue() for c in "━█")  # no bars


def test_nothing_when_disabled() -> None:
    buf = io.StringIO()
    with UnitProgress(1, "epoch", Console(file=buf), enabled=False) as bars:
        bars(("step", 0, 1, 1))
        bars(("done", 0, 1, 1))
    assert buf.getvalue() == ""
