"""Whether a model's class columns follow miaudit's class order, read from argmax and labels.

A model trained on another label encoding (a ``LabelEncoder`` fitted elsewhere, an id2label
order, ``1 − y``) gives outputs whose column j holds another class's score: every attack that
reads the label's column reads the wrong one, and the figures move with no other sign (swapping
two of ten classes kept every AUC above 0.5: red team). The check needs no AUC: the confusion
matrix of argmax against label, and the permutation of the columns that maximises accuracy
(docs/method.md §4, "Column order").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

#: Family-wise level of the column-order test: the chance, on a model whose columns are right,
#: that any permutation of them is called better (docs/method.md §4).
COLUMN_ORDER_ALPHA = 1e-6
#: The population's and the audited non-members' argmax accuracies must differ by this much
#: (besides beyond chance) for a warning: a population drawn a little differently is no error.
ACCURACY_GAP = 0.10
#: Above this many classes the check is skipped (the assignment costs O(C³)).
MAX_CHECKED_CLASSES = 2_000
#: Columns listed in full up to this many classes; above it only the moved ones are named.
LISTED_COLUMNS = 20


@dataclass(frozen=True)
class ColumnOrder:
    """A permutation of the columns under which the argmax agrees with the labels beyond chance.

    ``columns[i]``: the column that holds class i's scores (the outputs read ``values[:,
    columns]`` in miaudit's order). ``as_given`` / ``permuted``: argmax accuracy before and after.
    ``log10_p``: the largest (least significant) of the moved cycles' exact binomial p-values."""

    columns: tuple[int, ...]
    as_given: float
    permuted: float
    log10_p: float

    def describe(self) -> str:
        moved = [i for i, c in enumerate(self.columns) if c != i]
        if len(moved) == 2 and self.columns[moved[0]] == moved[1]:
            what = f"columns {moved[0]} and {moved[1]} look swapped"
        else:
            what = (
                "the class columns look permuted ("
                + ", ".join(f"class {i} in column {self.columns[i]}" for i in moved[:10])
                + (", …" if len(moved) > 10 else "")
                + ")"
            )
        order = (
            f"with columns {list(self.columns)}"
            if len(self.columns) <= LISTED_COLUMNS
            else "with those columns moved"
        )
        return (
            f"{what}: argmax accuracy {self.as_given:.3f} as given, {self.permuted:.3f} {order} "
            f"(exact binomial test, p ≤ 1e{math.floor(self.log10_p)})"
        )


def confusion(values: np.ndarray, label: np.ndarray) -> np.ndarray:
    """Counts of (label i, argmax column j), C × C."""
    c = values.shape[-1]
    pred = np.asarray(values).reshape(-1, c).argmax(axis=1)
    cm = np.zeros((c, c), dtype=np.int64)
    np.add.at(cm, (np.asarray(label, np.int64).reshape(-1), pred), 1)
    return cm


def column_order(values: np.ndarray, label: np.ndarray) -> ColumnOrder | None:
    """The permutation of the columns that gives clearly higher argmax accuracy, or None.

    The Hungarian assignment (``scipy.optimize.linear_sum_assignment``) on the confusion matrix
    finds the accuracy-maximising permutation; each of its cycles (k classes moved) is tested on
    its own: a = records of those classes whose argmax is the cycle's column, b = those whose
    argmax is their own. Where the columns are right, a record's top column is at least as likely
    to be its label's as any other given column, so a is at most Binomial(a + b, ½); the cycle
    counts when P(X ≥ a) ≤ α / C^(k+1). At most C^k cycles move k classes, so over every cycle of
    every length the chance of a false call is below α (:data:`COLUMN_ORDER_ALPHA`), whatever
    the number of records or classes (a random 100-class model on 200 records finds a matching
    of ~80 records by chance: a plain test at α would fire on it)."""
    from scipy.optimize import linear_sum_assignment
    from scipy.stats import binom

    c = values.shape[-1]
    if c < 2 or c > MAX_CHECKED_CLASSES or label.size == 0:
        return None
    cm = confusion(values, label)
    _, best = linear_sum_assignment(cm, maximize=True)
    columns = np.arange(c)
    seen = np.zeros(c, dtype=bool)
    worst: float | None = None
    for start in range(c):
        if seen[start] or best[start] == start:
            continue
        cycle = [start]
        while best[cycle[-1]] != start:
            cycle.append(int(best[cycle[-1]]))
        seen[cycle] = True
        a = int(sum(cm[i, best[i]] for i in cycle))
        b = int(sum(cm[i, i] for i in cycle))
        if a <= b:
            continue
        # at least 1e-300: the tail of a cycle of thousands of records underflows to 0
        log_p = max(float(binom.logsf(a - 1, a + b, 0.5)), -300 * math.log(10))
        if log_p <= math.log(COLUMN_ORDER_ALPHA) - (len(cycle) + 1) * math.log(c):
            columns[cycle] = best[cycle]
            worst = log_p if worst is None else max(worst, log_p)
    if worst is None:
        return None
    n = int(cm.sum())
    return ColumnOrder(
        columns=tuple(int(x) for x in columns),
        as_given=float(np.trace(cm)) / n,
        permuted=float(cm[np.arange(c), columns].sum()) / n,
        log10_p=worst / math.log(10),
    )


def column_order_notes(values: np.ndarray, label: np.ndarray, what: str) -> list[str]:
    """One WARNING note when ``what``'s columns look out of miaudit's class order."""
    found = column_order(values, label)
    if found is None:
        return []
    return [
        f"WARNING: {what}: {found.describe()}. miaudit numbers classes in sorted order of the label "
        "values; permute the model's columns to that order (docs/own-model.md), or every attack "
        "that reads the label's column reads another class's score."
    ]


def accuracy_shift_notes(
    pop_values: np.ndarray,
    pop_label: np.ndarray,
    nonmember_values: np.ndarray,
    nonmember_label: np.ndarray,
) -> list[str]:
    """One WARNING note when the population's argmax accuracy differs from the audited
    non-members' by at least :data:`ACCURACY_GAP` and beyond chance (two-proportion z-test,
    two-sided p ≤ :data:`COLUMN_ORDER_ALPHA`): both are records the model did not train on, from
    one distribution, so such a gap means another label encoding or another model's outputs."""
    from scipy.stats import norm

    if pop_label.size == 0 or nonmember_label.size == 0:
        return []
    k1 = int((pop_values.argmax(axis=-1) == pop_label).sum())
    k0 = int((nonmember_values.argmax(axis=-1) == nonmember_label).sum())
    n1, n0 = pop_label.size, nonmember_label.size
    p1, p0, pooled = k1 / n1, k0 / n0, (k1 + k0) / (n1 + n0)
    se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n0))
    if abs(p1 - p0) < ACCURACY_GAP or se == 0:
        return []
    log_p = math.log(2) + float(norm.logsf(abs(p1 - p0) / se))
    if log_p > math.log(COLUMN_ORDER_ALPHA):
        return []
    return [
        f"WARNING: --population: argmax accuracy {p1:.3f} on the population's {n1:,} records, "
        f"{p0:.3f} on the audited non-members' {n0:,} (two-proportion test, p ≤ "
        f"1e{math.floor(log_p / math.log(10))}): both are records the model did not train on, so "
        "check that the population's outputs are the same model's, its class columns and labels "
        "in the audited records' encoding, and its records from the same distribution."
    ]
