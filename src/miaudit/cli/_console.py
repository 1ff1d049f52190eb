"""The consoles of the command line: rich, with markup off.

Markup off: text the user gave (a path such as ``x[/].npz`` or ``[red]x.npz``) is printed as it
is, never read as rich markup. Tables stay readable when the output is a pipe or a CI log (rich
assumes 80 columns there).
"""

from __future__ import annotations

import unicodedata
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, width=width)


def plain(text: object) -> str:
    """``text`` with its control and format characters (escape sequences, bidirectional
    overrides, newlines) written as escapes: text from an input file (record ids, slice values)
    must not drive the terminal (a red team's ``\\x1b]0;…`` ids set the window title)."""
    return "".join(
        ch if unicodedata.category(ch) not in ("Cc", "Cf") else ch.encode("unicode_escape").decode()
        for ch in str(text)
    )


def report_sharing(path: Path) -> str:
    """How a written report may travel: shareable, or restricted when it was written 0600
    because its results name records by their ids (``--raw-ids``)."""
    if path.stat().st_mode & 0o077 == 0:
        return "restricted, 0600: it names records by their ids (--raw-ids)"
    return "shareable: aggregates and pseudonyms only"


@contextmanager
def progress(out: Console, first: str) -> Iterator[Callable[[str], None]]:
    """What a long command says it is doing: a spinner whose text each step replaces in a
    terminal; elsewhere (a pipe, a CI log, ``nohup``) one line per step on stderr, where a
    spinner prints nothing and minutes of work would pass in silence."""
    if out.is_terminal:
        with out.status(first) as status:
            yield status.update
        return
    log = console(stderr=True)

    def say(step: str) -> None:
        log.print(f"… {step}", soft_wrap=True)

    yield say  # ``first`` is the spinner's text until a step: a line of its own says nothing
