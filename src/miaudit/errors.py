"""Errors that miaudit raises at its public boundary."""

from __future__ import annotations


class MiauditError(Exception):
    """Base class of every error miaudit raises on purpose."""


class InputError(MiauditError, ValueError):
    """Bad user input: names the input and the problem in one line.

    The CLI prints ``str(error)`` and exits with status 2.
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        self.problem = problem
        super().__init__(f"{field}: {problem}")

    def __reduce__(self) -> tuple[type[InputError], tuple[str, str]]:
        # Pickled as (field, problem): it crosses process boundaries (training workers, Ray).
        return (type(self), (self.field, self.problem))
