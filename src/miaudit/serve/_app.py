"""The FastAPI application: ``/predict`` behind keys, roles, output policies, budgets, an audit
log and probing detectors.

Status codes (bodies never say more than shown here):

- 401 ``invalid or missing API key`` — no key, a malformed, unknown or revoked key: one answer
  for all, so that a caller learns nothing about which keys exist;
- 403 ``this key's role may not call this endpoint``;
- 413 ``too many records in one request`` (over ``max_batch``, or over the key's rate limit);
- 422 the caller's own request is malformed (it names the field of *their* request);
- 429 ``record budget exhausted`` or ``rate limit reached``, with ``Retry-After`` (seconds);
- 502 ``upstream prediction failed`` (proxy mode).

An answer is sent only after its log entry and budget decrement are committed together.
"""

import contextlib
import logging
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from miaudit.defenses import ExposedLabels, ExposedScores, apply_policy
from miaudit.errors import InputError
from miaudit.serve._config import Role, ServeConfig
from miaudit.serve._keys import digests_match, key_digest, parse_token, record_hashes
from miaudit.serve._monitor import Observer, Webhook
from miaudit.serve._predictor import UpstreamError
from miaudit.serve._store import KeyInfo, Store

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
RecordIn = list[FiniteFloat] | dict[str, FiniteFloat]
_DUMMY_DIGEST = "0" * 64
log = logging.getLogger("miaudit.serve")
UNAUTHORISED = "invalid or missing API key"
KEY_CACHE_S = 1.0


class PredictRequest(BaseModel):
    """One record (``record``) or a batch (``records``): lists of numbers, or objects keyed by
    feature name when the model knows its feature names."""

    model_config = ConfigDict(extra="forbid")
    record: RecordIn | None = None
    records: list[RecordIn] | None = Field(default=None, min_length=1)


class Prediction(BaseModel):
    label: int = Field(description="Predicted class index.")
    scores: list[float] | None = Field(default=None, description="Per-class scores after the output policy; absent under label-only.")


class PredictResponse(BaseModel):
    policy: str
    predictions: list[Prediction]


class RawPredictResponse(BaseModel):
    probabilities: list[list[float]]


class KeyCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")
    role: str = Field(min_length=1, max_length=64)
    budget: int | None = Field(default=None, ge=0, le=2**62)
    rate: int | None = Field(default=None, ge=1, le=2**62)
    window_s: int = Field(default=60, ge=1, le=86400 * 366)
    label: str | None = Field(default=None, max_length=200)


class KeyLimits(BaseModel):
    model_config = ConfigDict(extra="forbid")
    budget: int | None = Field(default=None, ge=0, le=2**62)
    rate: int | None = Field(default=None, ge=1, le=2**62)
    window_s: int = Field(default=60, ge=1, le=86400 * 366)


class KeyOut(BaseModel):
    key_id: str
    role: str
    label: str | None
    created_at: float
    revoked: bool
    budget: int | None
    used: int
    rate: int | None
    window_s: int


class NewKeyOut(KeyOut):
    token: str = Field(description="Shown once; the service keeps only its keyed hash.")


class WhoAmI(BaseModel):
    key_id: str
    role: str
    policy: str
    endpoints: list[str]
    budget: int | None
    used: int
    rate: int | None
    window_s: int


class AlertOut(BaseModel):
    id: int
    ts: float
    detector: str
    key_id: str | None
    keys: list[str]
    detail: dict[str, Any]


class LogEntry(BaseModel):
    id: int
    key_id: str | None
    ts: float
    endpoint: str
    n_records: int
    policy: str | None
    status: int
    record_hashes: list[str] | None = None


@dataclass(frozen=True)
class Caller:
    key: KeyInfo
    role: Role


class _Denied(Exception):
    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        self.status = status
        self.detail = detail
        self.headers = headers or {}


def create_app(config: ServeConfig) -> FastAPI:
    """The service for ``config`` (see :class:`ServeConfig`).

    Examples
    --------
    >>> import httpx
    >>> from sklearn.linear_model import LogisticRegression
    >>> est = LogisticRegression().fit([[0.0], [1.0]], [0, 1])
    >>> cfg = ServeConfig(predictor=EstimatorPredictor(est), db="sqlite:///guard.db", secret=b"s" * 32)  # doctest: +SKIP
    >>> app = create_app(cfg)  # doctest: +SKIP
    """
    if not config.guard:
        return _unguarded_app(config)

    store = Store(config.db, sqlite_synchronous=config.sqlite_synchronous)
    webhook = Webhook(config.webhook) if config.webhook else None
    n_features = config.predictor.n_features
    names = config.predictor.feature_names

    def sink(detector: str, key_id: str | None, keys: list[str], detail: dict[str, Any]) -> None:
        alert = store.add_alert(detector, key_id, keys, detail)
        if webhook is not None:
            webhook.post(alert.public())

    observer = Observer(config.detectors, config.secret, sink) if config.detectors.enabled else None

    def observe(key_id: str, x: np.ndarray, hashes: list[str]) -> None:
        if observer is not None:
            observer.submit(key_id, x, hashes)

    rng = np.random.default_rng(config.noise_seed)
    rng_lock = threading.Lock()

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        if observer is not None:
            observer.close()
        if webhook is not None:
            webhook.close()
        store.close()

    app = FastAPI(
        title="miaudit prediction service",
        version="1",
        description="Predictions behind API keys, per-role output policies, record budgets, an audit log and probing detectors.",
        lifespan=lifespan,
    )
    app.state.store = store
    app.state.config = config
    app.state.monitor = lambda: observer.monitor if observer is not None else None
    # Wait until the detectors have seen every answered request (tests, benchmarks).
    app.state.flush_detectors = observer.flush if observer is not None else (lambda: None)
    bearer = HTTPBearer(auto_error=False, description="API key: mia_<id>_<secret>")

    @app.exception_handler(RequestValidationError)
    async def _invalid(_req: Request, exc: RequestValidationError) -> JSONResponse:
        # Name the field and the problem; never echo the input back (it may not even be JSON: NaN).
        errors = [{"loc": [str(p) for p in e.get("loc", ())], "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))} for e in exc.errors()]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(_Denied)
    async def _denied(_req: Request, exc: _Denied) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    Creds = Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)]

    # Called inside each (sync) endpoint rather than as sync dependencies: each sync dependency
    # would cost one more hop through the thread pool.
    # Key rows are cached for KEY_CACHE_S: an answer still needs the charging UPDATE, which
    # re-checks revocation and budget in the database, so a revoked key gets no answer at once;
    # only admin endpoints may accept a just-revoked admin key for up to KEY_CACHE_S.
    key_cache: dict[str, tuple[float, tuple[KeyInfo, str]]] = {}

    def key_row(key_id: str) -> tuple[KeyInfo, str] | None:
        now = time.monotonic()
        hit = key_cache.get(key_id)
        if hit is not None and now - hit[0] < KEY_CACHE_S:
            return hit[1]
        row = store.key_row(key_id)
        if row is not None:
            if len(key_cache) > 100_000:
                key_cache.clear()
            key_cache[key_id] = (now, row)
        return row

    def authenticate(creds: HTTPAuthorizationCredentials | None) -> Caller:
        token = creds.credentials if creds is not None else ""
        key_id = parse_token(token)
        row = key_row(key_id) if key_id else None
        stored = row[1] if row is not None else _DUMMY_DIGEST
        same = digests_match(key_digest(config.secret, token), stored)  # computed for every caller alike
        if row is None or not same or row[0].revoked_at is not None:
            raise _Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
        info = row[0]
        role = config.roles.get(info.role)
        if role is None:
            raise _Denied(403, "this key's role may not call this endpoint")
        return Caller(info, role)

    def allowed(creds: HTTPAuthorizationCredentials | None, endpoint: str) -> Caller:
        caller = authenticate(creds)
        if endpoint not in caller.role.endpoints:
            if endpoint == "predict":
                store.log_denied(caller.key.key_id, endpoint=endpoint, n=0, policy=str(caller.role.policy), status=403)
            raise _Denied(403, "this key's role may not call this endpoint")
        return caller

    def to_array(body: PredictRequest) -> np.ndarray:
        if (body.record is None) == (body.records is None):
            raise _Denied(422, "give exactly one of 'record' and 'records'")
        rows = [body.record] if body.record is not None else list(body.records or [])
        if len(rows) > config.max_batch:
            raise _Denied(413, f"too many records in one request (at most {config.max_batch})")
        out = []
        for i, r in enumerate(rows):
            if isinstance(r, dict):
                if names is None:
                    raise _Denied(422, f"records[{i}]: this model takes records as lists of numbers")
                unknown = sorted(set(r) - set(names))
                missing = [n for n in names if n not in r]
                if unknown or missing:
                    what = f"unknown field {unknown[0]!r}" if unknown else f"missing field {missing[0]!r}"
                    raise _Denied(422, f"records[{i}]: {what}")
                out.append([r[n] for n in names])
            else:
                out.append(r)
        width = {len(r) for r in out}
        if len(width) != 1 or (n_features is not None and width != {n_features}):
            need = n_features if n_features is not None else "the same number of"
            raise _Denied(422, f"every record must have {need} numbers")
        if 0 in width:
            raise _Denied(422, "records must not be empty")
        return np.asarray(out, dtype=np.float64)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses={401: {"description": UNAUTHORISED}, 403: {"description": "Role may not predict"}, 413: {"description": "Batch too large"}, 429: {"description": "Budget or rate limit exhausted (Retry-After)"}},
    )
    def predict(body: PredictRequest, creds: Creds) -> JSONResponse:
        """Predict one record or a batch; the answer follows the caller's role's output policy.

        Costs one budget unit per record.
        """
        caller = allowed(creds, "predict")
        x = to_array(body)
        n = x.shape[0]
        policy = caller.role.policy
        key = caller.key
        if key.rate is not None and n > key.rate:  # could never pass: waiting would not help
            raise _Denied(413, f"more records in one request than this key's rate limit ({key.rate} per {key.window_s} s)")
        if key.budget is not None and key.used + n > key.budget:  # cheap early refusal; the UPDATE decides
            store.log_denied(key.key_id, endpoint="predict", n=n, policy=str(policy), status=429)
            raise _Denied(429, "record budget exhausted", {"Retry-After": str(86400)})
        try:
            probs = config.predictor.predict_proba(x)
        except UpstreamError:
            raise _Denied(502, "upstream prediction failed") from None
        with rng_lock:
            exposed = apply_policy(policy, probs, rng=rng)
        hashes = record_hashes(config.secret, x)
        charge = store.charge(key.key_id, n, endpoint="predict", policy=str(policy), hashes=hashes)
        if charge.request_id is None:
            if charge.denial == "revoked":
                raise _Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
            store.log_denied(key.key_id, endpoint="predict", n=n, policy=str(policy), status=429)
            detail = "record budget exhausted" if charge.denial == "budget" else "rate limit reached"
            raise _Denied(429, detail, {"Retry-After": str(charge.retry_after_s)})
        observe(key.key_id, x, hashes)
        labels = exposed.labels.tolist()
        if isinstance(exposed, ExposedLabels):
            preds: list[dict[str, Any]] = [{"label": int(lbl)} for lbl in labels]
        else:
            assert isinstance(exposed, ExposedScores)
            preds = [{"label": int(lbl), "scores": row} for lbl, row in zip(labels, exposed.values.tolist(), strict=True)]
        # Built here, in the shape of PredictResponse (the schema), without a second validation pass.
        return JSONResponse({"policy": str(policy), "predictions": preds})

    @app.get("/whoami", response_model=WhoAmI, responses={401: {"description": UNAUTHORISED}})
    def whoami(creds: Creds) -> dict[str, Any]:
        """The calling key's role, output policy and limits."""
        caller = authenticate(creds)
        k = caller.key
        return {
            "key_id": k.key_id, "role": k.role, "policy": str(caller.role.policy), "endpoints": sorted(caller.role.endpoints),
            "budget": k.budget, "used": k.used, "rate": k.rate, "window_s": k.window_s,
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness (no key needed; says nothing about the model)."""
        return {"status": "ok"}

    admin_responses: dict[int | str, dict[str, Any]] = {401: {"description": UNAUTHORISED}, 403: {"description": "Not an admin key"}}

    @app.post("/admin/keys", response_model=NewKeyOut, status_code=201, responses=admin_responses)
    def create_key(body: KeyCreate, creds: Creds) -> dict[str, Any]:
        """Create a key; its token is in this answer only."""
        allowed(creds, "admin")
        if body.role not in config.roles:
            raise _Denied(422, f"unknown role {body.role!r}; roles: {', '.join(sorted(config.roles))}")
        new = store.create_key(config.secret, body.role, budget=body.budget, rate=body.rate, window_s=body.window_s, label=body.label)
        info = store.get_key(new.key_id)
        assert info is not None
        return {**info.public(), "token": new.token}

    @app.get("/admin/keys", response_model=list[KeyOut], responses=admin_responses)
    def list_keys(creds: Creds) -> list[dict[str, Any]]:
        """Every key (ids, roles, limits and use; never tokens)."""
        allowed(creds, "admin")
        return [k.public() for k in store.list_keys()]

    @app.delete("/admin/keys/{key_id}", response_model=KeyOut, responses={**admin_responses, 404: {"description": "No such key"}})
    def revoke_key(key_id: str, creds: Creds) -> dict[str, Any]:
        """Revoke a key (it answers 401 from now on)."""
        allowed(creds, "admin")
        if not store.revoke_key(key_id):
            raise _Denied(404, "no such key")
        key_cache.pop(key_id, None)
        info = store.get_key(key_id)
        assert info is not None
        return info.public()

    @app.put("/admin/keys/{key_id}/limits", response_model=KeyOut, responses={**admin_responses, 404: {"description": "No such key"}})
    def set_limits(key_id: str, body: KeyLimits, creds: Creds) -> dict[str, Any]:
        """Replace a key's total record budget and rate limit (null = no cap)."""
        allowed(creds, "admin")
        if not store.set_limits(key_id, budget=body.budget, rate=body.rate, window_s=body.window_s):
            raise _Denied(404, "no such key")
        key_cache.pop(key_id, None)
        info = store.get_key(key_id)
        assert info is not None
        return info.public()

    @app.get("/admin/alerts", response_model=list[AlertOut], responses=admin_responses)
    def list_alerts(
        since_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        key_id: Annotated[str | None, Query(max_length=16)] = None,
        creds: Creds = None,
    ) -> list[dict[str, Any]]:
        """Alerts raised by the probing detectors, oldest first."""
        allowed(creds, "admin")
        return [a.public() for a in store.list_alerts(since_id=since_id, limit=limit, key_id=key_id)]

    @app.get("/admin/log", response_model=list[LogEntry], response_model_exclude_none=True, responses=admin_responses)
    def read_log(
        key_id: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        hashes: bool = False,
        creds: Creds = None,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (keyed record hashes on request)."""
        allowed(creds, "admin")
        return store.log_entries(key_id=key_id, limit=limit, with_hashes=hashes)

    return app


def _unguarded_app(config: ServeConfig) -> FastAPI:
    """The same model with nothing in front of it: the load benchmark's baseline."""
    app = FastAPI(title="miaudit unguarded model", version="1")
    n_features = config.predictor.n_features

    @app.post("/predict", response_model=RawPredictResponse)
    def predict(body: PredictRequest) -> dict[str, Any]:
        rows = [body.record] if body.record is not None else list(body.records or [])
        if not rows or any(isinstance(r, dict) for r in rows) or len(rows) > config.max_batch:
            raise HTTPException(422, "give 'record' or 'records' as lists of numbers")
        if len({len(r) for r in rows}) != 1 or (n_features is not None and len(rows[0]) != n_features):  # type: ignore[arg-type]
            raise HTTPException(422, "every record must have the model's number of features")
        return {"probabilities": config.predictor.predict_proba(np.asarray(rows, dtype=np.float64)).tolist()}

    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory for ``miaudit serve`` workers: the spec is in ``$MIAUDIT_SERVE_SPEC``."""
    import os

    from miaudit.serve._config import ServeSpec

    text = os.environ.get("MIAUDIT_SERVE_SPEC")
    if not text:
        raise InputError("MIAUDIT_SERVE_SPEC", "not set (start the service with `miaudit serve`)")
    return create_app(ServeSpec.from_json(text).build())
