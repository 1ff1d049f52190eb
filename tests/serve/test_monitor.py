"""Probing detectors (docs/method.md §10) on controlled traffic, without HTTP."""

from __future__ import annotations

import gc

import numpy as np
import pytest

from miaudit.serve import (
    DetectorConfig,
    Monitor,
    calibrate_knn_threshold,
    default_knn_threshold,
    record_hashes,
)
from miaudit.serve._monitor import WINDOW_ROWS
from tests.serve.conftest import SECRET

D = 8


class Sink:
    def __init__(self) -> None:
        self.alerts: list[tuple[str, str | None, list[str], dict]] = []

    def __call__(self, detector: str, key_id: str | None, keys: list[str], detail: dict) -> None:
        self.alerts.append((detector, key_id, keys, detail))

    def of(self, detector: str) -> list[tuple]:
        return [a for a in self.alerts if a[0] == detector]


def feed(monitor: Monitor, key: str, x: np.ndarray, batch: int = 1) -> None:
    for s in range(0, len(x), batch):
        chunk = x[s : s + batch]
        monitor.observe(key, chunk, record_hashes(SECRET, chunk), now=1000.0 + s)


def make(**kw: object) -> tuple[Monitor, Sink]:
    sink = Sink()
    return Monitor(DetectorConfig(**kw), D, SECRET, sink), sink  # type: ignore[arg-type]


def test_benign_distinct_records_raise_nothing() -> None:
    mon, sink = make()
    rng = np.random.default_rng(0)
    for k in range(5):
        feed(mon, f"k{k}", rng.normal(size=(1500, D)), batch=7)
    assert sink.alerts == []


def test_repeated_record_raises_repeat_once_per_cooldown() -> None:
    mon, sink = make(repeat_threshold=5)
    x = np.random.default_rng(1).normal(size=(1, D))
    feed(mon, "a", np.repeat(x, 4, axis=0))
    assert sink.of("repeat") == []
    feed(mon, "a", np.repeat(x, 10, axis=0))
    assert len(sink.of("repeat")) == 1 and sink.of("repeat")[0][1] == "a"


def test_perturbations_around_one_record_raise_perturbation_quickly() -> None:
    mon, sink = make()
    rng = np.random.default_rng(2)
    feed(mon, "benign", rng.normal(size=(300, D)))  # warm, unrelated traffic of another key
    x0 = rng.normal(size=D)
    probes = x0 + 0.05 * rng.normal(size=(100, D))
    for i in range(100):
        feed(mon, "attacker", probes[i : i + 1])
        if sink.of("perturbation"):
            break
    hit = sink.of("perturbation")
    assert hit and hit[0][1] == "attacker"
    assert i + 1 <= 20  # k + alarm count: caught within 20 queries
    assert all(a[1] != "benign" for a in sink.alerts)


def test_knn_threshold_calibration_sets_the_benign_false_positive_rate() -> None:
    rng = np.random.default_rng(3)
    benign = rng.normal(size=(2000, D))
    t = calibrate_knn_threshold(benign, quantile=0.01)
    assert 0 < t < np.sqrt(2 * D)
    assert default_knn_threshold(D) < t  # the default sits far below natural spacing


def test_split_over_keys_raises_spread_naming_the_keys() -> None:
    mon, sink = make(knn_alarm=10_000, cluster_alarm=12)
    rng = np.random.default_rng(4)
    x0 = rng.normal(size=D)
    for i in range(30):  # 30 tiny perturbations of one record, one per key in turn
        feed(mon, f"acct{i % 6}", (x0 + 1e-4 * rng.normal(size=D))[None])
    spread = sink.of("spread")
    assert spread
    assert set(spread[0][2]) == {f"acct{i}" for i in range(6)}
    assert not sink.of("perturbation")


def test_a_spread_alert_accuses_senders_of_probes_and_only_names_a_bystander() -> None:
    """A benign key that scored one record near a probed one is named in the alert, not
    accused: each alert is the key's whose record completed the count."""
    mon, sink = make(knn_alarm=10_000, cluster_alarm=12)
    rng = np.random.default_rng(19)
    x0 = rng.normal(size=D)
    feed(mon, "bystander", (x0 + 0.05 * rng.normal(size=D))[None])
    for i in range(30):
        feed(mon, f"acct{i % 6}", (x0 + 1e-4 * rng.normal(size=D))[None])
    spread = sink.of("spread")
    assert {a[1] for a in spread} == {f"acct{i}" for i in range(6)}
    assert all("bystander" in a[2] for a in spread)


def test_one_record_near_a_probed_point_is_named_not_accused() -> None:
    """Red team: 19 records placed near a record another key would send got that key accused,
    and no placing key; a benign key scoring a probed record after an attack was accused too.
    A key is accused for a second record near the point; a count with no such key accuses none
    and names them all."""
    rng = np.random.default_rng(21)
    x0 = rng.normal(size=D)

    def near() -> np.ndarray:
        return (x0 + 1e-4 * rng.normal(size=D))[None]

    mon, sink = make(knn_alarm=10_000, cluster_alarm=20)
    for i in range(19):  # placed from 19 keys, one record each
        feed(mon, f"placer{i}", near())
    feed(mon, "victim", near())
    spread = sink.of("spread")
    assert [a[1] for a in spread] == [None] and "victim" in spread[0][2]
    mon, sink = make(knn_alarm=10_000, cluster_alarm=20)
    for _ in range(19):  # placed from one key
        feed(mon, "placer", near())
    feed(mon, "victim", near())
    assert {a[1] for a in sink.of("spread")} == {"placer"}
    mon, sink = make(knn_alarm=10_000, cluster_alarm=20)
    for i in range(40):  # an attack split over 8 keys, then a benign key scores the record
        feed(mon, f"acct{i % 8}", near())
    feed(mon, "bystander", near())
    accused = {a[1] for a in sink.of("spread")}
    assert accused and "bystander" not in accused and accused <= {f"acct{i}" for i in range(8)}


def test_rows_differing_only_past_the_clip_are_one_point_to_every_detector() -> None:
    """Red team: the request's sample clipped standardised values and the per-key buffer did
    not, so decoys differing only past the clip (1e13 against 1e14) were one crowded point to
    the sample, filled it, and lay far apart in the buffer: probes beside them went unseen."""
    mon, sink = make(knn_alarm=10)
    x = np.zeros((60, D))
    x[:, 0] = 10.0 ** rng_exponents(60)
    feed(mon, "a", x, batch=1)
    assert sink.of("perturbation")


def rng_exponents(n: int) -> np.ndarray:
    return np.random.default_rng(22).uniform(13, 18, size=n)


def test_every_row_of_a_large_request_reaches_the_windows() -> None:
    """Probes one per request among distinct records: the windows read every row of a request
    up to WINDOW_ROWS, so 20 copies of a point in 20 requests of 1,000 rows are counted (the
    per-key sample of 512 rows held each with probability about one half)."""
    rng = np.random.default_rng(23)
    x0 = rng.normal(size=D)
    mon, sink = make(knn_alarm=10_000, cluster_alarm=20)
    for i in range(20):
        x = rng.normal(size=(1_000, D)) * 3
        x[int(rng.integers(1_000))] = x0 + 1e-4 * rng.normal(size=D)
        feed(mon, f"acct{i % 2}", x, batch=1_000)
    assert sink.of("spread")


def test_enumeration_of_many_distinct_records_by_one_key() -> None:
    mon, sink = make(enumeration_threshold=500)
    rng = np.random.default_rng(5)
    feed(mon, "sweeper", rng.normal(size=(499, D)), batch=50)
    assert not sink.of("enumeration")
    feed(mon, "sweeper", rng.normal(size=(10, D)), batch=10)
    assert len(sink.of("enumeration")) == 1


def test_state_is_bounded() -> None:
    mon, _ = make(max_keys=3, spread_window=100, tight_window=100)
    rng = np.random.default_rng(6)
    for k in range(10):
        feed(mon, f"k{k}", rng.normal(size=(60, D)), batch=20)
    assert len(mon._keys) == 3
    assert len(mon._ring) == 100 and mon._filled == 100 and len(mon._ring_keys) == 100


def test_the_detectors_state_holds_no_object_the_cycle_collector_tracks_per_record() -> None:
    """A full collection scans every tracked object while every thread waits: the fingerprint
    table's lists and per-record cluster objects (about 16 per record) grew the guarded server's
    collections to 100-300 ms in the middle of its answers (benchmarks/bench_guard.py). Distinct
    records, near-duplicates and a window that wraps all leave the count flat."""
    mon, sink = make(spread_window=2000, tight_window=2000)
    rng = np.random.default_rng(12)
    feed(mon, "warm", rng.normal(size=(50, D)))  # the key states and buffers exist
    x0 = rng.normal(size=D)
    gc.collect()
    before = len(gc.get_objects())
    feed(mon, "warm", rng.normal(size=(3000, D)), batch=10)
    feed(mon, "warm", x0 + 0.001 * rng.normal(size=(300, D)))  # near-duplicates
    gc.collect()
    assert sink.of("near_duplicate")
    assert mon._filled == 2000  # the window wrapped
    assert len(gc.get_objects()) - before < 100  # lists and cluster objects: 12,768


def test_large_batches_are_sampled_for_the_geometric_detectors() -> None:
    mon, sink = make(max_rows_per_request=64)
    rng = np.random.default_rng(7)
    x0 = rng.normal(size=D)
    feed(mon, "a", x0 + 0.01 * rng.normal(size=(5000, D)), batch=5000)
    assert sink.of("perturbation")
    assert mon._filled == WINDOW_ROWS  # the windows read more rows than the per-key sample


def test_the_sampled_rows_of_a_large_request_cannot_be_computed_in_advance() -> None:
    """Red team: with the sampler seeded 0, a caller placed fillers exactly where the first
    request's 512 sampled rows would be and copies of one probe everywhere else: no alert, raw
    probabilities read back through a noise policy. The rows now come from the OS's entropy."""
    n, cap = 4000, 64
    rng = np.random.default_rng(8)
    predicted = np.random.default_rng(0).choice(n, cap, replace=False)  # the old sampler's rows
    x = np.repeat(rng.normal(size=(1, D)), n, axis=0) + 1e-9 * rng.normal(size=(n, D))
    x[predicted] = rng.normal(size=(cap, D)) * 3  # distinct fillers where the sample would look
    mon, sink = make(max_rows_per_request=cap)
    feed(mon, "a", x, batch=n)
    assert sink.of("perturbation") or sink.of("near_duplicate")
    firsts = {tuple(make()[0]._rng.choice(n, cap, replace=False)[:4]) for _ in range(3)}
    assert len(firsts) == 3  # two monitors never share their sample


def test_copies_hidden_among_distinct_records_in_one_request_are_seen() -> None:
    """1,000 noisy copies of 20 probes shuffled among 9,999 rows: a uniform sample of 512 rows held
    about 51 copies, 2–3 per probe, and nothing fired; the crowded rows are now sampled first."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(9_999, D))
    copies = rng.choice(9_999, 1_000, replace=False)
    x[copies] = np.repeat(rng.normal(size=(20, D)), 50, axis=0) + 0.05 * rng.normal(size=(1000, D))
    mon, sink = make()
    rows = mon._sample_rows(x)
    assert len(rows) == 512 and np.isin(rows, copies).all() and (np.diff(rows) > 0).all()
    feed(mon, "a", x, batch=len(x))
    assert sink.of("perturbation")
    # A benign request as large: the crowded part is empty and the sample random, as before.
    benign = rng.normal(size=(9_999, D))
    mon, sink = make()
    samples = [mon._sample_rows(benign) for _ in range(2)]
    assert all(len(s) == 512 for s in samples) and not np.array_equal(*samples)
    feed(mon, "b", benign, batch=len(benign))
    assert sink.alerts == []


def test_crowded_rows_are_found_in_wide_and_extreme_requests() -> None:
    """Past 64 features distances are measured in a projection; overflowing values and fewer rows
    than the k-NN count still give a sample of distinct rows."""
    rng = np.random.default_rng(11)
    wide = rng.normal(size=(3_000, 300))
    wide[:600] = wide[0] + 0.01 * rng.normal(size=(600, 300))
    mon = Monitor(DetectorConfig(), 300, SECRET, Sink())
    assert (mon._sample_rows(wide) < 600).all()
    huge = np.where(rng.random((2_000, D)) < 0.5, 1e300, -1e300)
    mon, _ = make(max_rows_per_request=3, knn_k=50)
    for x in (huge, np.zeros((2_000, D)), rng.normal(size=(4, D))):
        rows = mon._sample_rows(x)
        assert len(rows) == 3 and len(set(rows.tolist())) == 3


def test_calibrated_detectors_standardise_on_benign_records() -> None:
    from miaudit.errors import InputError
    from miaudit.serve import calibrated_detectors

    rng = np.random.default_rng(9)
    scale = np.array([1e5, 1.0, 0.01, 3.0, 1.0, 1.0, 1.0, 0.0])
    benign = rng.normal(size=(1_200, D)) * scale + 7.0
    cfg = calibrated_detectors(benign)
    np.testing.assert_allclose(cfg.center, benign.mean(axis=0))
    np.testing.assert_allclose(cfg.scale[:7], benign.std(axis=0)[:7])
    assert cfg.scale[7] == 1.0  # a constant feature is not divided by zero
    expected = calibrate_knn_threshold(benign, config=cfg)
    assert cfg.knn_threshold == expected and 0 < expected < default_knn_threshold(D) * 10
    # Noise of 0.05 standard deviations around one record, in features spread over 1e5 units:
    # caught once standardised, missed in raw units (the command line's default before).
    x0 = benign[0]
    probes = x0 + 0.05 * rng.normal(size=(60, D)) * np.where(scale > 0, scale, 1.0)
    raw, raw_sink = make()
    feed(raw, "a", benign[1:301])
    feed(raw, "a", probes)
    mon, sink = Monitor(cfg, D, SECRET, Sink()), None
    sink = mon._sink
    feed(mon, "a", benign[1:301])
    feed(mon, "a", probes)
    assert sink.of("perturbation") and not raw_sink.of("perturbation")
    with pytest.raises(InputError, match="at least 1,000"):
        calibrated_detectors(benign[:999])
    assert calibrated_detectors(benign[:500], DetectorConfig(knn_buffer=500)).knn_threshold
    with pytest.raises(InputError, match="threshold is 0"):  # verification red team
        calibrated_detectors(np.repeat(benign[:200], 6, axis=0))
    with pytest.raises(InputError, match="not finite"):
        calibrated_detectors(
            np.where(np.arange(D) == 0, 1e300, benign) * np.r_[1, 1, -1].repeat(400)[:, None]
        )


@pytest.mark.parametrize("bad", [np.zeros((0, D)), np.zeros(D)])
def test_empty_or_1d_input_is_ignored(bad: np.ndarray) -> None:
    mon, sink = make()
    mon.observe("a", bad, [])
    assert sink.alerts == []


# --- the webhook ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://[::1", "not a valid URL"),  # red team: killed the webhook thread
        ("notaurl", "got no scheme"),
        ("ftp://example.org/hook", "got scheme 'ftp'"),
        ("http://", "must name a host"),
        ("http:///path", "must name a host"),
        ("http://example.org:port/hook", "not a valid URL"),
    ],
)
def test_a_webhook_url_is_checked_before_anything_is_posted(url, why) -> None:
    from miaudit.errors import InputError
    from miaudit.serve._monitor import Webhook, check_webhook_url

    with pytest.raises(InputError, match=why) as err:
        check_webhook_url(url, "--webhook")
    assert err.value.field == "--webhook"
    with pytest.raises(InputError) as err:
        Webhook(url)
    assert err.value.field == "webhook"


def test_good_webhook_urls_are_accepted() -> None:
    from miaudit.serve._monitor import check_webhook_url

    for url in ("http://127.0.0.1:9/a", "https://hooks.example.org/x?y=1", "HTTP://[::1]:80/"):
        check_webhook_url(url)


class _Receiver:
    """An HTTP server on loopback that records the JSON posted to it; ``hold`` keeps the first
    request waiting until released."""

    def __init__(self, *, hold: bool = False, status: int = 204) -> None:
        import http.server
        import json
        import threading

        self.got: list[dict] = []
        self.started = threading.Event()
        self.release = threading.Event()
        if not hold:
            self.release.set()
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                outer.started.set()
                outer.release.wait(10)
                outer.got.append(body)
                self.send_response(status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def wait_for(self, n: int, timeout: float = 10.0) -> list[dict]:
        import time

        deadline = time.monotonic() + timeout
        while len(self.got) < n and time.monotonic() < deadline:
            time.sleep(0.02)
        return self.got

    def close(self) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


def test_the_webhook_thread_survives_any_failed_post(caplog) -> None:
    """Red team: httpx.InvalidURL is not an httpx.HTTPError, so one bad post ended the thread
    and no alert was posted for the rest of the server's life."""
    from miaudit.serve._monitor import Webhook

    receiver = _Receiver()
    hook = Webhook(receiver.url)
    try:
        hook.url = "http://[::1"  # past the constructor's check: any exception of one post
        with caplog.at_level("WARNING", logger="miaudit.serve"):
            hook.post({"id": 1})
            import time

            deadline = time.monotonic() + 10
            while "InvalidURL" not in caplog.text and time.monotonic() < deadline:
                time.sleep(0.02)
        assert "InvalidURL" in caplog.text and "alert 1 kept in the database" in caplog.text
        assert hook._thread.is_alive()
        hook.url = receiver.url
        hook.post({"id": 2})
        assert receiver.wait_for(1) == [{"id": 2}]
    finally:
        hook.close()
        receiver.close()


def test_a_webhook_answering_an_error_is_warned_about(caplog) -> None:
    from miaudit.serve._monitor import Webhook

    receiver = _Receiver(status=404)
    hook = Webhook(receiver.url)
    try:
        with caplog.at_level("WARNING", logger="miaudit.serve"):
            hook.post({"id": 7})
            assert receiver.wait_for(1) == [{"id": 7}]
            hook.close()
        assert "answered 404; alert 7 kept in the database only" in caplog.text
    finally:
        receiver.close()


def test_alerts_dropped_from_a_full_webhook_queue_are_counted_and_warned_about(caplog) -> None:
    """The queue was a deque(maxlen=1000): alerts past it vanished without a word."""
    from miaudit.serve._monitor import Webhook

    receiver = _Receiver(hold=True)
    hook = Webhook(receiver.url, max_queue=2)
    try:
        with caplog.at_level("WARNING", logger="miaudit.serve"):
            hook.post({"id": 1})
            assert receiver.started.wait(10)  # the thread is held in the first post
            for i in range(2, 7):
                hook.post({"id": i})
            assert hook.dropped == 3
            receiver.release.set()
            assert [a["id"] for a in receiver.wait_for(3)] == [1, 5, 6]  # the newest kept
            hook.close()
        assert "queue was full; 3 alerts were not posted (kept in the database)" in caplog.text
    finally:
        receiver.close()


def _one_hot_records(n: int, rng: np.random.Generator) -> np.ndarray:
    """Adult-like rows: 3 numeric features and 6 categorical ones one-hot encoded (skewed)."""
    blocks = [rng.normal(size=(n, 3))]
    for width in (8, 6, 12, 5, 7, 9):
        p = rng.dirichlet(np.full(width, 0.5))
        blocks.append(np.eye(width)[rng.choice(width, n, p=p)])
    return np.hstack(blocks)


def test_one_hot_benign_traffic_from_many_keys_raises_no_cross_key_alert() -> None:
    """Red team: on Adult, most quantised windows are all-zero one-hot blocks every record
    shares, so 40 % of benign pairs shared 12 of 16 hashes (10 standard units apart) and 20
    benign keys raised 1,340 `spread` alerts in 20,000 records. Near records are now counted
    by distance, in a window calibrated on benign records; a tight cloud split over keys is
    still caught."""
    from miaudit.serve import calibrated_detectors

    rng = np.random.default_rng(13)
    x = _one_hot_records(8_000, rng)
    cfg = calibrated_detectors(x[:2_000], DetectorConfig(cluster_alarm=12))
    sink = Sink()
    mon = Monitor(cfg, x.shape[1], SECRET, sink)
    for k in range(12):
        feed(mon, f"benign{k}", x[2_000 + 500 * k : 2_500 + 500 * k], batch=10)
    assert sink.alerts == []
    x0 = x[7_500]
    for i in range(30):  # a tight cloud, one copy per key in turn
        probe = x0 + 1e-3 * np.asarray(cfg.scale) * rng.normal(size=x.shape[1])
        feed(mon, f"acct{i % 6}", probe[None])
    assert {a[0] for a in sink.alerts} == {"spread"}


def _probes_interleaved(
    mon: Monitor, x0: np.ndarray, filler, between: int, n: int, rng: np.random.Generator
) -> None:
    """``n`` copies of ``x0`` (noise 1e-3), each from one of 6 keys, each followed by
    ``between`` records from ``filler(rng, m)`` sent by the same keys in requests of 8."""
    for i in range(n):
        feed(mon, f"acct{i % 6}", (x0 + 1e-3 * rng.normal(size=D))[None])
        left = between
        while left > 0:
            m = min(8, left)
            feed(mon, f"acct{int(rng.integers(6))}", filler(rng, m), batch=m)
            left -= m


def test_a_split_cloud_is_caught_however_the_records_between_its_probes_were_chosen() -> None:
    """Red team (hashed-window fingerprints): each window kept its latest records, so records
    sharing one window with a probe run, sent between runs, pushed the run out of its lists
    (128 per run of 19 hid it at 8 features), and so did ordinary traffic on one-hot data.
    The window is of records: whatever the records between probes, up to about
    ``spread_window / cluster_alarm`` of them per probe change nothing; more do, whatever
    they are."""
    rng = np.random.default_rng(16)
    x0 = rng.normal(size=D)

    def sharing_a_window(r: np.random.Generator, m: int) -> np.ndarray:
        f = r.normal(size=(m, D))
        f[:, :4] = x0[:4]  # a window in common with the probes, far from them in distance
        return f

    def ordinary(r: np.random.Generator, m: int) -> np.ndarray:
        return r.normal(size=(m, D))

    for filler in (sharing_a_window, ordinary):
        mon, sink = make(knn_alarm=10_000, cluster_alarm=12, spread_window=600, tight_window=600)
        # 11 probes of the 12th's window: 10 × (1 + 50) + 1 = 511 records span them
        _probes_interleaved(mon, x0, filler, 50, 12, rng)
        assert sink.of("spread"), filler.__name__
        assert not sink.of("near_duplicate")
        mon, sink = make(knn_alarm=10_000, cluster_alarm=12, spread_window=600, tight_window=600)
        _probes_interleaved(mon, x0, filler, 60, 12, rng)  # 661 records: past the window
        assert not sink.of("spread"), filler.__name__


def test_a_tight_cloud_is_counted_in_a_longer_window() -> None:
    """Benign records lie within a third of the threshold of each other far less often, so that
    count keeps a longer window: probes 1e-3 apart spaced past the window at the threshold are
    still counted there; probes spread to half the threshold are not."""
    rng = np.random.default_rng(20)
    x0 = rng.normal(size=D)
    threshold = default_knn_threshold(D)

    def ordinary(r: np.random.Generator, m: int) -> np.ndarray:
        return r.normal(size=(m, D))

    for spread_to, caught in ((1e-3, True), (0.5 * threshold / np.sqrt(2 * D), False)):
        mon, sink = make(knn_alarm=10_000, cluster_alarm=12, spread_window=200, tight_window=800)
        for i in range(12):  # probes 61 records apart: 11 span 610, past 200, within 800
            feed(mon, f"acct{i % 6}", (x0 + spread_to * rng.normal(size=D))[None])
            feed(mon, f"acct{int(rng.integers(6))}", ordinary(rng, 60), batch=20)
        assert bool(sink.of("spread")) is caught, spread_to
    mon, sink = make(knn_alarm=10_000, cluster_alarm=12, spread_window=200, tight_radius=0)
    assert len(mon.scales) == 1


def test_many_records_probed_in_turn_raise_near_share() -> None:
    """Red team: probing many records in turn, one query per record per round, keeps every
    point's count below the windows' alarm once there are more records than a window's
    length over 19, at no extra cost. Nearly every record of such a key lands near an earlier
    one, where few benign records do: its share raises ``near_share``. Ordinary keys, and
    the same probes given one fresh record each per probe, raise nothing."""
    rng = np.random.default_rng(24)
    targets = rng.normal(size=(60, D)) * 3  # 60 > 200 / 19: no point reaches 20 in a window
    settings = {"knn_alarm": 10_000, "spread_window": 200, "tight_window": 200}

    def attack(mon: Monitor, fresh_per_probe: int) -> None:
        for _ in range(10):  # rounds: one probe of every record
            for t, x0 in enumerate(targets):
                feed(mon, f"acct{t % 2}", (x0 + 1e-3 * rng.normal(size=D))[None])
                if fresh_per_probe:
                    feed(mon, f"acct{t % 2}", rng.normal(size=(fresh_per_probe, D)) * 3, 8)

    mon, sink = make(**settings)
    feed(mon, "benign", rng.normal(size=(1_000, D)) * 3, batch=10)
    attack(mon, 0)
    assert not sink.of("spread") and not sink.of("near_duplicate")
    assert {a[1] for a in sink.of("near_share")} == {"acct0", "acct1"}
    assert mon.near_share_alarm == max(50, 1 + int(binom_isf(1e-9, 200, 0.15)))
    mon, sink = make(**settings)
    attack(mon, 3)  # a quarter of each key's records near an earlier one: under the floor
    assert not sink.of("near_share")


def test_near_share_counts_a_keys_own_probes_not_repeats_or_others_records() -> None:
    """Second red team: exact copies counted as near, and any key's records did, so a retried
    request of 100 rows, a key scoring a list another key had scored, and a key whose records
    a client had placed near-copies of, all raised ``near_share``."""
    rng = np.random.default_rng(25)
    settings = {"knn_alarm": 10_000, "repeat_threshold": 10**6}
    listed = rng.normal(size=(300, D)) * 3
    mon, sink = make(**settings)
    feed(mon, "retry", listed[:100], batch=100)
    feed(mon, "retry", listed[:100], batch=100)  # the same request again
    feed(mon, "first", listed, batch=20)
    feed(mon, "second", listed, batch=20)  # a list another key scored
    placed = listed + 1e-3 * rng.normal(size=listed.shape)
    feed(mon, "placer", placed, batch=20)
    feed(mon, "victim", listed, batch=20)  # near-copies of its records were placed first
    assert not sink.of("near_share")


def test_an_unaccused_cluster_names_every_key_and_cannot_hide_another() -> None:
    """Second red team: alerts accusing no key shared one cooldown, so 20 throwaway keys each
    sending one record took the slot and a split attack's keys appeared in no alert; and the
    first alert named only the keys that had sent a probe by then. Each named key is named
    once per cooldown now."""
    rng = np.random.default_rng(26)
    mon, sink = make(knn_alarm=10_000, near_share_records=0)
    junk = rng.normal(size=D) * 3
    for i in range(20):  # a decoy cluster: one record from each of 20 keys
        feed(mon, f"junk{i}", (junk + 1e-4 * rng.normal(size=D))[None])
    for _ in range(5):  # the attack: key j sends probe j of every record
        x0 = rng.normal(size=D) * 3
        for j in range(40):
            feed(mon, f"atk{j}", (x0 + 1e-4 * rng.normal(size=D))[None])
    unaccused = [a for a in sink.of("spread") if a[1] is None]
    named = set().union(*(a[2] for a in unaccused))
    assert {f"atk{j}" for j in range(40)} <= named
    assert not [a for a in sink.of("spread") if a[1] is not None]  # one record near each point


def binom_isf(p: float, n: int, q: float) -> float:
    from scipy.stats import binom

    return float(binom.isf(p, n, q))


def test_a_request_counts_as_its_records_would_one_by_one() -> None:
    """Rows of one request see the window and the earlier rows, and row i no longer sees the
    window's i oldest records once it is full: the alarms match a one-by-one feed."""
    rng = np.random.default_rng(17)
    x0 = rng.normal(size=D)
    x = rng.normal(size=(400, D))
    x[rng.choice(400, 60, replace=False)] = x0 + 1e-3 * rng.normal(size=(60, D))
    got = []
    for batch in (1, 7, 64, 256):
        mon, sink = make(
            knn_alarm=10_000, cluster_alarm=10, spread_window=50, tight_window=90, cooldown_s=0
        )
        feed(mon, "a", x, batch=batch)
        got.append(
            [(a[3]["records_near"], a[3]["records_very_near"]) for a in sink.of("near_duplicate")]
        )
    assert got[0] and all(g == got[0] for g in got), got


def test_the_window_is_fitted_to_benign_records_on_calibration() -> None:
    """The count of benign records near a record grows with the window: calibration keeps it
    where benign traffic like the calibration records is expected to alarm at most once per
    million records (binomial counts), and no larger than the configured one."""
    from miaudit.errors import InputError
    from miaudit.serve import calibrated_detectors, fit_spread_window

    rng = np.random.default_rng(18)
    spread_out = rng.normal(size=(2_000, D))
    default = DetectorConfig(cluster_alarm=200)
    assert calibrated_detectors(spread_out, default).spread_window == default.spread_window
    # 5 % of the records in 5 tight clumps of 20: each of them has 19 others within the
    # threshold (calibrated on the clumps' scale), and a window of w holds 19 with w/105 ones
    crowded = rng.normal(size=(2_000, D))
    clumped = rng.choice(2_000, 100, replace=False)
    crowded[clumped] = rng.normal(size=(5, D))[np.arange(100) % 5] + 1e-3 * rng.normal(
        size=(100, D)
    )
    cfg = calibrated_detectors(crowded)
    z = (crowded - np.asarray(cfg.center)) / np.asarray(cfg.scale)
    w = cfg.spread_window
    assert 5 * cfg.cluster_alarm <= w < DetectorConfig().spread_window
    assert fit_spread_window(z, cfg.knn_threshold, cfg.cluster_alarm, w + 1) == w  # the largest
    assert fit_spread_window(z, cfg.knn_threshold, cfg.cluster_alarm, w - 1) == w - 1  # a cap
    # fed in random order, benign traffic like it stays quiet in that window
    sink = Sink()
    mon = Monitor(cfg, D, SECRET, sink)
    feed(mon, "b", crowded[rng.permutation(2_000)], batch=20)
    assert not sink.of("near_duplicate") and not sink.of("spread")
    # an alarm at 2 records: the clumps alone would raise it in any window
    assert fit_spread_window(z, cfg.knn_threshold, 2, 5_000) is None
    with pytest.raises(InputError, match=r"raise detectors\.cluster_alarm"):
        calibrated_detectors(crowded, DetectorConfig(cluster_alarm=2))


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("spread_window", 0),
        ("spread_window", 10),  # below cluster_alarm: no alarm could ever be raised
        ("cluster_alarm", -1),
        ("cluster_alarm", 1),  # every record would alarm
        ("knn_alarm", 2.5),
        ("knn_threshold", -1.0),
        ("spread_window", True),
        ("spread_window", 10**9),  # red team: the Monitor could not be built
        ("knn_buffer", 10**9),
        ("auth_window_s", 0),
        ("auth_alarm", -5),
        ("center", (0.0, float("nan"))),
        ("scale", (1.0, -2.0)),
        ("center", ("abc",)),
        ("enabled", "no"),
    ],
)
def test_detector_settings_out_of_range_are_refused_naming_them(field: str, value: object) -> None:
    from miaudit.errors import InputError

    with pytest.raises(InputError, match=f"detectors.{field}"):
        DetectorConfig(**{field: value})  # type: ignore[arg-type]


def test_detector_settings_as_numpy_or_json_give_them_are_taken() -> None:
    cfg = DetectorConfig(spread_window=np.int64(1000), knn_k=4.0, knn_threshold=np.float32(0.5))  # type: ignore[arg-type]
    assert cfg.spread_window == 1000 and type(cfg.spread_window) is int
    assert cfg.knn_k == 4 and type(cfg.knn_k) is int
    assert cfg.knn_threshold == 0.5 and type(cfg.knn_threshold) is float


def test_the_largest_window_is_not_allocated_up_front() -> None:
    mon = Monitor(DetectorConfig(spread_window=100_000), D, SECRET, Sink())
    assert mon._ring.nbytes <= 1024 * D * 8
    feed(mon, "a", np.random.default_rng(15).normal(size=(3000, D)), batch=100)
    assert 3000 <= len(mon._ring) <= 4096 and mon._filled == 3000


def test_settings_of_the_fingerprints_are_refused_naming_them() -> None:
    """A spec still naming a setting of the hashed-window fingerprints would have run with it
    ignored: it is refused, naming it."""
    from miaudit.errors import InputError
    from miaudit.serve import ServeSpec

    for name in ("max_postings", "quantum", "max_fingerprints"):
        with pytest.raises(InputError, match=rf"detectors\.{name}.*spread_window"):
            ServeSpec(db="sqlite://", model="m.skops", detectors={name: 1}).check()
