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
from tests.serve.conftest import SECRET

runner = CliRunner()


def invoke(*args: str):
    return runner.invoke(serve_app, list(args), catch_exceptions=True)


def refused(capsys, *args: str) -> str:
    """The one line ``miaudit`` prints when it refuses ``args`` with exit code 2."""
    from miaudit.cli._app import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as done:
        main(list(args))
    err = capsys.readouterr().err
    assert done.value.code == 2, err
    assert len(err.splitlines()) == 1 and err.startswith("error: "), err
    return err


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
        {"records_near": 20},
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


def test_the_server_secret_file_is_read_like_a_pseudonym_key(tmp_path, monkeypatch) -> None:
    """Red team: a 0644 secret, a link to zeros, 32 equal bytes and 64 hex zeros in the
    environment were accepted; a FIFO hung `keys create`."""
    from miaudit.serve import load_server_secret
    from miaudit.serve._keys import SECRET_ENV

    monkeypatch.delenv(SECRET_ENV, raising=False)
    good = tmp_path / "good.secret"
    made = load_server_secret(good, create=True)
    assert len(made) == 32 and stat.S_IMODE(os.stat(good).st_mode) == 0o600
    assert load_server_secret(good) == made
    shared = tmp_path / "shared.secret"
    shared.write_bytes(os.urandom(32))
    shared.chmod(0o644)
    zeros = tmp_path / "zeros.secret"
    zeros.write_bytes(bytes(32))
    zeros.chmod(0o600)
    link = tmp_path / "link.secret"
    link.symlink_to(good)
    fifo = tmp_path / "fifo.secret"
    os.mkfifo(fifo, 0o600)
    for bad, why in ((shared, "mode 0644"), (zeros, "distinct"), (link, "link"), (fifo, "regular")):
        with pytest.raises(InputError, match=why):
            load_server_secret(bad)
    for weak in ("00" * 32, b"password".hex() * 4):  # the second: verification red team
        monkeypatch.setenv(SECRET_ENV, weak)
        with pytest.raises(InputError, match="distinct"):
            load_server_secret(None)
    r = invoke("keys", "create", "--role", "public", "--db", f"sqlite:///{tmp_path}/g.db")
    assert isinstance(r.exception, InputError) and r.exception.field == SECRET_ENV


def test_a_new_database_is_created_readable_by_its_owner_only(tmp_path) -> None:
    """Red team: guard.db (key digests, who queried how much, record hashes) was 0644."""
    store = Store(f"sqlite:///{tmp_path}/g.db")
    store.create_key(bytes(range(32)), "public")
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / "g.db").st_mode) == 0o600


@pytest.mark.parametrize(
    ("url", "made"),
    [
        ("sqlite:///{d}/file:plain.db", "file:plain.db"),  # no uri=true: a file of that name
        ("sqlite:///file:{d}/u.db?uri=true", "u.db"),
        ("sqlite:///file:{d}/sp%2520ace.db?mode=rwc&uri=true", "sp ace.db"),
        ("sqlite:///file://localhost{d}/l.db?uri=true", "l.db"),
        ("sqlite:///file:{d}/t.db?uri=True", "t.db"),  # red team: asbool spellings
        ("sqlite:///file:{d}/y.db?uri=on", "y.db"),
    ],
)
def test_databases_named_by_sqlite_uri_are_created_0600_too(tmp_path, url, made) -> None:
    """Red team: a `file:` database name was opened as given, with the umask's mode."""
    store = Store(url.format(d=tmp_path))
    store.create_key(bytes(range(32)), "public")
    store.close()
    assert stat.S_IMODE(os.stat(tmp_path / made).st_mode) == 0o600
    assert {p.name for p in tmp_path.iterdir() if not p.name.endswith(("-wal", "-shm"))} == {made}


@pytest.mark.parametrize(
    "url",
    [
        "sqlite:///file::memory:?uri=true",
        "sqlite:///file:m?mode=memory&uri=true",
        "sqlite:///file::memory:?uri=True",  # red team: asbool spellings
        "sqlite:///file:m.db?mode=memory&uri=yes",
        "sqlite:///file:?uri=true",  # a private temporary database
        "sqlite:///file:mdb?vfs=memdb&uri=true",
    ],
)
def test_in_memory_sqlite_uris_are_refused(url) -> None:
    """Each worker would hold its own in-memory database: budgets per worker, not exact."""
    with pytest.raises(InputError, match="in-memory"):
        Store(url)


def test_detector_calibration_from_benign_records(tmp_path, model_file, capsys) -> None:
    """Red team: `miaudit serve` measured the detectors' distances in raw feature units (no
    way to standardise them); --detector-calibration takes benign records."""
    import numpy as np

    from miaudit.cli._serve import _with_calibrated_detectors
    from miaudit.serve import ServeSpec, load_predictor
    from tests.serve.conftest import N_FEATURES, synthetic

    spec = ServeSpec(
        db=f"sqlite:///{tmp_path}/g.db", model=str(model_file), secret_file=str(tmp_path / "s")
    )
    predictor = load_predictor(str(model_file))
    x, _ = synthetic(1_200, seed=3)
    x = x * 1000.0
    np.savez(tmp_path / "benign.npz", features=x)
    done = _with_calibrated_detectors(spec, tmp_path / "benign.npz", predictor)
    assert len(done.detectors["center"]) == N_FEATURES
    np.testing.assert_allclose(done.detectors["scale"], x.std(axis=0))
    cfg = done.build().detectors  # what each worker builds from the spec's JSON
    assert cfg.knn_threshold == done.detectors["knn_threshold"] and len(cfg.scale) == N_FEATURES
    assert _with_calibrated_detectors(spec, None, predictor) == spec
    assert "raw units" in capsys.readouterr().err
    np.savez(tmp_path / "narrow.npz", features=x[:, :2])
    np.savez(tmp_path / "few.npz", features=x[:50])
    for name, why in (("narrow", "the model takes"), ("few", "at least 1,000")):
        with pytest.raises(InputError, match=why) as err:
            _with_calibrated_detectors(spec, tmp_path / f"{name}.npz", predictor)
        assert err.value.field == "--detector-calibration"
    # A spec whose centre is of another width is refused before its secret file is written.
    import dataclasses

    narrow = dataclasses.replace(
        spec, secret_file=str(tmp_path / "s2"), detectors={"center": [0.0, 1.0]}
    )
    with pytest.raises(InputError, match="values for a model of") as err:
        narrow.build()
    assert err.value.field == "detectors.center" and not (tmp_path / "s2").exists()


def test_a_read_write_uri_to_a_missing_database_creates_nothing(tmp_path) -> None:
    """Second read: mode=rw means the file must exist; a mistyped path became a fresh, empty
    database."""
    with pytest.raises(InputError, match="cannot open the database"):
        Store(f"sqlite:///file:{tmp_path}/missing.db?mode=rw&uri=true")
    assert list(tmp_path.iterdir()) == []


BIG = str(2**64)


@pytest.mark.parametrize(
    ("args", "option"),
    [
        (["keys", "create", "--role", "public", "--budget", BIG], "--budget"),
        (["keys", "create", "--role", "public", "--budget", str(2**63)], "--budget"),
        (["keys", "create", "--role", "public", "--budget", "５０"], "--budget"),  # fullwidth
        (["keys", "create", "--role", "public", "--budget", "1_000"], "--budget"),
        (["keys", "create", "--role", "public", "--rate", str(2**70)], "--rate"),
        (["keys", "create", "--role", "public", "--window", str(2**63)], "--window"),
        (["keys", "create", "--role", "public", "--window", str(2**31)], "--window"),
        (["keys", "create", "--role", "public", "--window", str(86400 * 366 + 1)], "--window"),
        (["keys", "create", "--role", "public", "--window", "６０"], "--window"),
        (["keys", "create", "--role", "public", "--label", "x" * 201], "--label"),
    ],
)
def test_keys_create_refuses_limits_past_the_databases_range(
    tmp_path, capsys, args, option
) -> None:
    """Red team: these reached the database and exited 1 with "internal error"
    (OverflowError on SQLite, DataError on PostgreSQL); the fullwidth digits were read as 50."""
    err = refused(capsys, *args, "--db", f"sqlite:///{tmp_path}/g.db")
    assert err.startswith(f"error: {option}: ")
    assert list(tmp_path.iterdir()) == []  # refused before the database or the secret


def test_keys_budget_and_alerts_refuse_numbers_past_the_databases_range(tmp_path, capsys) -> None:
    db = f"sqlite:///{tmp_path}/g.db"
    store = Store(db)
    key = store.create_key(bytes(range(32)), "public", budget=5, rate=2, window_s=9).key_id
    store.close()
    for args, option in (
        (["--budget", BIG], "--budget"),
        (["--rate", str(2**62 + 1)], "--rate"),
        (["--window", "99999999999999999999"], "--window"),
        (["--budget", "٥"], "--budget"),  # an Arabic-Indic digit
    ):
        err = refused(capsys, "keys", "budget", key, *args, "--db", db)
        assert err.startswith(f"error: {option}: ")
    store = Store(db)
    info = store.get_key(key)
    store.close()
    assert info is not None and (info.budget, info.rate, info.window_s) == (5, 2, 9)
    for args, option in (
        (["--limit", BIG], "--limit"),
        (["--limit", "0"], "--limit"),
        (["--since", BIG], "--since"),
        (["--since", str(2**31)], "--since"),  # alert ids are 32-bit on PostgreSQL
        (["--since", "-1"], "--since"),
        (["--since", "1.5"], "--since"),
    ):
        err = refused(capsys, "alerts", *args, "--db", db)
        assert err.startswith(f"error: {option}: ")
    r = invoke("alerts", "--db", db, "--since", str(2**31 - 1), "--limit", str(2**62))
    assert r.exit_code == 0 and r.stdout.strip() == "no alerts"


def _files(folder) -> set[str]:
    return {p.name for p in folder.iterdir()}


def test_refused_keys_create_leaves_no_secret_or_database(tmp_path, capsys, monkeypatch) -> None:
    """Red team: a database that would not open was refused after `<db>.secret` (or
    --secret-file) had been written."""
    from miaudit.serve._keys import SECRET_ENV

    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.db").write_bytes(b"garbage, not a database\n" * 10)
    (tmp_path / "bad.db").chmod(0o600)
    (tmp_path / "dir.db").mkdir()
    before = _files(tmp_path)
    for db, extra in (
        ("sqlite:///bad.db", []),
        ("sqlite:///dir.db", []),
        ("postgresql://u@127.0.0.1:1/x", ["--secret-file", "sec"]),
        ("sqlite:///nodir/sub/g.db", []),  # its secret made the folders, then the database
    ):
        err = refused(capsys, "keys", "create", "--role", "admin", "--db", db, *extra)
        assert err.startswith("error: --db: cannot open the database")
        assert _files(tmp_path) == before
    assert "(no folder 'nodir/sub')" in err
    assert (tmp_path / "bad.db").read_bytes() == b"garbage, not a database\n" * 10
    # a weak secret in the environment is refused before the database is made
    monkeypatch.setenv(SECRET_ENV, "00" * 32)
    err = refused(capsys, "keys", "create", "--role", "admin", "--db", "sqlite:///new.db")
    assert err.startswith(f"error: {SECRET_ENV}: ")
    assert _files(tmp_path) == before


def test_a_secret_that_cannot_be_written_removes_the_database_just_made(
    tmp_path, capsys, monkeypatch
) -> None:
    """The database opens before a new secret is written; when writing it fails, the database
    this command made is removed, and one that was there before is kept."""
    from miaudit.serve._keys import SECRET_ENV

    monkeypatch.delenv(SECRET_ENV, raising=False)
    (tmp_path / "plain").write_text("a file, not a folder")
    unwritable = str(tmp_path / "plain" / "s.secret")
    db = f"sqlite:///{tmp_path}/new.db"
    err = refused(
        capsys, "keys", "create", "--role", "admin", "--db", db, "--secret-file", unwritable
    )
    assert err.startswith("error: --secret-file: cannot create")
    assert _files(tmp_path) == {"plain"}
    store = Store(f"sqlite:///{tmp_path}/old.db")
    store.create_key(SECRET, "public")
    store.close()
    old = f"sqlite:///{tmp_path}/old.db"
    refused(capsys, "keys", "create", "--role", "admin", "--db", old, "--secret-file", unwritable)
    store = Store(old)
    assert len(store.list_keys()) == 1  # the database that was there is untouched
    store.close()


def test_refused_serve_leaves_no_secret_or_database(
    tmp_path, capsys, monkeypatch, model_file
) -> None:
    """Red team: `serve` with a missing --detector-calibration left both the new database and
    its secret; with a database that would not open, the secret."""
    import numpy as np

    import miaudit.cli._serve as cli
    from miaudit.serve._keys import SECRET_ENV
    from tests.serve.conftest import synthetic

    monkeypatch.delenv(SECRET_ENV, raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bad.db").write_bytes(b"garbage, not a database\n" * 10)
    (tmp_path / "bad.db").chmod(0o600)
    np.savez(tmp_path / "narrow.npz", features=synthetic(200)[0][:, :2])
    before = _files(tmp_path)
    serve = ["serve", "--model", str(model_file)]
    for extra, option in (
        (
            ["--db", "sqlite:///new.db", "--detector-calibration", "missing.npz"],
            "--detector-calibration",
        ),
        (
            ["--db", "sqlite:///new.db", "--detector-calibration", "narrow.npz"],
            "--detector-calibration",
        ),
        (["--db", "sqlite:///new.db", "--roles", "missing.toml"], "--roles"),
        (["--db", "sqlite:///bad.db"], "--db"),
        (["--db", "postgresql://u@127.0.0.1:1/x", "--secret-file", "s2"], "--db"),
    ):
        err = refused(capsys, *serve, *extra)
        assert err.startswith(f"error: {option}: ")
        assert _files(tmp_path) == before
    ran = []
    monkeypatch.setattr(cli, "_run_workers", lambda spec, **kw: ran.append(spec))
    np.savez(tmp_path / "benign.npz", features=synthetic(1_200)[0])
    from miaudit.cli._app import main

    main([*serve, "--db", "sqlite:///new.db", "--detector-calibration", "benign.npz"])
    [spec] = ran
    assert spec.detectors["knn_threshold"] > 0 and len(spec.detectors["scale"]) == 6
    assert {"new.db", "new.db.secret"} <= _files(tmp_path)


@pytest.mark.parametrize("url", ["http://[::1", "notaurl", "file:///tmp/x"])
def test_serve_refuses_a_webhook_that_is_no_http_url(tmp_path, capsys, estimator, url) -> None:
    """Red team: `--webhook 'http://[::1'` was accepted, and the webhook thread died at the
    first alert; `--webhook notaurl` warned at every alert. Refused before the model is read."""
    from miaudit.serve import EstimatorPredictor, ServeConfig

    db = f"sqlite:///{tmp_path}/g.db"
    err = refused(capsys, "serve", "--model", "missing.skops", "--db", db, "--webhook", url)
    assert err.startswith("error: --webhook: ")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError) as bad:
        ServeConfig(EstimatorPredictor(estimator), db=db, secret=SECRET, webhook=url)
    assert bad.value.field == "webhook"


def test_keys_budget_keeps_the_limits_left_out(tmp_path, capsys) -> None:
    """Red team: `keys budget K --budget N` also removed the key's rate limit (an omitted --rate
    meant no cap) and set its window to the --window default of 60."""
    db = f"sqlite:///{tmp_path}/g.db"
    r = invoke("keys", "create", "--role", "public", "--budget", "500", "--rate", "50",
               "--window", "30", "--db", db)  # fmt: skip
    key = r.stdout.strip().splitlines()[-1].split("_")[1]

    def budget(*args: str) -> str:
        r = invoke("keys", "budget", key, *args, "--db", db)
        assert r.exit_code == 0, r.output
        return r.stdout.strip()

    assert budget("--budget", "1000") == f"key {key}: budget 1000, used 0, rate 50 per 30s"
    assert budget("--window", "10") == f"key {key}: budget 1000, used 0, rate 50 per 10s"
    assert budget("--rate", "none") == f"key {key}: budget 1000, used 0, rate none per 10s"
    assert (
        budget("--budget", "none", "--rate", "7")
        == f"key {key}: budget none, used 0, rate 7 per 10s"
    )
    err = refused(capsys, "keys", "budget", key, "--db", db)  # it used to remove both caps
    assert err.startswith("error: --budget: give --budget, --rate or --window")
    store = Store(db)
    info = store.get_key(key)
    store.close()
    assert info is not None and (info.budget, info.rate, info.window_s) == (None, 7, 10)


def test_a_database_with_keys_is_not_given_a_new_secret(tmp_path, capsys, monkeypatch) -> None:
    """A database whose secret file is missing (a wrong --secret-file, a lost file) was given a
    new secret silently, and every key it held stopped working."""
    monkeypatch.delenv("MIAUDIT_SERVE_SECRET", raising=False)
    db = f"sqlite:///{tmp_path}/g.db"
    assert invoke("keys", "create", "--role", "public", "--db", db).exit_code == 0
    (tmp_path / "g.db.secret").rename(tmp_path / "elsewhere.secret")
    err = refused(capsys, "keys", "create", "--role", "public", "--db", db)
    assert "error: --secret-file:" in err and "holds 1 key(s)" in err
    assert not (tmp_path / "g.db.secret").exists()  # no new secret written
    given = ["--secret-file", str(tmp_path / "elsewhere.secret")]
    assert invoke("keys", "create", "--role", "public", "--db", db, *given).exit_code == 0
