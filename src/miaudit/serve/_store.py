"""The service's database: keys, budgets, the audit log and alerts (SQLAlchemy Core).

SQLite by default (WAL, ``BEGIN IMMEDIATE`` for every transaction, so that concurrent writers
in several worker processes queue instead of failing), PostgreSQL by URL.

Budgets are exact across worker processes because they live only in the database: a request
is charged in one transaction holding the key's row (``used + n <= budget`` and at most ``rate``
records in the last ``window_s`` seconds, counted in time buckets: see :meth:`Store.charge`),
and the request's log entry (key, time, keyed hash of every record, policy, status)
is inserted in the same transaction, before the model sees the records (so that concurrent
requests of one key cannot make it work past the key's limits). The answer is sent only after
that commit, so every answer a client received has its entry, and the budget counters equal the
sum of the logged records. A request that then gets no answer is settled: 500 stays charged (the
model saw its records), 502 (an upstream failed) is given back, in one transaction each.

Durability: SQLite runs with ``synchronous=NORMAL`` by default, which survives a crash of the
server process (kill -9); ``sqlite_synchronous="FULL"`` also survives power loss, at the cost
of one fsync per answer.

WAL checkpoints (SQLite) never run inside a request's commit (``wal_autocheckpoint=0``: SQLite's
own runs in the commit that crosses 1,000 pages, with its fsyncs). A thread per process
(:meth:`Store.checkpoint_wal`, every :data:`CHECKPOINT_EVERY_S`) copies the WAL into the
database alongside the writers (PASSIVE). Under steady writes such a checkpoint never leaves
the WAL wholly copied when the next writer begins (a commit lands while it runs), and only
then does SQLite start the WAL over: it grew by ~1,200 pages a second at 200 answers a second
(50 MB in a 5 s round) with no bound. So once the WAL holds :data:`WAL_RESTART_FRAMES` pages,
the thread copies the few pages written since while it holds the process's write lock (the
requests of the process queue for ~1 ms), and the next commit starts the WAL over; past
:data:`WAL_FORCE_FRAMES` (other worker processes kept writing meanwhile) it checkpoints
RESTART, which also holds the other processes' writers. A restart truncates the WAL file to
:data:`WAL_SIZE_LIMIT`. The checkpoint syncs as the store's ``synchronous`` says, so a crash at
any point leaves SQLite's own recovery to do; a crashed process's WAL is checkpointed by the
next to open the database.
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import stat
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import sqlalchemy as sa
from sqlalchemy import event

from miaudit.errors import InputError
from miaudit.serve._keys import NewKey, new_key

log = logging.getLogger("miaudit.serve")

metadata = sa.MetaData()

api_keys = sa.Table(
    "miaudit_api_keys",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("digest", sa.String(64), nullable=False),
    sa.Column("role", sa.String(64), nullable=False),
    sa.Column("label", sa.String(200), nullable=True),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("revoked_at", sa.Float, nullable=True),
    sa.Column("budget", sa.BigInteger, nullable=True),  # total records; NULL = no cap
    sa.Column("used", sa.BigInteger, nullable=False, default=0),
    sa.Column("rate", sa.BigInteger, nullable=True),  # records per window; NULL = no cap
    sa.Column("window_s", sa.Integer, nullable=False, default=60),
    # As of the key's last charge: the second its rate window's oldest bucket expires and the
    # records in that window (KeyInfo.window_until / window_used; the column kept its name
    # from the fixed windows it held before).
    sa.Column("window_id", sa.BigInteger, nullable=False, default=0),
    sa.Column("window_used", sa.BigInteger, nullable=False, default=0),
)

#: Records charged to a key per time bucket of ``width`` seconds (``idx``: start // width) and
#: the time of the latest, for its sliding rate window: a bucket's records count until
#: ``window_s`` seconds after its latest. Buckets past every window are deleted as charges go.
rate_buckets = sa.Table(
    "miaudit_rate_buckets",
    metadata,
    sa.Column("key_id", sa.String(16), primary_key=True),
    sa.Column("width", sa.BigInteger, primary_key=True),
    sa.Column("idx", sa.BigInteger, primary_key=True),
    sa.Column("n", sa.BigInteger, nullable=False),
    sa.Column("last", sa.Float, nullable=False),
)

#: Buckets per rate window: a record counts for at most window_s + window_s / 64 seconds.
RATE_BUCKETS = 64


def bucket_width(window_s: int) -> int:
    """Seconds per rate bucket of a window of ``window_s`` seconds."""
    return -(-int(window_s) // RATE_BUCKETS)


requests = sa.Table(
    "miaudit_requests",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("key_id", sa.String(16), nullable=True, index=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("endpoint", sa.String(32), nullable=False),
    sa.Column("n_records", sa.Integer, nullable=False),
    sa.Column("policy", sa.String(32), nullable=True),
    sa.Column("status", sa.Integer, nullable=False),
)

request_records = sa.Table(
    "miaudit_request_records",
    metadata,
    sa.Column("request_id", sa.Integer, sa.ForeignKey("miaudit_requests.id"), primary_key=True),
    sa.Column("position", sa.Integer, primary_key=True),
    sa.Column("record_hash", sa.String(32), nullable=False),
)

alerts = sa.Table(
    "miaudit_alerts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("detector", sa.String(32), nullable=False),
    sa.Column("key_id", sa.String(16), nullable=True),
    sa.Column("keys", sa.Text, nullable=False),
    sa.Column("detail", sa.Text, nullable=False),
)

#: What admin keys (and the local command line) did: one row per act, written in the act's own
#: transaction, so that a key created, raised, revoked or a log read with record hashes always
#: leaves a trace (a stolen admin key left none before). ``actor`` NULL: the command line.
admin_acts = sa.Table(
    "miaudit_admin_acts",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("ts", sa.Float, nullable=False),
    sa.Column("actor", sa.String(16), nullable=True, index=True),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("target", sa.String(16), nullable=True),
    sa.Column("detail", sa.Text, nullable=False),
)

Denial = Literal["revoked", "budget", "rate"]


class Keep(enum.Enum):
    """The type of :data:`KEEP`."""

    KEEP = "keep"


#: A limit left out of :meth:`Store.set_limits`: the key keeps its current value.
KEEP = Keep.KEEP


class KeyRevoked(Exception):
    """The acting key was revoked (or deleted) before the action's transaction took its lock."""


BUDGET_RETRY_AFTER_S = 86400  # a spent total budget comes back only when an admin raises it


@dataclass(frozen=True)
class KeyInfo:
    """A key as the store holds it (never the token)."""

    key_id: str
    role: str
    label: str | None
    created_at: float
    revoked_at: float | None
    budget: int | None
    used: int
    rate: int | None
    window_s: int
    #: As of the key's last charge: the records in its rate window and the second (epoch) the
    #: oldest of them leaves it. Until then, with no charge since, the window holds exactly
    #: ``window_used``: what a request can be refused on before the model runs (the charge
    #: decides the rest).
    window_until: int = 0
    window_used: int = 0

    def budget_holds(self, n: int) -> bool:
        """Whether ``n`` more records fit in the key's total budget, as of this read."""
        return self.budget is None or self.used + n <= self.budget

    def rate_window_full(self, n: int, now: float) -> bool:
        """Whether ``n`` more records would certainly exceed the key's rate limit at ``now``, as
        of this read of the key (False when records may have left the window since)."""
        if self.rate is None or now >= self.window_until:
            return False
        return self.window_used + n > self.rate

    def public(self) -> dict[str, Any]:
        return {
            "key_id": self.key_id,
            "role": self.role,
            "label": self.label,
            "created_at": self.created_at,
            "revoked": self.revoked_at is not None,
            "budget": self.budget,
            "used": self.used,
            "rate": self.rate,
            "window_s": self.window_s,
        }


@dataclass(frozen=True)
class Charge:
    """Outcome of charging a request: ``request_id`` when admitted, else why and when to retry."""

    request_id: int | None
    denial: Denial | None = None
    retry_after_s: int = 0
    #: When the charge was decided (its bucket and log row's time; what :meth:`Store.settle`
    #: refunds against).
    at: float = 0.0


@dataclass(frozen=True)
class Alert:
    id: int
    ts: float
    detector: str
    key_id: str | None
    keys: list[str]
    detail: dict[str, Any]

    def public(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": self.ts,
            "detector": self.detector,
            "key_id": self.key_id,
            "keys": self.keys,
            "detail": self.detail,
        }


#: Seconds between two rounds of the WAL checkpointer (SQLite).
CHECKPOINT_EVERY_S = 1.0
#: WAL pages past which the checkpointer makes the WAL start over (16 MiB at 4 KiB pages).
WAL_RESTART_FRAMES = 4096
#: WAL pages past which it checkpoints RESTART, holding every process's writers for a moment.
WAL_FORCE_FRAMES = 4 * WAL_RESTART_FRAMES
#: Bytes a WAL file is truncated to when the WAL starts over (``journal_size_limit``).
WAL_SIZE_LIMIT = 64 * 2**20
#: Milliseconds a RESTART checkpoint waits for readers and other processes' writers.
_RESTART_WAIT_MS = 200


def normalise_url(url: str) -> str:
    """``postgresql://`` → the psycopg 3 driver; anything else unchanged."""
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+psycopg://" + url.split("://", 1)[1]
    return url


def make_engine(url: str, *, sqlite_synchronous: str = "NORMAL") -> sa.Engine:
    """A SQLAlchemy engine for the service's database at ``url`` (SQLite in WAL mode, or
    PostgreSQL); :class:`InputError` naming ``--db`` for a URL the service cannot use."""
    url = normalise_url(url)
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError:
        raise InputError(
            "--db",
            f"not a database URL: {url!r} (e.g. sqlite:///guard.db or postgresql://user@host/db)",
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if parsed.database in (None, "", ":memory:") or _sqlite_uri_in_memory(
            parsed.database, parsed.query
        ):
            raise InputError(
                "--db",
                "an in-memory SQLite database cannot be shared by workers; give a file (sqlite:///guard.db)",
            )
        if sqlite_synchronous.upper() not in ("NORMAL", "FULL"):
            raise InputError(
                "sqlite_synchronous", f"must be NORMAL or FULL, got {sqlite_synchronous!r}"
            )
        engine = sa.create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _connect(dbapi_conn: Any, _rec: Any) -> None:
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute(f"PRAGMA synchronous={sqlite_synchronous.upper()}")
            cur.execute("PRAGMA busy_timeout=30000")
            cur.execute("PRAGMA foreign_keys=ON")
            # No checkpoint on the request path (its fsync is the tail of the latency): a
            # background thread checkpoints instead (see Store).
            cur.execute("PRAGMA wal_autocheckpoint=0")
            cur.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
            cur.close()

        @event.listens_for(engine, "begin")
        def _begin(conn: sa.Connection) -> None:
            # Writers take the write lock at BEGIN (no deadlock on upgrade); readers never block in WAL.
            conn.exec_driver_sql(
                "BEGIN" if conn.get_execution_options().get("miaudit_read") else "BEGIN IMMEDIATE"
            )

        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(url, pool_pre_ping=True, pool_size=8, max_overflow=8)
    raise InputError(
        "--db",
        f"unsupported database {parsed.get_backend_name()!r}; use sqlite:/// or postgresql://",
    )


def rate_retry_after(now: float, until: float) -> int:
    """Seconds from ``now`` until ``until`` (at least 1): a 429's ``Retry-After``."""
    return max(1, math.ceil(until - now))


def _window_room(
    buckets: Sequence[tuple[float, int]], n: int, rate: int, window_s: int
) -> tuple[int, float]:
    """(records in the window, the time at which ``n`` more fit under ``rate``) from the key's
    buckets in its window (latest record's time, records): a bucket's records leave the window
    ``window_s`` seconds after its latest."""
    ends = sorted((last + window_s, c) for last, c in buckets)
    used = sum(c for _, c in ends)
    excess, fits_at = used + n - rate, 0.0
    for until, c in ends:
        if excess <= 0:
            break
        excess -= c
        fits_at = until
    return used, fits_at


def _query_value(query: Any, name: str) -> str | None:
    """A URL query argument's last value (SQLAlchemy keeps repeated ones as a tuple)."""
    value = (query or {}).get(name)
    return value[-1] if isinstance(value, tuple) else value


def _sqlite_uri(database: str, query: Any) -> bool:
    """Whether SQLite reads ``database`` as a URI filename: ``file:…`` with ``uri`` true in the
    URL as SQLAlchemy reads it (``asbool``: true, yes, on, 1…; a repeated one counts; red team:
    ``uri=True`` got past a check for "true" and "1"). Without it, pysqlite opens a file named
    ``file:…`` in the working folder."""
    value = (query or {}).get("uri")
    if value is None or not database.startswith("file:"):
        return False
    return True if isinstance(value, tuple) else bool(sa.util.asbool(value))


def _sqlite_uri_in_memory(database: str, query: Any) -> bool:
    """Whether a SQLite URI filename names an in-memory database, which each worker would hold
    apart (budgets would be per worker)."""
    return _sqlite_uri(database, query) and (
        database.startswith("file::memory:")
        or _query_value(query, "mode") == "memory"
        or _query_value(query, "vfs") == "memdb"
        or not _uri_location(database).lstrip("/")
    )  # an empty path is a private temporary database per connection


def _uri_location(database: str) -> str:
    """What follows ``file:`` in a SQLite URI filename, without its query and fragment."""
    return database[len("file:") :].split("#", 1)[0].split("?", 1)[0]


def _sqlite_uri_path(database: str, query: Any) -> str | None:
    """The file a SQLite URI filename (``file:PATH``, ``file:///PATH``, ``file://localhost/PATH``)
    opens, decoded as SQLite decodes it; None when it opens none this process may create
    (read-only, immutable, another host)."""
    immutable = _query_value(query, "immutable")
    if _query_value(query, "mode") in ("ro", "rw", "memory") or (
        immutable is not None and sa.util.asbool(immutable)
    ):
        return None  # SQLite creates nothing there (rw: the file must exist already)
    rest = _uri_location(database)
    if rest.startswith("//"):
        authority, _, path = rest[2:].partition("/")
        if authority not in ("", "localhost"):
            return None
        rest = "/" + path
    return urllib.parse.unquote(rest) or None


def _restricted_sqlite_file(database: str, query: Any = None) -> str | None:
    """Create a new SQLite file 0600 before SQLite does (it would use the umask, often 0644):
    it holds key digests, who queried how much and keyed record hashes. SQLite gives its
    ``-wal`` and ``-shm`` files the database file's mode. A file that exists keeps its mode; a
    warning says so when others may read it. A URI filename (``file:…`` with ``uri=true``) is
    read for its path (red team: such databases, and files named ``file:…``, were created with
    the umask's mode). The file's path when this call created it, else None."""
    if _sqlite_uri(database, query):
        path = _sqlite_uri_path(database, query)
        if path is None:
            return None
        database = path
    try:
        os.close(os.open(database, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return database
    except FileExistsError:
        mode = os.stat(database).st_mode
        if stat.S_ISREG(mode) and mode & 0o077:
            log.warning(
                "%s has mode %04o: other users may read its key digests and query log (chmod 600)",
                database,
                stat.S_IMODE(mode),
            )
    except OSError:
        pass  # no such folder, no rights: opening the database reports it in one line
    return None


def _missing_sqlite_folder(database: str | None, query: Any) -> str | None:
    """The folder of a SQLite database file when it does not exist (SQLite says only "unable to
    open database file"), else None."""
    if not database:
        return None
    if _sqlite_uri(database, query):
        database = _sqlite_uri_path(database, query) or ""
    folder = os.path.dirname(database)
    return folder if folder and not os.path.isdir(folder) else None


def _remove_sqlite_file(path: str) -> None:
    """Delete the SQLite file at ``path`` with its ``-wal``, ``-shm`` and ``-journal`` files
    (once every connection to it is closed)."""
    for name in (path, path + "-wal", path + "-shm", path + "-journal"):
        with contextlib.suppress(FileNotFoundError):
            os.remove(name)


class Store:
    """Keys, budgets, log and alerts in one SQL database."""

    # Long: every statement of the hot path is built here once, for this engine's dialect,
    # beside the comments that say why each is shaped as it is.
    def __init__(
        self,
        url: str,
        *,
        sqlite_synchronous: str = "NORMAL",
        checkpoint_every_s: float | None = CHECKPOINT_EVERY_S,
    ) -> None:
        """``checkpoint_every_s``: the WAL checkpointer's period (SQLite); None: no thread
        (:meth:`checkpoint_wal` is then the caller's to run)."""
        self.url = normalise_url(url)
        self.engine = make_engine(url, sqlite_synchronous=sqlite_synchronous)
        self._create_tables()
        # Built once: building SQLAlchemy expressions costs more than running them (≈1 ms).
        k = api_keys.c
        self._key_stmt = sa.select(api_keys).where(k.key_id == sa.bindparam("key_id"))
        ph = "?" if self.engine.dialect.name == "sqlite" else "%s"
        cols = ", ".join(KEY_COLUMNS)
        self._sql_key = f"SELECT {cols}, digest FROM miaudit_api_keys WHERE key_id = {ph}"
        # The acting key's row, locked until the action commits: a revocation (which locks the row
        # for update) either commits first, and the action sees it, or waits for the action.
        # SQLite needs no row lock: every write transaction holds the database's write lock.
        self._sql_actor = f"SELECT revoked_at FROM miaudit_api_keys WHERE key_id = {ph}"
        self._sql_lock = (
            f"SELECT key_id FROM miaudit_api_keys WHERE key_id IN ({ph}, {ph}) ORDER BY key_id"
        )
        if self.engine.dialect.name != "sqlite":
            self._sql_actor += " FOR SHARE"
            self._sql_lock += " FOR UPDATE"
        # The hot path (one charge per answer) as driver-level SQL: SQLAlchemy's statement handling
        # costs more than the database's work here. The key's row is read and held (SQLite's
        # write lock; FOR UPDATE on PostgreSQL, so that a second charge of the key reads the
        # window after the first commits), then its buckets that overlap the window.
        self._sql_charge_key = (
            f"SELECT revoked_at, budget, used, rate, window_s, window_id "
            f"FROM miaudit_api_keys WHERE key_id = {ph}"
        )
        if self.engine.dialect.name != "sqlite":
            self._sql_charge_key += " FOR UPDATE"
        self._sql_window = (
            f"SELECT last, n FROM miaudit_rate_buckets WHERE key_id = {ph} AND last > {ph}"
        )
        self._sql_charge = (
            f"UPDATE miaudit_api_keys SET used = used + {ph}, window_used = {ph}, window_id = {ph} "
            f"WHERE key_id = {ph}"
        )
        later = "max" if self.engine.dialect.name == "sqlite" else "greatest"
        self._sql_bucket = (
            f"INSERT INTO miaudit_rate_buckets (key_id, width, idx, n, last) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}) ON CONFLICT (key_id, width, idx) DO UPDATE "
            f"SET n = miaudit_rate_buckets.n + excluded.n, "
            f"last = {later}(miaudit_rate_buckets.last, excluded.last)"
        )
        self._sql_prune = f"DELETE FROM miaudit_rate_buckets WHERE key_id = {ph} AND last <= {ph}"
        self._sql_request = (
            f"INSERT INTO miaudit_requests (key_id, ts, endpoint, n_records, policy, status) "
            f"VALUES ({ph}, {ph}, {ph}, {ph}, {ph}, {ph}) RETURNING id"
        )
        self._sql_records = f"INSERT INTO miaudit_request_records (request_id, position, record_hash) VALUES ({ph}, {ph}, {ph})"
        # SQLite: one writer per process at a time, queued on a Python lock. Threads that met on
        # SQLite's own lock would wait in its busy handler, which sleeps in steps of up to 100 ms
        # and, under load, turns a short queue into seconds of latency.
        self._sqlite = self.engine.dialect.name == "sqlite"
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._readers: list[Any] = []
        self.wal_restart_frames = WAL_RESTART_FRAMES
        self.wal_force_frames = WAL_FORCE_FRAMES
        self._checkpointer: threading.Thread | None = None
        self._ckpt_lock = threading.Lock()
        self._ckpt: Any = None
        if self._sqlite:
            self._ckpt = self._checkpoint_connection(sqlite_synchronous)
            if checkpoint_every_s is not None:
                self._checkpointer = threading.Thread(
                    target=self._checkpoint_loop,
                    args=(checkpoint_every_s,),
                    name="miaudit-wal-checkpoint",
                    daemon=True,
                )
                self._checkpointer.start()

    def _checkpoint_connection(self, synchronous: str) -> Any:
        """The checkpointer's own SQLite connection (autocommit), out of the pool: its busy
        wait is short, and it syncs as the store's connections do."""
        cargs, cparams = self.engine.dialect.create_connect_args(self.engine.url)
        raw = self.engine.dialect.dbapi.connect(  # type: ignore[union-attr]
            *cargs, **{**cparams, "check_same_thread": False}
        )
        raw.isolation_level = None
        raw.execute(f"PRAGMA busy_timeout={_RESTART_WAIT_MS}")
        raw.execute(f"PRAGMA synchronous={synchronous.upper()}")
        raw.execute(f"PRAGMA journal_size_limit={WAL_SIZE_LIMIT}")
        return raw

    def _checkpoint_loop(self, every_s: float) -> None:
        while not self._stop.wait(every_s):
            try:
                self.checkpoint_wal()
            except Exception:  # noqa: BLE001, S112 - a missed checkpoint is retried next round
                continue

    def checkpoint_wal(self) -> tuple[int, int, int] | None:
        """One round of the WAL checkpointer (module docstring); SQLite's (busy, pages in the
        WAL, pages copied) as it left them, or None for another database or a closed store.

        First PASSIVE with no lock: the WAL's pages are copied into the database while requests
        go on. Then, when the WAL holds ``wal_restart_frames`` pages or more and that pass left
        at most a quarter of that uncopied (else a reader pins it and nothing is gained), once
        more holding the process's write lock, so that nothing is written meanwhile and the WAL is left
        wholly copied: the next commit starts it over. RESTART instead past
        ``wal_force_frames`` pages, which waits (up to 200 ms) for other processes' writers
        and readers."""
        with self._ckpt_lock:
            if self._ckpt is None:
                return None
            busy, pages, copied = self._ckpt.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            # Under the lock only when the free pass copied nearly all: a reader holding an old
            # snapshot (a backup, a browser left open) pins the WAL, and waiting for it with the
            # writers held stalled every answer ~200 ms each round for nothing (red team).
            if pages >= self.wal_restart_frames and pages - copied <= self.wal_restart_frames // 4:
                mode = "RESTART" if pages >= self.wal_force_frames else "PASSIVE"
                with self._write_lock:
                    busy, pages, copied = self._ckpt.execute(
                        f"PRAGMA wal_checkpoint({mode})"
                    ).fetchone()
            return int(busy), int(pages), int(copied)

    def _create_tables(self) -> None:
        """The tables, in a SQLite file made 0600 first; one line when the database cannot be
        opened (not a database file, a server that does not answer, no rights), and then no
        file it made left behind."""
        #: The SQLite file this store created (it did not exist before), or None.
        self.created_file: str | None = None
        if self.engine.dialect.name == "sqlite" and self.engine.url.database:
            self.created_file = _restricted_sqlite_file(
                self.engine.url.database, self.engine.url.query
            )
        try:
            metadata.create_all(self.engine)
        except sa.exc.SQLAlchemyError as exc:
            self.engine.dispose()
            if self.created_file is not None:
                _remove_sqlite_file(self.created_file)
            reason = str(getattr(exc, "orig", None) or exc).splitlines()[0][:200]
            folder = _missing_sqlite_folder(self.engine.url.database, self.engine.url.query)
            if folder is not None:
                reason = f"{reason} (no folder {folder!r})"
            raise InputError(
                "--db", f"cannot open the database {_redacted(self.url)!r}: {reason}"
            ) from None

    @contextlib.contextmanager
    def _write(self) -> Iterator[sa.Connection]:
        if self._sqlite:
            with self._write_lock, self.engine.begin() as conn:
                yield conn
        else:
            with self.engine.begin() as conn:
                yield conn

    @contextlib.contextmanager
    def _read(self) -> Iterator[sa.Connection]:
        with self.engine.connect().execution_options(miaudit_read=True) as conn, conn.begin():
            yield conn

    def close(self) -> None:
        self._stop.set()
        for raw in self._readers:
            raw.close()
        if self._checkpointer is not None:
            self._checkpointer.join(timeout=5)
        with self._ckpt_lock:
            if self._ckpt is not None:
                self._ckpt.close()
                self._ckpt = None
        self.engine.dispose()

    def discard(self) -> None:
        """Close the store and delete its SQLite file if this store created it (a file that
        existed before is kept): for a command refused after it opened a new database, which
        should leave nothing behind. A PostgreSQL database keeps its tables."""
        self.close()
        if self.created_file is not None:
            _remove_sqlite_file(self.created_file)
            self.created_file = None

    # --- keys ---------------------------------------------------------------------------------

    def create_key(
        self,
        server_secret: bytes,
        role: str,
        *,
        budget: int | None = None,
        rate: int | None = None,
        window_s: int = 60,
        label: str | None = None,
        actor: str | None = None,
    ) -> NewKey:
        """A new key. ``actor``: the admin key acting; :class:`KeyRevoked` when it is revoked by
        the time this transaction holds its row (no key is created then)."""
        check_limits(budget, rate, window_s, label=label)
        key = new_key(server_secret)
        with self._write() as conn:
            self._check_actor(conn, actor)
            conn.execute(
                api_keys.insert().values(
                    key_id=key.key_id,
                    digest=key.digest,
                    role=role,
                    label=label,
                    created_at=time.time(),
                    revoked_at=None,
                    budget=budget,
                    used=0,
                    rate=rate,
                    window_s=window_s,
                    window_id=0,
                    window_used=0,
                )
            )
            _record_act(
                conn,
                actor,
                "create_key",
                key.key_id,
                {"role": role, "budget": budget, "rate": rate, "window_s": window_s},
            )
        return key

    def _check_actor(self, conn: sa.Connection, actor: str | None) -> None:
        if actor is None:
            return
        row = conn.exec_driver_sql(self._sql_actor, (actor,)).first()
        if row is None or row[0] is not None:
            raise KeyRevoked(actor)

    def key_row(self, key_id: str) -> tuple[KeyInfo, str] | None:
        """(info, digest) of ``key_id``, or None: one indexed read, the same for every id."""
        with self._read() as conn:
            row = conn.exec_driver_sql(self._sql_key, (key_id,)).first()
        return None if row is None else (_info(dict(zip(KEY_COLUMNS, row, strict=False))), row[-1])

    def key_reader(self) -> Callable[[str], tuple[KeyInfo, str] | None] | None:
        """For SQLite, :meth:`key_row` on a connection of its own, for one thread only (the
        service's event loop): a local read without a pool, a transaction or a thread hop. In
        WAL mode readers never wait for writers. None for other databases (a network read does
        not belong on an event loop)."""
        if not self._sqlite:
            return None
        import sqlite3

        raw = sqlite3.connect(
            self.engine.url.database or "",
            timeout=30,
            isolation_level=None,
            check_same_thread=False,
        )
        raw.execute("PRAGMA query_only=ON")
        self._readers.append(raw)
        sql = self._sql_key

        def read(key_id: str) -> tuple[KeyInfo, str] | None:
            row = raw.execute(sql, (key_id,)).fetchone()
            return (
                None if row is None else (_info(dict(zip(KEY_COLUMNS, row, strict=False))), row[-1])
            )

        return read

    def get_key(self, key_id: str) -> KeyInfo | None:
        got = self.key_row(key_id)
        return None if got is None else got[0]

    @contextlib.contextmanager
    def _as(
        self, actor: str | None, action: str, target: str | None = None, **detail: Any
    ) -> Iterator[sa.Connection]:
        """A read as ``actor``: in one transaction with the actor's live row (locked), so that no
        answer is read after the actor's revocation commits, and recorded as ``action`` (reads
        by the local command line, ``actor`` None, are not acts of a key: not recorded)."""
        if actor is None:
            with self._read() as conn:
                yield conn
        else:
            with self._write() as conn:
                self._check_actor(conn, actor)
                _record_act(conn, actor, action, target, detail)
                yield conn

    def list_keys(self, *, actor: str | None = None) -> list[KeyInfo]:
        with self._as(actor, "list_keys") as conn:
            rows = (
                conn.execute(sa.select(api_keys).order_by(api_keys.c.created_at, api_keys.c.key_id))
                .mappings()
                .all()
            )
        return [_info(r) for r in rows]

    def revoke_key(self, key_id: str, *, actor: str | None = None) -> bool:
        """Revoke ``key_id``; False when there is no such key. The revocation time is taken after
        the row is locked, so every action that committed before it is earlier."""
        with self._write() as conn:
            self._lock(conn, key_id, actor)
            res = conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=time.time())
            )
            if res.rowcount == 1:
                _record_act(conn, actor, "revoke_key", key_id, {})
            if res.rowcount == 0:
                return (
                    conn.execute(
                        sa.select(api_keys.c.key_id).where(api_keys.c.key_id == key_id)
                    ).first()
                    is not None
                )
        return True

    def _lock(self, conn: sa.Connection, key_id: str, actor: str | None) -> None:
        """Lock the target's and the actor's rows (in key order: no deadlock), then check the actor."""
        conn.exec_driver_sql(self._sql_lock, (key_id, actor if actor is not None else key_id)).all()
        self._check_actor(conn, actor)

    def set_limits(
        self,
        key_id: str,
        *,
        budget: int | Keep | None = KEEP,
        rate: int | Keep | None = KEEP,
        window_s: int | Keep = KEEP,
        actor: str | None = None,
    ) -> bool:
        """Change a key's limits: each one given replaces the key's (``budget`` or ``rate``
        None: no cap), each one left out (:data:`KEEP`) keeps the key's current value, read in
        the same transaction. False: no such key.

        (Omitting ``rate`` used to mean no cap and ``window_s`` 60 seconds: raising a key's
        budget silently lifted its rate limit.)"""
        check_limits(
            None if isinstance(budget, Keep) else budget,
            None if isinstance(rate, Keep) else rate,
            60 if isinstance(window_s, Keep) else window_s,
        )
        with self._write() as conn:
            self._lock(conn, key_id, actor)
            row = conn.execute(
                sa.select(api_keys.c.budget, api_keys.c.rate, api_keys.c.window_s).where(
                    api_keys.c.key_id == key_id
                )
            ).first()
            if row is None:
                return False
            limits = {
                "budget": row.budget if isinstance(budget, Keep) else budget,
                "rate": row.rate if isinstance(rate, Keep) else rate,
                "window_s": int(row.window_s) if isinstance(window_s, Keep) else window_s,
            }
            conn.execute(
                api_keys.update().where(api_keys.c.key_id == key_id).values(**limits, window_id=0)
            )
            _record_act(conn, actor, "set_limits", key_id, limits)
        return True

    # --- charging and the log -----------------------------------------------------------------

    def charge(
        self,
        key_id: str,
        n: int,
        *,
        endpoint: str,
        policy: str | None,
        hashes: Sequence[str],
        now: float | None = None,
        status: int = 200,
    ) -> Charge:
        """Charge ``n`` records to ``key_id`` and log the request with ``status``, in one transaction.

        Admitted only if the key is not revoked, its total budget holds ``n`` more records and
        at most ``rate`` records, these included, were charged in the ``window_s`` seconds up to
        ``now``. The window slides: records are counted in buckets of ``window_s / 64``
        seconds rounded up to a whole second (:func:`bucket_width`), each until ``window_s`` after its latest record, so a
        record may count up to one bucket longer than ``window_s``, never shorter — no window
        of ``window_s`` seconds ever holds more than ``rate`` records (fixed windows let
        2 × ``rate`` through across a boundary). On denial nothing is charged. ``status`` is
        what the caller gets: 200 for a charge made before the model runs, until :meth:`settle`
        changes it. ``now`` (default) is read once the key's row is locked: a time read before
        the lock was waited for let records leave the window early, and a charge decided after
        another's prune admit 19 records in 9.95 s at a rate of 10 per 10 s (red team).
        """
        n = int(n)
        with self._write() as conn:
            row = conn.exec_driver_sql(self._sql_charge_key, (key_id,)).first()
            now = time.time() if now is None else now  # the write lock is held from here
            now_s = int(now)
            if row is None or row[0] is not None:
                return Charge(None, "revoked", at=now)
            budget, used, rate, window_s, until = row[1], int(row[2]), row[3], int(row[4]), row[5]
            if budget is not None and used + n > budget:
                return Charge(None, "budget", BUDGET_RETRY_AFTER_S, at=now)
            start = now - window_s  # a bucket whose latest record is after it still counts
            buckets = conn.exec_driver_sql(self._sql_window, (key_id, start)).all()
            in_window, fits_at = _window_room(buckets, n, rate or 0, window_s)
            if rate is not None and in_window + n > rate:  # more than the rate never fits
                retry = window_s if n > rate else rate_retry_after(now, fits_at)
                return Charge(None, "rate", retry, at=now)
            width = bucket_width(window_s)
            oldest = min([float(last) for last, _ in buckets] + [now])
            conn.exec_driver_sql(
                self._sql_charge, (n, in_window + n, math.floor(oldest + window_s), key_id)
            )
            conn.exec_driver_sql(self._sql_bucket, (key_id, width, now_s // width, n, now))
            if now >= int(until):  # a bucket left the window since the last charge
                conn.exec_driver_sql(self._sql_prune, (key_id, start))
            rid = int(
                conn.exec_driver_sql(
                    self._sql_request, (key_id, now, endpoint, n, policy, status)
                ).scalar_one()
            )
            if hashes:
                conn.exec_driver_sql(self._sql_records, [(rid, i, h) for i, h in enumerate(hashes)])
            return Charge(rid, at=now)

    def settle(
        self,
        key_id: str,
        charge: Charge,
        n: int,
        *,
        charged_at: float,
        window_s: int,
        status: int,
        refund: bool = False,
    ) -> None:
        """Change the status of a charged request whose records got no answer, in one transaction.

        Without ``refund`` it stays charged, its record hashes kept: the model (or an upstream
        that failed after reading them) saw the records. With ``refund`` (an upstream never
        reached): its ``n`` records are given back to the key's total and to the rate bucket
        they were charged in (at ``charged_at``, under the ``window_s`` they were charged
        with), neither below 0 (red team: a refund after an admin changed ``window_s`` drove
        the fixed window's count to -6), and its record hashes are removed, as for any refused
        request.
        """
        if charge.request_id is None:
            raise ValueError("only an admitted charge can be settled")
        rid = charge.request_id
        with self._write() as conn:
            conn.execute(requests.update().where(requests.c.id == rid).values(status=status))
            if not refund:
                return
            conn.execute(request_records.delete().where(request_records.c.request_id == rid))
            width = bucket_width(window_s)
            b = rate_buckets.c
            conn.execute(
                rate_buckets.update()
                .where(b.key_id == key_id, b.width == width, b.idx == int(charged_at) // width)
                .values(n=sa.case((b.n >= n, b.n - n), else_=0))
            )
            conn.execute(
                api_keys.update()
                .where(api_keys.c.key_id == key_id)
                .values(  # the window's count as of the last charge no longer holds: re-read it
                    used=sa.case((api_keys.c.used >= n, api_keys.c.used - n), else_=0),
                    window_id=0,
                )
            )

    def rate_fits_at(self, key_id: str, n: int, now: float) -> float:
        """When ``n`` more records fit in ``key_id``'s rate window, from its buckets as they are,
        read as :meth:`charge` reads them (≤ ``now``: they fit now; a read, no lock). What a 429's ``Retry-After`` says: the
        oldest bucket's leaving frees one record at least, not ``n``."""
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.rate, api_keys.c.window_s).where(api_keys.c.key_id == key_id)
            ).first()
            if row is None or row[0] is None:
                return now
            rate, window_s = int(row[0]), int(row[1])
            buckets = conn.exec_driver_sql(self._sql_window, (key_id, now - window_s)).all()
        return _window_room([(float(t), int(c)) for t, c in buckets], n, rate, window_s)[1]

    def window_used(self, key_id: str, now: float | None = None) -> int:
        """Records charged to ``key_id`` in its rate window at ``now`` (0 for no such key),
        counted as :meth:`charge` counts them."""
        now = time.time() if now is None else now
        with self._read() as conn:
            row = conn.execute(
                sa.select(api_keys.c.window_s).where(api_keys.c.key_id == key_id)
            ).first()
            if row is None:
                return 0
            b = rate_buckets.c
            total = conn.execute(
                sa.select(sa.func.coalesce(sa.func.sum(b.n), 0)).where(
                    b.key_id == key_id, b.last > now - int(row[0])
                )
            ).scalar_one()
        return int(total)

    def log_denied(
        self, key_id: str | None, *, endpoint: str, n: int, policy: str | None, status: int
    ) -> None:
        """Log a refused request (no record hashes: nothing was answered)."""
        with self._write() as conn:
            conn.execute(
                requests.insert().values(
                    key_id=key_id,
                    ts=time.time(),
                    endpoint=endpoint,
                    n_records=n,
                    policy=policy,
                    status=status,
                )
            )

    def log_entries(
        self,
        *,
        key_id: str | None = None,
        limit: int = 100,
        with_hashes: bool = False,
        actor: str | None = None,
    ) -> list[dict[str, Any]]:
        q = sa.select(requests).order_by(requests.c.id.desc()).limit(limit)
        if key_id is not None:
            q = q.where(requests.c.key_id == key_id)
        acting = self._as(actor, "read_log", key_id, limit=limit, record_hashes=with_hashes)
        with acting as conn:
            rows = [dict(r) for r in conn.execute(q).mappings().all()]
            if with_hashes and rows:
                ids = [r["id"] for r in rows]
                hs = (
                    conn.execute(
                        sa.select(request_records)
                        .where(request_records.c.request_id.in_(ids))
                        .order_by(request_records.c.request_id, request_records.c.position)
                    )
                    .mappings()
                    .all()
                )
                by: dict[int, list[str]] = {}
                for h in hs:
                    by.setdefault(h["request_id"], []).append(h["record_hash"])
                for r in rows:
                    r["record_hashes"] = by.get(r["id"], [])
        return rows

    def answered_records(self) -> dict[str, int]:
        """Records charged (logged with status 200, or 500: they reached the model), per key:
        what budgets must equal."""
        q = (
            sa.select(requests.c.key_id, sa.func.sum(requests.c.n_records))
            .where(requests.c.status.in_((200, 500)))
            .group_by(requests.c.key_id)
        )
        with self._read() as conn:
            return {k: int(v) for k, v in conn.execute(q).all()}

    def acts(
        self, *, actor_filter: str | None = None, limit: int = 100, actor: str | None = None
    ) -> list[dict[str, Any]]:
        """What admin keys and the command line did, newest first (``actor_filter``: one key's
        acts); reading them is an act too."""
        q = sa.select(admin_acts).order_by(admin_acts.c.id.desc()).limit(limit)
        if actor_filter is not None:
            q = q.where(admin_acts.c.actor == actor_filter)
        with self._as(actor, "read_acts", actor_filter, limit=limit) as conn:
            rows = [dict(r) for r in conn.execute(q).mappings().all()]
        for r in rows:
            r["detail"] = json.loads(r["detail"])
        return rows

    # --- alerts -------------------------------------------------------------------------------

    def add_alert(
        self,
        detector: str,
        key_id: str | None,
        keys: Sequence[str],
        detail: dict[str, Any],
        *,
        now: float | None = None,
    ) -> Alert:
        ts = time.time() if now is None else now
        with self._write() as conn:
            pk = conn.execute(
                alerts.insert().values(
                    ts=ts,
                    detector=detector,
                    key_id=key_id,
                    keys=json.dumps(sorted(keys)),
                    detail=json.dumps(detail, sort_keys=True),
                )
            ).inserted_primary_key
        if pk is None:  # a single-row insert always has one; SQLAlchemy types it optional
            raise RuntimeError("the database gave no id for a new alert")
        return Alert(int(pk[0]), ts, detector, key_id, sorted(keys), detail)

    def list_alerts(
        self,
        *,
        since_id: int = 0,
        limit: int = 100,
        key_id: str | None = None,
        actor: str | None = None,
    ) -> list[Alert]:
        """The alerts with an id above ``since_id``, oldest first, at most ``limit``
        (:func:`check_alert_query`); with ``key_id``, those accusing or naming that key."""
        check_alert_query(since_id, limit)
        q = sa.select(alerts).where(alerts.c.id > since_id).order_by(alerts.c.id).limit(limit)
        if key_id is not None:
            # an alert naming the key counts too: a cluster with no key sending two records
            # near its point accuses none and names them all (red team: looking up a suspect
            # key showed none of the alerts naming it)
            named = alerts.c["keys"].contains(json.dumps(key_id), autoescape=True)
            q = q.where(sa.or_(alerts.c.key_id == key_id, named))
        with self._as(actor, "list_alerts", key_id, since_id=since_id, limit=limit) as conn:
            rows = conn.execute(q).mappings().all()
        return [
            Alert(
                r["id"],
                r["ts"],
                r["detector"],
                r["key_id"],
                json.loads(r["keys"]),
                json.loads(r["detail"]),
            )
            for r in rows
        ]


def _record_act(
    conn: sa.Connection, actor: str | None, action: str, target: str | None, detail: dict[str, Any]
) -> None:
    conn.execute(
        admin_acts.insert().values(
            ts=time.time(),
            actor=actor,
            action=action,
            target=target,
            detail=json.dumps(detail, sort_keys=True),
        )
    )


def _redacted(url: str) -> str:
    """The URL without its password (it may be printed)."""
    try:
        return sa.make_url(url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "?"


#: The most records a key's budget or rate may be: the API's bound (the columns hold 2⁶³ − 1).
MAX_RECORDS = 2**62
#: The longest rate window, in seconds: 366 days (``window_s`` is a 32-bit column on PostgreSQL).
MAX_WINDOW_S = 86400 * 366
#: The largest alert id: ``miaudit_alerts.id`` is a 32-bit column on PostgreSQL.
MAX_ALERT_ID = 2**31 - 1
#: The longest key label, in characters (a ``varchar(200)`` column).
MAX_LABEL = 200


def _whole(value: object, field: str, low: int, high: int, what: str, note: str = "") -> None:
    """:class:`InputError` naming ``field`` unless ``value`` is a whole number (not a bool) in
    [``low``, ``high``]; ``what`` says what it counts (``note``: after ``high``)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InputError(field, f"must be {what} (a whole number), got {value!r}")
    if not low <= value <= high:
        raise InputError(field, f"must be {what} from {low} to {high:,}{note}, got {value:,}")


def check_limits(
    budget: int | None, rate: int | None, window_s: int, *, label: str | None = None
) -> None:
    """:class:`InputError` naming ``budget``, ``rate``, ``window_s`` or ``label`` unless they are
    a key's limits: records from 0 in all, from 1 per window of 1 second to 366 days, at most
    2⁶² records (None: no cap), a label of at most 200 characters — the HTTP API's bounds, so
    that the command line and Python are refused what the database cannot hold (an overflow, or
    PostgreSQL's 32-bit ``window_s`` and ``varchar(200)``) in one line too."""
    if budget is not None:
        _whole(budget, "budget", 0, MAX_RECORDS, "a number of records")
    if rate is not None:
        _whole(rate, "rate", 1, MAX_RECORDS, "a number of records per window")
    _whole(window_s, "window_s", 1, MAX_WINDOW_S, "a number of seconds", " (366 days)")
    if label is not None:
        if not isinstance(label, str):
            raise InputError("label", f"must be text, got {type(label).__name__}")
        if len(label) > MAX_LABEL:
            raise InputError("label", f"must be at most {MAX_LABEL} characters, got {len(label):,}")


def check_alert_query(since_id: int, limit: int) -> None:
    """:class:`InputError` naming ``since_id`` or ``limit`` unless they are an alert id from 0
    to 2³¹ − 1 (a 32-bit column on PostgreSQL) and a count from 1 to 2⁶² (larger ones overflow
    the database's integers)."""
    _whole(since_id, "since_id", 0, MAX_ALERT_ID, "an alert id")
    _whole(limit, "limit", 1, MAX_RECORDS, "a number of alerts")


KEY_COLUMNS = (
    "key_id",
    "role",
    "label",
    "created_at",
    "revoked_at",
    "budget",
    "used",
    "rate",
    "window_s",
    "window_id",
    "window_used",
)


def _info(row: Any) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        role=row["role"],
        label=row["label"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
        budget=row["budget"],
        used=int(row["used"]),
        rate=row["rate"],
        window_s=int(row["window_s"]),
        window_until=int(row["window_id"]),
        window_used=int(row["window_used"]),
    )
