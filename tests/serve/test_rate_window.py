"""The sliding rate window (Store.charge) against a brute-force count of the admitted records.

The promise: no window of ``window_s`` seconds ever holds more than ``rate`` records, and a
request is refused only when the records of the last ``window_s`` plus one bucket
(``bucket_width``) would not leave room for it. Fixed windows broke the first half: a key
could take ``rate`` records just before a boundary and ``rate`` more just after it.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

from miaudit.serve import Store
from miaudit.serve._store import bucket_width
from tests.serve.conftest import SECRET

T0 = 1_700_000_000.0


@pytest.fixture
def store(tmp_path) -> Store:
    s = Store(f"sqlite:///{tmp_path}/rate.db")
    yield s
    s.close()


def _charge(store: Store, key: str, n: int, t: float):
    return store.charge(key, n, endpoint="predict", policy="full", hashes=[], now=t)


def test_no_burst_across_what_was_a_window_boundary(store: Store) -> None:
    key = store.create_key(SECRET, "public", rate=10, window_s=60).key_id
    t = 60 * (int(T0) // 60 + 1) - 1.0  # one second before a fixed window would have ended
    assert _charge(store, key, 10, t).request_id is not None
    late = _charge(store, key, 10, t + 2)  # a fixed window let these 10 through: 20 in 2 s
    assert late.denial == "rate" and late.retry_after_s == 58
    assert _charge(store, key, 1, t + 59.5).request_id is None
    assert _charge(store, key, 10, t + 60).request_id is not None  # exactly one window later
    assert store.window_used(key, t + 60) == 10


@pytest.mark.parametrize("window_s", [1, 7, 60, 3600])
def test_random_traffic_never_exceeds_the_rate_in_any_window(store: Store, window_s: int) -> None:
    rate = 25
    key = store.create_key(SECRET, "public", rate=rate, window_s=window_s).key_id
    rng = np.random.default_rng(window_s)
    g = bucket_width(window_s)
    t, admitted = T0, []
    for _ in range(400):
        t += float(rng.exponential(window_s / 20))
        n = int(rng.integers(1, 8))
        got = _charge(store, key, n, t)
        recent = sum(m for s, m in admitted if s > t - window_s)
        slack = sum(m for s, m in admitted if s > t - window_s - g)
        if got.request_id is not None:
            admitted.append((t, n))
            assert recent + n <= rate  # the guarantee, checked at every admission
        else:
            assert got.denial == "rate" and slack + n > rate  # refused only for a reason
            assert got.retry_after_s >= 1
    times = np.array([s for s, _ in admitted])
    counts = np.array([m for _, m in admitted])
    for s in times:  # every window that starts at an admitted record, brute force
        assert counts[(times >= s) & (times < s + window_s)].sum() <= rate
    assert len(admitted) > 50  # the window slides: far more than one window's worth passed


def test_retry_after_is_when_the_request_fits(store: Store) -> None:
    key = store.create_key(SECRET, "public", rate=10, window_s=100).key_id
    for i, n in enumerate([4, 3, 3]):
        assert _charge(store, key, n, T0 + 10 * i).request_id is not None
    denied = _charge(store, key, 6, T0 + 25)  # 4 and 3 must leave: the one at T0 + 10
    assert denied.retry_after_s == 85
    assert _charge(store, key, 6, T0 + 25 + 84.5).request_id is None
    assert _charge(store, key, 6, T0 + 25 + 85).request_id is not None


def test_buckets_past_the_window_are_deleted(store: Store) -> None:
    from miaudit.serve._store import rate_buckets

    key = store.create_key(SECRET, "public", rate=1000, window_s=64).key_id
    for i in range(500):
        assert _charge(store, key, 1, T0 + 1.5 * i).request_id is not None
    with store.engine.connect() as conn:
        rows = conn.execute(rate_buckets.select()).all()
    assert len(rows) <= 64 + 2  # one bucket per second of the window, not one per charge
    assert store.window_used(key, T0 + 1.5 * 499) == 43  # the charges of the last 64 s


def test_a_changed_window_keeps_the_records_already_charged(store: Store) -> None:
    """An admin lengthening the window does not forget the records of the last minute."""
    key = store.create_key(SECRET, "public", rate=10, window_s=60).key_id
    assert _charge(store, key, 8, T0).request_id is not None
    assert store.set_limits(key, budget=None, rate=10, window_s=3600)
    assert _charge(store, key, 3, T0 + 120).denial == "rate"  # 8 at T0 are in the hour
    assert _charge(store, key, 2, T0 + 120).request_id is not None
    assert store.get_key(key).rate_window_full(1, T0 + 121)  # type: ignore[union-attr]
    assert not store.get_key(key).rate_window_full(1, T0 + 3600)  # type: ignore[union-attr]


def test_racing_charges_of_one_key_admit_exactly_the_rate(any_store: Store) -> None:
    """8 threads charge one record at a time, all within one window: exactly the rate passes.
    Each charge reads the window under the key's row lock (PostgreSQL: FOR UPDATE; without it
    two charges read the same count and both passed)."""
    key = any_store.create_key(SECRET, "public", rate=40, window_s=3600).key_id
    admitted: list[int] = []
    go = threading.Barrier(8)

    def worker() -> None:
        go.wait()
        for _ in range(25):
            got = _charge(any_store, key, 1, T0)
            admitted.append(got.request_id is not None)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert sum(admitted) == 40 and len(admitted) == 200
    assert any_store.window_used(key, T0) == 40


def test_a_charge_is_timed_under_its_lock(any_store: Store) -> None:
    """The log's times follow the order the charges committed in: a time read before the lock
    was waited for stamped records earlier than they were admitted (they left the window
    early; after another worker's prune, 19 records passed in 9.95 s at 10 per 10 s)."""
    import sqlalchemy as sa

    key = any_store.create_key(SECRET, "public").key_id
    go = threading.Barrier(8)

    def worker() -> None:
        go.wait()
        for _ in range(20):
            any_store.charge(key, 1, endpoint="predict", policy="full", hashes=[])

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    with any_store.engine.connect() as conn:
        times = [
            r[0] for r in conn.execute(sa.text("SELECT ts FROM miaudit_requests ORDER BY id")).all()
        ]
    assert len(times) == 160 and times == sorted(times)
