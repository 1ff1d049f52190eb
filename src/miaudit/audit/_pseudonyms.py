"""Keyed pseudonyms for record ids in shareable outputs.

HMAC-SHA-256(key, id): only the key holder (the model owner, whose output folder keeps the key
in a 0600 file) can link a pseudonym back to a record; readers of a report cannot, and cannot
test a guessed id without the key.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from pathlib import Path

import numpy as np

from miaudit._io import write_bytes_atomic

KEY_FILE = "pseudonym.key"


def load_or_create_key(out: Path | None) -> bytes:
    """The output folder's key (created 0600 on first use), or a fresh one without a folder."""
    if out is None:
        return secrets.token_bytes(32)
    path = out / KEY_FILE
    if path.exists():
        return path.read_bytes()
    key = secrets.token_bytes(32)
    write_bytes_atomic(path, key, restricted=True)
    return key


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"miaudit-key-id" + key).hexdigest()[:12]


def pseudonymise(ids: np.ndarray, key: bytes) -> list[str]:
    return ["p-" + hmac.new(key, str(i).encode(), hashlib.sha256).hexdigest()[:16] for i in ids.tolist()]
