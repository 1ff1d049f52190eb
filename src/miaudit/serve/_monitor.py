"""Probing detectors (docs/method.md §10): what query patterns reveal, and what they cannot.

Four detectors look at every answered record, in the order it arrived:

- ``repeat`` — the same record (exact keyed hash) queried again and again by one key.
- ``perturbation`` — many near-identical queries around one point by one key: the stateful
  detector of Chen, Carlini & Wagner (2020). Each key keeps its last ``knn_buffer`` records
  (standardised); a record whose mean distance to its ``knn_k`` nearest neighbours in that buffer
  falls below ``knn_threshold`` is *suspicious*; ``knn_alarm`` suspicious records since the key's
  last alarm raise an alert, and the buffer is then cleared (as in the paper). Noise-robustness
  and boundary-distance attacks (§5) walk around one record and are caught within tens of
  queries.
- ``near_duplicate`` / ``spread`` — Blacklight-style fingerprints shared *across keys* (Li et al.,
  USENIX Security 2022): each standardised record is quantised (step ``quantum``), windows of
  ``window`` consecutive quantised features are hashed (keyed), and the ``fingerprint_size``
  smallest hashes are its fingerprint. A record sharing ``match_threshold`` of them with an
  earlier record *and* lying within the k-NN threshold of it joins that record's cluster; a
  cluster of ``cluster_alarm`` records queried by two or more keys raises ``spread`` (an attack
  split over accounts); by one key, ``near_duplicate``. The distance check is what keeps
  tabular data quiet: one-hot columns make most windows alike, so on Adult 23 % of benign
  pairs shared 12 of 16 hashes while lying a median 9.1 standard units apart, and hash matches
  alone gave 1,298 ``spread`` alerts from 20 benign keys × 1,000 records. Each hash keeps its
  ``max_postings`` latest records only, so the cost per record is bounded however common a
  window is (it grew with the table: 8.9 ms a record at 20,000 Adult records). Both measured by
  ``python -m benchmarks run detection_tabular``, with what this costs: other records sharing
  a window push a probe out of its lists, so probes spaced among ordinary one-hot traffic, or
  followed by records sharing one window with them, are missed (docs/serve.md).
- ``enumeration`` — one key querying ``enumeration_threshold`` distinct records (broad sweeps,
  model extraction, scoring a whole candidate list).

What cannot be detected: attacks that need one query per record (the loss, LiRA and RMIA attacks
after offline reference training) look exactly like benign scoring of distinct records. The only
signal left is their volume (``enumeration``), which honest bulk users share. Against them, the
output policy and the budget are the controls.

State is in memory, per server process, bounded (``max_keys`` keys, ``max_fingerprints``
fingerprints), and held in objects Python's cycle collector does not track (ints, bytes, tuples
of them, one dict or deque per table): a full collection scans every tracked object while
every thread waits, and the fingerprint table's lists and cluster objects (about 16 per record)
made the guarded server's collections take 100–300 ms in the middle of its answers. Alerts
are stored in the database (all processes) and optionally posted to a webhook; each
(detector, key) pair alerts at most once per ``cooldown_s``.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import math
import numbers
import struct
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from miaudit.errors import InputError, first_line

log = logging.getLogger("miaudit.serve")

#: A large request's crowded rows are searched for in a random projection to this many
#: dimensions, where a k-d tree is fast, and their distances measured in the full space or, past
#: ``MEASURED_DIMS`` features, in a random projection to that many.
SEARCHED_DIMS = 4
MEASURED_DIMS = 64
#: A fingerprint table record's position is kept for the distance check, past this many features
#: in a random projection (float32: 200,000 records take 26 MB).
KEPT_DIMS = 32
_CHUNK_ROWS = 256  # rows whose candidates' full distances are held at once


@dataclass(frozen=True)
class DetectorConfig:
    """Thresholds of the detectors (distances in standardised units: see ``center``/``scale``)."""

    center: tuple[float, ...] | None = None
    scale: tuple[float, ...] | None = None
    repeat_threshold: int = 5
    knn_k: int = 5
    knn_buffer: int = 1000
    knn_threshold: float | None = None  # None: 0.15·√d, see :func:`default_knn_threshold`
    knn_alarm: int = 10
    quantum: float = 0.25
    window: int = 4
    fingerprint_size: int = 16
    match_threshold: int = 12
    cluster_alarm: int = 20
    max_fingerprints: int = 200_000
    max_postings: int = 256
    enumeration_threshold: int = 10_000
    max_rows_per_request: int = 512
    max_keys: int = 10_000
    cooldown_s: float = 300.0
    #: 401s from one client address within ``auth_window_s`` that raise ``auth_failures``
    #: (0: no watch; see :mod:`miaudit.serve._auth_watch`).
    auth_alarm: int = 20
    auth_window_s: int = 60
    enabled: bool = True

    def __post_init__(self) -> None:
        # numbers as a JSON spec or numpy may give them (np.int64, 4.0) are taken as what they
        # mean; anything else is refused naming the setting, before a server starts with it
        for name, (low, high) in _COUNTS.items():
            value = getattr(self, name)
            if _is_number(value) and float(value).is_integer() and low <= value <= high:
                object.__setattr__(self, name, int(value))
            else:
                raise InputError(
                    f"detectors.{name}",
                    f"must be a whole number from {low:,} to {high:,}, got {value!r}",
                )
        for name, (lo, hi) in _REALS.items():
            value = getattr(self, name)
            if not (_is_number(value) and lo <= value <= hi):
                raise InputError(
                    f"detectors.{name}", f"must be a number from {lo:g} to {hi:g}, got {value!r}"
                )
            object.__setattr__(self, name, float(value))
        t = self.knn_threshold
        if t is not None:
            if not (_is_number(t) and 0 < t < math.inf):
                raise InputError(
                    "detectors.knn_threshold", f"must be a number > 0 or None, got {t!r}"
                )
            object.__setattr__(self, "knn_threshold", float(t))
        if self.match_threshold > self.fingerprint_size:
            raise InputError(
                "detectors.match_threshold",
                f"must be at most fingerprint_size ({self.fingerprint_size}), got {self.match_threshold}",
            )
        for name in ("center", "scale"):
            values = getattr(self, name)
            if values is None:
                continue
            if not all(_is_number(v) and math.isfinite(v) for v in values) or (
                name == "scale" and not all(v > 0 for v in values)
            ):
                need = "finite numbers > 0" if name == "scale" else "finite numbers"
                raise InputError(f"detectors.{name}", f"must hold {need}, one per feature")
        if not isinstance(self.enabled, bool):
            raise InputError("detectors.enabled", f"must be true or false, got {self.enabled!r}")

    def check_width(self, n_features: int) -> None:
        """:class:`InputError` unless ``center`` and ``scale`` hold one value per feature (a
        wrong length failed every request in the detectors, and raised no alert)."""
        for name in ("center", "scale"):
            values = getattr(self, name)
            if values is not None and len(values) != n_features:
                raise InputError(
                    f"detectors.{name}",
                    f"has {len(values)} values for a model of {n_features} features",
                )

    def public(self) -> dict[str, Any]:
        return {k: v for k, v in self.__dict__.items() if k not in ("center", "scale")}


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


#: Settings that count, with the range each may take: a table or buffer past its upper bound
#: would not fit in memory (the Monitor, built on the first request, then failed every request).
_COUNTS = {
    "repeat_threshold": (1, 10**9),
    "knn_k": (1, 1_000),
    "knn_buffer": (1, 100_000),
    "knn_alarm": (1, 10**9),
    "window": (1, 10_000),
    "fingerprint_size": (1, 1_000),
    "match_threshold": (1, 1_000),
    "cluster_alarm": (1, 10**9),
    "max_fingerprints": (1, 10_000_000),
    "max_postings": (1, 100_000),
    "enumeration_threshold": (1, 10**9),
    "max_rows_per_request": (1, 1_000_000),
    "max_keys": (1, 1_000_000),
    "auth_alarm": (0, 10**9),  # 0: no watch
    "auth_window_s": (1, 366 * 86_400),
}
#: Real-valued settings and their ranges (a quantum of 1e-300 or ∞ made every window alike).
_REALS = {"quantum": (1e-6, 1e6), "cooldown_s": (0.0, 366 * 86_400.0)}


def default_knn_threshold(n_features: int) -> float:
    """0.15·√d standardised units, used when no benign traffic was given for calibration.

    For independent standardised features, the 0.1% quantile of a benign record's mean distance to
    its 5 nearest neighbours among 1,000 earlier ones is about 0.26·√d (d = 6) to 0.9·√d (d = 50);
    probes of noise σ (in feature standard deviations) lie about σ·√(2d) apart, so σ ≤ 0.1 is
    caught. Real data are clumpier than that: calibrate (:func:`calibrate_knn_threshold`).
    """
    return 0.15 * float(np.sqrt(max(1, n_features)))


def calibrate_knn_threshold(
    benign: np.ndarray,
    *,
    k: int = 5,
    buffer: int = 1000,
    quantile: float = 1e-3,
    config: DetectorConfig | None = None,
) -> float:
    """The ``quantile`` of mean k-NN distances of benign records to the records before them.

    Chen et al. set the threshold at a target false-positive rate on benign traffic: feed a
    benign stream (n, d) in arrival order.
    """
    cfg = config or DetectorConfig()
    z = _standardise(np.asarray(benign, dtype=np.float64), cfg)
    dists = []
    for i in range(k, z.shape[0]):
        past = z[max(0, i - buffer) : i]
        d = np.sqrt(((past - z[i]) ** 2).sum(axis=1))
        dists.append(np.sort(d)[:k].mean())
    if not dists:
        return default_knn_threshold(z.shape[1])
    return float(np.quantile(np.asarray(dists), quantile))


#: Fewest benign records :func:`calibrated_detectors` accepts: a spread and a k-NN quantile
#: from fewer would be noise.
MIN_CALIBRATION_RECORDS = 100


def calibrated_detectors(
    benign: np.ndarray, config: DetectorConfig | None = None, field_name: str = "benign"
) -> DetectorConfig:
    """``config`` with its distances measured on ``benign`` records (n, d) in arrival order:
    centred on their mean, scaled by their standard deviation (a constant feature keeps
    scale 1), and the k-NN threshold at the 0.1 % quantile of their standardised mean
    distances to the records before them (:func:`calibrate_knn_threshold`; with fewer than
    1,000 distances that is their minimum)."""
    cfg = config or DetectorConfig()
    x = np.asarray(benign, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < MIN_CALIBRATION_RECORDS:
        raise InputError(
            field_name,
            f"holds {x.shape[0] if x.ndim else 0} records; calibration needs at least {MIN_CALIBRATION_RECORDS}, as (records, features)",
        )
    with np.errstate(over="ignore", invalid="ignore"):
        center = x.mean(axis=0)
        scale = x.std(axis=0)
    if not (np.isfinite(center).all() and np.isfinite(scale).all()):
        raise InputError(field_name, "values too large to standardise (their spread is not finite)")
    scale = np.where(scale > 0, scale, 1.0)
    cfg = replace(cfg, center=tuple(center.tolist()), scale=tuple(scale.tolist()))
    threshold = calibrate_knn_threshold(x, k=cfg.knn_k, buffer=cfg.knn_buffer, config=cfg)
    if not threshold > 0:  # a zero threshold flags nothing: the detector would be off, silently
        raise InputError(
            field_name,
            f"records repeat (at least {cfg.knn_k + 1} alike): their k-NN threshold is 0, which would switch the perturbation detector off; give distinct benign records",
        )
    return replace(cfg, knn_threshold=threshold)


def _standardise(x: np.ndarray, cfg: DetectorConfig) -> np.ndarray:
    if cfg.center is not None:
        x = x - np.asarray(cfg.center)
    if cfg.scale is not None:
        s = np.asarray(cfg.scale, dtype=np.float64)
        x = x / np.where(s > 0, s, 1.0)
    return x


@dataclass
class _KeyState:
    buffer: np.ndarray
    filled: int = 0
    pos: int = 0
    suspicious: int = 0
    queries: int = 0
    repeats: Counter[str] = field(default_factory=Counter)
    distinct: set[str] = field(default_factory=set)


#: A fingerprint hash's query numbers, oldest first, packed in a ``bytearray`` (untracked by
#: the cycle collector; ``del buf[:8]`` drops the oldest in constant time).
_QN = struct.Struct("<q")


def _query_numbers(buf: bytearray) -> list[int]:
    return [qn for (qn,) in _QN.iter_unpack(buf)]


def _oldest(buf: bytearray) -> int:
    return int(_QN.unpack_from(buf)[0])


#: A cluster: (queries that joined it, members still in the fingerprint table, its keys).
_Cluster = tuple[int, int, tuple[str, ...]]


AlertSink = Callable[[str, str | None, list[str], dict[str, Any]], None]


class Monitor:
    """The detectors' state; ``observe`` is called with each answered request's records."""

    def __init__(
        self, config: DetectorConfig, n_features: int, secret: bytes, sink: AlertSink
    ) -> None:
        self.cfg = config
        self.d = int(n_features)
        self.threshold = (
            config.knn_threshold
            if config.knn_threshold is not None
            else default_knn_threshold(self.d)
        )
        self._sink = sink
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()
        self._table: dict[int, bytearray] = {}  # fingerprint hash → query numbers (packed)
        # Each fingerprint's hashes, oldest first: query numbers _next - len(_fps) to _next - 1.
        self._fps: deque[tuple[int, ...]] = deque()
        self._cluster_of: dict[int, int] = {}
        self._clusters: dict[int, _Cluster] = {}
        self._next = 0
        self._observed = 0  # records seen by this process, all keys
        self._last_alert: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()
        # The rows a large request is sampled on are drawn from the OS's entropy: with a fixed
        # seed they could be computed in advance (after a restart, or by the only bulk caller)
        # and a probe's copies placed everywhere else (a red team read raw probabilities back
        # through a noise policy with no alert that way).
        self._rng = np.random.default_rng()
        w = min(config.window, max(1, self.d))
        self._windows = max(1, self.d - w + 1)
        self._w = w
        keyed = np.random.default_rng(
            int.from_bytes(hmac.new(secret, b"fingerprint", hashlib.sha256).digest()[:16], "little")
        )
        self._mult = keyed.integers(1, 2**63, size=w, dtype=np.uint64) | np.uint64(1)
        self._salt = keyed.integers(0, 2**63, size=self._windows, dtype=np.uint64)
        # Positions of the records in the fingerprint table, by query number modulo the table's
        # size (one array: nothing per record for the cycle collector).
        self._project = (
            self._rng.normal(size=(self.d, KEPT_DIMS)) / np.sqrt(KEPT_DIMS)
            if self.d > KEPT_DIMS
            else None
        )
        kept = KEPT_DIMS if self._project is not None else self.d
        # grown as the table fills (a table of 10⁷ records would take 1.2 GB at once)
        self._positions = np.empty((min(config.max_fingerprints, 1024), kept), dtype=np.float32)

    # --- entry point -----------------------------------------------------------------------

    def observe(
        self, key_id: str, records: np.ndarray, hashes: list[str], now: float | None = None
    ) -> None:
        if not self.cfg.enabled:
            return
        now = time.time() if now is None else now
        x = np.asarray(records, dtype=np.float64)
        if x.ndim != 2 or x.shape[0] == 0:
            return
        n = x.shape[0]
        z = _standardise(x, self.cfg)
        # Bounded work per request: a large batch is sampled for the geometric detectors, rows
        # crowded by near neighbours in the same request first (see _sample_rows).
        rows = self._sample_rows(z) if n > self.cfg.max_rows_per_request else np.arange(n)
        with self._lock:
            self._observed += n
            st = self._state(key_id)
            st.queries += n
            self._repeats_and_enumeration(key_id, st, hashes, now)
            self._knn(key_id, st, z[rows], now)
            self._fingerprints(key_id, z[rows], now)

    def _sample_rows(self, z: np.ndarray) -> np.ndarray:
        """The ``max_rows_per_request`` rows of a large request the geometric detectors see, in
        arrival order: first the rows *crowded* within the request — whose mean distance to
        their ``knn_k`` nearest neighbours there is below the k-NN threshold — then rows drawn
        at random.

        A uniform sample diluted copies hidden among distinct records (1,000 copies of 20 probes
        in 9,999 rows gave about 51 sampled copies, below every alarm); crowded rows first make
        a large request look to the detectors as its crowded part would alone. Neighbours are
        found among each row's ``2·knn_k`` nearest in a random projection (:data:`SEARCHED_DIMS`)
        and measured in the full space (past :data:`MEASURED_DIMS` features, in a projection).
        Projections are drawn afresh from the OS's entropy for every request, like the random
        rows, so that neither can be computed in advance.
        """
        n, cap, k = z.shape[0], self.cfg.max_rows_per_request, self.cfg.knn_k
        # Clipped so that projections and squared distances stay finite (a k-d tree given
        # inf reports missing neighbours); a row 1e12 deviations out is far either way.
        z = np.clip(np.nan_to_num(z, nan=0.0), -1e12, 1e12)
        if z.shape[1] > MEASURED_DIMS:  # a random projection keeps distances within ~±25 %
            g = self._rng.normal(size=(z.shape[1], MEASURED_DIMS)) / np.sqrt(MEASURED_DIMS)
            z = z @ g
        searched = z
        if z.shape[1] > SEARCHED_DIMS:
            searched = z @ self._rng.normal(size=(z.shape[1], SEARCHED_DIMS))
        _, near = cKDTree(searched).query(searched, k=max(2, min(2 * k + 1, n)))
        mean_knn = np.empty(n)
        for s in range(0, n, _CHUNK_ROWS):
            c = near[s : s + _CHUNK_ROWS]
            dist = np.sqrt(((z[c] - z[s : s + len(c), None, :]) ** 2).sum(axis=2))
            dist[c == np.arange(s, s + len(c))[:, None]] = np.inf  # not its own neighbour
            mean_knn[s : s + len(c)] = np.sort(dist, axis=1)[:, :k].mean(axis=1)
        crowded = np.flatnonzero(mean_knn < self.threshold)
        if crowded.size >= cap:
            return np.sort(self._rng.choice(crowded, cap, replace=False))
        rest = np.setdiff1d(np.arange(n), crowded, assume_unique=True)
        fill = self._rng.choice(rest, cap - crowded.size, replace=False)
        return np.sort(np.concatenate([crowded, fill]))

    # --- detectors ---------------------------------------------------------------------------

    def _repeats_and_enumeration(
        self, key_id: str, st: _KeyState, hashes: list[str], now: float
    ) -> None:
        cap = self.cfg.enumeration_threshold + 1
        for h in hashes:
            if h not in st.repeats and len(st.repeats) >= 4 * cap:
                continue  # bounded memory: a key past 4× the enumeration threshold has alerted already
            c = st.repeats[h] = st.repeats[h] + 1
            if c == self.cfg.repeat_threshold:
                self._alert("repeat", key_id, [key_id], {"times": c, "queries": st.queries}, now)
            if len(st.distinct) < cap:
                st.distinct.add(h)
            if len(st.distinct) >= self.cfg.enumeration_threshold:
                self._alert(
                    "enumeration",
                    key_id,
                    [key_id],
                    {"distinct_records": len(st.distinct), "queries": st.queries},
                    now,
                )

    def _knn(self, key_id: str, st: _KeyState, z: np.ndarray, now: float) -> None:
        k = self.cfg.knn_k
        for row in z:
            if st.filled >= k:
                past = st.buffer[: st.filled]
                d = np.sqrt(((past - row) ** 2).sum(axis=1))
                mean_knn = (
                    float(np.partition(d, k - 1)[:k].mean()) if d.size > k else float(d.mean())
                )
                if mean_knn < self.threshold:
                    st.suspicious += 1
                    if st.suspicious >= self.cfg.knn_alarm:
                        fired = self._alert(
                            "perturbation",
                            key_id,
                            [key_id],
                            {
                                "mean_knn_distance": round(mean_knn, 6),
                                "threshold": round(self.threshold, 6),
                                "suspicious": st.suspicious,
                                "queries": st.queries,
                            },
                            now,
                        )
                        if fired:
                            st.suspicious = 0
                            st.filled = st.pos = 0  # Chen et al.: clear the buffer after an alarm
            st.buffer[st.pos] = row
            st.pos = (st.pos + 1) % st.buffer.shape[0]
            st.filled = min(st.filled + 1, st.buffer.shape[0])

    def _fingerprint_rows(self, z: np.ndarray) -> np.ndarray:
        """(m, fingerprint_size) uint64: the smallest keyed hashes of each row's quantised windows.

        A window's hash is a keyed linear combination of its quantised values (multipliers and
        per-position salts drawn from the server secret), mixed by splitmix64; vectorised over
        rows and windows.
        """
        q = np.floor(z / self.cfg.quantum).astype(np.int64).view(np.uint64)
        win = np.lib.stride_tricks.sliding_window_view(q, self._w, axis=1)  # (m, windows, w)
        h = (win * self._mult).sum(axis=2, dtype=np.uint64) ^ self._salt
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
        return np.sort(h, axis=1)[:, : self.cfg.fingerprint_size]

    def _kept_positions(self, z: np.ndarray) -> np.ndarray:
        """(m, kept) float32: the rows where the distance check measures them (see KEPT_DIMS)."""
        z = np.clip(np.nan_to_num(z, nan=0.0), -1e12, 1e12)
        if self._project is not None:
            z = z @ self._project
        kept: np.ndarray = np.clip(z, -1e30, 1e30).astype(np.float32)
        return kept

    def _nearest_match(self, fp: tuple[int, ...], position: np.ndarray) -> int | None:
        """The query number of the nearest earlier record sharing ``match_threshold`` of ``fp``'s
        hashes and lying within the k-NN threshold of ``position``; None if there is none."""
        matches: Counter[int] = Counter()
        for h in fp:
            buf = self._table.get(h)
            if buf is not None:
                matches.update(_query_numbers(buf))
        need = min(self.cfg.match_threshold, len(fp))
        candidates = np.fromiter((qn for qn, c in matches.items() if c >= need), dtype=np.int64)
        if candidates.size == 0:
            return None
        diff = self._positions[candidates % self.cfg.max_fingerprints] - position
        dist = np.sqrt((diff.astype(np.float64) ** 2).sum(axis=1))
        best = int(np.argmin(dist))
        return int(candidates[best]) if dist[best] <= self.threshold else None

    def _keep_position(self, qn: int, position: np.ndarray) -> None:
        slot = qn % self.cfg.max_fingerprints
        if slot >= len(self._positions):  # the table is still filling: double, up to its size
            grown = min(self.cfg.max_fingerprints, 2 * len(self._positions))
            more = np.empty((grown - len(self._positions), self._positions.shape[1]), np.float32)
            self._positions = np.concatenate([self._positions, more])
        self._positions[slot] = position

    def _fingerprints(self, key_id: str, z: np.ndarray, now: float) -> None:
        cfg = self.cfg
        positions = self._kept_positions(z)
        for fp_row, position in zip(self._fingerprint_rows(z), positions, strict=True):
            fp = tuple(fp_row.tolist())
            best = self._nearest_match(fp, position)
            qn_new = self._next
            self._next += 1
            self._keep_position(qn_new, position)
            if best is not None:
                cid = self._cluster_of.get(best, best)
                count, live, members = self._clusters.get(cid, (1, 1, ()))
                if key_id not in members:
                    members = (*members, key_id)
                count += 1
                self._clusters[cid] = (count, live + 1, members)
                self._cluster_of[qn_new] = cid
                if count >= cfg.cluster_alarm:
                    keys = sorted(members)
                    detector = "spread" if len(keys) > 1 else "near_duplicate"
                    detail = {"cluster_queries": count, "keys": len(keys)}
                    for k in keys if detector == "spread" else [key_id]:
                        self._alert(detector, k, keys, detail, now)
            else:
                self._clusters[qn_new] = (1, 1, (key_id,))
                self._cluster_of[qn_new] = qn_new
            packed = _QN.pack(qn_new)
            for h in fp:
                buf = self._table.get(h)
                if buf is None:
                    self._table[h] = bytearray(packed)
                else:
                    buf += packed
                    if len(buf) > cfg.max_postings * _QN.size:
                        del buf[: _QN.size]  # a common window: its latest records suffice
            self._fps.append(fp)
            while len(self._fps) > cfg.max_fingerprints:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        """Drop the oldest fingerprint from the table, and its cluster once it has no member left."""
        old = self._next - len(self._fps)
        old_fp = self._fps.popleft()
        for h in old_fp:
            buf = self._table.get(h)
            if buf:
                if _oldest(buf) == old:
                    del buf[: _QN.size]
                if not buf:
                    del self._table[h]
        old_cid = self._cluster_of.pop(old, None)
        if old_cid is not None and old_cid in self._clusters:
            count, live, members = self._clusters[old_cid]
            if live <= 1:
                del self._clusters[old_cid]
            else:
                self._clusters[old_cid] = (count, live - 1, members)

    # --- helpers -----------------------------------------------------------------------------

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            # float32: a key's buffer is knn_buffer × d numbers (784 pixels: 3.1 MB, not 6.3),
            # and distances at the threshold's scale need no more digits
            st = _KeyState(buffer=np.zeros((self.cfg.knn_buffer, self.d), dtype=np.float32))
            self._keys[key_id] = st
            while len(self._keys) > self.cfg.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key_id)
        return st

    def _alert(
        self, detector: str, key_id: str, keys: list[str], detail: dict[str, Any], now: float
    ) -> bool:
        last = self._last_alert.get((detector, key_id))
        if last is not None and now - last < self.cfg.cooldown_s:
            return False
        self._last_alert[(detector, key_id)] = now
        try:
            self._sink(detector, key_id, keys, {**detail, "observed": self._observed})
        except Exception:  # an alert that cannot be stored must not fail the answer already logged
            log.exception("could not store a %s alert", detector)
        return True


def check_webhook_url(url: str, field: str = "webhook") -> None:
    """:class:`InputError` naming ``field`` unless ``url`` is an http(s) URL with a host that
    the webhook's client can post to (red team: ``http://[::1`` was accepted, and killed the
    webhook thread at the first alert; ``notaurl`` warned at every alert)."""
    import urllib.parse

    import httpx

    try:
        parts = urllib.parse.urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number
        httpx.URL(url)
    except (ValueError, httpx.InvalidURL) as exc:
        raise InputError(field, f"is not a valid URL ({first_line(exc)})") from None
    if parts.scheme.lower() not in ("http", "https"):
        got = f"scheme {parts.scheme!r}" if parts.scheme else "no scheme"
        raise InputError(field, f"must be an http:// or https:// URL, got {got}")
    if not parts.hostname:
        raise InputError(field, "must name a host (http://host:port/path)")


class Webhook:
    """Posts each alert as JSON to ``url`` from one background thread (never blocks an answer).

    The queue holds at most ``max_queue`` alerts; when a slow or unreachable webhook lets it
    fill up, the oldest are dropped (every alert stays in the database) and a warning says how
    many. A post that fails, however it fails, is a warning, and the thread goes on.
    """

    def __init__(self, url: str, *, timeout: float = 2.0, max_queue: int = 1000) -> None:
        check_webhook_url(url)
        self.url = url
        self._timeout = timeout
        self._max_queue = max_queue
        self._queue: deque[dict[str, Any]] = deque()
        self._lock = threading.Lock()
        #: Alerts dropped from a full queue since the last warning, and in all.
        self._dropped = 0
        self.dropped = 0
        self._event = threading.Event()
        self._stop = False
        self._thread = threading.Thread(target=self._run, name="miaudit-webhook", daemon=True)
        self._thread.start()

    def post(self, alert: dict[str, Any]) -> None:
        with self._lock:
            if len(self._queue) >= self._max_queue:
                self._queue.popleft()
                self._dropped += 1
                self.dropped += 1
            self._queue.append(alert)
        self._event.set()

    def _next(self) -> tuple[dict[str, Any] | None, int]:
        """The next alert to post (None: none queued) and the alerts dropped since last asked."""
        with self._lock:
            dropped, self._dropped = self._dropped, 0
            return (self._queue.popleft() if self._queue else None), dropped

    def _run(self) -> None:
        import httpx

        with httpx.Client(timeout=self._timeout) as client:
            while not self._stop:
                self._event.wait(0.5)
                self._event.clear()
                while True:
                    item, dropped = self._next()
                    if dropped:
                        log.warning(
                            "webhook %s: its queue was full; %d alerts were not posted (kept in the database)",
                            self.url,
                            dropped,
                        )
                    if item is None:
                        break
                    self._send(client, item)

    def _send(self, client: Any, item: dict[str, Any]) -> None:
        """Post one alert; any failure is a warning (the alert stays in the database)."""
        try:
            response = client.post(
                self.url,
                content=json.dumps(item),
                headers={"content-type": "application/json"},
            )
        except Exception as exc:  # noqa: BLE001 - any failure of one post must not end the thread
            log.warning(
                "webhook %s unreachable (%s: %s); alert %s kept in the database only",
                self.url,
                type(exc).__name__,
                first_line(exc),
                item.get("id"),
            )
            return
        if response.status_code >= 400:
            log.warning(
                "webhook %s answered %d; alert %s kept in the database only",
                self.url,
                response.status_code,
                item.get("id"),
            )

    def close(self) -> None:
        self._stop = True
        self._event.set()
        self._thread.join(timeout=self._timeout + 1)


class Observer:
    """Runs a :class:`Monitor` on one background thread, off the request path.

    Answers are never delayed by the detectors: a request's records are queued after its log
    entry is committed. The queue is bounded (``max_pending`` records); when the detectors fall
    that far behind, further records skip detection, are counted, and an ``overload`` alert is
    raised (at most once per cooldown) so that flooding the service cannot hide probing quietly.
    """

    def __init__(
        self,
        config: DetectorConfig,
        secret: bytes,
        sink: AlertSink,
        *,
        max_pending: int = 1_000_000,
    ) -> None:
        import queue

        self.cfg = config
        self._secret = secret
        self._sink = sink
        self.monitor: Monitor | None = None
        self._queue: queue.Queue[tuple[str, np.ndarray, list[str], float] | None] = queue.Queue()
        self._pending = 0
        self._max_pending = max_pending
        self.dropped = 0
        self._last_overload = -math.inf
        self._last_failure = -math.inf
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._run, name="miaudit-detectors", daemon=True)
        self._thread.start()

    def submit(self, key_id: str, records: np.ndarray, hashes: list[str]) -> None:
        n = int(records.shape[0])
        now = time.time()
        with self._lock:
            if self._pending + n > self._max_pending:
                self.dropped += n
                overload = now - self._last_overload >= self.cfg.cooldown_s
                if overload:
                    self._last_overload = now
            else:
                self._pending += n
                self._queue.put((key_id, records, hashes, now))
                return
        if overload:
            try:
                self._sink("overload", None, [], {"dropped_records": self.dropped})
            except Exception:
                log.exception("could not store an overload alert")

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            try:
                if item is None:
                    return
                key_id, x, hashes, now = item
                try:
                    if self.monitor is None:
                        self.monitor = Monitor(self.cfg, x.shape[1], self._secret, self._sink)
                    self.monitor.observe(key_id, x, hashes, now)
                except Exception as exc:  # a detector fault must not stop the detectors
                    log.exception("probing detectors failed on a request of key %s", key_id)
                    self._failed(key_id, exc, now)
                finally:
                    with self._lock:
                        self._pending -= x.shape[0]
            finally:
                self._queue.task_done()

    def _failed(self, key_id: str, exc: Exception, now: float) -> None:
        """A ``detectors_failed`` alert, at most once per cooldown: detectors that fail on every
        request (a Monitor that cannot be built) are off, and a log line alone hid that."""
        if now - self._last_failure < self.cfg.cooldown_s:
            return
        self._last_failure = now
        try:
            self._sink(
                "detectors_failed",
                key_id,
                [key_id],
                {"error": first_line(exc) or type(exc).__name__},
            )
        except Exception:
            log.exception("could not store a detectors_failed alert")

    def flush(self) -> None:
        """Wait until every submitted request has been through the detectors."""
        self._queue.join()

    def close(self, timeout: float = 5.0) -> None:
        self._queue.put(None)
        self._thread.join(timeout=timeout)
