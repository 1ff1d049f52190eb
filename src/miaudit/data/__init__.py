"""Data layer: input formats, validation, bundled datasets."""

from miaudit.data._adult import load_adult
from miaudit.data._outputs import ModelOutputs, load_outputs
from miaudit.data._signals_store import SIGNALS_SCHEMA, SignalsInfo, SignalsStore, load_signals

__all__ = [
    "SIGNALS_SCHEMA",
    "ModelOutputs",
    "SignalsInfo",
    "SignalsStore",
    "load_adult",
    "load_outputs",
    "load_signals",
]
