"""End to end: ``miaudit serve`` (real uvicorn, 2 worker processes) on 127.0.0.1, over SQLite and
over a real PostgreSQL server; concurrent clients; a kill -9 under load; a bounded fuzz run."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import httpx
import numpy as np
import pytest

from miaudit.serve import ServeSpec, Store, record_hashes
from tests.serve.conftest import N_FEATURES, SECRET, Server, free_port, reset_postgres

TIMEOUT = httpx.Timeout(10.0)


@pytest.fixture(scope="module")
def secret_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("secret") / "server.secret"
    path.write_bytes(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture(scope="module", params=["sqlite", "postgres"])
def backend(request, tmp_path_factory) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path_factory.mktemp('db')}/guard.db"
    url = request.getfixturevalue("postgres_url")
    reset_postgres(url)
    return url


@pytest.fixture(scope="module")
def server(backend, model_file, secret_file, tmp_path_factory) -> Iterator[Server]:
    spec = ServeSpec(db=backend, model=str(model_file), secret_file=str(secret_file), max_batch=200)
    srv = Server(spec, workers=2, log=tmp_path_factory.mktemp("log") / "server.log").start()
    yield srv
    srv.stop()


@pytest.fixture(scope="module")
def store(backend) -> Iterator[Store]:
    s = Store(backend)
    yield s
    s.close()


def _h(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _records(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(n, N_FEATURES))


def test_auth_and_policies_over_the_network(server, store) -> None:
    public = store.create_key(SECRET, "public").token
    analyst = store.create_key(SECRET, "analyst").token
    x = _records(20, 0)
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        assert c.post("/predict", json={"records": x.tolist()}).status_code == 401
        assert c.post("/predict", json={"records": x.tolist()}, headers=_h(public[:-1] + "x")).status_code == 401
        r = c.post("/predict", json={"records": x.tolist()}, headers=_h(public))
        assert r.status_code == 200
        assert b"." not in r.content.replace(b"label-only", b"")  # not one decimal point: no probability
        assert all(set(p) == {"label"} for p in r.json()["predictions"])
        r = c.post("/predict", json={"records": x.tolist()}, headers=_h(analyst))
        assert r.json()["policy"] == "round:2"
        scores = np.array([p["scores"] for p in r.json()["predictions"]])
        np.testing.assert_array_equal(scores, np.round(scores, 2))
        assert c.get("/admin/keys", headers=_h(analyst)).status_code == 403
        assert c.get("/openapi.json").status_code == 200


def test_concurrent_clients_budgets_exact_across_workers(server, store) -> None:
    """8 clients on 2 workers share keys; no key ever answers more records than its budget."""
    fixed = store.create_key(SECRET, "public", budget=300)  # batches of 10: exactly 300 answered
    mixed = store.create_key(SECRET, "trusted", budget=257)  # batches of 1..13
    got: dict[str, list[tuple[int, int]]] = {fixed.key_id: [], mixed.key_id: []}
    lock = threading.Lock()

    def client(i: int) -> None:
        rng = np.random.default_rng(100 + i)
        with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
            for j in range(60):
                key = fixed if (i + j) % 2 else mixed
                n = 10 if key is fixed else int(rng.integers(1, 14))
                r = c.post("/predict", json={"records": _records(n, 1000 * i + j).tolist()}, headers=_h(key.token))
                assert r.status_code in (200, 429), r.text
                if r.status_code == 429:
                    assert int(r.headers["retry-after"]) > 0
                with lock:
                    got[key.key_id].append((r.status_code, n))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    logged = store.answered_records()
    for key, budget in ((fixed, 300), (mixed, 257)):
        answered = sum(n for s, n in got[key.key_id] if s == 200)
        assert answered <= budget
        assert store.get_key(key.key_id).used == answered == logged[key.key_id]
    assert sum(n for s, n in got[fixed.key_id] if s == 200) == 300
    assert sum(n for s, n in got[mixed.key_id] if s == 200) >= 257 - 12


def test_log_holds_each_answer_with_its_record_hashes(server, store) -> None:
    key = store.create_key(SECRET, "trusted")
    sent = [_records(k + 1, 77 + k) for k in range(5)]
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for x in sent:
            assert c.post("/predict", json={"records": x.tolist()}, headers=_h(key.token)).status_code == 200
    entries = store.log_entries(key_id=key.key_id, with_hashes=True)[::-1]
    assert [e["n_records"] for e in entries] == [1, 2, 3, 4, 5]
    for e, x in zip(entries, sent, strict=True):
        assert e["record_hashes"] == record_hashes(SECRET, x) and e["status"] == 200 and e["policy"] == "full"


def test_kill_9_under_load_loses_no_logged_answer(server, store) -> None:
    """SIGKILL the server (master and both workers) under concurrent load, restart it on the same
    database: every 2xx a client received has its log entry, and every budget equals its entries.

    Runs last in the module: it kills the module's server and restarts it with one worker.
    """
    keys = [store.create_key(SECRET, "public", budget=100_000) for _ in range(3)]
    received: list[tuple[str, list[str]]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def client(i: int) -> None:
        j = 0
        with httpx.Client(base_url=server.url, timeout=httpx.Timeout(5.0)) as c:
            while not stop.is_set() and j < 2000:
                key = keys[(i + j) % len(keys)]
                x = _records(1 + j % 5, 10_000 * i + j)
                j += 1
                try:
                    r = c.post("/predict", json={"records": x.tolist()}, headers=_h(key.token))
                except httpx.HTTPError:
                    return  # the server is gone
                if r.status_code == 200:
                    with lock:
                        received.append((key.key_id, record_hashes(SECRET, x)))

    threads = [threading.Thread(target=client, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 20
    while len(received) < 100 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(received) >= 50, "too little load before the kill"

    server.workers = 1
    server.port = free_port()
    server.url = f"http://127.0.0.1:{server.port}"
    server.start()
    logged: set[tuple[str, tuple[str, ...]]] = set()
    for key in keys:
        for e in store.log_entries(key_id=key.key_id, limit=100_000, with_hashes=True):
            if e["status"] == 200:
                logged.add((key.key_id, tuple(e["record_hashes"])))
    missing = [r for r in received if (r[0], tuple(r[1])) not in logged]
    assert missing == []
    answered = store.answered_records()
    with httpx.Client(base_url=server.url, timeout=TIMEOUT) as c:
        for key in keys:
            info = store.get_key(key.key_id)
            assert info.used == answered.get(key.key_id, 0)
            assert c.get("/whoami", headers=_h(key.token)).json()["used"] == info.used
