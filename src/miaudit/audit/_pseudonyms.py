"""Keyed pseudonyms for record ids in shareable outputs.

HMAC-SHA-256(key, id): only the key holder (the model owner, whose output folder keeps the key
in a 0600 file) can link a pseudonym back to a record; readers of a report cannot, and cannot
test a guessed id without the key. That holds only while the key is secret and unguessable, so
every key is at least :data:`MIN_KEY_BYTES` random bytes, made by :func:`secrets.token_bytes`,
and a key file that is empty, short, not a regular file or readable by others is refused, never
used. No code path has a default key: without a folder a run gets a fresh random key that is
thrown away (its pseudonyms can be linked by nobody).

This module is the only one that knows the key file, its checks and its fallbacks
(:func:`key_or_fresh`, :func:`folder_key`); the writers and audits ask it.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import tempfile
from pathlib import Path

import numpy as np

from miaudit._io import RESTRICTED_MODE, plainly_not_random, read_secret_file
from miaudit.audit._results import Pseudonymisation
from miaudit.errors import InputError

KEY_FILE = "pseudonym.key"
#: How a pseudonym is made from a record id (see :func:`pseudonymise`), as results.json says it.
METHOD = "HMAC-SHA-256, first 64 bits"
KEY_BYTES = 32
MIN_KEY_BYTES = 16
#: A key file larger than this is not a key miaudit wrote.
MAX_KEY_BYTES = 4096

#: ``key_id``s of keys that are public knowledge: the empty key, and the fixed fallback key that
#: miaudit 0.x used when ``attack_store`` was called without a key. Results carrying one of these
#: ids have reversible pseudonyms (anyone can try candidate ids), and are flagged when read.
KNOWN_WEAK_KEY_IDS = frozenset({"92d7533419e4", "02ac8466dee4"})


def new_key() -> bytes:
    return secrets.token_bytes(KEY_BYTES)


def check_key(key: object, source: str = "pseudonym_key") -> bytes:
    """``key`` if it can key pseudonyms: bytes, at least 16 of them, not one repeated byte pattern."""
    if not isinstance(key, (bytes, bytearray)):
        raise InputError(
            source,
            f"must be bytes (at least {MIN_KEY_BYTES} random bytes), got {type(key).__name__}",
        )
    key = bytes(key)
    if len(key) < MIN_KEY_BYTES:
        raise InputError(
            source,
            f"is {len(key)} bytes; a pseudonym key needs at least {MIN_KEY_BYTES} random bytes (anyone could reverse its pseudonyms)",
        )
    if plainly_not_random(key):
        raise InputError(
            source,
            f"is {len(key)} bytes of at most 3 distinct values or one short pattern repeated, not random bytes; remove it and rerun to get a fresh key",
        )
    if key_id(key) in KNOWN_WEAK_KEY_IDS:
        raise InputError(source, "is a publicly known key; remove it and rerun to get a fresh key")
    return key


def read_key(path: Path) -> bytes:
    """The key in ``path``: a regular file (not a link, FIFO or device: opened without blocking),
    owned by this user with one name (a key planted by someone else could be known to them), not
    readable or writable by group or others, holding at least 16 random bytes; else InputError
    naming the file. FileNotFoundError when there is none."""
    data = read_secret_file(
        path,
        "pseudonym key",
        max_bytes=MAX_KEY_BYTES,
        if_read="so its pseudonyms may already be reversible",
    )
    return check_key(data, str(path))


def existing_key(out: Path) -> bytes | None:
    """The folder's key (checked), or None when it has none yet."""
    try:
        return read_key(out / KEY_FILE)
    except FileNotFoundError:
        return None


def publish_key(out: Path, key: bytes) -> bool:
    """Write ``key`` as the folder's key (0600), unless it already holds this very key; whether
    this call created the file.

    Created exclusively (a hard link of a finished temporary file): two runs racing on one
    folder never replace each other's key; the loser is refused instead of writing results
    whose pseudonyms no stored key can link.
    """
    path = out / KEY_FILE
    key = check_key(key)
    fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", suffix=".tmp", dir=out)
    try:
        os.fchmod(fd, RESTRICTED_MODE)
        os.write(fd, key)
        os.close(fd)
        fd = -1
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)
            return True
    finally:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
    if not hmac.compare_digest(read_key(path), key):
        raise InputError(
            str(path),
            "another run created a different pseudonym key in this folder meanwhile; rerun with a folder of its own",
        )
    return False


def key_or_fresh(key: bytes | None) -> bytes:
    """``key`` checked, or without one a fresh random key that nobody keeps (its pseudonyms can
    be linked by nobody): the fallback of every run not writing into a folder."""
    return check_key(key) if key is not None else new_key()


def folder_key(out: Path) -> bytes:
    """The folder's key (checked), or a fresh one for the run to publish with its results."""
    return existing_key(out) or new_key()


def load_or_create_key(out: Path | None) -> bytes:
    """The output folder's key (created 0600 on first use), or a fresh one without a folder."""
    if out is None:
        return new_key()
    key = existing_key(out)
    if key is None:
        key = new_key()
        publish_key(out, key)  # refuses rather than return a key the folder does not hold
    return key


def is_key_file(name: str) -> bool:
    """Whether ``name`` (a file of an output folder) is its pseudonym key: never removed with a
    run's other files, since the pseudonyms of every earlier result depend on it."""
    return name == KEY_FILE


def key_path(out: Path) -> Path:
    return out / KEY_FILE


def key_id(key: bytes) -> str:
    return hashlib.sha256(b"miaudit-key-id" + key).hexdigest()[:12]


def describe_key(key: bytes, *, raw_ids: bool = False) -> Pseudonymisation:
    """How the pseudonyms of a result were made, as results.json records it."""
    return Pseudonymisation(method=METHOD, key_id=key_id(key), key_bytes=len(key), raw_ids=raw_ids)


def key_warning(p: Pseudonymisation, *, lists_records: bool) -> str | None:
    """Why pseudonyms made as ``p`` says may be reversible, or None when their key was checked
    (at least 16 random bytes, not a publicly known key). ``lists_records``: whether the
    result names any record (without one there is nothing to reverse)."""
    if p.raw_ids or not lists_records:
        return None
    if p.key_id in KNOWN_WEAK_KEY_IDS:
        return (
            "pseudonyms were made with a publicly known key (an earlier miaudit's fixed fallback or an empty key): "
            "anyone can reverse them by trying candidate ids; treat them as record ids and do not share these results"
        )
    if p.key_bytes is None:
        return (
            "pseudonyms were made by an earlier miaudit that did not check its key: if that pseudonym.key was empty, short "
            "or readable by others they can be reversed; rerun the audit to get checked pseudonyms"
        )
    if p.key_bytes < MIN_KEY_BYTES:
        return f"pseudonyms were made with a {p.key_bytes}-byte key: they can be reversed by trying candidate ids"
    return None


def pseudonymise(ids: np.ndarray, key: bytes) -> list[str]:
    return [
        "p-" + hmac.new(key, str(i).encode(), hashlib.sha256).hexdigest()[:16] for i in ids.tolist()
    ]
