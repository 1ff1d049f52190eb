"""The store's checks of what it is given: a key's limits and an alert query within the
database's range, on SQLite and PostgreSQL."""

from __future__ import annotations

import os
import threading
import time

import pytest

from miaudit.errors import InputError
from miaudit.serve import Store, check_limits
from miaudit.serve._store import MAX_ALERT_ID, MAX_LABEL, MAX_RECORDS, MAX_WINDOW_S
from tests.serve.conftest import SECRET


def test_the_largest_limits_fit_the_database(any_store: Store) -> None:
    """The bounds are the HTTP API's (2⁶² records, 366 days, 200 characters) and the columns
    hold them: PostgreSQL's window_s is 32 bits and its label a varchar(200)."""
    made = any_store.create_key(
        SECRET,
        "public",
        budget=MAX_RECORDS,
        rate=MAX_RECORDS,
        window_s=MAX_WINDOW_S,
        label="é" * MAX_LABEL,
    )
    info = any_store.get_key(made.key_id)
    assert info is not None
    assert (info.budget, info.rate, info.window_s, info.label) == (
        MAX_RECORDS,
        MAX_RECORDS,
        MAX_WINDOW_S,
        "é" * MAX_LABEL,
    )
    assert any_store.set_limits(made.key_id, budget=0, rate=1, window_s=1)
    # alert ids are a 32-bit column on PostgreSQL (the HTTP API allowed since_id up to 2⁶²: 500)
    assert any_store.list_alerts(since_id=MAX_ALERT_ID, limit=MAX_RECORDS) == []


@pytest.mark.parametrize(
    ("limits", "field"),
    [
        ({"budget": MAX_RECORDS + 1}, "budget"),
        ({"budget": 2**64}, "budget"),
        ({"budget": -1}, "budget"),
        ({"budget": 5.0}, "budget"),
        ({"budget": True}, "budget"),
        ({"rate": MAX_RECORDS + 1}, "rate"),
        ({"rate": 0}, "rate"),
        ({"window_s": MAX_WINDOW_S + 1}, "window_s"),
        ({"window_s": 2**31}, "window_s"),  # past PostgreSQL's integer: a DataError before
        ({"window_s": 0}, "window_s"),
        ({"label": "x" * (MAX_LABEL + 1)}, "label"),
    ],
)
def test_limits_out_of_range_are_refused_naming_them(any_store: Store, limits, field) -> None:
    """Red team: these reached the database (OverflowError on SQLite, DataError on
    PostgreSQL), and the command line reported an internal error."""
    with pytest.raises(InputError) as err:
        any_store.create_key(SECRET, "public", **limits)
    assert err.value.field == field
    assert any_store.list_keys() == []
    if field == "label":
        return
    key = any_store.create_key(SECRET, "public", budget=5, rate=2, window_s=9).key_id
    with pytest.raises(InputError) as err:
        any_store.set_limits(key, **{"budget": 5, "rate": 2, "window_s": 9, **limits})
    assert err.value.field == field
    info = any_store.get_key(key)
    assert info is not None and (info.budget, info.rate, info.window_s) == (5, 2, 9)


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"since_id": 2**64}, "since_id"),
        ({"since_id": MAX_ALERT_ID + 1}, "since_id"),
        ({"since_id": -1}, "since_id"),
        ({"limit": 0}, "limit"),
        ({"limit": 2**63}, "limit"),
    ],
)
def test_alert_queries_out_of_range_are_refused(any_store: Store, query, field) -> None:
    with pytest.raises(InputError) as err:
        any_store.list_alerts(**query)
    assert err.value.field == field


def test_check_limits_accepts_what_the_api_accepts() -> None:
    check_limits(None, None, 1)
    check_limits(0, 1, MAX_WINDOW_S, label="")
    with pytest.raises(InputError, match="at most 200 characters"):
        check_limits(None, None, 60, label="x" * 201)


def test_discard_removes_only_a_database_file_the_store_created(tmp_path) -> None:
    """What a refused command uses to leave nothing behind: the file it made goes (with its
    -wal and -shm), a file that was there before stays."""
    new = Store(f"sqlite:///{tmp_path}/new.db")
    new.create_key(SECRET, "public")
    assert new.created_file == f"{tmp_path}/new.db"
    new.discard()
    assert list(tmp_path.iterdir()) == []
    kept = Store(f"sqlite:///{tmp_path}/kept.db")
    kept.create_key(SECRET, "public")
    kept.close()
    again = Store(f"sqlite:///{tmp_path}/kept.db")
    assert again.created_file is None
    again.discard()
    again = Store(f"sqlite:///{tmp_path}/kept.db")
    assert len(again.list_keys()) == 1
    again.close()


def test_set_limits_keeps_each_limit_left_out(any_store: Store) -> None:
    """Red team: omitting rate meant no cap and window_s meant 60 s, so raising a budget lifted
    the rate limit."""
    key = any_store.create_key(SECRET, "public", budget=5, rate=2, window_s=9).key_id

    def limits() -> tuple:
        info = any_store.get_key(key)
        assert info is not None
        return info.budget, info.rate, info.window_s

    assert any_store.set_limits(key, budget=50)
    assert limits() == (50, 2, 9)
    assert any_store.set_limits(key, window_s=3600)
    assert limits() == (50, 2, 3600)
    assert any_store.set_limits(key, rate=None)  # None: no cap
    assert limits() == (50, None, 3600)
    assert any_store.set_limits(key, budget=None, rate=4, window_s=60)
    assert limits() == (None, 4, 60)
    assert not any_store.set_limits("0" * 16, budget=1)


def _wal_pages(store: Store) -> int:
    """Pages in the SQLite store's WAL file (its header is 32 bytes, each frame's 24)."""
    path = f"{store.engine.url.database}-wal"
    with store.engine.connect() as conn:
        page = int(conn.exec_driver_sql("PRAGMA page_size").scalar_one())
    return (os.path.getsize(path) - 32) // (page + 24) if os.path.exists(path) else 0


def _charges(store: Store, key_id: str, n: int) -> None:
    for i in range(n):
        hashes = [f"{i:08d}{j:024d}" for j in range(20)]
        assert store.charge(key_id, 20, endpoint="predict", policy="p", hashes=hashes).request_id


def test_no_commit_checkpoints_the_wal(tmp_path) -> None:
    """SQLite's own checkpoint runs in the commit that takes the WAL past 1,000 pages, with its
    fsyncs, so one request in a thousand pages paid for all of them: the store's commits never
    checkpoint (with no checkpointer thread, the WAL only grows)."""
    store = Store(f"sqlite:///{tmp_path}/g.db", checkpoint_every_s=None)
    try:
        key = store.create_key(SECRET, "analyst")
        _charges(store, key.key_id, 600)
        assert _wal_pages(store) > 2000  # SQLite's default started it over at ~1,000
        busy, pages, copied = store.checkpoint_wal() or (1, 0, 0)
        assert (busy, pages) == (0, copied)  # the checkpointer copies all of it
    finally:
        store.close()


def test_the_wal_stays_bounded_under_sustained_writes(tmp_path) -> None:
    """A checkpoint beside writers that never pause leaves a commit behind it, and SQLite starts
    the WAL over only when it is wholly copied as a write begins: with PASSIVE checkpoints
    alone the WAL grew without bound (50 MB in 5 s at 200 answers a second). Past
    ``wal_restart_frames`` the checkpointer copies the rest holding the write lock, and the
    WAL starts over."""
    store = Store(f"sqlite:///{tmp_path}/g.db", checkpoint_every_s=None)
    store.wal_restart_frames, store.wal_force_frames = 200, 10**9  # never RESTART here
    key = store.create_key(SECRET, "analyst")
    done = threading.Event()
    seen: list[int] = []

    def write() -> None:
        try:
            _charges(store, key.key_id, 1500)  # ~9,000 pages
        finally:
            done.set()

    writer = threading.Thread(target=write)
    writer.start()
    try:
        while not done.is_set():
            got = store.checkpoint_wal()
            assert got is not None
            seen.append(got[1])
    finally:
        writer.join()
    store.checkpoint_wal()
    try:
        assert len(seen) > 10
        assert max(seen) < 2000, max(seen)  # pages in the WAL at each checkpoint
        assert _wal_pages(store) < 2000  # the file too
    finally:
        store.close()


def test_the_checkpointer_thread_runs_and_stops_with_the_store(tmp_path) -> None:
    store = Store(f"sqlite:///{tmp_path}/g.db", checkpoint_every_s=0.01)
    rounds: list[tuple[int, int, int] | None] = []
    checkpoint = store.checkpoint_wal
    store.checkpoint_wal = lambda: rounds.append(checkpoint()) or rounds[-1]  # type: ignore[method-assign]
    key = store.create_key(SECRET, "analyst")
    _charges(store, key.key_id, 50)
    thread = store._checkpointer
    assert thread is not None and thread.is_alive()
    deadline = time.monotonic() + 60
    while not any(r is not None and r[1] > 0 and r[1] == r[2] for r in rounds):
        assert time.monotonic() < deadline, rounds[-5:]
        time.sleep(0.01)
    store.close()
    assert not thread.is_alive()
    assert checkpoint() is None


def test_a_reader_pinning_the_wal_does_not_hold_the_writers(tmp_path) -> None:
    """Red team: a read transaction left open (a backup, a database browser) pins the WAL; the
    checkpointer still took the write lock and waited 200 ms for it every round (RESTART), so
    p99 rose from 6.6 ms to ~200 ms while the WAL grew anyway. It now takes the lock only when
    the free pass copied nearly everything."""
    import sqlite3

    store = Store(f"sqlite:///{tmp_path}/g.db", checkpoint_every_s=None)
    store.wal_restart_frames, store.wal_force_frames = 200, 400
    key = store.create_key(SECRET, "analyst")
    taken = 0
    lock = store._write_lock

    class Counting:
        def __enter__(self) -> None:
            nonlocal taken
            taken += 1
            lock.acquire()

        def __exit__(self, *exc: object) -> None:
            lock.release()

    reader = sqlite3.connect(str(tmp_path / "g.db"))
    try:
        reader.execute("BEGIN")
        reader.execute("SELECT count(*) FROM sqlite_master").fetchall()  # a snapshot, held
        _charges(store, key.key_id, 200)
        store._write_lock = Counting()  # type: ignore[assignment]
        busy, pages, copied = store.checkpoint_wal() or (0, 0, 0)
        assert pages > 400 and pages - copied > 100  # pinned: the free pass copied little
        assert taken == 0
    finally:
        reader.close()
        store._write_lock = lock
    busy, pages, copied = store.checkpoint_wal() or (1, 0, 0)  # the reader gone: all of it
    try:
        assert busy == 0 and pages == copied
    finally:
        store.close()


def test_alerts_of_a_key_include_those_naming_it(any_store) -> None:
    """A cluster with no key sending two records near its point accuses none and names them
    all: looking a key up must show those alerts too (second red team), and a key whose id
    holds LIKE's wildcards matches only itself."""
    any_store.add_alert("spread", None, ["aaaa", "bbbb"], {"records_near": 20})
    any_store.add_alert("spread", "cccc", ["cccc", "dddd"], {"records_near": 20})
    any_store.add_alert("perturbation", "a%_b", ["a%_b"], {})
    assert [a.key_id for a in any_store.list_alerts(key_id="bbbb")] == [None]
    assert [a.key_id for a in any_store.list_alerts(key_id="dddd")] == ["cccc"]
    assert [a.key_id for a in any_store.list_alerts(key_id="cccc")] == ["cccc"]
    assert [a.key_id for a in any_store.list_alerts(key_id="a%_b")] == ["a%_b"]
    assert any_store.list_alerts(key_id="a%") == [] and any_store.list_alerts(key_id="aa") == []
