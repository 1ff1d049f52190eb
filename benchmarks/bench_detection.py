"""The service's probing detectors measured as classifiers (issue 7, docs/method.md §10).

A fresh in-process service (the real app over httpx's ASGI transport, SQLite) per scenario; every
attack runs through :class:`miaudit.serve.HttpOracle` against an API key whose role is
``label-only``, with the detectors' default thresholds (standardisation by the population's
feature means and standard deviations, which the operator knows). Target: a scikit-learn MLP
on 14 numeric features, 4 classes, 500 training records.

Scenarios (``trials`` runs each, different target records and seeds):

- noise robustness (Choquette-Choo et al.), σ = 0.1 and σ = 0.5 feature standard deviations,
  50 draws per record, 20 records;
- boundary distance (HopSkipJump-style), at most 300 queries per record, 5 records;
- the σ = 0.1 noise attack with each query sent by one of 5 keys at random, and a σ = 0.01
  one over 25 keys (too few queries per key for a per-key detector);
- one query per record (the traffic of the gap attack and of LiRA/RMIA after offline reference
  training): 2,000 distinct records;
- benign: 20 keys, each scoring 500 fresh population records in batches of 1–20, re-scoring an
  earlier record 2% of the time;
- hidden in bulk: the σ = 0.1 noise attack's 1,000 queries (50 around each of 20 records) sent in
  one request of 9,999 rows, the rest distinct population records, against benign bulk
  requests of 9,999 population records (each trial); and the detectors' time on such a request,
  crowded rows first (today's sample) against a uniform sample of 512 rows (the sample before,
  measured in the same process);
- crowded decoys (reported, not part of the claim; monitors run directly, no HTTP): 100 training
  records probed by 10 noisy copies each (σ = 0.1) in one request of 9,994 rows, among 1,499
  harmless population records each sent as a tight group of 6 near-copies (σ = 0.01: crowded
  themselves, so the crowded-first sample is again drawn evenly over the whole request), against
  the same probes among 8,994 distinct population records; with the default k-NN threshold and
  with one calibrated on 2,000 benign population records (``calibrated_detectors``).

Figures: detection rate (trials with any alert on the attacker's keys), median records sent
by the attacker's keys before the first alert, and alerts per benign key.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

from benchmarks._folders import in_temporary_folder
from benchmarks._schema import BenchResult

CLAIM = "Query-hungry label-only attacks are detected, one-query-per-record traffic is not, benign keys raise no alert (reported)"
SIZES = {
    "full": {"trials": 10, "benign_keys": 20, "benign_records": 500},
    "small": {"trials": 2, "benign_keys": 5, "benign_records": 200},
}
D, CLASSES = 14, 4


class _SplitOracle:
    """An attack's queries dealt row by row over several keys' oracles (one attack, many accounts)."""

    def __init__(self, oracles: list, seed: int) -> None:
        self._o = oracles
        self.policy = oracles[0].policy
        self._rng = np.random.default_rng(seed)

    @property
    def queries(self) -> int:
        return sum(o.queries for o in self._o)

    def queries_per_record(self, n: int) -> np.ndarray:
        return sum(o.queries_per_record(n) for o in self._o)

    def query(self, records: np.ndarray, *, tags: np.ndarray | None = None):
        from miaudit.defenses import ExposedLabels

        x = np.asarray(records)
        labels = np.empty(x.shape[0], dtype=np.int64)
        owner = self._rng.integers(len(self._o), size=x.shape[0])  # each row to a random key
        for j, o in enumerate(self._o):
            idx = np.flatnonzero(owner == j)
            if idx.size:
                labels[idx] = o.query(
                    x[idx], tags=None if tags is None else np.asarray(tags)[idx]
                ).labels
        return ExposedLabels(labels=labels, policy=self.policy)


def _population(
    n: int, rng: np.random.Generator, centers: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    y = rng.integers(0, CLASSES, n)
    return centers[y] + rng.normal(size=(n, D)), y


def run(size: str) -> BenchResult:
    return in_temporary_folder("bench_detection_", _run, size)


def _run(size: str, tmp: Path) -> BenchResult:
    from sklearn.neural_network import MLPClassifier

    from miaudit.attacks._label_only import (
        boundary_distance_attack,
        gap_query_attack,
        noise_robustness_attack,
    )
    from miaudit.serve import (
        DetectorConfig,
        EstimatorPredictor,
        HttpOracle,
        Monitor,
        ServeConfig,
        asgi_client,
        create_app,
    )

    p = SIZES[size]
    rng = np.random.default_rng(20261128)
    centers = rng.normal(scale=1.2, size=(CLASSES, D))
    x_train, y_train = _population(500, rng, centers)
    model = MLPClassifier(hidden_layer_sizes=(64,), max_iter=400, random_state=0).fit(
        x_train, y_train
    )
    pop, _ = _population(20_000, rng, centers)
    mean, std = pop.mean(axis=0), pop.std(axis=0)
    detectors = DetectorConfig(center=tuple(mean.tolist()), scale=tuple(std.tolist()))
    secret = bytes(range(32))
    counter = iter(range(10**6))

    def service():
        cfg = ServeConfig(
            predictor=EstimatorPredictor(model),
            db=f"sqlite:///{tmp}/g{next(counter)}.db",
            secret=secret,
            detectors=detectors,
        )
        app = create_app(cfg)
        return app, asgi_client(app)

    def first_alert(app, key_ids: set[str]) -> tuple[bool, int | None, str | None]:
        app.state.flush_detectors()
        found = [
            a
            for a in app.state.store.list_alerts(limit=10_000)
            if set(a.keys) & key_ids or a.key_id in key_ids
        ]
        if not found:
            return False, None, None
        a = found[0]
        return True, int(a.detail.get("observed", 0)), a.detector

    scenarios = {
        "noise σ=0.1 (50/record)": lambda o, x, y, s: noise_robustness_attack(
            o, x[:20], y[:20], sigma=0.1, n_draws=50, scale=std, rng=s
        ),
        "noise σ=0.5 (50/record)": lambda o, x, y, s: noise_robustness_attack(
            o, x[:20], y[:20], sigma=0.5, n_draws=50, scale=std, rng=s
        ),
        "boundary distance (≤300/record)": lambda o, x, y, s: boundary_distance_attack(
            o, x[:5], y[:5], max_queries=300, scale=std, rng=s
        ),
        "noise σ=0.1 split over 5 keys": (5, 0.1),
        "noise σ=0.01 split over 25 keys": (25, 0.01),
        "one query per record (gap, LiRA/RMIA traffic)": lambda o, x, y, s: gap_query_attack(
            o, pop[s * 2000 % 18000 :][:2000], np.zeros(2000, dtype=np.int64)
        ),
    }
    rows = []
    figures: dict[str, object] = {}
    for name, attack in scenarios.items():
        detected, qtd, which = 0, [], set()
        for t in range(p["trials"]):
            app, client = service()
            store = app.state.store
            try:
                idx = np.random.default_rng(t).choice(500, 20, replace=False)
                x, y = x_train[idx], y_train[idx]
                if isinstance(attack, tuple):
                    n_keys, sigma = attack
                    oracles = [
                        HttpOracle(
                            "http://x",
                            store.create_key(secret, "public").token,
                            client=client,
                            batch_size=50,
                        )
                        for _ in range(n_keys)
                    ]
                    noise_robustness_attack(
                        _SplitOracle(oracles, t),
                        x[:20],
                        y[:20],
                        sigma=sigma,
                        n_draws=50,
                        scale=std,
                        rng=t,
                    )
                    keys = {o.key_id for o in oracles}
                else:
                    oracle = HttpOracle(
                        "http://x",
                        store.create_key(secret, "public").token,
                        client=client,
                        batch_size=50,
                    )
                    attack(oracle, x, y, t)
                    keys = {oracle.key_id}
                hit, q, det = first_alert(app, keys)
                if hit:
                    detected += 1
                    qtd.append(q)
                    which.add(det)
            finally:
                client.close()
                store.close()
        rate = detected / p["trials"]
        med = int(np.median(qtd)) if qtd else None
        figures[name] = {
            "detection_rate": rate,
            "median_queries_to_detection": med,
            "detectors": sorted(which),
        }
        rows.append(
            f"| {name} | {detected}/{p['trials']} | {med if med is not None else '—'} | {', '.join(sorted(which)) or '—'} |"
        )

    # benign traffic: many keys at once on one service
    app, client = service()
    store = app.state.store
    try:
        brng = np.random.default_rng(7)
        tokens = [store.create_key(secret, "public").token for _ in range(p["benign_keys"])]
        history: dict[str, list[list[float]]] = {t: [] for t in tokens}
        sent = dict.fromkeys(tokens, 0)
        while any(v < p["benign_records"] for v in sent.values()):
            for tok in tokens:
                if sent[tok] >= p["benign_records"]:
                    continue
                n = int(brng.integers(1, 21))
                batch = _population(n, brng, centers)[0].tolist()
                for i in range(n):
                    if history[tok] and brng.random() < 0.02:
                        batch[i] = history[tok][int(brng.integers(len(history[tok])))]
                history[tok].extend(batch)
                r = client.post(
                    "/predict", json={"records": batch}, headers={"Authorization": f"Bearer {tok}"}
                )
                assert r.status_code == 200, r.text
                sent[tok] += n
        app.state.flush_detectors()
        benign_alerts = store.list_alerts(limit=10_000)
    finally:
        client.close()
        store.close()
    bulk = _hidden_in_bulk(
        service, first_alert, Monitor, detectors, secret, x_train, std, pop, p["trials"]
    )
    figures["hidden in bulk"] = bulk
    rows.append(
        f"| noise σ=0.1 hidden in one request of 9,999 rows (1,000 queries) | {bulk['detected']}/{p['trials']} | 9,999 | {', '.join(bulk['detectors']) or '—'} |"
    )
    rows.append(
        f"| the same, a uniform sample of 512 rows (the sample before; monitor only) | {bulk['uniform_sample_detected']}/{p['trials']} | 9,999 | |"
    )
    rows.append(
        f"| benign bulk (one request of 9,999 population records) | false alarms: {bulk['benign_bulk_alerts']} in {p['trials']} | | {', '.join(bulk['benign_bulk_detectors']) or '—'} |"
    )
    timing = _bulk_timing(Monitor, detectors, secret, pop)
    figures["bulk timing"] = timing
    decoys = _crowded_decoys(Monitor, detectors, secret, x_train, std, pop, p["trials"])
    figures["crowded decoys"] = decoys
    for variant, label in (
        (
            "no_decoys",
            f"{decoys['probed_records']} records × {decoys['copies']} noisy copies (σ=0.1) among {decoys['distinct_fill']:,} distinct records, one request of {decoys['rows']:,} rows (monitor only)",
        ),
        (
            "decoys",
            f"the same among {decoys['decoy_records']:,} decoys × {decoys['decoy_copies']} near-copies (σ={decoys['decoy_sigma']}), crowded themselves (monitor only; reported)",
        ),
    ):
        cells = [
            f"{decoys[threshold][variant]['detected']}/{p['trials']} {name}"
            for threshold, name in (("default", "default threshold"), ("calibrated", "calibrated"))
        ]
        fired = sorted(
            set(decoys["default"][variant]["detectors"])
            | set(decoys["calibrated"][variant]["detectors"])
        )
        rows.append(
            f"| {label} | {'; '.join(cells)} | {decoys['rows']:,} | {', '.join(fired) or '—'} |"
        )
    false_alarms = len(benign_alerts) / p["benign_keys"]
    figures["benign"] = {
        "keys": p["benign_keys"],
        "records_per_key": p["benign_records"],
        "alerts": len(benign_alerts),
        "alerts_per_key": false_alarms,
        "detectors": sorted({a.detector for a in benign_alerts}),
    }
    rows.append(
        f"| benign ({p['benign_keys']} keys × {p['benign_records']} records, 2% re-scored) | false alarms: {len(benign_alerts)} ({false_alarms:.2f} per key) | | {', '.join(sorted({a.detector for a in benign_alerts})) or '—'} |"
    )
    table = "\n".join(
        [
            "| traffic | detected (trials) | median records to first alert | detectors that fired |",
            "|---|---|---|---|",
            *rows,
        ]
    )
    notes = [
        "records to first alert = records the attacker's keys had sent when the first alert was raised (granularity: one request of ≤ 50 records)",
        "one-query-per-record traffic is indistinguishable from benign scoring of distinct records; only volume (the enumeration detector, 10,000 distinct records per key by default) or the budget bounds it",
        f"crowded decoys: the probes' rows among the 512 sampled, median over trials (default / calibrated threshold): {decoys['default']['decoys']['median_probe_rows_sampled']} / {decoys['calibrated']['decoys']['median_probe_rows_sampled']} with the decoys, {decoys['default']['no_decoys']['median_probe_rows_sampled']} / {decoys['calibrated']['no_decoys']['median_probe_rows_sampled']} without; the request charges {decoys['rows']:,} records for {decoys['probed_records'] * decoys['copies']:,} probes ({decoys['rows'] / (decoys['probed_records'] * decoys['copies']):.0f}× the probes alone; the same whatever fills it); calibrated k-NN threshold {decoys['calibrated_threshold']:.2f} against the default {decoys['default_threshold']:.2f} (0.15·√14)",
        f"detectors' time on one request of 9,999 records (median of {timing['repeats']}, this process, off the answer's path): {timing['crowded_first_s'] * 1e3:.0f} ms with crowded rows first vs {timing['uniform_s'] * 1e3:.0f} ms with a uniform sample of 512 rows ({timing['ratio']:.1f}×)",
    ]
    onequery = figures["one query per record (gap, LiRA/RMIA traffic)"]["detection_rate"]  # type: ignore[index]
    noisy = figures["noise σ=0.1 (50/record)"]["detection_rate"]  # type: ignore[index]
    passed = bool(
        noisy == 1.0
        and onequery == 0.0
        and len(benign_alerts) == 0
        and bulk["detected"] == p["trials"]
        and bulk["benign_bulk_alerts"] == 0
    )
    return BenchResult(
        name="detection", claim=CLAIM, figures=figures, table=table, passed=passed, notes=notes
    )


class _Alerts:
    def __init__(self) -> None:
        self.detectors: list[str] = []

    def __call__(self, detector, key_id, keys, detail) -> None:
        self.detectors.append(detector)


def _uniform_monitor(monitor_class):
    """The monitor with the sample it had before: 512 rows drawn uniformly (the baseline)."""

    class Uniform(monitor_class):  # type: ignore[misc, valid-type]
        def _sample_rows(self, z: np.ndarray) -> np.ndarray:
            return np.sort(self._rng.choice(len(z), self.cfg.max_rows_per_request, replace=False))

    return Uniform


def _hidden_in_bulk(
    service, first_alert, monitor_class, detectors, secret, x_train, std, pop, trials: int
) -> dict:
    """Per trial, one key sends 50 noisy copies (σ = 0.1 standard deviations) of each of 20
    training records shuffled among 8,999 population records in one request, and another key
    one request of 9,999 population records: detected trials and benign alerts; and the same
    attack's request seen by a monitor with a uniform sample (the baseline, no HTTP)."""
    from miaudit.serve import record_hashes

    detected, which, benign_alerts, benign_which = 0, set(), 0, set()
    uniform_detected = 0
    for t in range(trials):
        rng = np.random.default_rng(1000 + t)
        x = x_train[rng.choice(len(x_train), 20, replace=False)]
        probes = np.repeat(x, 50, axis=0) + 0.1 * std * rng.normal(size=(1000, D))
        start = int(rng.integers(0, len(pop) - 9_999))
        bulk = np.concatenate([probes, pop[start : start + 8_999]])[rng.permutation(9_999)]
        benign = pop[rng.choice(len(pop), 9_999, replace=False)]
        seen = _Alerts()
        _uniform_monitor(monitor_class)(detectors, D, secret, seen).observe(
            "attacker", bulk, record_hashes(secret, bulk), now=1000.0
        )
        uniform_detected += bool(seen.detectors)
        app, client = service()
        store = app.state.store
        try:
            attacker = store.create_key(secret, "public")
            honest = store.create_key(secret, "public")
            for key, records in ((attacker, bulk), (honest, benign)):
                r = client.post(
                    "/predict",
                    json={"records": records.tolist()},
                    headers={"Authorization": f"Bearer {key.token}"},
                )
                assert r.status_code == 200, r.text
            hit, _, det = first_alert(app, {attacker.key_id})
            detected += hit
            which |= {det} if det else set()
            app.state.flush_detectors()
            mine = [a for a in store.list_alerts(limit=10_000) if a.key_id == honest.key_id]
            benign_alerts += len(mine)
            benign_which |= {a.detector for a in mine}
        finally:
            client.close()
            store.close()
    return {
        "detected": detected,
        "detectors": sorted(which),
        "benign_bulk_alerts": benign_alerts,
        "benign_bulk_detectors": sorted(benign_which),
        "uniform_sample_detected": uniform_detected,
    }


def _recording_monitor(monitor_class):
    """The monitor that also keeps the rows its last large request was sampled on."""

    class Recording(monitor_class):  # type: ignore[misc, valid-type]
        sampled: np.ndarray = np.empty(0, dtype=np.int64)

        def _sample_rows(self, z: np.ndarray) -> np.ndarray:
            self.sampled = super()._sample_rows(z)
            return self.sampled

    return Recording


def _crowded_decoys(monitor_class, detectors, secret, x_train, std, pop, trials: int) -> dict:
    """Per trial, 100 training records × 10 noisy copies (σ = 0.1 standard deviations) in one
    request of 9,994 rows (under the enumeration detector's 10,000), filled either with 1,499
    harmless population records each sent as 6 near-copies (σ = 0.01: the decoys) or with 8,994
    distinct population records; one fresh monitor per request (no HTTP), with the default k-NN
    threshold and with one calibrated on 2,000 benign population records not in any request.
    Detected: any alert. The monitor's sample is drawn from the OS's entropy: runs differ."""
    from dataclasses import replace

    from miaudit.serve import calibrated_detectors, record_hashes

    probed, copies, decoy_copies, decoy_sigma = 100, 10, 6, 0.01
    rows = 9_994
    decoy_records = (rows - probed * copies) // decoy_copies
    filler = pop[:-2_000]  # the last 2,000: the calibration's benign traffic
    calibrated = calibrated_detectors(pop[-2_000:], replace(detectors, knn_threshold=None))
    out: dict = {
        "probed_records": probed,
        "copies": copies,
        "probe_sigma": 0.1,
        "decoy_records": decoy_records,
        "decoy_copies": decoy_copies,
        "decoy_sigma": decoy_sigma,
        "distinct_fill": rows - probed * copies,
        "rows": rows,
        "default_threshold": round(0.15 * float(np.sqrt(D)), 4),
        "calibrated_threshold": round(float(calibrated.knn_threshold), 4),
    }
    recording = _recording_monitor(monitor_class)
    seen: dict = {
        t: {
            v: {"detected": 0, "detectors": set(), "probe_rows": []}
            for v in ("decoys", "no_decoys")
        }
        for t in ("default", "calibrated")
    }
    for t in range(trials):
        rng = np.random.default_rng(2000 + t)
        x = x_train[rng.choice(len(x_train), probed, replace=False)]
        probes = np.repeat(x, copies, axis=0) + 0.1 * std * rng.normal(size=(probed * copies, D))
        harmless = filler[rng.choice(len(filler), decoy_records, replace=False)]
        decoys = np.repeat(harmless, decoy_copies, axis=0)
        decoys = decoys + decoy_sigma * std * rng.normal(size=decoys.shape)
        distinct = filler[rng.choice(len(filler), rows - probed * copies, replace=False)]
        for variant, fill in (("decoys", decoys), ("no_decoys", distinct)):
            order = rng.permutation(rows)
            bulk = np.concatenate([probes, fill])[order]
            is_probe = order < probed * copies
            hashes = record_hashes(secret, bulk)
            for threshold, cfg in (("default", detectors), ("calibrated", calibrated)):
                alerts = _Alerts()
                mon = recording(cfg, D, secret, alerts)
                mon.observe("attacker", bulk, hashes, now=1000.0)
                s = seen[threshold][variant]
                s["detected"] += bool(alerts.detectors)
                s["detectors"] |= set(alerts.detectors)
                s["probe_rows"].append(int(is_probe[mon.sampled].sum()))
    for threshold, variants in seen.items():
        out[threshold] = {
            v: {
                "detected": s["detected"],
                "detectors": sorted(s["detectors"]),
                "probe_rows_sampled": s["probe_rows"],
                "median_probe_rows_sampled": int(np.median(s["probe_rows"])),
            }
            for v, s in variants.items()
        }
    return out


def _bulk_timing(monitor_class, detectors, secret, pop, repeats: int = 7) -> dict:
    """Median seconds of Monitor.observe on one request of 9,999 population records, with the
    crowded-first sample and with a uniform one (the sample before), interleaved."""
    import time

    from miaudit.serve import record_hashes

    uniform = _uniform_monitor(monitor_class)
    x = pop[:9_999]
    hashes = record_hashes(secret, x)
    times: dict[str, list[float]] = {"crowded_first_s": [], "uniform_s": []}
    for i in range(repeats):
        for name, cls in (("crowded_first_s", monitor_class), ("uniform_s", uniform)):
            mon = cls(detectors, D, secret, lambda *a: None)
            t0 = time.perf_counter()
            mon.observe(f"k{i}", x, hashes, now=1000.0)
            times[name].append(time.perf_counter() - t0)
    out: dict = {k: float(np.median(v)) for k, v in times.items()}
    out["ratio"] = out["crowded_first_s"] / out["uniform_s"]
    out["repeats"] = repeats
    return out


if __name__ == "__main__":
    res = run(sys.argv[1] if len(sys.argv) > 1 else "small")
    print(res.table)
    print(res.figures)
