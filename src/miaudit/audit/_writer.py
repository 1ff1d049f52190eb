"""Writing an audit's files, split by who may see them.

- ``results.json`` — shareable aggregates (0644).
- ``scores.parquet`` — restricted (0600): one row per record with membership, the training roster.
- ``pseudonym.key`` — restricted (0600): the key behind the pseudonyms in results.json.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from miaudit._io import atomic_path, ensure_writable_dir, write_text_atomic
from miaudit.audit._pseudonyms import existing_key, new_key, publish_key
from miaudit.errors import InputError

RESULTS_FILE = "results.json"
SCORES_FILE = "scores.parquet"


def prepare_out(out: Path, *, overwrite: bool, same_config: str | None = None) -> bytes:
    """Check the output folder before any work, and return its pseudonym key (new or existing;
    an existing key that is short, empty or readable by others is refused).

    Existing results are replaced only with ``overwrite``, or when they came from the same
    config (``same_config``: its digest), i.e. a re-run.
    """
    ensure_writable_dir(out)
    existing = out / RESULTS_FILE
    if existing.exists() and not overwrite and not (same_config and _config_of(existing) == same_config):
        raise InputError("--out", f"{str(existing)!r} already exists (from another run); choose another folder or pass --overwrite")
    return existing_key(out) or new_key()


def _config_of(results: Path) -> str | None:
    import json

    try:
        return json.loads(results.read_text(encoding="utf-8")).get("config_sha256")
    except (OSError, ValueError):
        return None


def write_scores(path: Path, record_id: np.ndarray, member: np.ndarray, label: np.ndarray, scores: dict[str, np.ndarray], extra: dict[str, np.ndarray] | None = None) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.table({**(extra or {}), "record_id": record_id, "member": member.astype(np.int8), "label": label, **{f"score_{k}": v for k, v in scores.items()}})
    with atomic_path(path, restricted=True) as tmp:
        pq.write_table(table, tmp)


def write_run(
    out: Path, key: bytes, results_json: str, record_id: np.ndarray, member: np.ndarray, label: np.ndarray, scores: dict[str, np.ndarray],
    *, extra: dict[str, np.ndarray] | None = None, quiet: bool = False,
) -> None:
    publish_key(out, key)
    write_scores(out / SCORES_FILE, record_id, member, label, scores, extra)
    write_text_atomic(out / RESULTS_FILE, results_json)
    if not quiet:
        print(
            f"warning: {out / SCORES_FILE} holds per-record membership (the training roster): it was created restricted (0600); "
            "share only results.json and reports.",
            file=sys.stderr,
        )
