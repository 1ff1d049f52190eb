"""API keys and keyed hashes.

A key is ``mia_<id>_<secret>``: ``id`` is 8 random bytes (16 hex digits), public, shown in
lists and logs; ``secret`` is 32 random bytes (256 bits, URL-safe base64). The store keeps only
HMAC-SHA-256(server secret, whole key), compared with :func:`hmac.compare_digest`. A slow
password hash is not needed (the key is random, not chosen by a person) and would cost more than
the service's latency budget.

The same server secret keys the hashes of records in the audit log and in the detectors, so that
a leaked database does not let anyone test whether a given record was queried.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from miaudit._io import plainly_not_random, read_secret_file
from miaudit.errors import InputError

PREFIX = "mia"
ID_BYTES = 8
SECRET_BYTES = 32
MIN_SERVER_SECRET = 32
#: A server secret file larger than this is not one.
MAX_SERVER_SECRET = 4096
_TOKEN = re.compile(r"^mia_([0-9a-f]{16})_([A-Za-z0-9_-]{43})$")
SECRET_ENV = "MIAUDIT_SERVE_SECRET"


@dataclass(frozen=True)
class NewKey:
    """A freshly created key: ``token`` is shown once and never stored."""

    key_id: str
    token: str
    digest: str


def new_key(server_secret: bytes) -> NewKey:
    """A random key ``mia_<id>_<secret>`` and its digest keyed by ``server_secret``."""
    key_id = secrets.token_hex(ID_BYTES)
    token = f"{PREFIX}_{key_id}_{secrets.token_urlsafe(SECRET_BYTES)}"
    return NewKey(key_id=key_id, token=token, digest=key_digest(server_secret, token))


def key_digest(server_secret: bytes, token: str) -> str:
    return hmac.new(server_secret, token.encode("utf-8"), hashlib.sha256).hexdigest()


def parse_token(token: str) -> str | None:
    """The public id of a well-formed token, else None."""
    m = _TOKEN.match(token)
    return m.group(1) if m else None


def digests_match(a: str, b: str) -> bool:
    return hmac.compare_digest(a.encode("ascii"), b.encode("ascii"))


def record_hashes(server_secret: bytes, records: np.ndarray) -> list[str]:
    """Keyed hash (HMAC-SHA-256, first 128 bits as hex) of each record's float64 bytes."""
    x = (
        np.ascontiguousarray(np.asarray(records, dtype=np.float64)) + 0.0
    )  # + 0.0: −0.0 hashes as 0.0
    key = hmac.new(server_secret, b"record", hashlib.sha256).digest()
    return [hmac.new(key, row.tobytes(), hashlib.sha256).hexdigest()[:32] for row in x]


def load_server_secret(path: Path | None = None, *, create: bool = False) -> bytes:
    """The server secret: from ``$MIAUDIT_SERVE_SECRET`` (hex) or from ``path`` (raw bytes).

    ``create``: write 32 random bytes to ``path`` (0600) when it does not exist yet. A file is
    read as a pseudonym key is (a regular file of this user's, one name, mode 0600); either
    source must hold at least 32 bytes that are not one repeated pattern: whoever can guess the
    secret can test whether a given record was queried, from a copy of the database.
    """
    env = os.environ.get(SECRET_ENV)
    if env:
        try:
            value = bytes.fromhex(env.strip())
        except ValueError:
            raise InputError(SECRET_ENV, "must be hex digits") from None
        if len(value) < MIN_SERVER_SECRET:
            raise InputError(
                SECRET_ENV, f"must hold at least {MIN_SERVER_SECRET} bytes (64 hex digits)"
            )
        return _random_looking(value, SECRET_ENV)
    if path is None:
        raise InputError("--secret-file", f"give a server secret file or set {SECRET_ENV}")
    p = Path(path)
    try:
        if create and not p.exists():
            p.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(p, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as fh:
                fh.write(secrets.token_bytes(MIN_SERVER_SECRET))
        value = read_secret_file(
            p,
            "server secret",
            max_bytes=MAX_SERVER_SECRET,
            if_read="and with it test whether a record was queried or forge key digests",
            field="--secret-file",
        )
    except FileNotFoundError:
        raise InputError("--secret-file", f"{str(p)!r} does not exist") from None
    except OSError as exc:
        raise InputError(
            "--secret-file",
            f"cannot {'create' if create else 'read'} {str(p)!r} ({exc.strerror or type(exc).__name__})",
        ) from None
    if len(value) < MIN_SERVER_SECRET:
        raise InputError(
            "--secret-file", f"{str(p)!r} must hold at least {MIN_SERVER_SECRET} bytes"
        )
    return _random_looking(value, "--secret-file")


def _random_looking(value: bytes, source: str) -> bytes:
    """``value`` unless it is plainly not random (at most 3 distinct byte values, or a pattern of
    at most 16 bytes repeated: zeros, ``b"password" * 4``)."""
    if plainly_not_random(value):
        raise InputError(
            source,
            "holds at most 3 distinct byte values or one short pattern repeated, not random bytes: make a new server secret (32 random bytes)",
        )
    return value
