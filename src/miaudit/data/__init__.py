"""Data layer: input formats, validation, bundled datasets."""

from miaudit.data._adult import load_adult
from miaudit.data._outputs import ModelOutputs, load_outputs
from miaudit.data._signals_store import SIGNALS_SCHEMA, SignalsStore, load_signals
from miaudit.data._tables import CHUNK_RECORDS, is_mapped, release

__all__ = [
    "CHUNK_RECORDS",
    "SIGNALS_SCHEMA",
    "ModelOutputs",
    "SignalsStore",
    "is_mapped",
    "load_adult",
    "load_outputs",
    "load_signals",
    "release",
]
