"""``miaudit keys …`` and ``miaudit alerts`` through Typer's CliRunner (the stand-alone app)."""

from __future__ import annotations

import json
import os
import stat

import pytest
from typer.testing import CliRunner

from miaudit.cli._serve import serve_app
from miaudit.errors import InputError
from miaudit.serve import Store

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(serve_app, list(args), catch_exceptions=True)


def test_keys_create_list_budget_revoke(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/g.db"
    r = invoke("keys", "create", "--role", "analyst", "--budget", "500", "--rate", "50", "--db", db)
    assert r.exit_code == 0, r.output
    token = r.stdout.strip().splitlines()[-1]
    assert token.startswith("mia_")
    key_id = token.split("_")[1]
    secret = tmp_path / "g.db.secret"
    assert secret.exists() and stat.S_IMODE(os.stat(secret).st_mode) == 0o600
    r = invoke("keys", "list", "--db", db, "--json")
    rows = [json.loads(line) for line in r.stdout.splitlines()]
    assert rows == [
        {
            **rows[0],
            "key_id": key_id,
            "role": "analyst",
            "budget": 500,
            "rate": 50,
            "used": 0,
            "revoked": False,
        }
    ]
    assert token not in r.stdout
    r = invoke("keys", "list", "--db", db)
    assert key_id in r.stdout and "active" in r.stdout
    r = invoke(
        "keys", "budget", key_id, "--budget", "none", "--rate", "10", "--window", "5", "--db", db
    )
    assert r.exit_code == 0 and "budget none" in r.stdout and "rate 10 per 5s" in r.stdout
    r = invoke("keys", "revoke", key_id, "--db", db)
    assert r.exit_code == 0
    assert "revoked" in invoke("keys", "list", "--db", db).stdout


def test_bad_inputs_name_the_option(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/g.db"
    r = invoke("keys", "create", "--role", "wizard", "--db", db)
    assert isinstance(r.exception, InputError) and r.exception.field == "--role"
    r = invoke("keys", "create", "--role", "public", "--budget", "lots", "--db", db)
    assert isinstance(r.exception, InputError) and r.exception.field == "--budget"
    r = invoke("keys", "revoke", "ffffffffffffffff", "--db", db)
    assert (
        isinstance(r.exception, InputError) and r.exception.field == "--db"
    )  # no database there: none is created
    assert not (tmp_path / "g.db").exists()
    assert invoke("keys", "create", "--role", "public", "--db", db).exit_code == 0
    r = invoke("keys", "revoke", "ffffffffffffffff", "--db", db)
    assert isinstance(r.exception, InputError) and r.exception.field == "key_id"
    r = invoke("keys", "create", "--role", "public", "--db", "postgresql://u@127.0.0.1:1/x")
    assert isinstance(r.exception, InputError) and r.exception.field == "--secret-file"
    r = invoke("serve", "--db", db)
    assert isinstance(r.exception, InputError) and r.exception.field == "--model"


def test_alerts_lists_stored_alerts(tmp_path) -> None:
    db = f"sqlite:///{tmp_path}/g.db"
    r = invoke("alerts", "--db", db)  # a mistyped path is not "no alerts"
    assert isinstance(r.exception, InputError) and r.exception.field == "--db"
    store = Store(db)
    assert invoke("alerts", "--db", db).stdout.strip() == "no alerts"
    store.add_alert("perturbation", "0123456789abcdef", ["0123456789abcdef"], {"queries": 17})
    store.add_alert(
        "spread",
        "aaaaaaaaaaaaaaaa",
        ["aaaaaaaaaaaaaaaa", "bbbbbbbbbbbbbbbb"],
        {"cluster_queries": 20},
    )
    store.close()
    out = invoke("alerts", "--db", db).stdout
    assert "perturbation" in out and "queries=17" in out and "bbbbbbbbbbbbbbbb" in out
    rows = [
        json.loads(x)
        for x in invoke("alerts", "--db", db, "--json", "--since", "1").stdout.splitlines()
    ]
    assert [a["detector"] for a in rows] == ["spread"]


@pytest.mark.parametrize("role", ["admin", "public"])
def test_created_key_authenticates_against_an_app_on_the_same_db(tmp_path, estimator, role) -> None:
    from miaudit.serve import (
        EstimatorPredictor,
        ServeConfig,
        asgi_client,
        create_app,
        load_server_secret,
    )

    db = f"sqlite:///{tmp_path}/g.db"
    token = invoke("keys", "create", "--role", role, "--db", db).stdout.strip().splitlines()[-1]
    app = create_app(
        ServeConfig(
            predictor=EstimatorPredictor(estimator),
            db=db,
            secret=load_server_secret(tmp_path / "g.db.secret"),
        )
    )
    with asgi_client(app) as client:
        r = client.get("/whoami", headers={"Authorization": f"Bearer {token}"})
    app.state.store.close()
    assert r.status_code == 200 and r.json()["role"] == role
