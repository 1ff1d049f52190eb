"""The service under abuse, in process: the key before the body, body caps, answers that cannot be
made, revocation without delay, and the same work for every 401."""

from __future__ import annotations

import json
import re
from typing import Any

import anyio
import numpy as np
import pytest
import sqlalchemy as sa

from miaudit.serve import EstimatorPredictor, TorchMLPPredictor
from miaudit.serve._app import predict_body_cap
from miaudit.serve._store import KeyRevoked
from tests.serve.conftest import N_FEATURES, SECRET, synthetic

X, _ = synthetic(50, seed=3)


def call_asgi(
    app: Any, path: str, headers: dict[str, str], chunks: list[bytes], method: str = "POST"
) -> tuple[int, bytes, int]:
    """Call the ASGI app directly: (status, body, how many body bytes the app pulled in)."""
    pulled = 0
    pending = list(chunks)
    out: dict[str, Any] = {"body": b""}

    async def receive() -> dict[str, Any]:
        nonlocal pulled
        if not pending:
            await anyio.sleep(3600)  # a client that never sends the rest
        chunk = pending.pop(0)
        pulled += len(chunk)
        return {"type": "http.request", "body": chunk, "more_body": bool(pending)}

    async def send(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            out["status"] = message["status"]
        elif message["type"] == "http.response.body":
            out["body"] += message.get("body", b"")

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": b"",
        "root_path": "",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("127.0.0.1", 80),
    }

    async def main() -> None:
        with anyio.fail_after(20):
            await app(scope, receive, send)

    anyio.run(main)
    return out["status"], out["body"], pulled


BIG = [b"{" + b" " * (1 << 20)] * 22  # 22 MB of a body that would never parse


@pytest.mark.parametrize("token", [None, "nonsense", "mia_0123456789abcdef_" + "A" * 43])
def test_unauthenticated_bodies_are_never_read(service, token) -> None:
    headers = {"content-type": "application/json", "content-length": str(sum(map(len, BIG)))}
    if token:
        headers["authorization"] = f"Bearer {token}"
    status, body, pulled = call_asgi(service.app, "/predict", headers, list(BIG))
    assert (status, pulled) == (401, 0) and json.loads(body) == {
        "detail": "invalid or missing API key"
    }
    status, _, pulled = call_asgi(service.app, "/admin/keys", headers, list(BIG))
    assert (status, pulled) == (401, 0)


def test_content_length_over_the_cap_is_413_before_reading(make_service) -> None:
    svc = make_service(max_batch=100)
    cap = predict_body_cap(100, N_FEATURES, None)
    assert (
        100 * N_FEATURES * 24 < cap < 100_000
    )  # room for every float64 written out in full, no more
    tok = svc.token("trusted")
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {tok}",
        "content-length": str(cap + 1),
    }
    status, body, pulled = call_asgi(svc.app, "/predict", headers, [b"x" * (cap + 1)])
    assert (status, pulled) == (413, 0) and b"too large" in body
    # the largest legitimate body in full float64 precision fits
    rows = np.full((100, N_FEATURES), -1.2345678901234567e-300).tolist()
    assert svc.post(tok, json={"records": rows}).status_code == 200


def test_streamed_body_is_cut_at_the_cap(make_service) -> None:
    svc = make_service(max_batch=100)
    cap = predict_body_cap(100, N_FEATURES, None)
    tok = svc.token("trusted")
    chunk = b" " * 8192
    headers = {
        "content-type": "application/json",
        "authorization": f"Bearer {tok}",
        "transfer-encoding": "chunked",
    }
    status, _, pulled = call_asgi(svc.app, "/predict", headers, [chunk] * (10 * cap // len(chunk)))
    assert status == 413 and cap < pulled <= cap + len(chunk)
    assert svc.store.get_key(tok.split("_")[1]).used == 0


def test_a_body_of_tiny_values_is_413_before_it_is_parsed(make_service, estimator) -> None:
    """Parsing costs per value: one-number records (``[0],``: 4 bytes each) fitted 8 times the
    batch's values under the byte cap and held a worker for seconds, free (red team). The
    separators are counted first; the largest legitimate batches, as lists or as objects keyed
    by names holding separators themselves, still fit."""
    svc = make_service(max_batch=100)
    tok = svc.token("trusted")
    cap = predict_body_cap(100, N_FEATURES, None)
    body = b'{"records":[' + b",".join([b"[0]"] * (cap // 4 - 10)) + b"]}"
    assert len(body) <= cap
    headers = {"content-type": "application/json", "authorization": f"Bearer {tok}"}
    status, answer, _ = call_asgi(svc.app, "/predict", headers, [body])
    assert status == 413 and b"more values than the batch limit" in answer
    one_record = b'{"record":[' + b",".join([b"0"] * (cap // 2 - 20)) + b"]}"
    assert call_asgi(svc.app, "/predict", headers, [one_record])[0] == 413
    assert svc.store.get_key(tok.split("_")[1]).used == 0
    rows = np.zeros((100, N_FEATURES)).tolist()
    assert svc.post(tok, json={"records": rows}).status_code == 200
    names = tuple(f"f[{i}],{{x}}" for i in range(N_FEATURES))
    named = make_service(
        max_batch=100, predictor=EstimatorPredictor(estimator, feature_names=names)
    )
    records = [dict(zip(names, r, strict=True)) for r in rows]
    assert named.post(named.token("trusted"), json={"records": records}).status_code == 200


@pytest.mark.parametrize("value", ["1.5", True, None])
def test_values_must_be_json_numbers(service, value) -> None:
    """Strict: "1.5" and true were read as numbers and answered (docs/serve.md: finite numbers)."""
    record = [0.5] * (N_FEATURES - 1) + [value]
    assert service.post(service.token("trusted"), json={"record": record}).status_code == 422


def test_a_repeated_member_name_is_a_422_and_costs_nothing(service) -> None:
    """Duplicates were taken last-wins: ``{"records": [r], "records": [r, r]}`` was answered and
    charged for two records, where a proxy reading the first name sees one (red team)."""
    tok = service.token("trusted", budget=10)
    r = X[0].tolist()
    body = b'{"records": [%s], "records": [%s, %s]}' % ((json.dumps(r).encode(),) * 3)
    headers = {"content-type": "application/json", "authorization": f"Bearer {tok}"}
    status, answer, _ = call_asgi(service.app, "/predict", headers, [body])
    assert status == 422 and b"duplicate key 'records'" in answer
    assert service.store.get_key(tok.split("_")[1]).used == 0
    named = json.dumps({"role": "public"})[:-1].encode() + b', "role": "admin"}'
    admin = {"content-type": "application/json", "authorization": f"Bearer {service.admin}"}
    status, answer, _ = call_asgi(service.app, "/admin/keys", admin, [named])
    assert status == 422 and b"duplicate key 'role'" in answer
    assert service.post(tok, json={"records": [r, r]}).status_code == 200


def test_admin_bodies_have_a_small_cap(service) -> None:
    r = service.post(service.admin, "/admin/keys", json={"role": "public", "label": "x" * 100_000})
    assert r.status_code == 413


@pytest.mark.parametrize("value", [1e300, -1e300, 3.5e38, 1e39])
def test_numbers_beyond_float32_are_422_before_the_model(make_service, estimator, value) -> None:
    seen: list[np.ndarray] = []

    class Spy(EstimatorPredictor):
        def predict_proba(self, records: np.ndarray) -> np.ndarray:
            seen.append(records)
            return super().predict_proba(records)

    svc = make_service(predictor=Spy(estimator))
    tok = svc.token("trusted", budget=100)
    rec = X[0].copy()
    rec[2] = value
    r = svc.post(tok, json={"records": [X[1].tolist(), rec.tolist()]})
    assert r.status_code == 422 and "records[1]" in r.text and "float32" in r.text
    assert seen == [] and svc.store.get_key(tok.split("_")[1]).used == 0
    assert svc.store.log_entries(key_id=tok.split("_")[1]) == []
    rec[2] = 3.0e38  # within range: reaches the model
    assert svc.post(tok, json={"record": rec.tolist()}).status_code == 200 and len(seen) == 1


class NaNModel:
    """predict_proba gives NaN for records whose first number is negative."""

    n_features_in_ = N_FEATURES

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = np.full((len(x), 3), 1 / 3)
        p[x[:, 0] < 0] = np.nan
        return p


@pytest.mark.parametrize("role", ["trusted", "analyst", "public"])
def test_an_answer_the_model_could_not_make_is_500_charged_and_logged_as_500(
    make_service, role
) -> None:
    svc = make_service(predictor=EstimatorPredictor(NaNModel()))
    tok = svc.token(role, budget=100)
    key_id = tok.split("_")[1]
    good, bad = np.ones((2, N_FEATURES)), -np.ones((3, N_FEATURES))
    r = svc.post(tok, json={"records": bad.tolist()})
    assert r.status_code == 500 and r.json() == {
        "detail": "the model could not answer these records"
    }
    assert "label" not in r.text  # a label-only answer is never derived from NaN
    r = svc.post(tok, json={"records": good.tolist()})
    assert r.status_code == 200 and len(r.json()["predictions"]) == 2
    entries = svc.store.log_entries(key_id=key_id, with_hashes=True)[::-1]
    assert [(e["status"], e["n_records"], len(e["record_hashes"])) for e in entries] == [
        (500, 3, 3),
        (200, 2, 2),
    ]
    assert svc.store.get_key(key_id).used == 5 == svc.store.answered_records()[key_id]


def test_float32_overflow_in_a_served_torch_mlp_is_never_a_200(make_service) -> None:
    rng = np.random.default_rng(0)
    layers = [
        (rng.normal(size=(N_FEATURES, 8)).astype(np.float32) * 1e3, np.zeros(8, np.float32)),
        (rng.normal(size=(8, 3)).astype(np.float32), np.zeros(3, np.float32)),
    ]
    mlp = TorchMLPPredictor(
        layers, (np.ones(N_FEATURES, np.float32), np.zeros(N_FEATURES, np.float32))
    )
    svc = make_service(predictor=mlp)
    tok = svc.token("public", budget=100)
    r = svc.post(
        tok, json={"record": [3.0e38] * N_FEATURES}
    )  # finite float32, overflows inside the model
    assert r.status_code == 500
    assert svc.post(tok, json={"record": [0.5] * N_FEATURES}).status_code == 200
    assert [e["status"] for e in svc.store.log_entries(key_id=tok.split("_")[1])] == [200, 500]


def test_a_key_revoked_in_the_database_loses_every_right_at_once(service) -> None:
    """As ``miaudit keys revoke`` or another worker would do it: no cache keeps the key alive."""
    second = service.token("admin")
    second_id = second.split("_")[1]
    assert service.post(second, "/admin/keys", json={"role": "admin"}).status_code == 201
    assert service.get(second, "/admin/keys").status_code == 200
    assert service.post(second, json={"record": X[0].tolist()}).status_code == 200
    service.store.revoke_key(second_id)  # straight to the database
    assert service.post(second, "/admin/keys", json={"role": "admin"}).status_code == 401
    for path in ("/admin/keys", "/admin/log", "/admin/alerts", "/whoami"):
        assert service.get(second, path).status_code == 401
    assert service.post(second, json={"record": X[0].tolist()}).status_code == 401
    assert (
        service.client.delete(
            f"/admin/keys/{service.admin.split('_')[1]}",
            headers={"Authorization": f"Bearer {second}"},
        ).status_code
        == 401
    )


def test_admin_acts_check_the_actor_inside_their_transaction(service) -> None:
    """The store refuses an act whose actor was revoked after the request was authenticated."""
    store = service.store
    actor = store.create_key(SECRET, "admin")
    target = store.create_key(SECRET, "public")
    store.revoke_key(actor.key_id)
    n_keys = len(store.list_keys())
    for act in (
        lambda: store.create_key(SECRET, "admin", actor=actor.key_id),
        lambda: store.revoke_key(target.key_id, actor=actor.key_id),
        lambda: store.set_limits(target.key_id, budget=1, rate=None, actor=actor.key_id),
        lambda: store.list_keys(actor=actor.key_id),
        lambda: store.log_entries(actor=actor.key_id),
        lambda: store.list_alerts(actor=actor.key_id),
    ):
        with pytest.raises(KeyRevoked):
            act()
    assert len(store.list_keys()) == n_keys and store.get_key(target.key_id).revoked_at is None
    assert store.get_key(target.key_id).budget is None
    assert store.revoke_key(target.key_id, actor=service.admin.split("_")[1])  # a live actor may


def test_every_401_does_the_same_work_whether_the_id_exists_or_not(service) -> None:
    """One indexed key read and one HMAC for a missing, malformed, unknown or wrong-secret key alike
    (the 401 timing is measured in ``python -m benchmarks run guard_abuse``)."""
    good = service.token("trusted")
    known_wrong = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    statements: list[str] = []

    def spy(_conn: Any, _cursor: Any, statement: str, *_a: Any) -> None:
        statements.append(" ".join(statement.split()))

    sa.event.listen(service.store.engine, "before_cursor_execute", spy)
    for raw in service.store._readers:  # the event loop's own SQLite connection
        raw.set_trace_callback(
            lambda sql: statements.append(re.sub(r"'[^']*'", "?", " ".join(sql.split())))
        )  # bound values shown as ?
    try:
        seen = {}
        for name, token in {
            "missing": None,
            "malformed": "nonsense",
            "unknown": "mia_0123456789abcdef_" + "A" * 43,
            "known id": known_wrong,
        }.items():
            statements.clear()
            r = service.post(token, json={"record": X[0].tolist()})
            assert r.status_code == 401
            seen[name] = list(statements)
    finally:
        sa.event.remove(service.store.engine, "before_cursor_execute", spy)
        for raw in service.store._readers:
            raw.set_trace_callback(None)
    assert len({tuple(v) for v in seen.values()}) == 1, seen
    assert [s for s in seen["known id"] if s.startswith("SELECT")] == [
        seen["known id"][-1]
    ] and "FROM miaudit_api_keys WHERE key_id" in seen["known id"][-1]
