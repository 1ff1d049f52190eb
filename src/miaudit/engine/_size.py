"""Size checks before any work: non-finite numbers in a config, and a memory estimate before
allocation, each refused with an error that names the field."""

from __future__ import annotations

import itertools
import math
import os
from typing import Any

from miaudit.engine._plan import MAX_UNIT_SIZE
from miaudit.errors import InputError

# Weights, gradients and Adam's two moments: four float32 copies of every parameter.
BYTES_PER_PARAMETER = 4 * 4


def check_finite(raw: Any, where: str = "") -> None:
    """Refuse inf and NaN anywhere in a config mapping (TOML and YAML can spell both)."""
    if isinstance(raw, float) and not math.isfinite(raw):
        raise InputError(where or "config", f"must be a finite number, got {raw!r}")
    if isinstance(raw, dict):
        for k, v in raw.items():
            check_finite(v, f"{where}.{k}" if where else str(k))
    elif isinstance(raw, list | tuple):
        for i, v in enumerate(raw):
            check_finite(v, f"{where}.{i}")


def memory_limit() -> int:
    """Physical memory of this machine in bytes (what no single run can exceed)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, OSError, ValueError):  # not POSIX: no estimate can be checked
        return 1 << 62


def mlp_parameters(n_features: int, hidden: list[int], n_classes: int) -> int:
    widths = [n_features, *hidden, n_classes]
    return sum(a * b + b for a, b in itertools.pairwise(widths))


def check_train_size(
    cfg: Any, n_records: int, n_features: int, n_classes: int, *, limit: int | None = None
) -> None:
    """Refuse a plan or recipe whose arrays cannot fit in memory, before any is allocated.

    Counted: the keep matrix and the signals (models × records × classes, float32), and for a
    torch MLP one unit's parameters with their gradients and Adam state. Estimates are lower
    bounds: passing them does not promise the run fits, failing them proves it cannot.
    """
    limit = memory_limit() if limit is None else limit
    models = int(cfg.plan.models)
    _refuse("plan.models", models * n_records * (1 + 4 * n_classes), limit)
    check_model_size(
        cfg.model,
        n_features,
        n_classes,
        n_records,
        # the default unit size never exceeds the cap of even_unit_size
        stacked=min(int(cfg.plan.unit_size or MAX_UNIT_SIZE), models),
        limit=limit,
    )


def check_model_size(
    recipe: Any,
    n_features: int,
    n_classes: int,
    n_records: int,
    *,
    stacked: int = 1,
    limit: int | None = None,
) -> None:
    """Refuse a torch MLP recipe whose ``stacked`` models (one unit) cannot fit in memory.

    The size of a model built by the user's code (``torch-module``, ``python``) is unknown until
    that code runs: for those only the signals are counted (:func:`check_train_size`)."""
    hidden = getattr(recipe, "hidden", None)
    if not isinstance(hidden, list):
        return
    params = mlp_parameters(n_features, hidden, n_classes)
    batch = min(int(getattr(recipe, "batch_size", 1)), max(1, n_records))
    size = stacked * (params * BYTES_PER_PARAMETER + batch * sum(hidden) * 4 * 2)
    _refuse("model.hidden", size, memory_limit() if limit is None else limit)


def _refuse(field: str, size: int, limit: int) -> None:
    if size > limit:
        raise InputError(
            field,
            f"needs at least {size / 2**30:,.1f} GiB of memory, more than this machine's {limit / 2**30:,.1f} GiB; reduce it",
        )
