"""miaudit: measure how much a trained model reveals about its training data, and close the leak."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from miaudit import _io
from miaudit._version import __version__
from miaudit.errors import InputError, MiauditError

if TYPE_CHECKING:
    from miaudit.audit import AuditResult, attack
    from miaudit.data import ModelOutputs, SignalsStore, load_outputs, load_signals

# Imported on first use: a training worker imports miaudit.models, and should not pay for the
# attack and audit layers (scipy.stats, scikit-learn) it never calls.
_LAZY = {
    "AuditResult": "miaudit.audit",
    "attack": "miaudit.audit",
    "ModelOutputs": "miaudit.data",
    "SignalsStore": "miaudit.data",
    "load_outputs": "miaudit.data",
    "load_signals": "miaudit.data",
}


def _write_report(folder: Path) -> Path:
    """``report.html`` of a results folder: what the Python API's ``audit()`` and ``attack()``
    write beside results.json, like the command line (the report layer is imported on use)."""
    from miaudit.report import write_report

    return write_report(folder)


_io.report_writer = _write_report


#: Subpackages reachable as attributes after a plain ``import miaudit`` (``miaudit.metrics.…``).
_SUBPACKAGES = frozenset(
    {
        "attacks",
        "audit",
        "cli",
        "data",
        "datasets",
        "defenses",
        "engine",
        "metrics",
        "models",
        "report",
        "serve",
        "signals",
    }
)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    elif name in _SUBPACKAGES:
        value = importlib.import_module(f"miaudit.{name}")
    else:
        raise AttributeError(f"module 'miaudit' has no attribute {name!r}")
    globals()[name] = value
    return value


__all__ = [
    "AuditResult",
    "InputError",
    "MiauditError",
    "ModelOutputs",
    "SignalsStore",
    "__version__",
    "attack",
    "load_outputs",
    "load_signals",
]
