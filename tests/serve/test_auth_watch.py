"""401s counted per client address and turned into bounded alerts (red team: 401s left no trace)."""

from __future__ import annotations

import pytest

from miaudit.serve import DetectorConfig
from miaudit.serve._auth_watch import OTHER, AuthWatch
from tests.serve.conftest import synthetic

X, _ = synthetic(5, seed=3)


def test_an_address_alerts_once_per_window_at_the_alarm() -> None:
    watch = AuthWatch(alarm=3, window_s=60)
    got = [watch.note("a", None, now=120.0 + i) for i in range(6)]
    assert [len(g) for g in got] == [0, 0, 1, 0, 0, 0]
    assert got[2][0] == ("auth_failures", None, [], {"address": "a", "failures": 3, "window_s": 60})
    assert watch.note("b", None, now=130.0) == []  # counted apart
    # a new window starts from nothing: the alarm needs 3 more
    assert [len(watch.note("a", None, now=180.0 + i)) for i in range(3)] == [0, 0, 1]


def test_a_revoked_keys_token_alerts_naming_the_key_once_per_window() -> None:
    watch = AuthWatch(alarm=100, window_s=60)
    first = watch.note("a", "k1", now=0.0)
    assert first == [("revoked_key", "k1", [], {"address": "a"})]
    assert watch.note("b", "k1", now=1.0) == []
    assert watch.note("b", "k2", now=2.0)[0][1] == "k2"
    assert watch.note("a", "k1", now=60.0)[0][1] == "k1"


def test_addresses_past_the_cap_share_one_count() -> None:
    watch = AuthWatch(alarm=3, window_s=60, max_addresses=2)
    for address in ("a", "b"):
        watch.note(address, None, now=0.0)
    got = [watch.note(f"spoofed-{i}", None, now=1.0) for i in range(3)]
    assert got[-1] == [
        ("auth_failures", None, [], {"address": OTHER, "failures": 3, "window_s": 60})
    ]
    assert len(watch._counts) == 3  # a, b and other: memory bounded by the cap


def test_alerts_per_window_are_capped_then_one_says_so() -> None:
    watch = AuthWatch(alarm=1, window_s=60, max_alerts=3)
    got = [a for i in range(10) for a in watch.note(f"x{i}", None, now=0.0)]
    assert [a[3].get("address") for a in got[:3]] == ["x0", "x1", "x2"]  # all three told
    assert got[3:] == [
        ("auth_failures", None, [], {"alerts_held_back": True, "max_alerts": 3, "window_s": 60})
    ]
    assert len(watch.note("fresh", None, now=60.0)) == 1  # the next window alerts again


@pytest.mark.parametrize("bad", [{"alarm": 0}, {"window_s": 0}, {"max_alerts": 0}])
def test_settings_that_would_never_alert_are_refused(bad: dict[str, int]) -> None:
    with pytest.raises(ValueError, match="AuthWatch"):
        AuthWatch(**bad)


def test_the_service_stores_401_alerts(make_service) -> None:
    svc = make_service(detectors=DetectorConfig(auth_alarm=5))
    for _ in range(6):
        assert (
            svc.post("mia_0123456789abcdef_" + "A" * 43, json={"record": X[0].tolist()}).status_code
            == 401
        )
    token = svc.token("trusted")
    assert svc.store.revoke_key(token.split("_")[1])
    assert svc.post(token, json={"record": X[0].tolist()}).status_code == 401
    alerts = svc.store.list_alerts(since_id=0, limit=10, key_id=None)
    assert [(a.detector, a.key_id) for a in alerts] == [
        ("auth_failures", None),
        ("revoked_key", token.split("_")[1]),
    ]
    assert alerts[0].detail == {"address": "127.0.0.1", "failures": 5, "window_s": 60}
    listed = svc.get(svc.admin, "/admin/alerts").json()
    assert [a["detector"] for a in listed] == ["auth_failures", "revoked_key"]


def test_no_watch_without_detectors(make_service) -> None:
    svc = make_service(detectors=DetectorConfig(enabled=False, auth_alarm=1))
    assert svc.post(None, json={"record": X[0].tolist()}).status_code == 401
    assert svc.store.list_alerts(since_id=0, limit=10, key_id=None) == []


def test_a_flood_of_failing_addresses_cannot_hold_back_a_revoked_keys_alert() -> None:
    """Red team: 100 addresses failing 20 times spent the window's alerts before the stolen
    key's."""
    watch = AuthWatch(alarm=1, window_s=60, max_alerts=3)
    for i in range(10):
        watch.note(f"x{i}", None, now=0.0)
    assert watch.note("y", "stolen", now=1.0) == [("revoked_key", "stolen", [], {"address": "y"})]


def test_the_address_is_an_ip_literal_never_a_header() -> None:
    """Red team: an 8,028-character script tag was stored as an address (the real server's
    X-Forwarded-For is tested in test_e2e.py)."""
    from miaudit.serve._gate import client_address

    assert client_address({"client": ("2001:db8::1", 1)}) == "2001:db8::1"
    assert client_address({"client": ("<img src=x onerror=alert(1)>" + "A" * 8000, 1)}) == "-"
    assert client_address({}) == "-"
