"""The FastAPI application: ``/predict`` behind keys, roles, output policies, budgets, an audit
log and probing detectors.

Status codes (bodies never say more than shown here):

- 401 ``invalid or missing API key`` — no key, a malformed, unknown or revoked key: one answer
  for all, so that a caller learns nothing about which keys exist;
- 403 ``this key's role may not call this endpoint``;
- 413 ``too many records in one request`` (over ``max_batch``, or over the key's rate limit), or
  ``request body too large`` (over a byte cap derived from ``max_batch`` and the model's width:
  from ``Content-Length`` before any byte is read, else while the body streams in);
- 422 the caller's own request is malformed (it names the field of *their* request), decided
  from the input alone before the model runs: numbers must be finite, within float32's range,
  and as many per record as the model takes;
- 500 ``the model could not answer these records`` (non-finite output): charged and logged with
  status 500, since the records reached the model;
- 429 ``record budget exhausted`` or ``rate limit reached``, with ``Retry-After`` (seconds);
- 502 ``upstream prediction failed`` (proxy mode).

An answer is sent only after its log entry and budget decrement are committed together, and
only once its JSON is encoded, so that nothing is logged as 200 that the caller did not get.

The key is checked before the body is read: an ASGI gate in front of the routes looks the key up
(one indexed read and one HMAC for every caller alike, known id or not: no key cache, whose hits
would tell which ids exist) and answers 401 without reading a byte of the body. Acts of an admin
key (creating, revoking, listing) run in one transaction with that key's locked row, so none
happens after the key's revocation commits, in any worker.
"""

import contextlib
import json
import logging
import threading
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from dataclasses import dataclass
from typing import Annotated, Any

import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import BaseModel, ConfigDict, Field

from miaudit.defenses import ExposedLabels, ExposedScores, apply_policy
from miaudit.errors import InputError
from miaudit.serve._config import Role, ServeConfig
from miaudit.serve._keys import digests_match, key_digest, parse_token, record_hashes
from miaudit.serve._monitor import Observer, Webhook
from miaudit.serve._predictor import UpstreamError
from miaudit.serve._store import KeyInfo, KeyRevoked, Store

FiniteFloat = Annotated[float, Field(allow_inf_nan=False)]
RecordIn = list[FiniteFloat] | dict[str, FiniteFloat]
_DUMMY_DIGEST = "0" * 64
_NO_ID = "-" * 16  # looked up for malformed tokens: no id has this form, the read costs the same
log = logging.getLogger("miaudit.serve")
UNAUTHORISED = "invalid or missing API key"
# A 401 is sent no sooner than this after the key check starts: the check does the same work for
# every token (one indexed read, one HMAC), but a row that exists costs the database a few more
# microseconds to fetch than one that does not; a floor well above the check's own time hides it.
UNAUTHORISED_FLOOR_S = 0.002
FLOAT32_MAX = float(np.finfo(np.float32).max)
# Body caps: a number in JSON takes at most 24 characters (repr of a float64) plus a separator and
# some whitespace; 32 bytes each leaves room. Records as objects add their field names.
BYTES_PER_NUMBER = 32
BYTES_PER_RECORD = 16
BODY_SLACK = 4096
SMALL_BODY = 64 * 1024  # admin endpoints: a key's limits and label
UNKNOWN_WIDTH = 1024  # an upstream whose width is not given
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]


def predict_body_cap(
    max_batch: int, n_features: int | None, feature_names: tuple[str, ...] | None
) -> int:
    """Most bytes a ``/predict`` body may hold: ``max_batch`` records of the model's width."""
    width = n_features if n_features is not None else UNKNOWN_WIDTH
    per_number = BYTES_PER_NUMBER + (
        max(len(json.dumps(n)) for n in feature_names) + 2 if feature_names else 0
    )
    return BODY_SLACK + max_batch * (width * per_number + BYTES_PER_RECORD)


class PredictRequest(BaseModel):
    """One record (``record``) or a batch (``records``): lists of numbers, or objects keyed by
    feature name when the model knows its feature names."""

    model_config = ConfigDict(extra="forbid")
    record: RecordIn | None = None
    records: list[RecordIn] | None = Field(default=None, min_length=1)


class Prediction(BaseModel):
    label: int = Field(description="Predicted class index.")
    scores: list[float] | None = Field(
        default=None,
        description="Per-class scores after the output policy; absent under label-only.",
    )


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
    >>> cfg = ServeConfig(
    ...     predictor=EstimatorPredictor(est), db="sqlite:///guard.db", secret=b"s" * 32
    ... )  # doctest: +SKIP
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
        errors = [
            {
                "loc": [str(p) for p in e.get("loc", ())],
                "msg": str(e.get("msg", "")),
                "type": str(e.get("type", "")),
            }
            for e in exc.errors()
        ]
        return JSONResponse({"detail": errors}, status_code=422)

    @app.exception_handler(_Denied)
    async def _denied(_req: Request, exc: _Denied) -> JSONResponse:
        return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)

    Creds = Annotated[
        HTTPAuthorizationCredentials | None, Depends(bearer)
    ]  # documents the scheme; the gate checks it

    fast_read = store.key_reader()  # SQLite: read on the event loop, no thread hop

    def authenticate(
        token: str, read: Callable[[str], tuple[KeyInfo, str] | None] = store.key_row
    ) -> Caller:
        """The caller of ``token``: the same work (one read, one HMAC) whether its id exists or not."""
        key_id = parse_token(token)
        row = read(key_id or _NO_ID)
        stored = row[1] if row is not None else _DUMMY_DIGEST
        same = digests_match(key_digest(config.secret, token), stored)
        if row is None or not same or row[0].revoked_at is not None:
            raise _Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
        info = row[0]
        role = config.roles.get(info.role)
        if role is None:
            raise _Denied(403, "this key's role may not call this endpoint")
        return Caller(info, role)

    predict_cap = config.max_body_bytes or predict_body_cap(config.max_batch, n_features, names)
    app.add_middleware(
        _Gate,
        authenticate=authenticate,
        fast_read=fast_read,
        cap=lambda path: predict_cap if path == "/predict" else SMALL_BODY,
    )

    def allowed(request: Request, endpoint: str) -> Caller:
        caller: Caller = request.scope[_CALLER]
        if endpoint not in caller.role.endpoints:
            if endpoint == "predict":
                store.log_denied(
                    caller.key.key_id,
                    endpoint=endpoint,
                    n=0,
                    policy=str(caller.role.policy),
                    status=403,
                )
            raise _Denied(403, "this key's role may not call this endpoint")
        return caller

    @contextlib.contextmanager
    def acting() -> Any:
        try:
            yield
        except KeyRevoked:
            raise _Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"}) from None

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
                    raise _Denied(
                        422, f"records[{i}]: this model takes records as lists of numbers"
                    )
                unknown = sorted(set(r) - set(names))
                missing = [n for n in names if n not in r]
                if unknown or missing:
                    what = (
                        f"unknown field {unknown[0]!r}"
                        if unknown
                        else f"missing field {missing[0]!r}"
                    )
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
        x = np.asarray(out, dtype=np.float64)
        big = np.flatnonzero(np.abs(x).max(axis=1) > FLOAT32_MAX)
        if big.size:
            raise _Denied(
                422,
                f"records[{int(big[0])}]: numbers must lie within float32's range (±{FLOAT32_MAX:.4g})",
            )
        return x

    @app.post(
        "/predict",
        response_model=PredictResponse,
        response_model_exclude_none=True,
        responses={
            401: {"description": UNAUTHORISED},
            403: {"description": "Role may not predict"},
            413: {"description": "Batch too large"},
            429: {"description": "Budget or rate limit exhausted (Retry-After)"},
        },
    )
    def predict(body: PredictRequest, request: Request, _creds: Creds) -> Response:
        """Predict one record or a batch; the answer follows the caller's role's output policy.

        Costs one budget unit per record.
        """
        caller = allowed(request, "predict")
        x = to_array(body)  # every 422 is decided here, from the input alone, before the model runs
        n = x.shape[0]
        policy = caller.role.policy
        key = caller.key
        if key.rate is not None and n > key.rate:  # could never pass: waiting would not help
            raise _Denied(
                413,
                f"more records in one request than this key's rate limit ({key.rate} per {key.window_s} s)",
            )
        if (
            key.budget is not None and key.used + n > key.budget
        ):  # cheap early refusal; the UPDATE decides
            store.log_denied(key.key_id, endpoint="predict", n=n, policy=str(policy), status=429)
            raise _Denied(429, "record budget exhausted", {"Retry-After": str(86400)})
        try:
            probs: np.ndarray | None = config.predictor.predict_proba(x)
        except UpstreamError:
            raise _Denied(502, "upstream prediction failed") from None
        except Exception:
            log.exception("the model failed on a request of %d records", n)
            probs = None
        content = (
            None if probs is None else answer(policy, probs, n)
        )  # None: the model gave no usable answer for these records
        hashes = record_hashes(config.secret, x)
        status = 200 if content is not None else 500
        charge = store.charge(
            key.key_id, n, endpoint="predict", policy=str(policy), hashes=hashes, status=status
        )
        if charge.request_id is None:
            if charge.denial == "revoked":
                raise _Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
            store.log_denied(key.key_id, endpoint="predict", n=n, policy=str(policy), status=429)
            detail = (
                "record budget exhausted" if charge.denial == "budget" else "rate limit reached"
            )
            raise _Denied(429, detail, {"Retry-After": str(charge.retry_after_s)})
        if content is None:
            raise _Denied(500, "the model could not answer these records")
        observe(key.key_id, x, hashes)
        return Response(content, media_type="application/json")

    def answer(policy: Any, probs: np.ndarray, n: int) -> bytes | None:
        """The encoded answer, or None when the model's output is not n finite probability rows
        (overflow, NaN): a label or score derived from it would be meaningless."""
        probs = np.asarray(probs)
        if (
            probs.ndim != 2
            or probs.shape[0] != n
            or probs.shape[1] < 1
            or not np.isfinite(probs).all()
        ):
            return None
        with rng_lock:
            exposed = apply_policy(policy, probs, rng=rng)
        labels = exposed.labels.tolist()
        if isinstance(exposed, ExposedLabels):
            preds: list[dict[str, Any]] = [{"label": int(lbl)} for lbl in labels]
        else:
            assert isinstance(exposed, ExposedScores)
            preds = [
                {"label": int(lbl), "scores": row}
                for lbl, row in zip(labels, exposed.values.tolist(), strict=True)
            ]
        # Built here, in the shape of PredictResponse (the schema), without a second validation pass.
        try:
            return json.dumps(
                {"policy": str(policy), "predictions": preds},
                allow_nan=False,
                separators=(",", ":"),
            ).encode()
        except ValueError:
            return None

    @app.get("/whoami", response_model=WhoAmI, responses={401: {"description": UNAUTHORISED}})
    def whoami(request: Request, _creds: Creds) -> dict[str, Any]:
        """The calling key's role, output policy and limits."""
        caller: Caller = request.scope[_CALLER]
        k = caller.key
        return {
            "key_id": k.key_id,
            "role": k.role,
            "policy": str(caller.role.policy),
            "endpoints": sorted(caller.role.endpoints),
            "budget": k.budget,
            "used": k.used,
            "rate": k.rate,
            "window_s": k.window_s,
        }

    @app.get("/health")
    def health() -> dict[str, str]:
        """Liveness (no key needed; says nothing about the model)."""
        return {"status": "ok"}

    admin_responses: dict[int | str, dict[str, Any]] = {
        401: {"description": UNAUTHORISED},
        403: {"description": "Not an admin key"},
    }

    @app.post("/admin/keys", response_model=NewKeyOut, status_code=201, responses=admin_responses)
    def create_key(body: KeyCreate, request: Request, _creds: Creds) -> dict[str, Any]:
        """Create a key; its token is in this answer only."""
        me = allowed(request, "admin").key.key_id
        if body.role not in config.roles:
            raise _Denied(
                422, f"unknown role {body.role!r}; roles: {', '.join(sorted(config.roles))}"
            )
        with acting():
            new = store.create_key(
                config.secret,
                body.role,
                budget=body.budget,
                rate=body.rate,
                window_s=body.window_s,
                label=body.label,
                actor=me,
            )
        info = store.get_key(new.key_id)
        assert info is not None
        return {**info.public(), "token": new.token}

    @app.get("/admin/keys", response_model=list[KeyOut], responses=admin_responses)
    def list_keys(request: Request, _creds: Creds) -> list[dict[str, Any]]:
        """Every key (ids, roles, limits and use; never tokens)."""
        me = allowed(request, "admin").key.key_id
        with acting():
            return [k.public() for k in store.list_keys(actor=me)]

    @app.delete(
        "/admin/keys/{key_id}",
        response_model=KeyOut,
        responses={**admin_responses, 404: {"description": "No such key"}},
    )
    def revoke_key(key_id: str, request: Request, _creds: Creds) -> dict[str, Any]:
        """Revoke a key (it answers 401 from now on, in every worker)."""
        me = allowed(request, "admin").key.key_id
        with acting():
            if not store.revoke_key(key_id, actor=me):
                raise _Denied(404, "no such key")
        info = store.get_key(key_id)
        assert info is not None
        return info.public()

    @app.put(
        "/admin/keys/{key_id}/limits",
        response_model=KeyOut,
        responses={**admin_responses, 404: {"description": "No such key"}},
    )
    def set_limits(key_id: str, body: KeyLimits, request: Request, _creds: Creds) -> dict[str, Any]:
        """Replace a key's total record budget and rate limit (null = no cap)."""
        me = allowed(request, "admin").key.key_id
        with acting():
            if not store.set_limits(
                key_id, budget=body.budget, rate=body.rate, window_s=body.window_s, actor=me
            ):
                raise _Denied(404, "no such key")
        info = store.get_key(key_id)
        assert info is not None
        return info.public()

    @app.get("/admin/alerts", response_model=list[AlertOut], responses=admin_responses)
    def list_alerts(
        request: Request,
        since_id: Annotated[int, Query(ge=0, le=2**62)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        key_id: Annotated[str | None, Query(max_length=16)] = None,
        _creds: Creds = None,
    ) -> list[dict[str, Any]]:
        """Alerts raised by the probing detectors, oldest first."""
        me = allowed(request, "admin").key.key_id
        with acting():
            return [
                a.public()
                for a in store.list_alerts(since_id=since_id, limit=limit, key_id=key_id, actor=me)
            ]

    @app.get(
        "/admin/log",
        response_model=list[LogEntry],
        response_model_exclude_none=True,
        responses=admin_responses,
    )
    def read_log(
        request: Request,
        key_id: Annotated[str | None, Query(max_length=16)] = None,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        hashes: bool = False,
        _creds: Creds = None,
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (keyed record hashes on request)."""
        me = allowed(request, "admin").key.key_id
        with acting():
            return store.log_entries(key_id=key_id, limit=limit, with_hashes=hashes, actor=me)

    return app


_CALLER = "miaudit.caller"
_GUARDED = ("/predict", "/whoami", "/admin")


def _plain(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    # The body may be unread: the connection cannot carry another request after this answer.
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"}
    )


class _Gate:
    """ASGI gate in front of the guarded routes: the key first, then the body within its cap.

    Order: the key (401/403, no byte of the body read), ``Content-Length`` over the cap (413,
    nothing read), then the body read in full while counting (413 as soon as it passes the cap);
    only then does the route parse it. The caller goes to the route in ``scope["miaudit.caller"]``.
    """

    def __init__(
        self,
        app: Any,
        *,
        authenticate: Callable[..., Caller],
        fast_read: Callable[[str], Any] | None,
        cap: Callable[[str], int],
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.fast_read = fast_read
        self.cap = cap
        self._pad_limiter: Any = None

    async def _pad(self, started: float) -> None:
        """Wait until ``UNAUTHORISED_FLOOR_S`` after ``started``. In a thread with ``time.sleep``
        (nanosleep): the event loop's own timers wait in whole milliseconds counted from *now*,
        which would keep the sub-millisecond part of the work's time, the part that differs.
        Own threads: a flood of bad keys waits here, not in the pool that answers good ones."""
        import anyio.to_thread

        remaining = started + UNAUTHORISED_FLOOR_S - time.perf_counter()
        if remaining > 0:
            if self._pad_limiter is None:
                self._pad_limiter = anyio.CapacityLimiter(8)
            await anyio.to_thread.run_sync(time.sleep, remaining, limiter=self._pad_limiter)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path in _GUARDED or path.startswith("/admin/")):
            await self.app(scope, receive, send)
            return
        import anyio.to_thread

        headers = {k.lower(): v for k, v in scope.get("headers", [])}
        auth = headers.get(b"authorization", b"").decode("latin-1")
        scheme, _, token = auth.partition(" ")
        token = token.strip() if scheme.lower() == "bearer" else ""
        started = time.perf_counter()
        try:
            if self.fast_read is not None:
                caller = self.authenticate(token, self.fast_read)
            else:
                caller = await anyio.to_thread.run_sync(self.authenticate, token)
        except _Denied as exc:
            if (
                exc.status == 401
            ):  # the same time for every refused key, whatever the database had to do
                await self._pad(started)
            await _plain(exc.status, exc.detail, exc.headers)(scope, receive, send)
            return
        cap = self.cap(path)
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > cap):
            await _plain(413, f"request body too large (at most {cap} bytes)")(scope, receive, send)
            return
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > cap:
                await _plain(413, f"request body too large (at most {cap} bytes)")(
                    scope, receive, send
                )
                return
        scope[_CALLER] = caller
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _unguarded_app(config: ServeConfig) -> FastAPI:
    """The same model with nothing in front of it: the load benchmark's baseline."""
    app = FastAPI(title="miaudit unguarded model", version="1")
    n_features = config.predictor.n_features

    @app.post("/predict", response_model=RawPredictResponse)
    def predict(body: PredictRequest) -> dict[str, Any]:
        rows = [body.record] if body.record is not None else list(body.records or [])
        if not rows or any(isinstance(r, dict) for r in rows) or len(rows) > config.max_batch:
            raise HTTPException(422, "give 'record' or 'records' as lists of numbers")
        if len({len(r) for r in rows}) != 1 or (
            n_features is not None and len(rows[0]) != n_features
        ):  # type: ignore[arg-type]
            raise HTTPException(422, "every record must have the model's number of features")
        return {
            "probabilities": config.predictor.predict_proba(
                np.asarray(rows, dtype=np.float64)
            ).tolist()
        }

    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory for ``miaudit serve`` workers: the spec is in ``$MIAUDIT_SERVE_SPEC``."""
    import os

    from miaudit.serve._config import ServeSpec

    text = os.environ.get("MIAUDIT_SERVE_SPEC")
    if not text:
        raise InputError("MIAUDIT_SERVE_SPEC", "not set (start the service with `miaudit serve`)")
    return create_app(ServeSpec.from_json(text).build())
