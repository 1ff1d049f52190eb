"""Each router on its own: mounted on a bare app with the service and the caller given through
``dependency_overrides``, no gate, no database."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRouter

from miaudit.serve import DEFAULT_ROLES, KeyInfo, asgi_client
from miaudit.serve._routes import (
    ROUTERS,
    alerts,
    denied,
    get_caller,
    get_service,
    health_router,
    invalid_request,
    keys,
    predictions,
)
from miaudit.serve._schemas import KeyCreate, KeyLimits, PredictRequest
from miaudit.serve._service import Caller, Denied

KEY = KeyInfo(
    key_id="a" * 16,
    role="admin",
    label=None,
    created_at=1.0,
    revoked_at=None,
    budget=None,
    used=3,
    rate=None,
    window_s=60,
)
CALLER = Caller(KEY, DEFAULT_ROLES["admin"])


class FakeService:
    """Records each call; answers with ``answer`` or raises ``refuse``."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, tuple[Any, ...], dict[str, Any]]] = []
        self.answer: Any = None
        self.refuse: Denied | None = None

    def __getattr__(self, name: str) -> Any:
        def act(*args: Any, **kw: Any) -> Any:
            self.calls.append((name, args, kw))
            if self.refuse is not None:
                raise self.refuse
            return self.answer

        return act


@pytest.fixture
def fake() -> FakeService:
    return FakeService()


def mounted(
    router: APIRouter, fake: FakeService | None, caller: Caller | None = CALLER
) -> httpx.Client:
    app = FastAPI()
    app.include_router(router)
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(Denied)(denied)
    if fake is not None:
        app.dependency_overrides[get_service] = lambda: fake
    if caller is not None:
        app.dependency_overrides[get_caller] = lambda: caller
    return asgi_client(app)


@pytest.fixture
def client(fake: FakeService, request: pytest.FixtureRequest) -> Iterator[httpx.Client]:
    with mounted(request.param, fake) as c:
        yield c


def public_key(**kw: Any) -> dict[str, Any]:
    return {**KEY.public(), **kw}


@pytest.mark.parametrize("client", [predictions], indirect=True)
def test_predict_passes_the_body_and_sends_the_services_bytes(
    client: httpx.Client, fake: FakeService
) -> None:
    fake.answer = b'{"policy":"full","predictions":[]}'
    r = client.post("/predict", json={"records": [[1, 2]]})
    assert r.status_code == 200 and r.content == fake.answer
    assert r.headers["content-type"] == "application/json"
    [(name, args, kw)] = fake.calls
    assert name == "predict" and kw == {}
    assert args == (CALLER, PredictRequest(records=[[1.0, 2.0]]))


@pytest.mark.parametrize("client", [predictions], indirect=True)
def test_a_refusal_keeps_its_status_detail_and_headers(
    client: httpx.Client, fake: FakeService
) -> None:
    fake.refuse = Denied(429, "rate limit reached", {"Retry-After": "7"})
    r = client.post("/predict", json={"record": [1]})
    assert (r.status_code, r.json(), r.headers["retry-after"]) == (
        429,
        {"detail": "rate limit reached"},
        "7",
    )


@pytest.mark.parametrize("client", [predictions], indirect=True)
def test_a_malformed_body_is_a_422_before_the_service_is_called(
    client: httpx.Client, fake: FakeService
) -> None:
    r = client.post(
        "/predict",
        content=b'{"record": [NaN], "extra": 1}',
        headers={"content-type": "application/json"},
    )
    assert r.status_code == 422 and fake.calls == []
    assert "NaN" not in r.text  # the input is never echoed back


@pytest.mark.parametrize("client", [predictions], indirect=True)
def test_whoami_needs_no_service(client: httpx.Client, fake: FakeService) -> None:
    r = client.get("/whoami")
    assert r.status_code == 200 and fake.calls == []
    assert r.json() == {
        "key_id": KEY.key_id,
        "role": "admin",
        "policy": "full",
        "endpoints": ["admin", "predict"],
        "budget": None,
        "used": 3,
        "rate": None,
        "window_s": 60,
    }


def test_without_the_gate_no_caller_is_a_401(fake: FakeService) -> None:
    with mounted(predictions, fake, caller=None) as c:
        r = c.post("/predict", json={"record": [1]}, headers={"Authorization": "Bearer x"})
    assert (r.status_code, r.json(), r.headers["www-authenticate"]) == (
        401,
        {"detail": "invalid or missing API key"},
        "Bearer",
    )
    assert fake.calls == []


def test_health_alone() -> None:
    with mounted(health_router, None, caller=None) as c:
        assert c.get("/health").json() == {"status": "ok"}


@pytest.mark.parametrize("client", [keys], indirect=True)
def test_key_routes_call_the_service_with_their_inputs(
    client: httpx.Client, fake: FakeService
) -> None:
    fake.answer = {**public_key(), "token": "mia_x_y"}
    r = client.post("/admin/keys", json={"role": "public", "budget": 5})
    assert r.status_code == 201 and r.json()["token"] == "mia_x_y"
    fake.answer = [public_key()]
    assert client.get("/admin/keys").json() == [public_key()]
    fake.answer = public_key(revoked=True)
    assert client.delete("/admin/keys/b123").json()["revoked"] is True
    fake.answer = public_key(rate=9)
    assert client.put("/admin/keys/b123/limits", json={"rate": 9}).json()["rate"] == 9
    assert [(n, a, k) for n, a, k in fake.calls] == [
        ("create_key", (CALLER, KeyCreate(role="public", budget=5)), {}),
        ("list_keys", (CALLER,), {}),
        ("revoke_key", (CALLER, "b123"), {}),
        ("set_limits", (CALLER, "b123", KeyLimits(rate=9)), {}),
    ]


@pytest.mark.parametrize("client", [keys], indirect=True)
def test_key_answers_are_filtered_by_their_response_model(
    client: httpx.Client, fake: FakeService
) -> None:
    fake.answer = {**public_key(), "token": "mia_x_y", "digest": "secret"}
    assert "digest" not in client.post("/admin/keys", json={"role": "public"}).json()
    fake.answer = [{**public_key(), "token": "mia_x_y"}]
    assert "token" not in client.get("/admin/keys").json()[0]


@pytest.mark.parametrize("client", [alerts], indirect=True)
def test_alert_and_log_queries_have_defaults_and_bounds(
    client: httpx.Client, fake: FakeService
) -> None:
    fake.answer = []
    assert client.get("/admin/alerts").status_code == 200
    assert client.get("/admin/alerts?since_id=4&limit=7&key_id=k").status_code == 200
    assert client.get("/admin/log?hashes=true").status_code == 200
    assert client.get("/admin/alerts?limit=0").status_code == 422
    # alert ids are 32-bit on PostgreSQL: 2³¹ was a database error there (a 500)
    assert client.get(f"/admin/alerts?since_id={2**31}").status_code == 422
    assert client.get("/admin/log?key_id=" + "k" * 17).status_code == 422
    assert fake.calls == [
        ("list_alerts", (CALLER,), {"since_id": 0, "limit": 100, "key_id": None}),
        ("list_alerts", (CALLER,), {"since_id": 4, "limit": 7, "key_id": "k"}),
        ("read_log", (CALLER,), {"key_id": None, "limit": 100, "hashes": True}),
    ]


@pytest.mark.parametrize("client", [alerts], indirect=True)
def test_log_entries_drop_absent_hashes(client: httpx.Client, fake: FakeService) -> None:
    entry = {
        "id": 1,
        "key_id": "k",
        "ts": time.time(),
        "endpoint": "predict",
        "n_records": 2,
        "policy": "full",
        "status": 200,
    }
    fake.answer = [entry]
    assert client.get("/admin/log").json() == [entry]  # no "record_hashes": null


def test_the_routers_together_serve_the_documented_paths_in_order() -> None:
    app = FastAPI()
    for router in ROUTERS:
        app.include_router(router)
    paths = app.openapi()["paths"]
    assert [(p, sorted(ops)) for p, ops in paths.items()] == [
        ("/predict", ["post"]),
        ("/whoami", ["get"]),
        ("/health", ["get"]),
        ("/admin/keys", ["get", "post"]),
        ("/admin/keys/{key_id}", ["delete"]),
        ("/admin/keys/{key_id}/limits", ["put"]),
        ("/admin/alerts", ["get"]),
        ("/admin/log", ["get"]),
        ("/admin/acts", ["get"]),
    ]
    guarded = [op for p, ops in paths.items() if p != "/health" for op in ops.values()]
    assert all(op["security"] == [{"HTTPBearer": []}] for op in guarded)
    assert "security" not in paths["/health"]["get"]
