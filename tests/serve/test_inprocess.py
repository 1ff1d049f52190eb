"""The service in process (httpx over ASGITransport): auth, roles and policies, budgets, log."""

from __future__ import annotations

import asyncio
import json
import threading

import httpx
import numpy as np
import pytest

from miaudit.serve import DetectorConfig, HttpOracle, Role, ServiceError, record_hashes
from tests.serve.conftest import SECRET, synthetic

X, Y = synthetic(50, seed=1)
FLOAT_KEYS = ("scores", "probabilities", "probs", "values")


def _no_floats(obj: object) -> bool:
    """True when ``obj`` (parsed JSON) holds no float anywhere."""
    if isinstance(obj, float):
        return False
    if isinstance(obj, dict):
        return all(_no_floats(v) for v in obj.values())
    if isinstance(obj, list):
        return all(_no_floats(v) for v in obj)
    return True


# --- auth ------------------------------------------------------------------------------------


def test_missing_malformed_unknown_and_revoked_keys_get_one_identical_401(service) -> None:
    good = service.token("trusted")
    key_id = good.split("_")[1]
    wrong_secret = good[:-4] + ("AAAA" if not good.endswith("AAAA") else "BBBB")
    unknown = "mia_0123456789abcdef_" + "A" * 43
    bodies = []
    for token in (None, "nonsense", unknown, wrong_secret, good.upper()):
        r = service.post(token, json={"record": X[0].tolist()})
        assert r.status_code == 401
        assert r.headers["www-authenticate"] == "Bearer"
        bodies.append(r.content)
    assert service.store.revoke_key(key_id)
    r = service.post(good, json={"record": X[0].tolist()})
    assert r.status_code == 401
    bodies.append(r.content)
    assert len(set(bodies)) == 1 and b"key" in bodies[0]
    assert service.post(service.admin, json={"record": X[0].tolist()}).status_code == 200


def test_keys_are_random_256_bit_tokens_stored_only_as_hmac(service) -> None:
    tokens = [service.token("public") for _ in range(3)]
    assert len(set(tokens)) == 3
    import sqlalchemy as sa

    with service.store.engine.begin() as conn:
        dump = json.dumps(
            [list(r) for r in conn.execute(sa.text("select * from miaudit_api_keys")).all()]
        )
    for t in tokens:
        prefix, key_id, secret = t.split("_", 2)
        assert prefix == "mia" and len(key_id) == 16 and len(secret) >= 43  # 32 bytes of base64
        assert secret not in dump and t not in dump and key_id in dump


def test_admin_endpoints_need_an_admin_key(service) -> None:
    analyst = service.token("analyst")
    for method, path in (("GET", "/admin/keys"), ("GET", "/admin/alerts"), ("GET", "/admin/log")):
        assert service.client.request(method, path).status_code == 401
        r = service.client.request(method, path, headers={"Authorization": f"Bearer {analyst}"})
        assert r.status_code == 403
        assert "key_id" not in r.text
        assert (
            service.client.request(
                method, path, headers={"Authorization": f"Bearer {service.admin}"}
            ).status_code
            == 200
        )
    r = service.post(analyst, "/admin/keys", json={"role": "admin"})
    assert r.status_code == 403


def test_setting_limits_keeps_the_ones_left_out(service) -> None:
    """Red team: PUT {"budget": N} also removed the key's rate limit and reset its window to
    60 s. A field left out is kept; null removes a cap (budget, rate)."""
    made = service.store.create_key(SECRET, "public", budget=3, rate=5, window_s=30).key_id
    auth = {"Authorization": f"Bearer {service.admin}"}

    def put(body: dict) -> httpx.Response:
        return service.client.put(f"/admin/keys/{made}/limits", json=body, headers=auth)

    def limits(r: httpx.Response) -> tuple:
        assert r.status_code == 200, r.text
        return r.json()["budget"], r.json()["rate"], r.json()["window_s"]

    assert limits(put({"budget": 100})) == (100, 5, 30)
    assert limits(put({"window_s": 10})) == (100, 5, 10)
    assert limits(put({"rate": None})) == (100, None, 10)
    assert limits(put({})) == (100, None, 10)
    assert limits(put({"budget": None, "rate": 7, "window_s": 60})) == (None, 7, 60)
    assert put({"window_s": None}).status_code == 422  # a window has no "no cap"
    assert put({"budget": 2**62 + 1}).status_code == 422
    info = service.store.get_key(made)
    assert info is not None and (info.budget, info.rate, info.window_s) == (None, 7, 60)
    acts = [a for a in service.store.acts(limit=100) if a["action"] == "set_limits"]
    assert acts[0]["detail"] == {"budget": None, "rate": 7, "window_s": 60}  # the key's limits
    assert acts[-1]["detail"] == {"budget": 100, "rate": 5, "window_s": 30}


def test_admin_key_lifecycle(service) -> None:
    r = service.post(
        service.admin, "/admin/keys", json={"role": "public", "budget": 3, "label": "partner"}
    )
    assert r.status_code == 201
    made = r.json()
    assert made["token"].startswith("mia_") and made["budget"] == 3 and made["role"] == "public"
    listed = service.get(service.admin, "/admin/keys").json()
    assert made["key_id"] in {k["key_id"] for k in listed}
    assert all("token" not in k for k in listed)
    r = service.client.put(
        f"/admin/keys/{made['key_id']}/limits",
        json={"budget": 10, "rate": 5},
        headers={"Authorization": f"Bearer {service.admin}"},
    )
    assert r.status_code == 200 and r.json()["budget"] == 10 and r.json()["rate"] == 5
    assert service.post(made["token"], json={"records": X[:5].tolist()}).status_code == 200
    r = service.client.delete(
        f"/admin/keys/{made['key_id']}", headers={"Authorization": f"Bearer {service.admin}"}
    )
    assert r.status_code == 200 and r.json()["revoked"] is True
    assert service.post(made["token"], json={"record": X[0].tolist()}).status_code == 401
    assert (
        service.client.delete(
            "/admin/keys/ffffffffffffffff", headers={"Authorization": f"Bearer {service.admin}"}
        ).status_code
        == 404
    )
    assert (
        service.post(service.admin, "/admin/keys", json={"role": "nosuchrole"}).status_code == 422
    )


def test_role_without_predict_is_forbidden(make_service) -> None:
    roles = {
        "admin": Role.of("admin", "full", ["predict", "admin"]),
        "auditor": Role.of("auditor", "full", ["admin"]),
    }
    svc = make_service(roles=roles)
    auditor = svc.token("auditor")
    r = svc.post(auditor, json={"record": X[0].tolist()})
    assert r.status_code == 403
    assert svc.get(auditor, "/admin/keys").status_code == 200
    orphan = svc.token("retired-role")  # a key whose role is no longer configured
    assert svc.post(orphan, json={"record": X[0].tolist()}).status_code == 403


def test_two_authorization_headers_are_no_key(service) -> None:
    """Red team: "bad, then good" got a 200 (the last header won); a proxy in front that read
    the first would have let a second one through."""
    good = service.token("trusted")
    for pair in ((good, good), ("nonsense", good), (good, "nonsense")):
        headers = [("Authorization", f"Bearer {t}") for t in pair]
        r = service.client.post("/predict", headers=headers, json={"record": X[0].tolist()})
        assert r.status_code == 401, pair
    assert service.post(good, json={"record": X[0].tolist()}).status_code == 200


def test_a_spent_key_is_refused_before_its_body_is_read(service) -> None:
    """Red team: a key whose budget was spent still had every body read and parsed (20 MB
    bodies stalled /health for 1.6 s) before its 429. Now a body over the cap gets the 429,
    not the 413 that reading it would give, and the refusal is logged."""
    tok = service.token("trusted", budget=1)
    assert service.post(tok, json={"record": X[0].tolist()}).status_code == 200

    def huge(token: str) -> httpx.Response:  # declares a body far over the cap, sends 2 bytes
        headers = {"Authorization": f"Bearer {token}", "Content-Length": str(10**9)}
        return service.client.post("/predict", headers=headers, content=b"{}")

    r = huge(tok)
    assert r.status_code == 429 and r.json() == {"detail": "record budget exhausted"}
    rows = service.store.log_entries(key_id=tok.split("_")[1])
    assert (rows[0]["status"], rows[0]["n_records"]) == (429, 0)
    fresh = service.token("trusted", budget=5)
    assert huge(fresh).status_code == 413


# --- policies --------------------------------------------------------------------------------


def test_label_only_caller_never_receives_a_probability(service, estimator) -> None:
    public = service.token("public")
    r = service.post(public, json={"records": X.tolist()})
    assert r.status_code == 200
    body = r.json()
    assert body["policy"] == "label-only"
    assert _no_floats(body)
    assert all(set(p) == {"label"} for p in body["predictions"])
    assert [p["label"] for p in body["predictions"]] == estimator.predict(X).tolist()
    r = service.post(public, json={"record": X[0].tolist()})
    assert _no_floats(r.json()) and set(r.json()["predictions"][0]) == {"label"}


@pytest.mark.parametrize(("role", "policy"), [("trusted", "full"), ("analyst", "round:2")])
def test_score_policies_follow_the_defenses_functions(service, estimator, role, policy) -> None:
    from miaudit.defenses import apply_policy

    token = service.token(role)
    body = service.post(token, json={"records": X.tolist()}).json()
    assert body["policy"] == policy
    want = apply_policy(policy, estimator.predict_proba(X))
    np.testing.assert_array_equal(np.array([p["scores"] for p in body["predictions"]]), want.values)


def test_top_k_and_noise_roles(make_service, estimator) -> None:
    roles = {
        "admin": Role.of("admin", "full", ["predict", "admin"]),
        "top1": Role.of("top1", "top-1"),
        "noisy": Role.of("noisy", "noise:0.1"),
    }
    svc = make_service(roles=roles, noise_seed=3)
    p = estimator.predict_proba(X)
    top = np.array(
        [
            q["scores"]
            for q in svc.post(svc.token("top1"), json={"records": X.tolist()}).json()["predictions"]
        ]
    )
    assert ((top > 0).sum(axis=1) == 1).all()
    np.testing.assert_allclose(top.max(axis=1), p.max(axis=1))
    noisy = np.array(
        [
            q["scores"]
            for q in svc.post(svc.token("noisy"), json={"records": X.tolist()}).json()[
                "predictions"
            ]
        ]
    )
    np.testing.assert_allclose(noisy.sum(axis=1), 1.0)
    assert not np.allclose(noisy, p)


def test_records_as_objects_by_feature_name(make_service, estimator) -> None:
    from miaudit.serve import EstimatorPredictor

    names = [f"f{i}" for i in range(X.shape[1])]
    svc = make_service()
    from miaudit.serve import ServeConfig, create_app

    cfg = ServeConfig(
        predictor=EstimatorPredictor(estimator, feature_names=names),
        db=svc.config.db.replace(".db", "n.db"),
        secret=SECRET,
    )
    app = create_app(cfg)
    from miaudit.serve import asgi_client

    with asgi_client(app) as client:
        tok = app.state.store.create_key(SECRET, "trusted").token
        h = {"Authorization": f"Bearer {tok}"}
        r = client.post(
            "/predict", json={"record": dict(zip(names, X[0].tolist(), strict=True))}, headers=h
        )
        assert r.status_code == 200 and r.json()["predictions"][0]["label"] == int(
            estimator.predict(X[:1])[0]
        )
        r = client.post("/predict", json={"record": {"f0": 1.0}}, headers=h)
        assert r.status_code == 422 and "missing field" in r.json()["detail"]
    app.state.store.close()


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({}, 422),
        ({"record": [1.0, 2.0]}, 422),
        ({"records": []}, 422),
        ({"records": [[1.0] * 6, [1.0] * 5]}, 422),
        ({"record": [1.0] * 6, "records": [[1.0] * 6]}, 422),
        ({"record": [1.0] * 6, "extra": 1}, 422),
        ({"record": {"a": 1.0}}, 422),
        ({"record": ["x"] * 6}, 422),
    ],
)
def test_bad_requests_are_4xx_and_cost_nothing(service, body, status) -> None:
    tok = service.token("trusted", budget=100)
    r = service.post(tok, json=body)
    assert r.status_code == status
    assert service.store.get_key(tok.split("_")[1]).used == 0


def test_non_finite_numbers_are_refused(service) -> None:
    tok = service.token("trusted")
    h = {"content-type": "application/json", "Authorization": f"Bearer {tok}"}
    r = service.client.post("/predict", content=b'{"record": [NaN, 1, 1, 1, 1, 1]}', headers=h)
    assert r.status_code == 422


def test_batch_cap_is_413(make_service) -> None:
    svc = make_service(max_batch=10)
    tok = svc.token("trusted")
    assert svc.post(tok, json={"records": X[:11].tolist()}).status_code == 413
    assert svc.post(tok, json={"records": X[:10].tolist()}).status_code == 200


# --- budgets ---------------------------------------------------------------------------------


def test_budget_is_counted_in_records_and_429_has_retry_after(service) -> None:
    tok = service.token("public", budget=25)
    assert service.post(tok, json={"records": X[:20].tolist()}).status_code == 200
    r = service.post(tok, json={"records": X[:6].tolist()})  # 26 > 25: the whole batch is refused
    assert r.status_code == 429 and int(r.headers["retry-after"]) > 0
    assert r.json() == {"detail": "record budget exhausted"}
    assert service.post(tok, json={"records": X[:5].tolist()}).status_code == 200
    assert service.post(tok, json={"record": X[0].tolist()}).status_code == 429
    info = service.store.get_key(tok.split("_")[1])
    assert info.used == 25


def test_rate_limit_window_in_records(service) -> None:
    tok = service.token("trusted", rate=10, window_s=3600)
    r = service.post(
        tok, json={"records": X[:11].tolist()}
    )  # larger than the rate itself: 413, not a retry loop
    assert r.status_code == 413 and "rate limit" in r.json()["detail"]
    assert service.post(tok, json={"records": X[:8].tolist()}).status_code == 200
    r = service.post(tok, json={"records": X[:3].tolist()})
    assert r.status_code == 429 and r.json()["detail"] == "rate limit reached"
    assert 1 <= int(r.headers["retry-after"]) <= 3600
    assert service.post(tok, json={"records": X[:2].tolist()}).status_code == 200
    r = service.post(tok, json={"records": X[:11].tolist()})  # the window is full: 429 first
    assert r.status_code == 429 and r.json()["detail"] == "rate limit reached"


def test_rate_window_rolls_over(service) -> None:
    tok = service.token("trusted", rate=4, window_s=60)
    key_id = tok.split("_")[1]
    t0 = 120.0 * 1e7
    hashes = ["h"] * 4
    assert (
        service.store.charge(
            key_id, 4, endpoint="predict", policy="full", hashes=hashes, now=t0
        ).request_id
        is not None
    )
    denied = service.store.charge(
        key_id, 1, endpoint="predict", policy="full", hashes=["h"], now=t0 + 59
    )
    assert denied.denial == "rate" and denied.retry_after_s == 1
    assert (
        service.store.charge(
            key_id, 4, endpoint="predict", policy="full", hashes=hashes, now=t0 + 60
        ).request_id
        is not None
    )


def test_concurrent_in_process_clients_never_exceed_the_budget(service) -> None:
    tok = service.token("public", budget=100)

    async def run() -> list[int]:
        transport = httpx.ASGITransport(app=service.app)
        async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
            h = {"Authorization": f"Bearer {tok}"}
            rs = await asyncio.gather(
                *[
                    client.post("/predict", json={"records": X[: 1 + i % 7].tolist()}, headers=h)
                    for i in range(60)
                ]
            )
        return [(r.status_code, 1 + i % 7) for i, r in enumerate(rs)]

    got = asyncio.run(run())
    answered = sum(n for s, n in got if s == 200)
    assert {s for s, _ in got} <= {200, 429}
    assert answered <= 100
    assert service.store.get_key(tok.split("_")[1]).used == answered
    assert service.store.answered_records()[tok.split("_")[1]] == answered


# --- the log ---------------------------------------------------------------------------------


def test_every_answer_is_logged_with_keyed_record_hashes(service) -> None:
    tok = service.token("analyst", budget=4)
    key_id = tok.split("_")[1]
    service.post(tok, json={"records": X[:3].tolist()})
    service.post(tok, json={"records": X[3:5].tolist()})  # refused: 5 > 4
    log = service.get(
        service.admin, "/admin/log", params={"key_id": key_id, "hashes": "true"}
    ).json()
    assert [e["status"] for e in log] == [429, 200]
    ok = log[1]
    assert ok["n_records"] == 3 and ok["policy"] == "round:2" and ok["endpoint"] == "predict"
    assert ok["record_hashes"] == record_hashes(SECRET, X[:3])
    assert log[0]["record_hashes"] == []
    raw = json.dumps(log)
    assert str(X[0, 0]) not in raw  # records themselves are never stored
    assert record_hashes(b"another secret of 32 bytes......", X[:1])[0] != ok["record_hashes"][0]


def test_whoami(service) -> None:
    tok = service.token("public", budget=9)
    me = service.get(tok, "/whoami").json()
    assert me["policy"] == "label-only" and me["budget"] == 9 and me["endpoints"] == ["predict"]


def test_openapi_is_published(service) -> None:
    schema = service.client.get("/openapi.json").json()
    assert "/predict" in schema["paths"] and "/admin/keys" in schema["paths"]
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


# --- detectors and the HTTP oracle -------------------------------------------------------------


def test_noise_robustness_attack_through_the_http_oracle_raises_a_perturbation_alert(
    service, estimator
) -> None:
    from miaudit.attacks import LocalOracle
    from miaudit.attacks._label_only import noise_robustness_attack

    tok = service.token("public")
    oracle = HttpOracle("http://unused", tok, client=service.client, batch_size=64)
    assert str(oracle.policy) == "label-only"
    res = noise_robustness_attack(oracle, X[:10], Y[:10], sigma=0.02, n_draws=20, rng=0)
    local = noise_robustness_attack(
        LocalOracle(estimator.predict_proba, "label-only"),
        X[:10],
        Y[:10],
        sigma=0.02,
        n_draws=20,
        rng=0,
    )
    np.testing.assert_array_equal(res.scores, local.scores)
    assert oracle.queries == 200 and oracle.queries_per_record(10).tolist() == [20] * 10
    service.app.state.flush_detectors()
    alerts = service.get(service.admin, "/admin/alerts").json()
    assert any(a["detector"] == "perturbation" and a["key_id"] == oracle.key_id for a in alerts)


def test_http_oracle_raises_service_error_on_budget(service) -> None:
    tok = service.token("public", budget=5)
    oracle = HttpOracle("http://unused", tok, client=service.client, batch_size=4)
    with pytest.raises(ServiceError) as err:
        oracle.query(X[:8])
    assert err.value.status == 429 and err.value.retry_after is not None
    assert oracle.queries == 4


def test_detectors_can_be_switched_off(make_service) -> None:
    svc = make_service(detectors=DetectorConfig(enabled=False))
    tok = svc.token("trusted")
    for _ in range(10):
        svc.post(tok, json={"records": [X[0].tolist()] * 10})
    svc.app.state.flush_detectors()
    assert svc.get(svc.admin, "/admin/alerts").json() == []


def test_alerts_are_posted_to_a_webhook_on_loopback(make_service) -> None:
    import http.server
    import time

    from tests.serve.conftest import free_port

    got: list[dict] = []

    class Receiver(http.server.BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    receiver = http.server.HTTPServer(("127.0.0.1", port), Receiver)
    thread = threading.Thread(target=receiver.serve_forever, daemon=True)
    thread.start()
    try:
        svc = make_service(webhook=f"http://127.0.0.1:{port}/alerts")
        tok = svc.token("trusted")
        svc.post(tok, json={"records": [X[0].tolist()] * 6})  # the same record 6 times: repeat
        deadline = time.monotonic() + 10
        while not got and time.monotonic() < deadline:
            time.sleep(0.05)
        assert got and got[0]["detector"] == "repeat" and got[0]["key_id"] == tok.split("_")[1]
        assert set(got[0]) == {"id", "ts", "detector", "key_id", "keys", "detail"}
    finally:
        receiver.shutdown()
        receiver.server_close()


def test_a_detector_fault_never_fails_a_logged_answer_and_is_an_alert(
    make_service, monkeypatch
) -> None:
    from miaudit.serve._monitor import Monitor

    def broken(self, *args, **kwargs):
        raise RuntimeError("injected fault")

    monkeypatch.setattr(Monitor, "observe", broken)
    svc = make_service()
    tok = svc.token("trusted")
    r = svc.post(tok, json={"record": X[0].tolist()})
    assert r.status_code == 200
    svc.app.state.flush_detectors()
    assert (
        svc.post(tok, json={"record": X[1].tolist()}).status_code == 200
    )  # the detectors' thread lives on
    svc.app.state.flush_detectors()
    # Red team: detectors failing on every request were off with a log line only.
    failed = [a for a in svc.app.state.store.list_alerts() if a.detector == "detectors_failed"]
    assert len(failed) == 1 and failed[0].detail["error"] == "injected fault"


def test_a_calibration_of_another_width_is_refused_before_serving(make_service) -> None:
    """Red team: a centre or scale of the wrong length failed every request in the detectors."""
    from miaudit.errors import InputError

    with pytest.raises(InputError, match=r"detectors\.scale.*2 values for a model of"):
        make_service(detectors=DetectorConfig(scale=(1.0, 2.0)))


def test_detectors_run_off_the_request_path_and_report_overload(make_service) -> None:
    from miaudit.serve._monitor import Observer

    got: list[tuple] = []
    release = threading.Event()

    def slow_sink(*alert: object) -> None:
        got.append(alert)
        if len(got) == 1:
            release.wait(5)  # hold the detectors' thread on the first alert

    obs = Observer(DetectorConfig(repeat_threshold=2), SECRET, slow_sink, max_pending=10)
    x = np.repeat(X[:1], 2, axis=0)
    obs.submit(
        "a", x, record_hashes(SECRET, x)
    )  # raises a repeat alert; the sink then blocks the thread
    deadline = __import__("time").monotonic() + 5
    while not got and __import__("time").monotonic() < deadline:
        __import__("time").sleep(0.01)
    for _ in range(10):
        obs.submit(
            "a", X[:3], record_hashes(SECRET, X[:3])
        )  # 30 records > 10 pending: some dropped
    assert obs.dropped > 0
    assert [a[0] for a in got] == ["repeat", "overload"]
    release.set()
    obs.flush()
    obs.close()
