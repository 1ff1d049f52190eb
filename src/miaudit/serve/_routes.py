"""The guarded service's HTTP routes, one router per area, each route a thin call of
:class:`~miaudit.serve._service.Service`.

The service and the caller come in through dependencies (:func:`get_service`,
:func:`get_caller`), so that a router can be mounted and tested on its own with
``app.dependency_overrides``. The role check runs inside the service method, after FastAPI has
validated the request: a malformed request is a 422 whatever the key's role.
"""

import json
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.routing import APIRoute
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from miaudit.serve._gate import CALLER
from miaudit.serve._schemas import (
    ActOut,
    AlertOut,
    KeyCreate,
    KeyLimits,
    KeyOut,
    LogEntry,
    NewKeyOut,
    PredictRequest,
    PredictResponse,
    WhoAmI,
)
from miaudit.serve._service import UNAUTHORISED, Caller, Denied, Service, unauthorised
from miaudit.serve._store import MAX_ALERT_ID

# Long enough to recognise a field, short enough that an error never echoes a body back.
KEY_SHOWN = 64


def _unique_keys(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    """An object's members, refusing a repeated name: JSON leaves duplicates open and Python
    keeps the last, so ``{"records": [r], "records": [r, r]}`` was answered and charged for two
    records while a proxy that reads the first saw one."""
    obj = dict(pairs)
    if len(obj) != len(pairs):
        seen: set[str] = set()
        for name, _ in pairs:  # linear: a crafted object may hold many names
            if name in seen:
                raise json.JSONDecodeError(f"duplicate key {name[:KEY_SHOWN]!r}", "", 0)
            seen.add(name)
    return obj


class _StrictJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = json.loads(await self.body(), object_pairs_hook=_unique_keys)
        return self._json


class StrictJSONRoute(APIRoute):
    """A route whose JSON body refuses duplicate member names (422, naming the name)."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def strict(request: Request) -> Response:
            return await handler(_StrictJSONRequest(request.scope, request.receive))

        return strict


bearer = HTTPBearer(auto_error=False, description="API key: mia_<id>_<secret>")


async def get_service(request: Request) -> Service:
    """The app's :class:`Service` (``app.state.service``)."""
    service: Service = request.app.state.service
    return service


async def get_caller(
    request: Request,
    # Declares the bearer scheme in the OpenAPI document; the gate has already checked the key.
    _creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> Caller:
    """The key the gate authenticated; 401 if the request did not come through the gate."""
    caller: Caller | None = request.scope.get(CALLER)
    if caller is None:
        raise unauthorised()
    return caller


ServiceDep = Annotated[Service, Depends(get_service)]
CallerDep = Annotated[Caller, Depends(get_caller)]
ADMIN_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": UNAUTHORISED},
    403: {"description": "Not an admin key"},
}
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"description": "No such key"}}


# --- predictions: what a key's holder calls ------------------------------------------------------

predictions = APIRouter(route_class=StrictJSONRoute)


@predictions.post(
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
def predict(body: PredictRequest, service: ServiceDep, caller: CallerDep) -> Response:
    """Predict one record or a batch; the answer follows the caller's role's output policy.

    Costs one budget unit per record.
    """
    return Response(service.predict(caller, body), media_type="application/json")


@predictions.get("/whoami", response_model=WhoAmI, responses={401: {"description": UNAUTHORISED}})
def whoami(caller: CallerDep) -> dict[str, Any]:
    """The calling key's role, output policy and limits."""
    return Service.whoami(caller)


# --- health --------------------------------------------------------------------------------------

health_router = APIRouter(route_class=StrictJSONRoute)


@health_router.get("/health")
def health() -> dict[str, str]:
    """Liveness (no key needed; says nothing about the model)."""
    return {"status": "ok"}


# --- keys: an admin's acts on keys ---------------------------------------------------------------

keys = APIRouter(route_class=StrictJSONRoute)


@keys.post("/admin/keys", response_model=NewKeyOut, status_code=201, responses=ADMIN_RESPONSES)
def create_key(body: KeyCreate, service: ServiceDep, caller: CallerDep) -> dict[str, Any]:
    """Create a key; its token is in this answer only."""
    return service.create_key(caller, body)


@keys.get("/admin/keys", response_model=list[KeyOut], responses=ADMIN_RESPONSES)
def list_keys(service: ServiceDep, caller: CallerDep) -> list[dict[str, Any]]:
    """Every key (ids, roles, limits and use; never tokens)."""
    return service.list_keys(caller)


@keys.delete(
    "/admin/keys/{key_id}", response_model=KeyOut, responses={**ADMIN_RESPONSES, **NOT_FOUND}
)
def revoke_key(key_id: str, service: ServiceDep, caller: CallerDep) -> dict[str, Any]:
    """Revoke a key (it answers 401 from now on, in every worker)."""
    return service.revoke_key(caller, key_id)


@keys.put(
    "/admin/keys/{key_id}/limits",
    response_model=KeyOut,
    responses={**ADMIN_RESPONSES, **NOT_FOUND},
)
def set_limits(
    key_id: str, body: KeyLimits, service: ServiceDep, caller: CallerDep
) -> dict[str, Any]:
    """Change a key's total record budget, rate and rate window: a field given replaces the
    key's (null budget or rate: no cap), a field left out keeps its current value."""
    return service.set_limits(caller, key_id, body)


# --- alerts and the audit log: what an admin reads -----------------------------------------------

alerts = APIRouter(route_class=StrictJSONRoute)


@alerts.get("/admin/alerts", response_model=list[AlertOut], responses=ADMIN_RESPONSES)
def list_alerts(
    service: ServiceDep,
    caller: CallerDep,
    since_id: Annotated[int, Query(ge=0, le=MAX_ALERT_ID)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    key_id: Annotated[str | None, Query(max_length=16)] = None,
) -> list[dict[str, Any]]:
    """Alerts raised by the probing detectors, oldest first."""
    return service.list_alerts(caller, since_id=since_id, limit=limit, key_id=key_id)


@alerts.get(
    "/admin/log",
    response_model=list[LogEntry],
    response_model_exclude_none=True,
    responses=ADMIN_RESPONSES,
)
def read_log(
    service: ServiceDep,
    caller: CallerDep,
    key_id: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    hashes: bool = False,
) -> list[dict[str, Any]]:
    """The audit log, newest first (keyed record hashes on request)."""
    return service.read_log(caller, key_id=key_id, limit=limit, hashes=hashes)


@alerts.get("/admin/acts", response_model=list[ActOut], responses=ADMIN_RESPONSES)
def read_acts(
    service: ServiceDep,
    caller: CallerDep,
    actor: Annotated[str | None, Query(max_length=16)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[dict[str, Any]]:
    """What admin keys (and the command line, actor null) did, newest first: keys created,
    limits set, keys revoked, the log, alerts and these acts read."""
    return service.read_acts(caller, actor=actor, limit=limit)


#: In the order of the OpenAPI document.
ROUTERS = (predictions, health_router, keys, alerts)


# --- errors --------------------------------------------------------------------------------------


async def invalid_request(_req: Request, exc: RequestValidationError) -> JSONResponse:
    """422 naming each field and problem; never echoing the input back (it may not even be
    JSON: NaN)."""
    errors = [
        {
            "loc": [str(p) for p in e.get("loc", ())],
            "msg": _message(e),
            "type": str(e.get("type", "")),
        }
        for e in exc.errors()
    ]
    return JSONResponse({"detail": errors}, status_code=422)


def _message(error: Any) -> str:
    """The error's message; a body that is not JSON also says why (json's own words, or the
    duplicated name), never the body itself."""
    msg = str(error.get("msg", ""))
    why = (error.get("ctx") or {}).get("error")
    return f"{msg}: {why}" if error.get("type") == "json_invalid" and why else msg


async def denied(_req: Request, exc: Denied) -> JSONResponse:
    """A :class:`Denied` as its status, ``{"detail": …}`` and headers."""
    return JSONResponse({"detail": exc.detail}, status_code=exc.status, headers=exc.headers)
