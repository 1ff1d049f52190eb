"""Every command's help renders fully: no text eaten as markup, no empty bracket remnants."""

from __future__ import annotations

import re

import pytest
import typer
from typer.testing import CliRunner

from miaudit.cli._app import app


def _command_paths() -> list[list[str]]:
    """The argument path of every command and command group (``[]`` is the root)."""
    paths: list[list[str]] = []

    def walk(command: object, path: list[str]) -> None:
        paths.append(path)
        for name, sub in getattr(command, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return paths


PATHS = _command_paths()
# What eaten markup leaves behind: ", , ," from "[a], [b], [c]", an empty "[]", or ": ," / "( )".
REMNANTS = re.compile(r",\s*,|\[\s*\]|:\s+,|\(\s*\)")


def test_every_command_is_scanned() -> None:
    names = {p[0] for p in PATHS if p}
    assert {"attack", "audit", "check-record", "ids", "train", "report", "keys"} <= names


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "miaudit")
def test_help_renders_fully(path: list[str]) -> None:
    result = CliRunner().invoke(app, [*path, "--help"], terminal_width=200)
    assert result.exit_code == 0, result.output
    text = " ".join(result.output.split())
    assert not REMNANTS.search(text), f"{path}: {REMNANTS.search(text)!r} in\n{result.output}"


def test_audit_help_names_the_config_sections() -> None:
    text = CliRunner().invoke(app, ["audit", "--help"], terminal_width=200).output
    assert "[data], [model], [plan], [engine], [audit], seed" in " ".join(text.split())
