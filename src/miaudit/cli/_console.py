"""The consoles of the command line: rich, with markup off.

Markup off: text the user gave (a path such as ``x[/].npz`` or ``[red]x.npz``) is printed as it
is, never read as rich markup. Tables stay readable when the output is a pipe or a CI log (rich
assumes 80 columns there).
"""

from __future__ import annotations

from rich.console import Console


def console(*, stderr: bool = False) -> Console:
    probe = Console(stderr=stderr)
    width = None if probe.is_terminal else 160
    return Console(stderr=stderr, markup=False, highlight=False, emoji=False, width=width)
