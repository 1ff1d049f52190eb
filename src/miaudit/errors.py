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


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: what a
    one-line InputError quotes of a library's error.

    >>> first_line(ValueError("bad header\\nat byte 12")), first_line(KeyError())
    ('bad header', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
