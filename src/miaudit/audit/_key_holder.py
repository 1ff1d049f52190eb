"""What only the key holder may do with a run's folder: list the audited record ids, and map a
report's pseudonyms back to them.

Ids are personal data: they are read from the run's restricted files (signals, scores) and are
given only to whoever holds the run's pseudonym key (``pseudonym.key``, 0600, owned by this
user, checked by :func:`~miaudit.audit._pseudonyms.read_key`, and the very key the run's
results.json was pseudonymised with). Anyone else gets a one-line refusal, even if the
restricted files happen to be readable to them.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miaudit.audit._check_record import (
    SIGNALS_PATH,
    TARGET_PATH,
    load_run_results,
    read_scores_file,
)
from miaudit.audit._pseudonyms import key_id, key_path, pseudonymise, read_key
from miaudit.audit._results import AuditResult
from miaudit.data import load_signals
from miaudit.errors import InputError


@dataclass(frozen=True)
class AuditedRecord:
    """A record ``check-record`` can answer about: its id and its pseudonym in the run's
    shareable outputs (report, results.json)."""

    record_id: str
    pseudonym: str


def holder_key(results_dir: str | Path, results: AuditResult) -> bytes:
    """The run's pseudonym key, for its holder only; InputError (one line) for anyone else, and
    when the folder's key is not the one ``results`` (its results.json) were pseudonymised
    with: listed under another key, the pseudonyms matched nothing in the results or the
    report, and a report's pseudonym was "the pseudonym of no record audited" (red team)."""
    path = key_path(Path(results_dir))
    try:
        key = read_key(path)
    except FileNotFoundError:
        raise InputError(
            str(path),
            "not found: only the holder of the run's pseudonym key (who ran the audit, in its output folder) can list its record ids or map pseudonyms to them",
        ) from None
    made_with = results.pseudonymisation.key_id
    if key_id(key) != made_with:
        raise InputError(
            str(path),
            f"is not the key this folder's results were pseudonymised with (results.json: key_id {made_with}, this key: {key_id(key)}): its pseudonyms would match none of theirs; put the run's own key back",
        )
    return key


def audited_records(results_dir: str | Path) -> list[AuditedRecord]:
    """Every record of the run that ``check-record`` answers about, with its pseudonym: the
    pool of an audit with reference models, every record of an audit from saved outputs.
    Restricted: for the key holder only (:func:`holder_key`)."""
    d = Path(results_dir)
    results = load_run_results(d)
    key = holder_key(d, results)
    ids = _audited_ids(d, results)
    return [
        AuditedRecord(str(i), p) for i, p in zip(ids.tolist(), pseudonymise(ids, key), strict=True)
    ]


def records_of_pseudonyms(results_dir: str | Path, pseudonyms: list[str]) -> list[str]:
    """The record id behind each pseudonym (key holder only); InputError naming a pseudonym
    that no audited record has."""
    index = {r.pseudonym: r.record_id for r in audited_records(results_dir)}
    missing = [p for p in pseudonyms if p not in index]
    if missing:
        raise InputError(
            "--pseudonym",
            f"{missing[0]!r} is the pseudonym of no record audited in {str(results_dir)!r} (with this folder's key)",
        )
    return [index[p] for p in pseudonyms]


def _audited_ids(d: Path, results: AuditResult) -> np.ndarray:
    if results.reference is not None:
        path = d / (TARGET_PATH if (d / TARGET_PATH).is_file() else SIGNALS_PATH)
        if not path.is_file():
            raise InputError("results", f"{str(d / SIGNALS_PATH)!r} not found (restricted signals)")
        store = load_signals(path)
        pool: np.ndarray = np.asarray(store.record_id)[~np.asarray(store.population)]
        return pool
    scores = d / "scores.parquet"
    if not scores.is_file():
        raise InputError("results", f"{str(scores)!r} not found (restricted per-record scores)")
    ids: np.ndarray = read_scores_file(scores, ["record_id"])["record_id"]
    return ids
