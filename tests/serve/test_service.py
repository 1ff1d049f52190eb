"""The service's acts one by one, without HTTP: :class:`Service` over a SQLite store and a stub
model, and the pure steps of reading records and encoding answers."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from miaudit.defenses import apply_policy, parse_policy
from miaudit.errors import InputError
from miaudit.serve import DetectorConfig, Role, ServeConfig, Store
from miaudit.serve._predictor import UpstreamError
from miaudit.serve._schemas import KeyCreate, KeyLimits, PredictRequest
from miaudit.serve._service import (
    FLOAT32_MAX,
    Caller,
    Denied,
    Service,
    encode_answer,
    records_array,
    usable_probabilities,
)

SECRET = bytes(range(32))


class StubModel:
    """Two features; class 1 when the first is positive. ``fail`` makes it raise ``fail``."""

    feature_names: tuple[str, ...] | None = ("a", "b")
    n_features = 2

    def __init__(self) -> None:
        self.fail: Exception | None = None
        self.calls = 0

    def predict_proba(self, records: np.ndarray) -> np.ndarray:
        self.calls += 1
        if self.fail is not None:
            raise self.fail
        p = (records[:, 0] > 0).astype(np.float64) * 0.5 + 0.25
        return np.column_stack([1 - p, p])


@pytest.fixture
def model() -> StubModel:
    return StubModel()


@pytest.fixture
def service(tmp_path: Path, model: StubModel) -> Iterator[Service]:
    roles = {
        "admin": Role.of("admin", "full", ["predict", "admin"]),
        "public": Role.of("public", "label-only"),
        "watcher": Role.of("watcher", "full", ["admin"]),
    }
    cfg = ServeConfig(
        predictor=model,
        db=f"sqlite:///{tmp_path}/guard.db",
        secret=SECRET,
        roles=roles,
        max_batch=3,
        detectors=DetectorConfig(enabled=False),
    )
    svc = Service.open(cfg)
    yield svc
    svc.close()


def caller_of(service: Service, role: str, **limits: int) -> tuple[Caller, str]:
    token = service.store.create_key(SECRET, role, **limits).token  # type: ignore[arg-type]
    return service.authenticate(token), token


def denial(fn: object, *args: object, **kw: object) -> Denied:
    with pytest.raises(Denied) as info:
        fn(*args, **kw)  # type: ignore[operator]
    return info.value


# --- reading records -----------------------------------------------------------------------------


def read(body: dict[str, object], names: tuple[str, ...] | None = ("a", "b")) -> np.ndarray:
    return records_array(
        PredictRequest.model_validate(body), max_batch=3, n_features=2, feature_names=names
    )


def test_records_as_objects_are_read_in_the_models_order() -> None:
    x = read({"records": [{"b": 2.0, "a": 1.0}, [3.0, 4.0]]})
    assert x.dtype == np.float64 and x.tolist() == [[1.0, 2.0], [3.0, 4.0]]
    assert read({"record": [5.0, 6.0]}).tolist() == [[5.0, 6.0]]


@pytest.mark.parametrize(
    ("body", "names", "status", "detail"),
    [
        ({}, ("a", "b"), 422, "give exactly one of 'record' and 'records'"),
        (
            {"record": [1.0, 2.0], "records": [[1.0, 2.0]]},
            ("a", "b"),
            422,
            "give exactly one of 'record' and 'records'",
        ),
        (
            {"records": [[0.0, 0.0]] * 4},
            ("a", "b"),
            413,
            "too many records in one request (at most 3)",
        ),
        (
            {"records": [{"a": 1.0, "b": 2.0}]},
            None,
            422,
            "records[0]: this model takes records as lists of numbers",
        ),
        (
            {"records": [[1.0, 2.0], {"a": 1.0, "c": 2.0}]},
            ("a", "b"),
            422,
            "records[1]: unknown field 'c'",
        ),
        ({"records": [{"a": 1.0}]}, ("a", "b"), 422, "records[0]: missing field 'b'"),
        ({"records": [[1.0, 2.0], [1.0]]}, ("a", "b"), 422, "every record must have 2 numbers"),
        ({"records": [[1.0, 2.0, 3.0]]}, ("a", "b"), 422, "every record must have 2 numbers"),
        (
            {"records": [[1.0, 2.0], [1e39, 0.0]]},
            ("a", "b"),
            422,
            f"records[1]: numbers must lie within float32's range (±{FLOAT32_MAX:.4g})",
        ),
    ],
)
def test_bad_records_are_refused_from_the_input_alone(
    body: dict[str, object], names: tuple[str, ...] | None, status: int, detail: str
) -> None:
    err = denial(read, body, names)
    assert (err.status, err.detail) == (status, detail)


def test_an_empty_record_is_refused_when_the_width_is_unknown() -> None:
    body = PredictRequest.model_validate({"records": [[]]})
    err = denial(records_array, body, max_batch=3, n_features=None, feature_names=None)
    assert (err.status, err.detail) == (422, "records must not be empty")


# --- encoding answers ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("probs", "n", "usable"),
    [
        (np.array([[0.4, 0.6]]), 1, True),
        (np.array([[0.4, 0.6]]), 2, False),
        (np.array([0.4, 0.6]), 2, False),
        (np.zeros((1, 0)), 1, False),
        (np.array([[np.nan, 1.0]]), 1, False),
        (np.array([[np.inf, 1.0]]), 1, False),
    ],
)
def test_usable_probabilities(probs: np.ndarray, n: int, usable: bool) -> None:
    assert usable_probabilities(probs, n) is usable


def test_encoded_answers_follow_the_response_schema() -> None:
    probs = np.array([[0.25, 0.75], [0.9, 0.1]])
    full = parse_policy("full")
    body = json.loads(encode_answer(full, apply_policy(full, probs)) or b"")
    assert body == {
        "policy": "full",
        "predictions": [{"label": 1, "scores": [0.25, 0.75]}, {"label": 0, "scores": [0.9, 0.1]}],
    }
    lo = parse_policy("label-only")
    assert json.loads(encode_answer(lo, apply_policy(lo, probs)) or b"") == {
        "policy": "label-only",
        "predictions": [{"label": 1}, {"label": 0}],
    }


# --- who calls -----------------------------------------------------------------------------------


def test_authenticate_gives_the_key_and_its_role(service: Service) -> None:
    caller, _ = caller_of(service, "public", budget=10)
    assert caller.role.name == "public" and caller.key.budget == 10
    assert Service.whoami(caller) == {
        "key_id": caller.key.key_id,
        "role": "public",
        "policy": "label-only",
        "endpoints": ["predict"],
        "budget": 10,
        "used": 0,
        "rate": None,
        "window_s": 60,
    }


def test_authenticate_refuses_alike_what_is_not_a_live_key(service: Service) -> None:
    caller, token = caller_of(service, "public")
    service.store.revoke_key(caller.key.key_id)
    for bad in ("", "garbage", token[:-1] + ("A" if token[-1] != "A" else "B"), token):
        err = denial(service.authenticate, bad)
        assert (err.status, err.detail, err.headers) == (
            401,
            "invalid or missing API key",
            {"WWW-Authenticate": "Bearer"},
        )


def test_a_key_whose_role_is_gone_is_forbidden(service: Service) -> None:
    token = service.store.create_key(SECRET, "retired").token
    err = denial(service.authenticate, token)
    assert (err.status, err.detail) == (403, "this key's role may not call this endpoint")


# --- predictions ---------------------------------------------------------------------------------


def test_predict_charges_logs_and_answers_under_the_policy(service: Service) -> None:
    caller, _ = caller_of(service, "public", budget=5)
    out = service.predict(caller, PredictRequest(records=[[1.0, 0.0], [-1.0, 0.0]]))
    assert json.loads(out) == {"policy": "label-only", "predictions": [{"label": 1}, {"label": 0}]}
    [row] = service.store.log_entries(key_id=caller.key.key_id, with_hashes=True)
    assert (row["status"], row["n_records"], row["policy"]) == (200, 2, "label-only")
    assert len(row["record_hashes"]) == 2
    assert service.store.get_key(caller.key.key_id).used == 2  # type: ignore[union-attr]


def test_predict_over_budget_is_refused_before_the_model_and_logged(
    service: Service, model: StubModel
) -> None:
    caller, _ = caller_of(service, "public", budget=1)
    err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [1.0, 0.0]]))
    assert (err.status, err.detail, err.headers) == (
        429,
        "record budget exhausted",
        {"Retry-After": "86400"},
    )
    assert model.calls == 0
    [row] = service.store.log_entries(key_id=caller.key.key_id)
    assert (row["status"], row["n_records"]) == (429, 2)


def test_predict_over_the_rate_limit_in_one_request_is_a_413(service: Service) -> None:
    caller, _ = caller_of(service, "public", rate=1, window_s=30)
    err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [1.0, 0.0]]))
    assert (err.status, err.detail) == (
        413,
        "more records in one request than this key's rate limit (1 per 30 s)",
    )
    assert service.store.log_entries(key_id=caller.key.key_id) == []


def test_a_full_rate_window_is_refused_before_the_model_runs(
    service: Service, model: StubModel
) -> None:
    """Red team: the window was checked only when charging, after the model had run on every
    refused request (20 × 1,000 records ran for 1,000 answered)."""
    caller, token = caller_of(service, "public", rate=3, window_s=3600)
    service.predict(caller, PredictRequest(records=[[1.0, 0.0], [0.0, 1.0]]))
    assert model.calls == 1
    caller = service.authenticate(token)  # as the gate reads the key for each request
    err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [0.0, 1.0]]))
    assert (err.status, err.detail) == (429, "rate limit reached")
    assert 1 <= int(err.headers["Retry-After"]) <= 3600
    assert model.calls == 1
    assert service.refusal_before_body(caller, "/predict") is None  # one record still fits
    service.predict(caller, PredictRequest(record=[1.0, 0.0]))
    spent = service.refusal_before_body(service.authenticate(token), "/predict")
    assert spent is not None and (spent.status, spent.detail) == (429, "rate limit reached")


def test_a_spent_budget_and_a_role_without_predict_are_refused_before_the_body(
    service: Service,
) -> None:
    caller, token = caller_of(service, "public", budget=1)
    assert service.refusal_before_body(caller, "/predict") is None
    service.predict(caller, PredictRequest(record=[1.0, 0.0]))
    spent = service.refusal_before_body(service.authenticate(token), "/predict")
    assert spent is not None and (spent.status, spent.detail) == (429, "record budget exhausted")
    assert service.refusal_before_body(service.authenticate(token), "/whoami") is None
    watcher, _ = caller_of(service, "watcher")
    forbidden = service.refusal_before_body(watcher, "/predict")
    assert forbidden is not None and forbidden.status == 403


def test_records_wider_than_the_cap_is_sized_for_are_refused_when_the_width_is_unknown() -> None:
    """Red team: an upstream without n_features took one record of 6,000,000 numbers."""
    from miaudit.serve._service import UNKNOWN_WIDTH

    wide = PredictRequest(record=[0.0] * (UNKNOWN_WIDTH + 1))
    err = denial(records_array, wide, max_batch=3, n_features=None, feature_names=None)
    assert err.status == 422 and str(UNKNOWN_WIDTH) in err.detail
    ok = PredictRequest(record=[0.0] * UNKNOWN_WIDTH)
    assert records_array(ok, max_batch=3, n_features=None, feature_names=None).shape == (1, 1024)


def test_the_command_line_proxy_needs_the_upstream_width() -> None:
    from miaudit.serve import ServeSpec

    with pytest.raises(InputError, match="--n-features"):
        ServeSpec(db="sqlite:///x.db", upstream="http://127.0.0.1:9/p").build_predictor()


def test_a_failing_model_is_a_charged_500(service: Service, model: StubModel) -> None:
    caller, _ = caller_of(service, "public")
    model.fail = RuntimeError("boom")
    err = denial(service.predict, caller, PredictRequest(record=[1.0, 0.0]))
    assert (err.status, err.detail) == (500, "the model could not answer these records")
    [row] = service.store.log_entries(key_id=caller.key.key_id)
    assert (row["status"], row["n_records"]) == (500, 1)
    assert service.store.get_key(caller.key.key_id).used == 1  # type: ignore[union-attr]


def test_an_unreachable_upstream_is_an_uncharged_logged_502(
    service: Service, model: StubModel
) -> None:
    """Red team: 502s left no log row, so records could reach an upstream with no trace."""
    caller, _ = caller_of(service, "public")
    model.fail = UpstreamError("ConnectError", sent=False)
    err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [0.0, 1.0]]))
    assert (err.status, err.detail) == (502, "upstream prediction failed")
    [row] = service.store.log_entries(key_id=caller.key.key_id)
    assert (row["status"], row["n_records"]) == (502, 2)
    assert service.store.get_key(caller.key.key_id).used == 0


def test_an_upstream_that_read_the_records_and_failed_keeps_them_charged(
    service: Service, model: StubModel
) -> None:
    """Red team: every 502 was given back, so a caller who could make the upstream fail (a 500
    on some input, a read timeout) sent it 200 records on a budget of 5, with no hashes logged."""
    caller, token = caller_of(service, "public", budget=5)
    model.fail = UpstreamError("HTTPStatusError")
    for _ in range(2):
        err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [0.0, 1.0]]))
        assert err.status == 502
        caller = service.authenticate(token)
    assert service.store.get_key(caller.key.key_id).used == 4  # type: ignore[union-attr]
    rows = service.store.log_entries(key_id=caller.key.key_id, with_hashes=True)
    assert [r["status"] for r in rows] == [502, 502] and all(
        len(r["record_hashes"]) == 2 for r in rows
    )
    assert denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0]] * 2)).status == 429


def test_a_failed_upstream_gives_back_its_rate_window_too(
    service: Service, model: StubModel
) -> None:
    caller, token = caller_of(service, "public", rate=3)
    model.fail = UpstreamError("ConnectError", sent=False)
    for _ in range(2):  # 2 x 2 records would fill a window of 3 if they were not given back
        denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0], [0.0, 1.0]]))
    model.fail = None
    caller = service.authenticate(token)  # the key as it is now
    service.predict(caller, PredictRequest(records=[[1.0, 0.0]] * 3))
    key = service.store.get_key(caller.key.key_id)
    assert key is not None and key.used == 3
    assert [r["status"] for r in service.store.log_entries(key_id=key.key_id)] == [200, 502, 502]
    assert all(
        not r["record_hashes"] or r["status"] == 200
        for r in service.store.log_entries(key_id=key.key_id, with_hashes=True)
    )


def test_concurrent_requests_of_one_key_never_run_the_model_past_its_budget(
    service: Service, model: StubModel
) -> None:
    """Red team: the limits were checked against the key as read, and the charge came after the
    model: 8 concurrent requests of a key with 2 records left each ran the model."""
    import threading

    seen: list[int] = []
    gate = threading.Barrier(8)
    answer = model.predict_proba

    def counted(records: np.ndarray) -> np.ndarray:
        seen.append(len(records))
        return answer(records)

    model.predict_proba = counted  # type: ignore[method-assign]
    caller, _ = caller_of(service, "public", budget=2)
    outcomes: list[int] = []

    def one() -> None:
        gate.wait()  # every thread has read the key (2 left) before any charges
        try:
            service.predict(caller, PredictRequest(record=[1.0, 0.0]))
            outcomes.append(200)
        except Denied as exc:
            outcomes.append(exc.status)

    threads = [threading.Thread(target=one) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == [200, 200] + [429] * 6
    assert sum(seen) == 2  # the model saw only the records it answered
    assert service.store.get_key(caller.key.key_id).used == 2  # type: ignore[union-attr]


def test_a_role_without_predict_is_refused_and_logged(service: Service) -> None:
    caller, _ = caller_of(service, "watcher")
    err = denial(service.predict, caller, PredictRequest(record=[1.0, 0.0]))
    assert (err.status, err.detail) == (403, "this key's role may not call this endpoint")
    [row] = service.store.log_entries(key_id=caller.key.key_id)
    assert (row["status"], row["n_records"], row["policy"]) == (403, 0, "full")


def test_the_detectors_are_fed_only_answered_requests(tmp_path: Path, model: StubModel) -> None:
    cfg = ServeConfig(
        predictor=model,
        db=f"sqlite:///{tmp_path}/g.db",
        secret=SECRET,
        detectors=DetectorConfig(repeat_threshold=4),
    )
    svc = Service.open(cfg)
    record = PredictRequest(record=[1.0, 0.0])
    try:
        caller, token = caller_of(svc, "trusted", budget=3)
        for _ in range(3):
            svc.predict(caller, record)
        assert denial(svc.predict, caller, record).status == 429  # not the 4th sighting
        svc.flush_detectors()
        assert svc.monitor() is not None and svc.store.list_alerts() == []
        svc.store.set_limits(caller.key.key_id, budget=None, rate=None, window_s=60)
        svc.predict(svc.authenticate(token), record)  # the 4th answered: the repeat alarm
        svc.flush_detectors()
        [alert] = svc.store.list_alerts()
        assert (alert.detector, alert.key_id) == ("repeat", caller.key.key_id)
        assert (alert.detail["times"], alert.detail["queries"]) == (4, 4)
    finally:
        svc.close()


# --- admin acts ----------------------------------------------------------------------------------


def test_admin_acts_need_the_admin_endpoint_and_a_refused_one_leaves_nothing(
    service: Service,
) -> None:
    public, _ = caller_of(service, "public")
    acts = [
        lambda: service.create_key(public, KeyCreate(role="public")),
        lambda: service.list_keys(public),
        lambda: service.revoke_key(public, public.key.key_id),
        lambda: service.set_limits(public, public.key.key_id, KeyLimits(budget=1)),
        lambda: service.list_alerts(public, since_id=0, limit=10, key_id=None),
        lambda: service.read_log(public, key_id=None, limit=10, hashes=False),
    ]
    for act in acts:
        assert denial(act).status == 403
    assert service.store.log_entries() == []
    assert [a["action"] for a in service.store.acts()] == ["create_key"]  # caller_of's own
    assert service.store.get_key(public.key.key_id).revoked_at is None  # type: ignore[union-attr]


def test_every_admin_act_leaves_a_row_in_its_own_transaction(service: Service) -> None:
    """Red team: an admin key created an unlimited key, lifted limits, read the log with record
    hashes and revoked the key, and no table held a trace of it."""
    admin, _ = caller_of(service, "admin")
    me = admin.key.key_id
    new = service.create_key(admin, KeyCreate(role="public", budget=5))
    service.set_limits(admin, new["key_id"], KeyLimits(budget=None))
    service.list_keys(admin)
    service.read_log(admin, key_id=new["key_id"], limit=7, hashes=True)
    service.list_alerts(admin, since_id=0, limit=10, key_id=None)
    service.revoke_key(admin, new["key_id"])
    service.revoke_key(admin, new["key_id"])  # already revoked: changes nothing, no act
    acts = service.read_acts(admin, actor=me, limit=100)
    assert [a["action"] for a in reversed(acts)] == [
        "create_key",
        "set_limits",
        "list_keys",
        "read_log",
        "list_alerts",
        "revoke_key",
        "read_acts",
    ]
    assert {a["actor"] for a in acts} == {me}
    by = {a["action"]: a for a in acts}
    assert by["create_key"]["target"] == new["key_id"]
    assert by["create_key"]["detail"] == {
        "role": "public",
        "budget": 5,
        "rate": None,
        "window_s": 60,
    }
    assert by["set_limits"]["detail"]["budget"] is None
    assert by["read_log"]["detail"] == {"limit": 7, "record_hashes": True}
    assert "token" not in json.dumps(acts)
    service.store.create_key(SECRET, "public")  # the command line: actor null
    assert service.store.acts(limit=1)[0]["actor"] is None


def test_admin_creates_limits_lists_and_revokes_keys(service: Service) -> None:
    admin, _ = caller_of(service, "admin")
    made = service.create_key(admin, KeyCreate(role="public", budget=7, label="ann"))
    assert made["token"].startswith(f"mia_{made['key_id']}_")
    assert (made["role"], made["budget"], made["label"], made["revoked"]) == (
        "public",
        7,
        "ann",
        False,
    )
    changed = service.set_limits(admin, made["key_id"], KeyLimits(budget=None, rate=4))
    assert (changed["budget"], changed["rate"]) == (None, 4)
    assert {k["key_id"] for k in service.list_keys(admin)} == {admin.key.key_id, made["key_id"]}
    assert service.revoke_key(admin, made["key_id"])["revoked"] is True
    assert denial(service.authenticate, made["token"]).status == 401


def test_admin_acts_on_a_missing_key_or_role(service: Service) -> None:
    admin, _ = caller_of(service, "admin")
    err = denial(service.create_key, admin, KeyCreate(role="root"))
    assert (err.status, err.detail) == (422, "unknown role 'root'; roles: admin, public, watcher")
    assert denial(service.revoke_key, admin, "0" * 16).detail == "no such key"
    assert denial(service.set_limits, admin, "0" * 16, KeyLimits()).status == 404


def test_a_revoked_admin_cannot_act_on_a_stale_caller(service: Service) -> None:
    admin, _ = caller_of(service, "admin")
    service.store.revoke_key(admin.key.key_id)
    err = denial(service.list_keys, admin)  # authenticated before the revocation committed
    assert (err.status, err.headers) == (401, {"WWW-Authenticate": "Bearer"})
    assert denial(service.create_key, admin, KeyCreate(role="public")).status == 401
    assert len(service.store.list_keys()) == 1  # no key made


def test_admin_reads_alerts_and_the_log(service: Service) -> None:
    admin, _ = caller_of(service, "admin")
    service.raise_alert("repeat", admin.key.key_id, [admin.key.key_id], {"n": 3})
    [alert] = service.list_alerts(admin, since_id=0, limit=10, key_id=None)
    assert (alert["detector"], alert["detail"]) == ("repeat", {"n": 3})
    assert service.list_alerts(admin, since_id=alert["id"], limit=10, key_id=None) == []
    service.predict(admin, PredictRequest(record=[1.0, 0.0]))
    [entry] = service.read_log(admin, key_id=None, limit=10, hashes=True)
    assert entry["status"] == 200 and len(entry["record_hashes"]) == 1


def test_close_closes_the_store(
    tmp_path: Path, model: StubModel, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = Store(f"sqlite:///{tmp_path}/c.db")
    closed = []
    real_close = store.close
    monkeypatch.setattr(store, "close", lambda: closed.append(real_close()))
    cfg = ServeConfig(
        predictor=model,
        db=f"sqlite:///{tmp_path}/c.db",
        secret=SECRET,
        detectors=DetectorConfig(enabled=False),
    )
    svc = Service(cfg, store)
    assert svc.observer is None and svc.monitor() is None
    svc.close()
    assert closed == [None]


def test_a_refund_after_the_window_changed_leaves_the_window_count_alone(service: Service) -> None:
    """Red team: charge 8 in a 60 s window, an admin sets 3,600 s, charge 2, then the first
    request's upstream fails: window_used went to -6 and 16 records passed a rate of 10."""
    store = service.store
    key = store.create_key(SECRET, "public", rate=10).key_id
    t0 = 1_000_020.0
    first = store.charge(key, 8, endpoint="predict", policy="full", hashes=[], now=t0)
    assert store.set_limits(key, budget=None, rate=10, window_s=3600)
    store.charge(key, 2, endpoint="predict", policy="full", hashes=[], now=t0 + 1)
    store.settle(key, first, 8, charged_at=t0, window_s=60, status=502, refund=True)
    info = store.get_key(key)
    assert info is not None and (info.used, store.window_used(key, t0 + 2)) == (2, 2)
    late = store.charge(key, 9, endpoint="predict", policy="full", hashes=[], now=t0 + 2)
    assert late.request_id is None  # 2 + 9 > 10 in the window


def test_a_failure_after_the_charge_never_stays_logged_as_an_answer(
    service: Service, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Second read: with the charge before the model, an exception while answering left the
    request logged 200 (answered) though nothing was sent."""
    caller, _ = caller_of(service, "public")

    def broken(*args: object, **kwargs: object) -> bytes:
        raise RuntimeError("encoder fault")

    monkeypatch.setattr(service, "answer", broken)
    with pytest.raises(RuntimeError, match="encoder fault"):
        service.predict(caller, PredictRequest(record=[1.0, 0.0]))
    [row] = service.store.log_entries(key_id=caller.key.key_id)
    assert row["status"] == 500  # charged: the model saw the record


def test_retry_after_from_the_key_as_read_is_when_the_batch_fits(service: Service) -> None:
    """Red team: 10 records, then 40, at a rate of 50 per 10 s; a batch of 20 was told to come
    back when the 10 leave (6 s), and was refused again then: it fits when the 40 leave too
    (here 1, 4, rate 5, a batch of 3)."""
    import time

    caller, token = caller_of(service, "public", rate=5, window_s=10)
    now = time.time()
    for n, ago in ((1, 4.0), (4, 1.0)):
        kw = {"endpoint": "predict", "policy": "full", "hashes": []}
        assert service.store.charge(caller.key.key_id, n, now=now - ago, **kw).request_id
    caller = service.authenticate(token)
    err = denial(service.predict, caller, PredictRequest(records=[[1.0, 0.0]] * 3))
    assert err.status == 429 and err.headers is not None
    assert int(err.headers["Retry-After"]) == 9  # the 4 leave 9 s from now (6 s: the 1)
    one = denial(service.predict, caller, PredictRequest(record=[1.0, 0.0]))
    # One record fits when the 1 leaves: 6 s, read from the key's row, whose time is in whole
    # seconds (floored), so 5 when the clock's fraction and this test's milliseconds pass 1 s.
    assert int(one.headers["Retry-After"]) in (5, 6)  # type: ignore[index]


def test_a_spent_keys_refusals_cannot_flood_the_log(service: Service) -> None:
    """Red team: a key with budget 0 wrote 2,000 log rows in 3.9 s, free, pushing real entries
    out of the log's first page. Its first refusals in a window are rows; the next raises one
    refusal_flood alert naming the key; the rest are counted, not logged."""
    from miaudit.serve._auth_watch import RefusalWatch

    service.refusal_watch = RefusalWatch(logged=3, window_s=3600)
    caller, _ = caller_of(service, "public", budget=0)
    for _ in range(10):
        assert denial(service.predict, caller, PredictRequest(record=[1.0, 0.0])).status == 429
    rows = service.store.log_entries(key_id=caller.key.key_id)
    assert [r["status"] for r in rows] == [429] * 3
    flood = [a for a in service.store.list_alerts() if a.detector == "refusal_flood"]
    assert len(flood) == 1 and flood[0].key_id == caller.key.key_id
    assert flood[0].detail == {"logged": 3, "window_s": 3600}


@pytest.mark.parametrize("name", ["r" * 65, "", "tab\there"])
def test_a_role_name_the_keys_table_cannot_hold_is_refused(name: str) -> None:
    """Helper's read of the roles file: a 65-character role was accepted and PostgreSQL's
    varchar(64) refused the first key made with it as an internal error."""
    from miaudit.serve import parse_roles

    with pytest.raises(InputError, match=r"a role name is 1 to 64 printable characters"):
        parse_roles({name: {"policy": "full"}})
    assert set(parse_roles({"r" * 64: {"policy": "full"}})) == {"r" * 64}
