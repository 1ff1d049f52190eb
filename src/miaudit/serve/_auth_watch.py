"""Failed authentication, watched: the service's 401s leave no log row (a row per bad key would
let anyone without a key write to the database at will), so they are counted here, in memory,
per server process, and turned into alerts.

Two alerts, each at most once per address (or key) per window:

- ``auth_failures``: one client address got ``alarm`` 401s within one window (key guessing, or
  a client still using a key it lost);
- ``revoked_key``: a revoked key's genuine token was presented (it was stolen, or a client was
  not told): the alert names the key.

Memory and alert volume are bounded whatever the traffic: counts live for one fixed window;
at most ``max_addresses`` addresses are told apart in a window (the rest share one count,
``address: "other"``), and at most ``max_alerts`` alerts of each kind are raised in a window,
then one saying that more were held back (a flood of failing addresses cannot hold
back a revoked key's alert). The address is the socket's IP (behind a proxy, the proxy's;
anything else is "-"): ``X-Forwarded-For`` is a header anyone can write, so it is not read
(``miaudit serve`` runs uvicorn without proxy headers). An alert is written after its 401 is
sent, so that the answer's timing does not tell a revoked key's genuine token.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

#: An alert as the service's sink takes it: detector, key id, keys, detail.
AuthAlert = tuple[str, str | None, list[str], dict[str, Any]]
OTHER = "other"


@dataclass
class AuthWatch:
    """Counts of 401s per client address in fixed windows of ``window_s`` seconds.

    Examples
    --------
    >>> watch = AuthWatch(alarm=3, window_s=60)
    >>> [watch.note("10.0.0.7", None, now=5.0) for _ in range(3)][-1]
    [('auth_failures', None, [], {'address': '10.0.0.7', 'failures': 3, 'window_s': 60})]
    >>> watch.note("10.0.0.7", None, now=6.0)  # once per window
    []
    >>> watch.note("10.0.0.8", "k1", now=7.0)[0][:2]
    ('revoked_key', 'k1')
    """

    alarm: int = 20
    window_s: int = 60
    max_addresses: int = 10_000
    max_alerts: int = 100
    _window: int = field(default=-1, init=False)
    _counts: dict[str, int] = field(default_factory=dict, init=False)
    _told: set[tuple[str, str]] = field(default_factory=set, init=False)
    _alerts: dict[str, int] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.alarm < 1 or self.window_s < 1 or self.max_addresses < 1 or self.max_alerts < 1:
            raise ValueError("AuthWatch needs alarm, window_s, max_addresses and max_alerts >= 1")

    def note(self, address: str, revoked_key: str | None, *, now: float) -> list[AuthAlert]:
        """Count one 401 from ``address`` (``revoked_key``: the id of a revoked key whose genuine
        token it presented) and return the alerts it raises."""
        with self._lock:
            self._roll(int(now) // self.window_s)
            if address not in self._counts and len(self._counts) >= self.max_addresses:
                address = OTHER
            count = self._counts[address] = self._counts.get(address, 0) + 1
            found: list[AuthAlert] = []
            if revoked_key is not None:
                found += self._once(
                    revoked_key, ("revoked_key", revoked_key, [], {"address": address})
                )
            if count >= self.alarm:
                detail = {"address": address, "failures": count, "window_s": self.window_s}
                found += self._once(address, ("auth_failures", None, [], detail))
            return found

    def _roll(self, window: int) -> None:
        if window != self._window:
            self._window = window
            self._alerts.clear()
            self._counts.clear()
            self._told.clear()

    def _once(self, about: str, alert: AuthAlert) -> list[AuthAlert]:
        """``alert``, unless its kind was told ``about`` this address or key this window, or the
        window's ``max_alerts`` alerts of its kind are spent: the first one held back is
        replaced by one saying so, the rest are dropped."""
        detector = alert[0]
        spent = self._alerts.get(detector, 0)
        if (detector, about) in self._told or spent > self.max_alerts:
            return []
        self._told.add((detector, about))
        self._alerts[detector] = spent + 1
        if spent == self.max_alerts:
            held = {
                "alerts_held_back": True,
                "max_alerts": self.max_alerts,
                "window_s": self.window_s,
            }
            return [(detector, None, [], held)]
        return [alert]


@dataclass
class RefusalWatch:
    """How many refused ``/predict`` requests of each key get a log row, per fixed window.

    A refusal (403, 429) is logged with its key, but a key whose budget is spent cost nothing to
    refuse and could write rows at will (a red team: 518 rows/s from a spent key, pushing real
    entries out of ``GET /admin/log``'s page). The first ``logged`` refusals of a key in a
    window are rows; the next raises one ``refusal_flood`` alert naming the key and the rest of
    the window's are counted, not logged. Per server process, like the detectors; memory bounded
    by ``max_keys`` (the rest share one count, as unnamed keys).

    >>> watch = RefusalWatch(logged=2, window_s=60)
    >>> [watch.note("k1", now=5.0) for _ in range(4)]
    [(True, []), (True, []), (False, [('refusal_flood', 'k1', ['k1'], {'logged': 2, 'window_s': 60})]), (False, [])]
    >>> watch.note("k1", now=61.0)  # a new window
    (True, [])
    """

    logged: int = 100
    window_s: int = 60
    max_keys: int = 10_000
    _window: int = field(default=-1, init=False)
    _counts: dict[str, int] = field(default_factory=dict, init=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def note(self, key_id: str, *, now: float) -> tuple[bool, list[AuthAlert]]:
        """(whether this refusal of ``key_id`` gets a log row, the alerts it raises)."""
        with self._lock:
            window = int(now) // self.window_s
            if window != self._window:
                self._window, self._counts = window, {}
            about = key_id if key_id in self._counts or len(self._counts) < self.max_keys else OTHER
            count = self._counts[about] = self._counts.get(about, 0) + 1
        if count <= self.logged:
            return True, []
        if count == self.logged + 1:
            detail = {"logged": self.logged, "window_s": self.window_s}
            named = key_id if about != OTHER else None
            return False, [("refusal_flood", named, [key_id] if named else [], detail)]
        return False, []
