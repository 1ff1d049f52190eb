"""The guarded service's work, one method per responsibility, with no HTTP in it.

:class:`Service` holds what the endpoints share (the configuration, the store, the detectors and
their webhook, the ``noise`` policy's generator) and does each act: authenticate a token, check
a role, read records, answer under the output policy, charge the budget with its audit-log row,
and the admin acts. A refusal is a :class:`Denied` (status, detail, headers); the routers
(:mod:`miaudit.serve._routes`) and the gate (:mod:`miaudit.serve._gate`) turn it into a response.
The statuses and details are listed in :mod:`miaudit.serve._app`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from miaudit.defenses import ExposedLabels, ExposedScores, OutputPolicy, apply_policy
from miaudit.serve._auth_watch import AuthAlert, AuthWatch, RefusalWatch
from miaudit.serve._config import Endpoint, Role, ServeConfig
from miaudit.serve._keys import digests_match, key_digest, parse_token, record_hashes
from miaudit.serve._monitor import Monitor, Observer, Webhook
from miaudit.serve._predictor import UpstreamError
from miaudit.serve._schemas import KeyCreate, KeyLimits, PredictRequest, RecordIn
from miaudit.serve._store import (
    BUDGET_RETRY_AFTER_S,
    Charge,
    KeyInfo,
    KeyRevoked,
    Store,
    rate_retry_after,
)

log = logging.getLogger("miaudit.serve")
UNAUTHORISED = "invalid or missing API key"
FORBIDDEN = "this key's role may not call this endpoint"
RATE_LIMITED = "rate limit reached"
#: Most numbers per record when the model's width is not known (an upstream without
#: ``n_features``): the body cap is sized for it, and one record cannot be wider.
UNKNOWN_WIDTH = 1024
FLOAT32_MAX = float(np.finfo(np.float32).max)
_DUMMY_DIGEST = "0" * 64
_NO_ID = "-" * 16  # looked up for malformed tokens: no id has this form, the read costs the same

KeyReader = Callable[[str], tuple[KeyInfo, str] | None]


class Denied(Exception):
    """A refusal: the HTTP status, a detail that says no more than the documented one, headers."""

    def __init__(self, status: int, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(status, detail)
        self.status = status
        self.detail = detail
        self.headers = headers or {}
        self.revoked_key: str | None = None


def unauthorised(revoked_key: str | None = None) -> Denied:
    """The one answer for every key that is missing, malformed, unknown or revoked.
    ``revoked_key``: the id of a revoked key whose genuine token was presented, for the
    :class:`~miaudit.serve._auth_watch.AuthWatch` only (the caller is told nothing more)."""
    denied = Denied(401, UNAUTHORISED, {"WWW-Authenticate": "Bearer"})
    denied.revoked_key = revoked_key
    return denied


@dataclass(frozen=True)
class Caller:
    """An authenticated key and its role."""

    key: KeyInfo
    role: Role


# --- reading records: every 422 and the batch 413, from the input alone -------------------------


def records_array(
    body: PredictRequest,
    *,
    max_batch: int,
    n_features: int | None,
    feature_names: tuple[str, ...] | None,
) -> np.ndarray:
    """The records of ``body`` as an (n, width) float64 array, or :class:`Denied` (413 over
    ``max_batch``, 422 for anything the model could not take) before the model runs.

    Examples
    --------
    >>> records_array(
    ...     PredictRequest(records=[{"b": 2.0, "a": 1.0}]),
    ...     max_batch=10,
    ...     n_features=2,
    ...     feature_names=("a", "b"),
    ... ).tolist()
    [[1.0, 2.0]]
    """
    rows = _request_rows(body, max_batch)
    values = [_record_values(i, r, feature_names) for i, r in enumerate(rows)]
    _check_widths(values, n_features)
    x = np.asarray(values, dtype=np.float64)
    _check_float32_range(x)
    return x


def _request_rows(body: PredictRequest, max_batch: int) -> list[RecordIn]:
    if (body.record is None) == (body.records is None):
        raise Denied(422, "give exactly one of 'record' and 'records'")
    rows = [body.record] if body.record is not None else list(body.records or [])
    if len(rows) > max_batch:
        raise Denied(413, f"too many records in one request (at most {max_batch})")
    return rows


def _record_values(i: int, record: RecordIn, feature_names: tuple[str, ...] | None) -> list[float]:
    """Record ``i``'s numbers in the model's order (an object is read by feature name)."""
    if not isinstance(record, dict):
        return record
    if feature_names is None:
        raise Denied(422, f"records[{i}]: this model takes records as lists of numbers")
    unknown = sorted(set(record) - set(feature_names))
    missing = [n for n in feature_names if n not in record]
    if unknown:
        raise Denied(422, f"records[{i}]: unknown field {unknown[0]!r}")
    if missing:
        raise Denied(422, f"records[{i}]: missing field {missing[0]!r}")
    return [record[n] for n in feature_names]


def _check_widths(values: Sequence[Sequence[float]], n_features: int | None) -> None:
    width = {len(r) for r in values}
    if len(width) != 1 or (n_features is not None and width != {n_features}):
        need = n_features if n_features is not None else "the same number of"
        raise Denied(422, f"every record must have {need} numbers")
    if 0 in width:
        raise Denied(422, "records must not be empty")
    if n_features is None and max(width) > UNKNOWN_WIDTH:  # what the body cap was sized for
        raise Denied(422, f"records must have at most {UNKNOWN_WIDTH} numbers")


def _check_float32_range(x: np.ndarray) -> None:
    big = np.flatnonzero(np.abs(x).max(axis=1) > FLOAT32_MAX)
    if big.size:
        raise Denied(
            422,
            f"records[{int(big[0])}]: numbers must lie within float32's range (±{FLOAT32_MAX:.4g})",
        )


# --- answering --------------------------------------------------------------------------------


def usable_probabilities(probs: np.ndarray, n: int) -> bool:
    """Whether ``probs`` is n finite rows of at least one class: a label or score derived from
    anything else (overflow, NaN, a wrong shape) would be meaningless."""
    return (
        probs.ndim == 2
        and probs.shape[0] == n
        and probs.shape[1] >= 1
        and bool(np.isfinite(probs).all())
    )


def encode_answer(policy: OutputPolicy, exposed: ExposedLabels | ExposedScores) -> bytes | None:
    """The ``/predict`` answer, in :class:`~miaudit.serve._schemas.PredictResponse`'s shape, as
    compact JSON; None when a number cannot be written as JSON.

    Examples
    --------
    >>> from miaudit.defenses import parse_policy
    >>> policy = parse_policy("round:1")
    >>> encode_answer(policy, apply_policy(policy, np.array([[0.25, 0.75]])))
    b'{"policy":"round:1","predictions":[{"label":1,"scores":[0.2,0.8]}]}'
    """
    labels = exposed.labels.tolist()
    preds: list[dict[str, Any]]
    if isinstance(exposed, ExposedLabels):
        preds = [{"label": int(lbl)} for lbl in labels]
    else:
        preds = [
            {"label": int(lbl), "scores": row}
            for lbl, row in zip(labels, exposed.values.tolist(), strict=True)
        ]
    try:
        return json.dumps(
            {"policy": str(policy), "predictions": preds}, allow_nan=False, separators=(",", ":")
        ).encode()
    except ValueError:
        return None


class Service:
    """What the guarded endpoints do, over one store.

    Parameters
    ----------
    config : ServeConfig
    store : Store
        Keys, budgets, the audit log and alerts (the service closes it in :meth:`close`).
    webhook : Webhook, optional
        Receives each alert (closed in :meth:`close`).

    The probing detectors run on their own thread when ``config.detectors.enabled``.
    """

    def __init__(
        self, config: ServeConfig, store: Store, *, webhook: Webhook | None = None
    ) -> None:
        width = config.predictor.n_features
        if config.detectors.enabled and width is not None:
            config.detectors.check_width(width)  # before any thread starts
        self.config = config
        self.store = store
        self.webhook = webhook
        self.observer = (
            Observer(config.detectors, config.secret, self.raise_alert)
            if config.detectors.enabled
            else None
        )
        self._rng = np.random.default_rng(config.noise_seed)
        self._rng_lock = threading.Lock()
        det = config.detectors
        self.auth_watch = (
            AuthWatch(alarm=det.auth_alarm, window_s=det.auth_window_s)
            if det.enabled and det.auth_alarm > 0
            else None
        )
        self.refusal_watch = RefusalWatch()

    @classmethod
    def open(cls, config: ServeConfig) -> Service:
        """The service of ``config``, with its own store (and webhook, if configured)."""
        store = Store(config.db, sqlite_synchronous=config.sqlite_synchronous)
        webhook = Webhook(config.webhook) if config.webhook else None
        return cls(config, store, webhook=webhook)

    def close(self) -> None:
        """Stop the detectors and the webhook, then close the store."""
        if self.observer is not None:
            self.observer.close()
        if self.webhook is not None:
            self.webhook.close()
        self.store.close()

    # --- the detectors ---------------------------------------------------------------------------

    def raise_alert(
        self, detector: str, key_id: str | None, keys: list[str], detail: dict[str, Any]
    ) -> None:
        """Store a detector's alert and post it to the webhook (the detectors' sink)."""
        alert = self.store.add_alert(detector, key_id, keys, detail)
        if self.webhook is not None:
            self.webhook.post(alert.public())

    def unauthorised_alerts(self, address: str, denied: Denied) -> list[AuthAlert]:
        """Count a 401 from ``address`` and return the alerts it raises (no I/O: the gate
        stores them with :meth:`raise_alerts`, in a thread, only when there are some)."""
        if self.auth_watch is None:
            return []
        return self.auth_watch.note(address, denied.revoked_key, now=time.time())

    def raise_alerts(self, alerts: Sequence[AuthAlert]) -> None:
        for detector, key_id, keys, detail in alerts:
            self.raise_alert(detector, key_id, keys, detail)

    def flush_detectors(self) -> None:
        """Wait until the detectors have seen every answered request (tests, benchmarks)."""
        if self.observer is not None:
            self.observer.flush()

    def monitor(self) -> Monitor | None:
        """The detectors' :class:`~miaudit.serve.Monitor` (None before the first answer, or
        when the detectors are off)."""
        return self.observer.monitor if self.observer is not None else None

    # --- who calls ------------------------------------------------------------------------------

    def key_reader(self) -> KeyReader | None:
        """A key lookup that may run on the event loop (SQLite), else None (use a thread)."""
        return self.store.key_reader()

    def authenticate(self, token: str, read: KeyReader | None = None) -> Caller:
        """The caller of ``token``: the same work (one read, one HMAC) whether its id exists or not."""
        key_id = parse_token(token)
        row = (read or self.store.key_row)(key_id or _NO_ID)
        stored = row[1] if row is not None else _DUMMY_DIGEST
        same = digests_match(key_digest(self.config.secret, token), stored)
        if row is None or not same:
            raise unauthorised()
        if row[0].revoked_at is not None:
            raise unauthorised(revoked_key=row[0].key_id)
        role = self.config.roles.get(row[0].role)
        if role is None:
            raise Denied(403, FORBIDDEN)
        return Caller(row[0], role)

    def allowed(self, caller: Caller, endpoint: Endpoint) -> Caller:
        """``caller`` if its role may call ``endpoint``, else 403 (logged for ``predict``)."""
        if endpoint not in caller.role.endpoints:
            if endpoint == "predict":
                self._log_refused(caller.key.key_id, caller.role.policy, 0, 403)
            raise Denied(403, FORBIDDEN)
        return caller

    @staticmethod
    def whoami(caller: Caller) -> dict[str, Any]:
        """The calling key's role, output policy and limits."""
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

    # --- predictions ----------------------------------------------------------------------------

    def predict(self, caller: Caller, body: PredictRequest) -> bytes:
        """The encoded answer to ``body``, charged to the caller's budget and logged first.

        Steps, in this order (each refusal is final): the role; the records (every 422 from the
        input alone, before the model runs); the key's limits as read; the charge and its log
        row, committed together *before the model runs*, so that concurrent requests of one key
        never make the model work past its limits; the model; then the answer, and the
        detectors see the records. A request the model could not answer stays charged (500,
        the model saw its records); one an upstream failed is given back (502).
        """
        self.allowed(caller, "predict")
        x = records_array(
            body,
            max_batch=self.config.max_batch,
            n_features=self.config.predictor.n_features,
            feature_names=self.config.predictor.feature_names,
        )
        policy, n = caller.role.policy, x.shape[0]
        self._refuse_over_limits(caller.key, n, policy)
        hashes = record_hashes(self.config.secret, x)
        charge = self._charge(caller.key, n, policy, hashes)

        def settle(status: int, *, refund: bool = False) -> None:
            self.store.settle(
                caller.key.key_id,
                charge,
                n,
                charged_at=charge.at,
                window_s=caller.key.window_s,
                status=status,
                refund=refund,
            )

        try:
            probs = self._model_output(x)
            content = None if probs is None else self.answer(policy, probs, n)
        except UpstreamError as exc:
            # Logged 502; given back only if the records never left (no connection was made):
            # an upstream that read them and failed saw them, and refunding those let a caller
            # who can make it fail send it any number of records (red team: budget 5, 200 read).
            settle(502, refund=not exc.sent)
            raise Denied(502, "upstream prediction failed") from None
        except BaseException:  # no answer leaves as 200 (second read): charged, the model ran
            with contextlib.suppress(Exception):
                settle(500)
            raise
        if content is None:  # charged all the same: the records reached the model
            settle(500)
            raise Denied(500, "the model could not answer these records")
        if self.observer is not None:
            self.observer.submit(caller.key.key_id, x, hashes)
        return content

    def _log_refused(self, key_id: str, policy: OutputPolicy, n: int, status: int) -> None:
        """Log a ``/predict`` that got no answer (``n`` records; 0 when its body was not read),
        up to :class:`RefusalWatch`'s rows per key and window (then one alert, no rows)."""
        log, alerts = self.refusal_watch.note(key_id, now=time.time())
        if log:
            self.store.log_denied(
                key_id, endpoint="predict", n=n, policy=str(policy), status=status
            )
        self.raise_alerts(alerts)

    def _refuse_over_limits(self, key: KeyInfo, n: int, policy: OutputPolicy) -> None:
        """Refuse what the key's limits, as read at authentication, cannot admit, without a
        write (the charge's UPDATE, before the model runs, decides against the row as it is)."""
        if key.rate is not None and n > key.rate:  # could never pass: waiting would not help
            raise Denied(
                413,
                f"more records in one request than this key's rate limit ({key.rate} per {key.window_s} s)",
            )
        now = time.time()
        denied = _over_limits(key, n, now)
        if denied is not None and key.budget_holds(n):  # the rate: when do n records fit?
            fits_at = self.store.rate_fits_at(key.key_id, n, now)
            denied = (
                None  # records left the window since the key was read: the charge decides
                if fits_at <= now
                else Denied(429, RATE_LIMITED, {"Retry-After": str(rate_retry_after(now, fits_at))})
            )
        if denied is not None:
            self._log_refused(key.key_id, policy, n, 429)
            raise denied

    def refusal_before_body(self, caller: Caller, path: str) -> Denied | None:
        """What a ``/predict`` request is refused on from its key alone, before a byte of its
        body is read or parsed: a role without ``predict`` (403), a spent budget or a full rate
        window (429). No database work unless refused (then :meth:`log_refusal`)."""
        if path != "/predict":
            return None
        if "predict" not in caller.role.endpoints:
            return Denied(403, FORBIDDEN)
        return _over_limits(caller.key, 1, time.time())

    def log_refusal(self, caller: Caller, denied: Denied) -> None:
        """Log a ``/predict`` refused before its body was read (its record count unknown: 0)."""
        self._log_refused(caller.key.key_id, caller.role.policy, 0, denied.status)

    def _model_output(self, x: np.ndarray) -> np.ndarray | None:
        """The model's probabilities; None when the model itself failed (a 500, charged: the
        records reached it); :class:`UpstreamError` when an upstream failed."""
        try:
            return self.config.predictor.predict_proba(x)
        except UpstreamError:
            raise
        except Exception:
            log.exception("the model failed on a request of %d records", x.shape[0])
            return None

    def answer(self, policy: OutputPolicy, probs: np.ndarray, n: int) -> bytes | None:
        """The encoded answer under ``policy``, or None when ``probs`` is not one finite
        probability row for each of the ``n`` records."""
        probs = np.asarray(probs)
        if not usable_probabilities(probs, n):
            return None
        with self._rng_lock:
            exposed = apply_policy(policy, probs, rng=self._rng)
        return encode_answer(policy, exposed)

    def _charge(self, key: KeyInfo, n: int, policy: OutputPolicy, hashes: list[str]) -> Charge:
        """Charge ``n`` records and log the request (200, until :meth:`Store.settle` says
        otherwise) before the model sees them, or refuse (401, 429); timed under the lock."""
        charge = self.store.charge(
            key.key_id, n, endpoint="predict", policy=str(policy), hashes=hashes
        )
        if charge.request_id is not None:
            return charge
        if charge.denial == "revoked":
            raise unauthorised()
        self._log_refused(key.key_id, policy, n, 429)
        detail = "record budget exhausted" if charge.denial == "budget" else RATE_LIMITED
        raise Denied(429, detail, {"Retry-After": str(charge.retry_after_s)})

    # --- admin acts: each in one transaction with the acting key's locked row -------------------

    def _admin(self, caller: Caller) -> str:
        return self.allowed(caller, "admin").key.key_id

    def create_key(self, caller: Caller, body: KeyCreate) -> dict[str, Any]:
        """Create a key; its token is in this answer only."""
        me = self._admin(caller)
        if body.role not in self.config.roles:
            roles = ", ".join(sorted(self.config.roles))
            raise Denied(422, f"unknown role {body.role!r}; roles: {roles}")
        with _as_actor():
            new = self.store.create_key(
                self.config.secret,
                body.role,
                budget=body.budget,
                rate=body.rate,
                window_s=body.window_s,
                label=body.label,
                actor=me,
            )
        return {**self._public_key(new.key_id), "token": new.token}

    def list_keys(self, caller: Caller) -> list[dict[str, Any]]:
        """Every key (ids, roles, limits and use; never tokens)."""
        me = self._admin(caller)
        with _as_actor():
            return [k.public() for k in self.store.list_keys(actor=me)]

    def revoke_key(self, caller: Caller, key_id: str) -> dict[str, Any]:
        """Revoke a key (it answers 401 from now on, in every worker); 404 if there is none."""
        me = self._admin(caller)
        with _as_actor():
            if not self.store.revoke_key(key_id, actor=me):
                raise Denied(404, "no such key")
        return self._public_key(key_id)

    def set_limits(self, caller: Caller, key_id: str, body: KeyLimits) -> dict[str, Any]:
        """Change a key's limits (the fields given; the others are kept); 404 if there is no
        such key."""
        me = self._admin(caller)
        with _as_actor():
            found = self.store.set_limits(key_id, **body.given(), actor=me)
            if not found:
                raise Denied(404, "no such key")
        return self._public_key(key_id)

    def list_alerts(
        self, caller: Caller, *, since_id: int, limit: int, key_id: str | None
    ) -> list[dict[str, Any]]:
        """Alerts raised by the probing detectors, oldest first."""
        me = self._admin(caller)
        with _as_actor():
            found = self.store.list_alerts(since_id=since_id, limit=limit, key_id=key_id, actor=me)
        return [a.public() for a in found]

    def read_log(
        self, caller: Caller, *, key_id: str | None, limit: int, hashes: bool
    ) -> list[dict[str, Any]]:
        """The audit log, newest first (keyed record hashes on request)."""
        me = self._admin(caller)
        with _as_actor():
            return self.store.log_entries(key_id=key_id, limit=limit, with_hashes=hashes, actor=me)

    def read_acts(self, caller: Caller, *, actor: str | None, limit: int) -> list[dict[str, Any]]:
        """What admin keys and the command line did, newest first (one key's, given ``actor``)."""
        me = self._admin(caller)
        with _as_actor():
            return self.store.acts(actor_filter=actor, limit=limit, actor=me)

    def _public_key(self, key_id: str) -> dict[str, Any]:
        info = self.store.get_key(key_id)
        if info is None:  # keys are never deleted: one just made or changed is there
            raise RuntimeError(f"key {key_id} vanished from the store")
        return info.public()


def _over_limits(key: KeyInfo, n: int, now: float) -> Denied | None:
    """The 429 that ``n`` more records would get from the key's budget or rate window, as read
    (its Retry-After: when the oldest records leave, exact for one record)."""
    if not key.budget_holds(n):
        return Denied(429, "record budget exhausted", {"Retry-After": str(BUDGET_RETRY_AFTER_S)})
    if key.rate_window_full(n, now):
        return Denied(
            429, RATE_LIMITED, {"Retry-After": str(rate_retry_after(now, key.window_until))}
        )
    return None


@contextlib.contextmanager
def _as_actor() -> Iterator[None]:
    """An admin act whose key was revoked before the act took its lock answers 401."""
    try:
        yield
    except KeyRevoked:
        raise unauthorised() from None
