"""Probing detectors (docs/method.md §10): what query patterns reveal, and what they cannot.

Five detectors look at every answered record, in the order it arrived (standardised, and
clipped to ±:data:`CLIP` alike for every geometric one):

- ``repeat`` — the same record (exact keyed hash) queried again and again by one key.
- ``perturbation`` — many near-identical queries around one point by one key: the stateful
  detector of Chen, Carlini & Wagner (2020). Each key keeps its last ``knn_buffer`` records
  (standardised); a record whose mean distance to its ``knn_k`` nearest neighbours in that buffer
  falls below ``knn_threshold`` is *suspicious*; ``knn_alarm`` suspicious records since the key's
  last alarm raise an alert, and the buffer is then cleared (as in the paper). Noise-robustness
  and boundary-distance attacks (§5) walk around one record and are caught within tens of
  queries.
- ``near_duplicate`` / ``spread`` — many queries around one point *across keys*: a record with
  ``cluster_alarm`` records (itself included) within the k-NN threshold among the last
  ``spread_window`` records of all keys, or within ``tight_radius`` of it among the last
  ``tight_window``, raises ``spread`` when they come from two or more keys (an attack split
  over accounts), ``near_duplicate`` when from one. The alert names every key with a record
  near and accuses those with two or more (:meth:`Monitor._alarm`). The windows are of
  records, so nothing a client sends pushes a probe out early but records themselves: a
  point's probes spaced more than a window's length over ``cluster_alarm - 1`` apart are never
  counted together (the Blacklight-style hashed-window fingerprints before this kept each
  window's latest 256 records, and 512 records sharing one window with a probe run hid it:
  red team). The windows are what keep busy benign traffic quiet: the count of benign records
  near a record grows with them, so :func:`calibrated_detectors` fits each on benign records
  to an expected :data:`SPREAD_FALSE_ALARMS` per benign record (binomial counts, each record's
  neighbour rate measured on the benign set). Cost: one distance per record in the windows
  (‖a‖² + ‖b‖² − 2a·b, BLAS), in at most :data:`KEPT_DIMS` dimensions; every row of a request
  up to :data:`WINDOW_ROWS`.
- ``near_share`` — a key whose last ``near_share_records`` records landed near an earlier
  record in the windows far more often than benign records do (``benign_near_share``,
  measured on calibration): many records probed in turn, each point's probes too far apart for
  the windows (:meth:`Monitor._near_share`).
- ``enumeration`` — one key querying ``enumeration_threshold`` distinct records (broad sweeps,
  model extraction, scoring a whole candidate list).

What cannot be detected: attacks that need one query per record (the loss, LiRA and RMIA attacks
after offline reference training) look exactly like benign scoring of distinct records. The only
signal left is their volume (``enumeration``), which honest bulk users share. Against them, the
output policy and the budget are the controls.

State is in memory, per server process, bounded (``max_keys`` keys, the longer window's
positions), and held in arrays and untracked objects: a full collection scans every tracked
object while every thread waits, and the fingerprint table's lists and cluster objects (about
16 per record) once made the guarded server's collections take 100–300 ms in the middle of its
answers. Alerts are stored in the database (all processes) and optionally posted to a webhook; each
(detector, key) pair alerts at most once per ``cooldown_s``.
"""

from __future__ import annotations

import json
import logging
import math
import numbers
import threading
import time
from collections import Counter, OrderedDict, deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
from scipy.spatial import cKDTree
from scipy.spatial.distance import cdist

from miaudit.errors import InputError, first_line

log = logging.getLogger("miaudit.serve")

#: A large request's crowded rows are searched for in a random projection to this many
#: dimensions, where a k-d tree is fast, and their distances measured in the full space or, past
#: ``MEASURED_DIMS`` features, in a random projection to that many.
SEARCHED_DIMS = 4
MEASURED_DIMS = 64
#: The cross-key window keeps each record's position, past this many features in a random
#: projection (distances then within about ±6 % at 1 SD; float32: 5,000 records take 2.6 MB).
KEPT_DIMS = 128
#: Expected false ``spread``/``near_duplicate`` alarms per benign record that
#: :func:`calibrated_detectors` fits the cross-key window to: about one a day at a million
#: records a day.
SPREAD_FALSE_ALARMS = 1e-6
#: Settings of the hashed-window fingerprints the cross-key window replaced: a spec naming one
#: is refused (:func:`check_removed_settings`), not run with its value ignored.
REMOVED_SETTINGS = frozenset(
    ("quantum", "window", "fingerprint_size", "match_threshold", "max_fingerprints", "max_postings")
)
_CHUNK_ROWS = 256  # rows whose candidates' full distances are held at once
#: Standardised values are clipped to ±this before any geometric detector reads them, the same
#: for all: when the request's sample clipped and the per-key buffer did not, rows differing
#: only past the clip (1e13 against 1e14) were one crowded point to the sample, filled it, and
#: lay 1e13 apart in the buffer, so no probe beside them was seen (red team). Past 10⁶ standard
#: deviations a record is far from every benign one either way.
CLIP = 1e6
#: Most rows of one request the cross-key windows read: all of a request up to this, past it
#: a uniform sample drawn from the OS's entropy (not the per-key detector's crowded-first one,
#: which a client can fill with crowded decoys of its choosing).
WINDOW_ROWS = 4_096


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
    cluster_alarm: int = 20
    spread_window: int = 5_000
    #: A second, tighter count: records within ``tight_radius`` × the k-NN threshold among the
    #: last ``tight_window`` records (0: none). Benign records lie that near each other far
    #: less often, so its window can be longer, and a tight probe cloud spaced out among other
    #: traffic is still counted (calibrated on Adult: 9,119 records, against 2,784 at the
    #: threshold; benchmarks/bench_detection_tabular.py).
    tight_radius: float = 0.5
    tight_window: int = 20_000
    #: ``near_share``: a key's last ``near_share_records`` records seen by the windows (0: no
    #: such detector), and the share of benign records with another record near them in the
    #: windows (calibration measures it; the default lies above Adult's 0.10, and a larger
    #: share lets more through).
    near_share_records: int = 200
    benign_near_share: float = 0.15
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
        for name in ("spread_window", "tight_window"):
            if getattr(self, name) < self.cluster_alarm:
                raise InputError(
                    f"detectors.{name}",
                    f"must be at least cluster_alarm ({self.cluster_alarm}), got {getattr(self, name)}",
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


def check_removed_settings(names: Iterable[str]) -> None:
    """:class:`InputError` naming the first of ``names`` that the cross-key window replaced."""
    for name in names:
        if name in REMOVED_SETTINGS:
            raise InputError(
                f"detectors.{name}",
                "was a setting of the hashed-window fingerprints, which are gone: the cross-key "
                "detectors count near records among the last spread_window records (docs/serve.md)",
            )


def _is_number(value: object) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool | np.bool_)


#: Settings that count, with the range each may take: a table or buffer past its upper bound
#: would not fit in memory (the Monitor, built on the first request, then failed every request).
_COUNTS = {
    "repeat_threshold": (1, 10**9),
    "knn_k": (1, 1_000),
    "knn_buffer": (1, 100_000),
    "knn_alarm": (1, 10**9),
    "cluster_alarm": (2, 10**9),
    "spread_window": (2, 100_000),
    "tight_window": (2, 100_000),
    "near_share_records": (0, 100_000),
    "enumeration_threshold": (1, 10**9),
    "max_rows_per_request": (1, 1_000_000),
    "max_keys": (1, 1_000_000),
    "auth_alarm": (0, 10**9),  # 0: no watch
    "auth_window_s": (1, 366 * 86_400),
}
#: Real-valued settings and their ranges.
_REALS = {
    "cooldown_s": (0.0, 366 * 86_400.0),
    "tight_radius": (0.0, 1.0),
    "benign_near_share": (0.0, 1.0),
}
#: ``near_share`` alarms when a key's share of records near an earlier one is at least this
#: (and improbable under the benign share: :data:`NEAR_SHARE_P`), so that a key whose traffic
#: is somewhat clumpier than the calibration records' is not flagged for it.
NEAR_SHARE_FLOOR = 0.25
NEAR_SHARE_P = 1e-9


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


#: Fewest benign records :func:`calibrated_detectors` accepts, and never fewer than the
#: config's ``knn_buffer``: a key's buffer holds that many records, and a threshold measured
#: among fewer neighbours comes out too large (records lie farther from their nearest among
#: 99 than among 1,000), so that every benign key raised `perturbation` (red team).
MIN_CALIBRATION_RECORDS = 100


def calibrated_detectors(
    benign: np.ndarray, config: DetectorConfig | None = None, field_name: str = "benign"
) -> DetectorConfig:
    """``config`` with its distances measured on ``benign`` records (n, d) in arrival order:
    centred on their mean, scaled by their standard deviation (a constant feature keeps
    scale 1), the k-NN threshold at the 0.1 % quantile of their standardised mean distances to
    the records before them (:func:`calibrate_knn_threshold`; with fewer than 1,000 distances
    that is their minimum), and the cross-key windows fitted to them, at the threshold and at
    ``tight_radius`` of it (:func:`fit_spread_window`, never above ``config``'s)."""
    cfg = config or DetectorConfig()
    x = np.asarray(benign, dtype=np.float64)
    need = max(MIN_CALIBRATION_RECORDS, cfg.knn_buffer)
    if x.ndim != 2 or x.shape[0] < need:
        raise InputError(
            field_name,
            f"holds {x.shape[0] if x.ndim else 0} records; calibration needs at least {need:,}, as (records, features): a key's k-NN buffer holds {cfg.knn_buffer:,}, and a threshold measured among fewer neighbours is too large (or lower detectors.knn_buffer)",
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
    z = _standardise(x, cfg)
    rates = neighbour_rates(z, threshold)
    window = largest_window(rates, cfg.cluster_alarm, cfg.spread_window)
    tight_rates = np.zeros_like(rates)  # no tight count: no record near in it
    tight: int | None = cfg.tight_window
    if cfg.tight_radius > 0:
        tight_rates = neighbour_rates(z, cfg.tight_radius * threshold)
        tight = largest_window(tight_rates, cfg.cluster_alarm, cfg.tight_window)
    if window is None or tight is None:
        raise InputError(
            field_name,
            f"records crowd so that {cfg.cluster_alarm} of them lie within the k-NN threshold "
            f"({threshold:.3g}) among any {cfg.cluster_alarm * 5:,} benign records: the cross-key "
            "detectors would alarm on benign traffic; raise detectors.cluster_alarm, or give "
            "benign records as varied as the traffic",
        )
    # a benign record's chance of another near it: one minus that of none within the threshold
    # among the last `window` and none within the tight radius among the records before those
    alone = (1 - rates) ** window * (1 - tight_rates) ** max(0, tight - window)
    near_share = float(np.mean(1 - alone))
    return replace(
        cfg,
        knn_threshold=threshold,
        spread_window=window,
        tight_window=tight,
        benign_near_share=near_share,
    )


def fit_spread_window(
    z: np.ndarray, threshold: float, cluster_alarm: int, most: int, rate: float | None = None
) -> int | None:
    """The largest cross-key window (records, at most ``most``) in which benign traffic like
    ``z`` (standardised records, (n, d)) is expected to raise at most ``rate`` (default
    :data:`SPREAD_FALSE_ALARMS`) ``spread`` or ``near_duplicate`` alarms per record; None when
    even a window of 5 × ``cluster_alarm`` records would raise more.

    Each benign record i has ``c_i`` of the n − 1 others within ``threshold``; in a window of w
    records drawn like them, its count is Binomial(w, c_i / (n − 1)), and it alarms at
    ``cluster_alarm − 1`` or more. The expected rate is the mean of those tail probabilities:
    increasing in w, so the largest w meeting it is found by bisection. On Adult, at twice the
    windows fitted on 5,000 records it predicted 7.9e-4 alarms per benign record, and 20,000
    benign records raised 6 alerts (3e-4; ``python -m benchmarks run detection_tabular``)."""
    return largest_window(neighbour_rates(z, threshold), cluster_alarm, most, rate)


def largest_window(
    p: np.ndarray, cluster_alarm: int, most: int, rate: float | None = None
) -> int | None:
    """:func:`fit_spread_window` from the records' neighbour rates ``p``."""
    rate = SPREAD_FALSE_ALARMS if rate is None else rate

    def too_many(w: int) -> bool:
        return expected_alarms(p, cluster_alarm, w) > rate

    low = 5 * cluster_alarm
    if too_many(min(low, most)):
        return None
    if not too_many(most):
        return most
    high = most  # too_many(low) is False, too_many(high) is True
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if too_many(mid) else (mid, high)
    return low


def neighbour_rates(z: np.ndarray, threshold: float) -> np.ndarray:
    """Each of ``z``'s records' share of the others within ``threshold`` (exact distances)."""
    n = z.shape[0]
    close = np.zeros(n, dtype=np.int64)
    for s in range(0, n, 512):  # (512 × n) distances at once: bounded memory
        close[s : s + 512] = (cdist(z[s : s + 512], z, "sqeuclidean") <= threshold**2).sum(1) - 1
    rates: np.ndarray = close / max(1, n - 1)
    return rates


def expected_alarms(rates: np.ndarray, cluster_alarm: int, window: int) -> float:
    """Expected cross-key alarms per benign record in a window of ``window`` records drawn like
    those with neighbour ``rates``: the mean of P(Binomial(window, rate) ≥ cluster_alarm − 1)."""
    from scipy.stats import binom

    return float(binom.sf(cluster_alarm - 2, window, rates).mean())


def near_share_alarm(cfg: DetectorConfig) -> int:
    """How many of a key's last ``near_share_records`` records must have had another near
    them for ``near_share``: a share of at least :data:`NEAR_SHARE_FLOOR`, and a count whose
    chance under the benign share is at most :data:`NEAR_SHARE_P` (binomial)."""
    from scipy.stats import binom

    n, q = cfg.near_share_records, cfg.benign_near_share
    if n == 0:
        return 1
    improbable = int(binom.isf(NEAR_SHARE_P, n, q)) + 1  # P(count ≥ this) ≤ NEAR_SHARE_P
    return max(math.ceil(NEAR_SHARE_FLOOR * n), min(n, improbable))


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
    # near_share: whether each of the key's last records had another near it (a ring of
    # bytes), how many of them did, and where the next goes
    near: bytearray = field(default_factory=bytearray)
    near_count: int = 0
    near_pos: int = 0
    code: int = 0  # the key's number in the windows' ring (a key evicted and back: a new one)


AlertSink = Callable[[str, str | None, list[str], dict[str, Any]], None]


class Monitor:
    """The detectors' state; ``observe`` is called with each answered request's records."""

    def __init__(
        self, config: DetectorConfig, n_features: int, secret: bytes, sink: AlertSink
    ) -> None:
        del secret  # the hashed fingerprints' key: the window keeps no hashes (callers pass it)
        self.cfg = config
        self.d = int(n_features)
        self.threshold = (
            config.knn_threshold
            if config.knn_threshold is not None
            else default_knn_threshold(self.d)
        )
        self._sink = sink
        self._keys: OrderedDict[str, _KeyState] = OrderedDict()
        self._observed = 0  # records seen by this process, all keys
        self._last_alert: dict[tuple[str, str | None], float] = {}
        self._lock = threading.Lock()
        # The rows a large request is sampled on are drawn from the OS's entropy: with a fixed
        # seed they could be computed in advance (after a restart, or by the only bulk caller)
        # and a probe's copies placed everywhere else (a red team read raw probabilities back
        # through a noise policy with no alert that way). So is the window's projection.
        self._rng = np.random.default_rng()
        self._project = (
            self._rng.normal(size=(self.d, KEPT_DIMS)) / np.sqrt(KEPT_DIMS)
            if self.d > KEPT_DIMS
            else None
        )
        kept = KEPT_DIMS if self._project is not None else self.d
        # The cross-key windows: the last records' positions, keys and query numbers, in a ring
        # as long as the longer window, whose slot ``_slot`` is written next; grown as it fills
        # (100,000 × 128 float64 is 102 MB, not allocated for a server answering a few hundred).
        #: (radius, window) of each count: at the threshold, and the tight one
        self.scales = [(self.threshold, config.spread_window)]
        if config.tight_radius > 0:
            self.scales.append((config.tight_radius * self.threshold, config.tight_window))
        self._capacity = max(w for _, w in self.scales)
        self._ring = np.empty((min(self._capacity, 1024), kept))
        self._ring_sq = np.zeros(len(self._ring))  # squared norms of the positions
        self._ring_keys: list[str] = [""] * len(self._ring)
        self._ring_qn = np.zeros(len(self._ring), dtype=np.int64)
        self._ring_code = np.full(len(self._ring), -1, dtype=np.int64)
        self._codes = 0  # key numbers given so far
        self._filled = 0
        self._slot = 0
        self._next = 0  # the next record's query number
        self.near_share_alarm = near_share_alarm(config)

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
        z = np.clip(np.nan_to_num(_standardise(x, self.cfg), nan=0.0), -CLIP, CLIP)
        # Bounded work per request: a large batch is sampled for the per-key k-NN, rows crowded
        # by near neighbours in the same request first (see _sample_rows); the windows read
        # every row up to WINDOW_ROWS, a uniform sample past it.
        rows = self._sample_rows(z) if n > self.cfg.max_rows_per_request else np.arange(n)
        seen = (
            np.sort(self._rng.choice(n, WINDOW_ROWS, replace=False))
            if n > WINDOW_ROWS
            else np.arange(n)
        )
        with self._lock:
            self._observed += n
            st = self._state(key_id)
            st.queries += n
            self._repeats_and_enumeration(key_id, st, hashes, now)
            self._knn(key_id, st, z[rows], now)
            self._spread(key_id, z[seen], now)

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
        # clipped as observe clips (finite projections and squared distances: a k-d tree given
        # inf reports missing neighbours)
        z = np.clip(np.nan_to_num(z, nan=0.0), -CLIP, CLIP)
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

    def _kept_positions(self, z: np.ndarray) -> np.ndarray:
        """(m, kept) float64: the (clipped) rows where the windows measure them (KEPT_DIMS)."""
        kept: np.ndarray = z @ self._project if self._project is not None else z
        return kept

    def _spread(self, key_id: str, z: np.ndarray, now: float) -> None:
        """Count each row's neighbours among the last records of all keys (earlier rows of this
        request included) at each of :attr:`scales` — within the threshold among the last
        ``spread_window``, within ``tight_radius`` of it among the last ``tight_window`` —
        alarm when a count reaches ``cluster_alarm``, and add the rows to the ring.

        A record counts for row i when fewer than the window's length of records came between
        (query numbers), exactly as if the rows came one by one. Squared distances are
        ‖a‖² + ‖b‖² − 2a·b in float64 with the ring's norms kept: the cancellation error grows
        with the norms, about 10⁻¹² standard units² for ordinary records and a few units² for
        records at the clip (±:data:`CLIP` in every feature), which lie 10⁶ deviations from
        any benign record either way."""
        positions = self._kept_positions(z)
        st = self._keys.get(key_id)  # None only where a benchmark times this alone
        step = min(_CHUNK_ROWS, min(w for _, w in self.scales))
        for s in range(0, len(positions), step):
            chunk = positions[s : s + step]
            c = len(chunk)
            sq = (chunk**2).sum(axis=1)
            ring = self._ring[: self._filled]
            d2 = sq[:, None] + self._ring_sq[None, : self._filled] - 2.0 * (chunk @ ring.T)
            ago = (self._next + np.arange(c))[:, None] - self._ring_qn[None, : self._filled]
            d2_within = sq[:, None] + sq[None, :] - 2.0 * (chunk @ chunk.T)
            earlier = np.tril(np.ones((c, c), dtype=bool), k=-1)  # c ≤ every window
            counts, masks, own = [], [], []
            for radius, w in self.scales:
                near = (d2 <= radius**2) & (ago <= w)
                mine = (earlier & (d2_within <= radius**2)).sum(axis=1) + 1
                counts.append(near.sum(axis=1) + mine)
                masks.append(near)
                own.append(mine)
            for i in np.flatnonzero(np.max(counts, axis=0) >= self.cfg.cluster_alarm):
                self._alarm(key_id, int(i), counts, masks, own, now)
            # near_share: near a record of the key's own, at either scale, and not the same
            # record again (a retried request, a list scored twice: `repeat` counts those)
            if st is not None:
                same = d2 <= 1e-9 * (1 + sq[:, None] + self._ring_sq[None, : self._filled])
                keys_own = self._ring_code[None, : self._filled] == st.code
                near_own = (np.logical_or.reduce(masks) & keys_own & ~same).any(axis=1)
                same_within = d2_within <= 1e-9 * (1 + sq[:, None] + sq[None, :])
                threshold2 = self.scales[0][0] ** 2
                near_own |= (earlier & (d2_within <= threshold2) & ~same_within).any(axis=1)
                self._near_share(key_id, st, near_own, now)
            self._remember(key_id, -1 if st is None else st.code, chunk, sq)

    def _alarm(
        self,
        key_id: str,
        i: int,
        counts: list[np.ndarray],
        masks: list[np.ndarray],
        own: list[np.ndarray],
        now: float,
    ) -> None:
        """Alert for row ``i`` of a chunk whose count reached ``cluster_alarm``: every key with a
        record near is named; the keys with two or more records in a count that fired are
        accused (an alert each), and when none has, the alert accuses no key.

        Accusing the key whose record completed the count let a client frame another: 19
        records placed near one it knew would come accused that key and no placing key, and
        a benign key scoring a probed record after an attack was accused like the attacker
        (red team). One record near a point is what any client may send; a second near the
        same point is the key's own doing. A split attack's keys are accused as they go on,
        each once it has sent a second probe near a point; one that gives each key one probe
        per point accuses none, and its alerts name them all."""
        cfg = self.cfg
        per_key: Counter[str] = Counter()
        for n, m, mine in zip(counts, masks, own, strict=True):
            if n[i] >= cfg.cluster_alarm:
                scale: Counter[str] = Counter(self._ring_keys[j] for j in np.flatnonzero(m[i]))
                scale[key_id] += int(mine[i])
                per_key |= scale  # the larger count of each key over the scales that fired
        keys = sorted(per_key)
        detector = "spread" if len(keys) > 1 else "near_duplicate"
        accused = sorted(k for k, n in per_key.items() if n >= 2)
        detail: dict[str, Any] = {
            "records_near": int(counts[0][i]),
            "window": self.scales[0][1],
            "keys": len(keys),
            "accused": len(accused),
        }
        if len(self.scales) > 1:
            detail["records_very_near"] = int(counts[1][i])
            detail["tight_window"] = self.scales[1][1]
        for k in accused:
            self._alert(detector, k, keys, {**detail, "records_of_key": per_key[k]}, now)
        if not accused:
            self._alert_unaccused(detector, keys, detail, now)

    def _alert_unaccused(
        self, detector: str, keys: list[str], detail: dict[str, Any], now: float
    ) -> None:
        """An alert accusing no key, naming ``keys``, when one of them has not been named in such
        an alert within ``cooldown_s``. One cooldown for all of them let 20 throwaway keys
        sending one record each take the slot, and a split attack's 40 keys then appeared in
        no alert; and the first alert named only the 20 keys that had sent a probe by then
        (red team). Per named key, every key in a cluster is named once per cooldown."""
        fresh = [
            k
            for k in keys
            if now - self._last_alert.get((f"{detector}:named", k), -math.inf)
            >= self.cfg.cooldown_s
        ]
        if fresh:
            for k in keys:
                self._last_alert[(f"{detector}:named", k)] = now
            self._alert(
                detector, None, keys, {**detail, "newly_named": len(fresh)}, now, cooldown=False
            )

    def _near_share(self, key_id: str, st: _KeyState, near: np.ndarray, now: float) -> None:
        """Add ``near`` (whether each of the key's new records lay near an earlier record of its
        own in the windows, and was not that record again) to the key's last
        ``near_share_records``, and alarm when their share is improbable for benign traffic.

        An attack that sends several queries about each of many records in turn, one query per
        record per round, keeps every point's count below the windows' alarm once it probes
        more than a window's length over 19 records, at no extra cost (red team: 1,665 Adult
        records × 30 probes from 5 keys raised nothing). Yet nearly every record of such a key
        lands near one of its own earlier probes; so its share gives it away, whatever the
        order, while it probes fewer records than the windows span. A key's own records only:
        counted near any key's, a client placing near-copies of records another key would send
        raised this alert on that key (second red team); and never the same record again: a
        retried request, or a list scored twice, is `repeat`'s to judge. The benign share
        calibration measures counts any key's records, an upper bound on a key's own."""
        n = self.cfg.near_share_records
        if n == 0:
            return
        if not st.near:
            st.near = bytearray(n)
        for flag in near.tolist():
            st.near_count += flag - st.near[st.near_pos]
            st.near[st.near_pos] = flag
            st.near_pos = (st.near_pos + 1) % n
            if st.near_count >= self.near_share_alarm:
                fired = self._alert(
                    "near_share",
                    key_id,
                    [key_id],
                    {
                        "records": n,
                        "near": st.near_count,
                        "benign_share": round(self.cfg.benign_near_share, 4),
                        "queries": st.queries,
                    },
                    now,
                )
                if fired:  # as the k-NN buffer after an alarm: judged afresh from here
                    st.near, st.near_count, st.near_pos = bytearray(n), 0, 0

    def _remember(self, key_id: str, code: int, chunk: np.ndarray, sq: np.ndarray) -> None:
        """Write ``chunk``'s positions (and squared norms ``sq``) into the ring, over its
        oldest records, as the key ``key_id`` numbered ``code``."""
        cap, c = self._capacity, len(chunk)
        if self._filled + c > len(self._ring) and len(self._ring) < cap:
            grown = min(cap, max(2 * len(self._ring), self._filled + c))
            more = grown - len(self._ring)
            self._ring = np.concatenate([self._ring, np.empty((more, self._ring.shape[1]))])
            self._ring_sq = np.concatenate([self._ring_sq, np.zeros(more)])
            self._ring_qn = np.concatenate([self._ring_qn, np.zeros(more, np.int64)])
            self._ring_code = np.concatenate([self._ring_code, np.full(more, -1, np.int64)])
            self._ring_keys.extend([""] * more)
        slots = (self._slot + np.arange(c)) % cap
        self._ring[slots] = chunk
        self._ring_sq[slots] = sq
        self._ring_qn[slots] = self._next + np.arange(c)
        self._ring_code[slots] = code
        for j in slots.tolist():
            self._ring_keys[j] = key_id
        self._next += c
        self._slot = int((self._slot + c) % cap)
        self._filled = min(cap, self._filled + c)

    # --- helpers -----------------------------------------------------------------------------

    def _state(self, key_id: str) -> _KeyState:
        st = self._keys.get(key_id)
        if st is None:
            # float32: a key's buffer is knn_buffer × d numbers (784 pixels: 3.1 MB, not 6.3),
            # and distances at the threshold's scale need no more digits
            st = _KeyState(
                buffer=np.zeros((self.cfg.knn_buffer, self.d), dtype=np.float32), code=self._codes
            )
            self._codes += 1
            self._keys[key_id] = st
            while len(self._keys) > self.cfg.max_keys:
                self._keys.popitem(last=False)
        else:
            self._keys.move_to_end(key_id)
        return st

    def _alert(
        self,
        detector: str,
        key_id: str | None,
        keys: list[str],
        detail: dict[str, Any],
        now: float,
        *,
        cooldown: bool = True,
    ) -> bool:
        last = self._last_alert.get((detector, key_id))
        if cooldown and last is not None and now - last < self.cfg.cooldown_s:
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
