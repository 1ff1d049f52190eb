"""An HTTP client of the service that is an :class:`miaudit.attacks.Oracle`.

The label-only attacks (and any other query attack) run unchanged against a served model::

    oracle = HttpOracle("http://127.0.0.1:8000", token)
    noise_robustness_attack(oracle, x, y, sigma=0.5, rng=0)

It sends records in batches to ``/predict``, rebuilds what the key's output policy lets out
(:class:`~miaudit.defenses.ExposedLabels` under label-only, else
:class:`~miaudit.defenses.ExposedScores`) and counts queries per record like
:class:`~miaudit.attacks.LocalOracle`.
"""

from __future__ import annotations

from typing import Any, Self

import httpx
import numpy as np

from miaudit.attacks import CountingOracle, QueryCounter
from miaudit.defenses import (
    Exposed,
    ExposedLabels,
    ExposedScores,
    concat_exposed,
    parse_policy,
)
from miaudit.errors import InputError, MiauditError


class _PortalTransport(httpx.BaseTransport):
    """A sync transport onto an ASGI app, through an anyio blocking portal (in process)."""

    def __init__(self, app: Any) -> None:
        import anyio.from_thread

        self._inner = httpx.ASGITransport(app=app)
        self._cm = anyio.from_thread.start_blocking_portal()
        self._portal = self._cm.__enter__()

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        async def go() -> tuple[int, list[tuple[bytes, bytes]], bytes]:
            req = httpx.Request(
                request.method, request.url, headers=request.headers, content=request.read()
            )
            resp = await self._inner.handle_async_request(req)
            body = b"".join([chunk async for chunk in resp.stream])  # type: ignore[union-attr]
            return resp.status_code, resp.headers.raw, body

        status, headers, body = self._portal.call(go)
        return httpx.Response(status, headers=headers, content=body, request=request)

    def close(self) -> None:
        self._cm.__exit__(None, None, None)


def asgi_client(app: Any, base_url: str = "http://miaudit.local") -> httpx.Client:
    """A synchronous httpx client that calls ``app`` in process (no network, no lifespan)."""
    return httpx.Client(transport=_PortalTransport(app), base_url=base_url)


class ServiceError(MiauditError):
    """The service refused or failed a request; ``status`` is its HTTP status."""

    def __init__(self, status: int, detail: str, retry_after: float | None = None) -> None:
        self.status = status
        self.detail = detail
        self.retry_after = retry_after
        super().__init__(f"HTTP {status}: {detail}")


class HttpOracle(CountingOracle):
    """A served model behind its key's output policy, as an Oracle.

    Parameters
    ----------
    base_url : str
        The service, e.g. ``http://127.0.0.1:8000``.
    token : str
        An API key whose role may call ``/predict``.
    batch_size : int
        Records per request (at most the service's ``max_batch``).
    client : httpx.Client, optional
        A ready client, used as it is (e.g. ``fastapi.testclient.TestClient(app)`` in process).
    timeout : float
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        batch_size: int = 1000,
        client: httpx.Client | None = None,
        timeout: float = 30.0,
    ) -> None:
        if batch_size < 1:
            raise InputError("batch_size", f"must be ≥ 1, got {batch_size}")
        self._client = client or httpx.Client(base_url=base_url, timeout=timeout)
        self._owns = client is None
        self._headers = {"Authorization": f"Bearer {token}"}
        self._batch = int(batch_size)
        self._counter = QueryCounter()
        me = self._call("GET", "/whoami")
        self._policy = parse_policy(me["policy"], field="policy")
        self.key_id: str = me["key_id"]

    def query(self, records: np.ndarray, *, tags: np.ndarray | None = None) -> Exposed:
        x = np.asarray(records, dtype=np.float64)
        if x.ndim < 1 or x.shape[0] == 0:
            raise InputError("records", f"need at least one record, got shape {x.shape}")
        x = x.reshape(x.shape[0], -1)
        parts: list[Exposed] = []
        for start in range(0, x.shape[0], self._batch):
            chunk = x[start : start + self._batch]
            body = self._call("POST", "/predict", json={"records": chunk.tolist()})
            # Counted once answered: a refused request (429) cost nothing.
            self._counter.add(
                chunk.shape[0],
                None if tags is None else np.asarray(tags)[start : start + self._batch],
            )
            preds = body["predictions"]
            labels = np.asarray([p["label"] for p in preds], dtype=np.int64)
            if any("scores" in p for p in preds):
                values = np.asarray([p["scores"] for p in preds], dtype=np.float64)
                parts.append(ExposedScores(values=values, labels=labels, policy=self._policy))
            else:
                parts.append(ExposedLabels(labels=labels, policy=self._policy))  # type: ignore[arg-type]
        return parts[0] if len(parts) == 1 else concat_exposed(parts)

    def _call(self, method: str, path: str, **kw: Any) -> Any:
        resp = self._client.request(method, path, headers=self._headers, **kw)
        if resp.status_code >= 400:
            try:
                detail = str(resp.json().get("detail"))
            except ValueError:
                detail = resp.text[:200]
            ra = resp.headers.get("Retry-After")
            raise ServiceError(resp.status_code, detail, float(ra) if ra else None)
        return resp.json()

    def close(self) -> None:
        if self._owns:
            self._client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
