"""The store's checks of what it is given: a key's limits and an alert query within the
database's range, on SQLite and PostgreSQL."""

from __future__ import annotations

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
