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


class UserCodeError(InputError):
    """The user's own code that a recipe names (``model.train``, ``model.factory``,
    ``model.train_step``, a ``model.estimator`` of theirs) failed: one line naming the field and
    what their code raised, not a miaudit "internal error". ``details``: its traceback (the CLI
    prints it with ``MIAUDIT_DEBUG=1``); kept when it crosses to another process."""

    def __init__(self, field: str, problem: str, details: str = "") -> None:
        super().__init__(field, problem)
        self.details = details

    def __reduce__(self) -> tuple[type[UserCodeError], tuple[str, str, str]]:  # type: ignore[override]
        return (type(self), (self.field, self.problem, self.details))


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type's name when it has none: what a
    one-line InputError quotes of a library's error.

    >>> first_line(ValueError("bad header\\nat byte 12")), first_line(KeyError())
    ('bad header', 'KeyError')
    """
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
