"""The ASGI gate in front of the guarded routes: the key first, then the body within its cap.

The key is checked before the body is read: the gate looks the key up (one indexed read and one
HMAC for every caller alike, known id or not: no key cache, whose hits would tell which ids
exist) and answers 401 without reading a byte of the body.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from typing import Any

from fastapi.responses import JSONResponse, Response

from miaudit.serve._service import Caller, Denied, KeyReader

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

#: Where the gate leaves the authenticated :class:`~miaudit.serve._service.Caller` for the route.
CALLER = "miaudit.caller"
GUARDED = ("/predict", "/whoami", "/admin")
# A 401 is sent no sooner than this after the key check starts: the check does the same work for
# every token (one indexed read, one HMAC), but a row that exists costs the database a few more
# microseconds to fetch than one that does not; a floor well above the check's own time hides it.
UNAUTHORISED_FLOOR_S = 0.002
SMALL_BODY = 64 * 1024  # admin endpoints: a key's limits and label


def _plain(status: int, detail: str, headers: dict[str, str] | None = None) -> Response:
    # The body may be unread: the connection cannot carry another request after this answer.
    return JSONResponse(
        {"detail": detail}, status_code=status, headers={**(headers or {}), "Connection": "close"}
    )


def _too_large(cap: int) -> Response:
    return _plain(413, f"request body too large (at most {cap} bytes)")


def separators(body: bytes | bytearray) -> int:
    """The ``,``, ``[`` and ``{`` in a JSON body: one per value and two per record, at most
    (what its parse costs, which its bytes do not bound)."""
    return body.count(b",") + body.count(b"[") + body.count(b"{")


def header_map(scope: Scope) -> dict[bytes, bytes]:
    """The request's headers by lower-case name (the last of repeated ones)."""
    return {k.lower(): v for k, v in scope.get("headers", [])}


def _one_key(scope: Scope) -> bool:
    """At most one ``Authorization`` header (a proxy in front may have checked the first)."""
    headers: list[tuple[bytes, bytes]] = scope.get("headers", [])
    return sum(k.lower() == b"authorization" for k, _ in headers) <= 1


def bearer_token(headers: dict[bytes, bytes]) -> str:
    """The token of an ``Authorization: Bearer …`` header; empty if there is none.

    Examples
    --------
    >>> bearer_token({b"authorization": b"bearer  mia_x_y "}), bearer_token({})
    ('mia_x_y', '')
    """
    auth = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = auth.partition(" ")
    return token.strip() if scheme.lower() == "bearer" else ""


def client_address(scope: Scope) -> str:
    """The client's IP address as the server's socket saw it, or "-" (a Unix socket, a test
    client, anything that is not an address: never more than an IP literal's length).

    Examples
    --------
    >>> client_address({"client": ("203.0.113.7", 5000)}), client_address({"client": ("<img>", 1)})
    ('203.0.113.7', '-')
    """
    import ipaddress

    client = scope.get("client")
    try:
        return str(ipaddress.ip_address(str(client[0])[:64])) if client else "-"
    except ValueError:
        return "-"


class Gate:
    """ASGI middleware: authenticates guarded requests and caps their bodies.

    Order: the key (401/403, no byte of the body read; two ``Authorization`` headers are no
    key, whichever a proxy in front read), what the key alone refuses (``refuse``: a role
    without the endpoint, a spent budget or rate window: 403/429, nothing read),
    ``Content-Length`` over the cap (413, nothing read), then the body read in full while
    counting (413 as soon as it passes the cap), then a ``/predict`` body's separators counted
    (413 past ``predict_values``: parsing costs per value); only then does the route parse it.
    The caller goes to the route in ``scope["miaudit.caller"]``.

    Parameters
    ----------
    app : ASGI app
    authenticate : callable
        ``(token, read=None) -> Caller``, raising :class:`Denied` (blocking: it reads the key).
    fast_read : callable, optional
        A key lookup cheap enough for the event loop (SQLite); None runs ``authenticate`` in a
        worker thread.
    predict_cap : int
        Most bytes of a ``/predict`` body; other guarded bodies get ``SMALL_BODY``.
    predict_values : int, optional
        Most separators (:func:`separators`) a ``/predict`` body may hold: counted in its bytes
        at C speed, before any parse.
    refuse : callable, optional
        ``(caller, path) -> Denied | None``: what the key alone refuses before the body is read
        (no I/O: on the event loop); ``log_refusal(caller, denied)`` then logs it (in a thread).
    on_unauthorised, raise_alerts : callable, optional
        ``(client address, denied) -> alerts`` counts each 401 (no I/O: on the event loop);
        ``raise_alerts(alerts)`` stores those it returns (in a thread).
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        authenticate: Callable[..., Caller],
        fast_read: KeyReader | None,
        predict_cap: int,
        predict_values: int | None = None,
        refuse: Callable[[Caller, str], Denied | None] | None = None,
        log_refusal: Callable[[Caller, Denied], None] | None = None,
        on_unauthorised: Callable[[str, Denied], Sequence[Any]] | None = None,
        raise_alerts: Callable[[Sequence[Any]], None] | None = None,
    ) -> None:
        self.app = app
        self.authenticate = authenticate
        self.fast_read = fast_read
        self.predict_cap = predict_cap
        self.predict_values = predict_values
        self.refuse = refuse
        self.log_refusal = log_refusal
        self.on_unauthorised = on_unauthorised if raise_alerts is not None else None
        self.raise_alerts = raise_alerts
        self._pad_limiter: Any = None

    def cap(self, path: str) -> int:
        return self.predict_cap if path == "/predict" else SMALL_BODY

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "")
        if scope["type"] != "http" or not (path in GUARDED or path.startswith("/admin/")):
            await self.app(scope, receive, send)
            return
        headers = header_map(scope)
        try:
            caller = await self._caller(bearer_token(headers) if _one_key(scope) else "")
        except Denied as exc:
            await _plain(exc.status, exc.detail, exc.headers)(scope, receive, send)
            if exc.status == 401 and self.on_unauthorised is not None:
                # after the answer: an alert's write must not tell a revoked key's genuine
                # token by the time its 401 takes (red team: 8.2 ms against 4.2 ms)
                await self._watch(scope, exc)
            return
        denied = self.refuse(caller, path) if self.refuse is not None else None
        if denied is not None:  # a spent key costs no body read, no parse, no model
            import anyio.to_thread

            if self.log_refusal is not None:
                await anyio.to_thread.run_sync(self.log_refusal, caller, denied)
            await _plain(denied.status, denied.detail, denied.headers)(scope, receive, send)
            return
        body = await self._capped_body(
            headers.get(b"content-length"), self.cap(path), scope, receive, send
        )
        if body is None:
            return
        most = self.predict_values
        if path == "/predict" and most is not None and separators(body) > most:
            detail = f"request body holds more values than the batch limit allows (at most {most} separators)"
            await _plain(413, detail)(scope, receive, send)
            return
        scope[CALLER] = caller
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    async def _watch(self, scope: Scope, denied: Denied) -> None:
        """Count a 401 by the client's address; store what alerts it raises, in a thread."""
        assert self.on_unauthorised is not None and self.raise_alerts is not None
        alerts = self.on_unauthorised(client_address(scope), denied)
        if alerts:
            import anyio.to_thread

            await anyio.to_thread.run_sync(self.raise_alerts, alerts)

    async def _caller(self, token: str) -> Caller:
        """The caller of ``token``; a 401 no sooner than ``UNAUTHORISED_FLOOR_S`` after the start,
        whatever the database had to do."""
        import anyio.to_thread

        started = time.perf_counter()
        try:
            if self.fast_read is not None:
                return self.authenticate(token, self.fast_read)
            return await anyio.to_thread.run_sync(self.authenticate, token)
        except Denied as exc:
            if exc.status == 401:
                await self._pad(started)
            raise

    async def _pad(self, started: float) -> None:
        """Wait until ``UNAUTHORISED_FLOOR_S`` after ``started``. In a thread with ``time.sleep``
        (nanosleep): the event loop's own timers wait in whole milliseconds counted from *now*,
        which would keep the sub-millisecond part of the work's time, the part that differs.
        Own threads: a flood of bad keys waits here, not in the pool that answers good ones."""
        import anyio
        import anyio.to_thread

        remaining = started + UNAUTHORISED_FLOOR_S - time.perf_counter()
        if remaining > 0:
            if self._pad_limiter is None:
                self._pad_limiter = anyio.CapacityLimiter(8)
            await anyio.to_thread.run_sync(time.sleep, remaining, limiter=self._pad_limiter)

    @staticmethod
    async def _capped_body(
        length: bytes | None, cap: int, scope: Scope, receive: Receive, send: Send
    ) -> bytearray | None:
        """The whole body, or None once a 413 (or nothing, on disconnect) has been answered."""
        if length is not None and (not length.isdigit() or int(length) > cap):
            await _too_large(cap)(scope, receive, send)
            return None
        body = bytearray()
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > cap:
                await _too_large(cap)(scope, receive, send)
                return None
        return body
