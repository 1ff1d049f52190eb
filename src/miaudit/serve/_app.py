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
- 502 ``upstream prediction failed`` (proxy mode): logged with status 502 and the record count,
  not charged (the caller got no answer: the charge made before the model ran is given back).

A request's log entry and budget decrement are committed together before the model runs (so
that concurrent requests of one key cannot make it work past the key's limits), and the answer
is sent only after that commit and once its JSON is encoded. 401s leave no log row; they are
counted per client address and raise ``auth_failures`` and ``revoked_key`` alerts
(:mod:`~miaudit.serve._auth_watch`).

The key is checked before the body is read: an ASGI gate in front of the routes looks the key up
(one indexed read and one HMAC for every caller alike, known id or not: no key cache, whose hits
would tell which ids exist) and answers 401 without reading a byte of the body. Acts of an admin
key (creating, revoking, listing) run in one transaction with that key's locked row, so none
happens after the key's revocation commits, in any worker.

The parts: :mod:`~miaudit.serve._gate` (the key and the body cap, in front of every route),
:mod:`~miaudit.serve._routes` (one router per area, over dependencies),
:mod:`~miaudit.serve._service` (what each endpoint does, no HTTP) and
:mod:`~miaudit.serve._schemas` (the bodies); this module puts them together.
"""

import contextlib
import json
import os
from collections.abc import AsyncIterator
from typing import Any

import numpy as np
from fastapi import FastAPI, HTTPException
from fastapi.exceptions import RequestValidationError

from miaudit.errors import InputError
from miaudit.serve._config import ServeConfig, ServeSpec
from miaudit.serve._gate import Gate, separators
from miaudit.serve._routes import ROUTERS, StrictJSONRoute, denied, invalid_request
from miaudit.serve._schemas import PredictRequest, RawPredictResponse
from miaudit.serve._service import UNKNOWN_WIDTH, Denied, Service

# Body caps: a number in JSON takes at most 24 characters (repr of a float64) plus a separator and
# some whitespace; 32 bytes each leaves room. Records as objects add their field names.
BYTES_PER_NUMBER = 32
BYTES_PER_RECORD = 16
BODY_SLACK = 4096
SEPARATOR_SLACK = 64


def predict_body_cap(
    max_batch: int, n_features: int | None, feature_names: tuple[str, ...] | None
) -> int:
    """Most bytes a ``/predict`` body may hold: ``max_batch`` records of the model's width."""
    width = n_features if n_features is not None else UNKNOWN_WIDTH
    per_number = BYTES_PER_NUMBER + (
        max(len(json.dumps(n)) for n in feature_names) + 2 if feature_names else 0
    )
    return BODY_SLACK + max_batch * (width * per_number + BYTES_PER_RECORD)


def predict_separator_cap(
    max_batch: int, n_features: int | None, feature_names: tuple[str, ...] | None
) -> int:
    """Most separators (``,``, ``[`` and ``{``) a ``/predict`` body may hold: one per number and
    two per record, with those inside feature names. Parsing costs per value, not per byte: the
    byte cap is sized for numbers written out in full, and a body of ``[0],`` fitted 16 times
    the values in it (a red team's 4.6 MB of one-number records held a worker for 5 s)."""
    width = n_features if n_features is not None else UNKNOWN_WIDTH
    inside = max((separators(json.dumps(n).encode()) for n in feature_names or ()), default=0)
    return SEPARATOR_SLACK + max_batch * (width * (1 + inside) + 2)


def create_app(config: ServeConfig) -> FastAPI:
    """The service for ``config`` (see :class:`ServeConfig`).

    ``app.state`` holds ``service`` (the :class:`~miaudit.serve._service.Service`), ``store``,
    ``config``, ``monitor`` (a callable: the detectors' monitor or None) and
    ``flush_detectors`` (waits until the detectors have seen every answered request).

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
    service = Service.open(config)
    app = FastAPI(
        title="miaudit prediction service",
        version="1",
        description="Predictions behind API keys, per-role output policies, record budgets, an audit log and probing detectors.",
        lifespan=_closes_service,
    )
    app.state.service = service
    app.state.store = service.store
    app.state.config = config
    app.state.monitor = service.monitor
    app.state.flush_detectors = service.flush_detectors
    app.exception_handler(RequestValidationError)(invalid_request)
    app.exception_handler(Denied)(denied)
    predictor = config.predictor
    app.add_middleware(
        Gate,
        authenticate=service.authenticate,
        fast_read=service.key_reader(),  # SQLite: read on the event loop, no thread hop
        predict_cap=config.max_body_bytes
        or predict_body_cap(config.max_batch, predictor.n_features, predictor.feature_names),
        predict_values=predict_separator_cap(
            config.max_batch, predictor.n_features, predictor.feature_names
        ),
        refuse=service.refusal_before_body,
        log_refusal=service.log_refusal,
        on_unauthorised=service.unauthorised_alerts,
        raise_alerts=service.raise_alerts,
    )
    for router in ROUTERS:
        app.include_router(router)
    return app


@contextlib.asynccontextmanager
async def _closes_service(app: FastAPI) -> AsyncIterator[None]:
    yield
    app.state.service.close()


def _unguarded_app(config: ServeConfig) -> FastAPI:
    """The same model with nothing in front of it: the load benchmark's baseline."""
    app = FastAPI(title="miaudit unguarded model", version="1")
    app.router.route_class = StrictJSONRoute
    n_features = config.predictor.n_features

    @app.post("/predict", response_model=RawPredictResponse)
    def predict(body: PredictRequest) -> dict[str, Any]:
        rows = [body.record] if body.record is not None else list(body.records or [])
        if not rows or any(isinstance(r, dict) for r in rows) or len(rows) > config.max_batch:
            raise HTTPException(422, "give 'record' or 'records' as lists of numbers")
        if len({len(r) for r in rows}) != 1 or (
            n_features is not None and len(rows[0]) != n_features
        ):
            raise HTTPException(422, "every record must have the model's number of features")
        return {
            "probabilities": config.predictor.predict_proba(
                np.asarray(rows, dtype=np.float64)
            ).tolist()
        }

    return app


def app_from_env() -> FastAPI:
    """Uvicorn factory for ``miaudit serve`` workers: the spec is in ``$MIAUDIT_SERVE_SPEC``."""
    text = os.environ.get("MIAUDIT_SERVE_SPEC")
    if not text:
        raise InputError("MIAUDIT_SERVE_SPEC", "not set (start the service with `miaudit serve`)")
    return create_app(ServeSpec.from_json(text).build())
