"""The ``miaudit`` command line."""

from miaudit.cli._app import app, main

__all__ = ["app", "main"]
