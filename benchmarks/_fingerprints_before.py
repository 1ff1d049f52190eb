"""The cross-key detector before the window (commit a5a366f), kept as the benchmarks' baseline.

Blacklight-style fingerprints (Li et al. 2022): each standardised record is quantised (step
``QUANTUM``), windows of ``WINDOW`` consecutive quantised features are hashed (keyed), and the
``FINGERPRINT_SIZE`` smallest hashes are its fingerprint. A record sharing ``MATCH`` of them with
an earlier record and lying within the k-NN threshold of it joins that record's cluster; a
cluster of ``cluster_alarm`` records raises ``spread`` (two or more keys) or ``near_duplicate``.
Each hash keeps its ``MAX_POSTINGS`` latest records, and the table its ``MAX_FINGERPRINTS``
latest: the bound that let a client push probes out of their lists (red team, 2026-12-07).

Only the cross-key detector differs from :class:`miaudit.serve.Monitor`; the per-key ones are
inherited, so a scenario measures the two cross-key designs on the same traffic.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import Counter, deque
from typing import Any

import numpy as np

from miaudit.serve import DetectorConfig, Monitor

QUANTUM = 0.25
WINDOW = 4
FINGERPRINT_SIZE = 16
MATCH = 12
MAX_POSTINGS = 256
MAX_FINGERPRINTS = 200_000
KEPT_DIMS = 32
_QN = struct.Struct("<q")


class FingerprintsBefore(Monitor):
    """:class:`~miaudit.serve.Monitor` with the hashed-window fingerprints as its cross-key
    detector (``max_postings``: the length of a hash's list, 256 then)."""

    def __init__(
        self,
        config: DetectorConfig,
        n_features: int,
        secret: bytes,
        sink: Any,
        *,
        max_postings: int = MAX_POSTINGS,
    ) -> None:
        super().__init__(config, n_features, secret, sink)
        self.max_postings = max_postings
        self._table: dict[int, bytearray] = {}
        self._fps: deque[tuple[int, ...]] = deque()
        self._cluster_of: dict[int, int] = {}
        self._clusters: dict[int, tuple[int, int, tuple[str, ...]]] = {}
        self._next = 0
        w = min(WINDOW, max(1, self.d))
        self._w, self._windows = w, max(1, self.d - w + 1)
        keyed = np.random.default_rng(
            int.from_bytes(hmac.new(secret, b"fingerprint", hashlib.sha256).digest()[:16], "little")
        )
        self._mult = keyed.integers(1, 2**63, size=w, dtype=np.uint64) | np.uint64(1)
        self._salt = keyed.integers(0, 2**63, size=self._windows, dtype=np.uint64)
        self._old_project = (
            self._rng.normal(size=(self.d, KEPT_DIMS)) / np.sqrt(KEPT_DIMS)
            if self.d > KEPT_DIMS
            else None
        )
        kept = KEPT_DIMS if self._old_project is not None else self.d
        self._positions = np.empty((MAX_FINGERPRINTS, kept), dtype=np.float32)

    def fingerprint_rows(self, z: np.ndarray) -> np.ndarray:
        """(m, FINGERPRINT_SIZE) uint64: the smallest keyed hashes of each row's windows."""
        q = np.floor(z / QUANTUM).astype(np.int64).view(np.uint64)
        win = np.lib.stride_tricks.sliding_window_view(q, self._w, axis=1)
        h = (win * self._mult).sum(axis=2, dtype=np.uint64) ^ self._salt
        h = (h ^ (h >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        h = (h ^ (h >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        h = h ^ (h >> np.uint64(31))
        return np.sort(h, axis=1)[:, :FINGERPRINT_SIZE]

    def _nearest_match(self, fp: tuple[int, ...], position: np.ndarray) -> int | None:
        matches: Counter[int] = Counter()
        for h in fp:
            buf = self._table.get(h)
            if buf is not None:
                matches.update(qn for (qn,) in _QN.iter_unpack(buf))
        need = min(MATCH, len(fp))
        candidates = np.fromiter((qn for qn, c in matches.items() if c >= need), dtype=np.int64)
        if candidates.size == 0:
            return None
        diff = self._positions[candidates % MAX_FINGERPRINTS] - position
        dist = np.sqrt((diff.astype(np.float64) ** 2).sum(axis=1))
        best = int(np.argmin(dist))
        return int(candidates[best]) if dist[best] <= self.threshold else None

    def _spread(self, key_id: str, z: np.ndarray, now: float) -> None:
        z = np.clip(np.nan_to_num(z, nan=0.0), -1e12, 1e12)
        kept = z @ self._old_project if self._old_project is not None else z
        positions = np.clip(kept, -1e30, 1e30).astype(np.float32)
        for fp_row, position in zip(self.fingerprint_rows(z), positions, strict=True):
            fp = tuple(fp_row.tolist())
            best = self._nearest_match(fp, position)
            qn = self._next
            self._next += 1
            self._positions[qn % MAX_FINGERPRINTS] = position
            if best is not None:
                cid = self._cluster_of.get(best, best)
                count, live, members = self._clusters.get(cid, (1, 1, ()))
                members = members if key_id in members else (*members, key_id)
                self._clusters[cid] = (count + 1, live + 1, members)
                self._cluster_of[qn] = cid
                if count + 1 >= self.cfg.cluster_alarm:
                    keys = sorted(members)
                    detector = "spread" if len(keys) > 1 else "near_duplicate"
                    detail = {"cluster_queries": count + 1, "keys": len(keys)}
                    for k in keys if detector == "spread" else [key_id]:
                        self._alert(detector, k, keys, detail, now)
            else:
                self._clusters[qn] = (1, 1, (key_id,))
                self._cluster_of[qn] = qn
            packed = _QN.pack(qn)
            for h in fp:
                buf = self._table.setdefault(h, bytearray())
                buf += packed
                if len(buf) > self.max_postings * _QN.size:
                    del buf[: _QN.size]  # a common window: its latest records only
            self._fps.append(fp)
            if len(self._fps) > MAX_FINGERPRINTS:
                self._forget_oldest()

    def _forget_oldest(self) -> None:
        old = self._next - len(self._fps)
        for h in self._fps.popleft():
            buf = self._table.get(h)
            if buf and _QN.unpack_from(buf)[0] == old:
                del buf[: _QN.size]
            if buf is not None and not buf:
                del self._table[h]
        cid = self._cluster_of.pop(old, None)
        if cid is not None and cid in self._clusters:
            count, live, members = self._clusters[cid]
            if live <= 1:
                del self._clusters[cid]
            else:
                self._clusters[cid] = (count, live - 1, members)
