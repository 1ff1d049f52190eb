"""Complementary partners (docs/method.md §3): the one definition every attack and check uses."""

from __future__ import annotations

import numpy as np


def complementary_partners(keep: np.ndarray, model: int) -> np.ndarray:
    """(K,) bool: the models whose keep row is the exact negation of ``model``'s.

    A partner's membership is a function of the model's, so it must never serve as the model's
    reference, nor calibrate anything judged on the model's membership. Restrict ``keep`` to
    the evaluated records (the pool) first: population records are in no model's training set.
    ``model`` itself is never its own partner (on at least one record).

    Examples
    --------
    >>> keep = np.array([[1, 0, 1], [0, 1, 0], [1, 1, 0]], dtype=bool)
    >>> complementary_partners(keep, 0).tolist()
    [False, True, False]
    """
    rows = np.asarray(keep, dtype=bool)
    return np.asarray((rows == ~rows[model]).all(axis=1))
