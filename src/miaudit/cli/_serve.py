"""``miaudit serve``, ``miaudit keys …`` and ``miaudit alerts``: thin commands over
:mod:`miaudit.serve`.

Registered on the main app with::

    app.command("serve")(serve_cmd)
    app.add_typer(keys_app, name="keys")
    app.command("alerts")(alerts_cmd)

``keys`` and ``alerts`` work on the database directly (no running server needed); the first
admin key is made with ``miaudit keys create --role admin``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, TypedDict

import typer

from miaudit.cli._options import TrustCode
from miaudit.errors import InputError

if TYPE_CHECKING:
    from miaudit.serve import ServeSpec, Store

SECRET_HELP = "Server secret file (created 0600 if missing; default: beside a SQLite db). Or set MIAUDIT_SERVE_SECRET (hex)."
DB_HELP = "Database URL: sqlite:///guard.db (default) or postgresql://user@host:port/db."

keys_app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    help="Create, list and revoke API keys; set their budgets.",
)


def _secret_path(db: str, secret_file: Path | None) -> Path | None:
    if secret_file is not None or os.environ.get("MIAUDIT_SERVE_SECRET"):
        return secret_file
    if db.startswith("sqlite:///"):
        return Path(db[len("sqlite:///") :] + ".secret")
    raise InputError(
        "--secret-file", "needed with a non-SQLite database (or set MIAUDIT_SERVE_SECRET)"
    )


def _number(value: str, option: str, what: str) -> int:
    """``value`` read as a whole number in ASCII digits (an optional sign): ``int`` alone would
    also read fullwidth or Arabic-Indic digits, and underscores."""
    text = value.strip()
    digits = text[1:] if text[:1] in ("+", "-") else text
    if not (digits.isascii() and digits.isdigit()):
        raise InputError(option, f"must be {what}, got {value!r}")
    return int(text)


def _limit(value: str | None, field: str) -> int | None:
    if value is None or value.strip().lower() in ("none", "unlimited", ""):
        return None
    return _number(value, field, "a number of records or 'none'")


#: The store's names of a key's limits → the options that give them.
_LIMIT_OPTIONS = {
    "budget": "--budget",
    "rate": "--rate",
    "window_s": "--window",
    "label": "--label",
}


class _Limits(TypedDict):
    """A key's limits, as ``Store.create_key`` and ``Store.set_limits`` take them."""

    budget: int | None
    rate: int | None
    window_s: int


def _limits(budget: str | None, rate: str | None, window: str, label: str | None = None) -> _Limits:
    """The options' limits, checked as the store checks them (``check_limits``: the HTTP API's
    bounds), an error naming the option."""
    given = _given_limits(budget, rate, window)
    _check_given(given, label)
    return _Limits(budget=given.get("budget"), rate=given.get("rate"), window_s=given["window_s"])


def _changed_limits(budget: str | None, rate: str | None, window: str | None) -> dict[str, Any]:
    """``keys budget``'s options as ``Store.set_limits`` takes them: only those given (the key
    keeps the others), checked as the store checks them, an error naming the option."""
    if budget is None and rate is None and window is None:
        raise InputError(
            "--budget",
            "give --budget, --rate or --window (each one left out keeps the key's value; 'none' removes a cap)",
        )
    given = _given_limits(budget, rate, window)
    _check_given(given)
    return given


def _given_limits(budget: str | None, rate: str | None, window: str | None) -> dict[str, Any]:
    """The limit options given, read by the store's names ('none': no cap)."""
    given: dict[str, Any] = {}
    if budget is not None:
        given["budget"] = _limit(budget, "--budget")
    if rate is not None:
        given["rate"] = _limit(rate, "--rate")
    if window is not None:
        given["window_s"] = _number(window, "--window", "a number of seconds")
    return given


def _check_given(given: dict[str, Any], label: str | None = None) -> None:
    from miaudit.serve import check_limits

    try:
        check_limits(given.get("budget"), given.get("rate"), given.get("window_s", 60), label=label)
    except InputError as exc:
        raise InputError(_LIMIT_OPTIONS[exc.field], exc.problem) from None


def _store(db: str, *, create: bool = False, sqlite_sync: str = "NORMAL") -> Store:
    """The store at ``db``; a SQLite file that does not exist is refused unless ``create`` (a
    command that only reads or changes keys must not leave an empty database behind a typo)."""
    from miaudit.serve import Store

    if not create and db.startswith("sqlite:///"):
        path = Path(db[len("sqlite:///") :])
        if not path.is_file():
            raise InputError("--db", f"no database at {str(path)!r} (keys create makes one)")
    return Store(db, sqlite_synchronous=sqlite_sync)


def _store_and_secret(
    db: str, secret_path: Path | None, *, sqlite_sync: str = "NORMAL"
) -> tuple[Store, bytes]:
    """The store at ``db`` and the server secret, each created if missing, in the order that
    leaves no file behind a refusal: a secret that exists (or ``$MIAUDIT_SERVE_SECRET``) is
    read first, then the database is opened (a file that will not open is refused before any
    secret is written), and a new secret file is written last; if writing it fails, a database
    file this call created is removed again. Files that existed before are never removed."""
    from miaudit.serve import load_server_secret

    given = os.environ.get("MIAUDIT_SERVE_SECRET") or (
        secret_path is not None and (secret_path.exists() or secret_path.is_symlink())
    )
    secret = load_server_secret(secret_path) if given else None
    store = _store(db, create=True, sqlite_sync=sqlite_sync)
    if secret is None:
        try:
            _refuse_new_secret_for_old_keys(store, secret_path)
            secret = load_server_secret(secret_path, create=True)
        except BaseException:
            store.discard()
            raise
    return store, secret


def _refuse_new_secret_for_old_keys(store: Store, secret_path: Path | None) -> None:
    """A database that holds keys was made with a secret: a new one would make every key
    unusable (their digests are keyed by it) and the log's record hashes unreadable; a missing
    secret file there is a wrong path, or a lost file, not a reason to make another."""
    held = len(store.list_keys())
    if held:
        raise InputError(
            "--secret-file",
            f"{str(secret_path)!r} does not exist, but the database holds {held} key(s) made with "
            "a server secret: a new one would make every key unusable; give the secret they were "
            "made with (--secret-file, or $MIAUDIT_SERVE_SECRET)",
        )


def _when(ts: float | None) -> str:
    return (
        "-"
        if ts is None
        else _dt.datetime.fromtimestamp(ts, _dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    )


# Long: over 60 lines only through its command-line option declarations; the body is short.
def serve_cmd(
    model: Annotated[
        Path | None,
        typer.Option(
            help="The model: a .skops or .onnx file, a trained unit folder, or a .safetensors file of weights (with --factory)."
        ),
    ] = None,
    model_index: Annotated[int, typer.Option(help="Which model of a unit folder to serve.")] = 0,
    model_output: Annotated[
        str | None,
        typer.Option(
            help="What an .onnx model's output holds, logits or probs, when its name does not say (a name with 'prob' in it reads as probabilities, any other as logits; checked on a trial batch)."
        ),
    ] = None,
    upstream: Annotated[
        str | None, typer.Option(help="Proxy this upstream prediction URL instead of --model.")
    ] = None,
    n_features: Annotated[
        int | None,
        typer.Option(help="Numbers per record (upstream mode; --factory's n_features)."),
    ] = None,
    factory: Annotated[
        str | None,
        typer.Option(
            help="package.module:function building the torch module that --model's safetensors weights fill, called as function(n_features, n_classes, **params); runs your code (needs --trust-code). Imported with the current folder first on the path."
        ),
    ] = None,
    params: Annotated[
        str | None,
        typer.Option(help="--factory's keyword arguments: a JSON object, or a .json/.toml file."),
    ] = None,
    n_classes: Annotated[
        int | None,
        typer.Option(help="--factory's n_classes (default: the weights file's metadata)."),
    ] = None,
    trust_code: TrustCode = False,
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
    secret_file: Annotated[Path | None, typer.Option(help=SECRET_HELP)] = None,
    roles: Annotated[
        Path | None,
        typer.Option(
            help="Roles file (TOML: one table per role, roles.NAME, with policy and endpoints)."
        ),
    ] = None,
    host: Annotated[str, typer.Option(help="Address to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8000,
    workers: Annotated[
        int, typer.Option(help="Worker processes (budgets stay exact: they live in the database).")
    ] = 1,
    max_batch: Annotated[int, typer.Option(help="Most records in one request.")] = 10_000,
    webhook: Annotated[
        str | None,
        typer.Option(help="http(s) URL that receives each alert as JSON (POST)."),
    ] = None,
    sqlite_sync: Annotated[
        str,
        typer.Option(
            help="SQLite synchronous mode: NORMAL (survives a crash) or FULL (also power loss)."
        ),
    ] = "NORMAL",
    detector_calibration: Annotated[
        Path | None,
        typer.Option(
            help="Benign records (npz 'features', or Parquet/CSV columns: the model's feature names, else every column) that standardise the probing detectors' distances and set their k-NN threshold; without it distances are in the features' raw units."
        ),
    ] = None,
    no_guard: Annotated[
        bool,
        typer.Option(
            "--no-guard",
            help="Serve the bare model (no keys, budgets or log): for benchmarks only.",
            hidden=True,
        ),
    ] = False,
) -> None:
    """Serve a model behind API keys, output policies, record budgets, an audit log and probing detectors."""
    # Long only in its signature: Typer reads one option from each parameter. The work is in
    # _check_serve_options, _check_spec and _run_workers.
    from miaudit.serve import ServeSpec

    _check_serve_options(workers=workers, port=port, max_batch=max_batch, model_index=model_index)
    if factory is None and (params is not None or n_classes is not None):
        raise InputError("--factory", "--params and --n-classes are --factory's; give --factory")
    secret = _secret_path(db, secret_file)
    spec = ServeSpec(
        db=db,
        model=str(model) if model else None,
        model_index=model_index,
        model_output=_model_output(model_output, model),
        upstream=upstream,
        n_features=n_features,
        secret_file=str(secret) if secret else None,
        roles_file=str(roles) if roles else None,
        max_batch=max_batch,
        webhook=webhook,
        guard=not no_guard,
        sqlite_synchronous=sqlite_sync,
        factory=factory,
        params=_factory_params(params),
        n_classes=n_classes,
        trust_code=trust_code,
        code_dir=str(Path.cwd()) if factory else None,
    )
    spec = _check_spec(spec, detector_calibration)
    _run_workers(spec, host=host, port=port, workers=workers)


def _with_calibrated_detectors(spec: ServeSpec, path: Path | None, predictor: Any) -> ServeSpec:
    """``spec`` with the detectors standardised on the benign records in ``path``; without a
    file, a warning that their distances are in raw feature units (the defaults assume
    standardised ones)."""
    import dataclasses

    from miaudit.data import load_records
    from miaudit.serve import DetectorConfig, calibrated_detectors, check_served_outputs

    if not spec.guard:
        return spec
    if path is None:
        typer.echo(
            "warning: the probing detectors measure distances in the features' raw units; give --detector-calibration with benign records to standardise them (docs/serve.md)",
            err=True,
        )
        return spec
    x = load_records(path, predictor.feature_names, "--detector-calibration")
    if predictor.n_features is not None and x.shape[1] != predictor.n_features:
        raise InputError(
            "--detector-calibration",
            f"records have {x.shape[1]} features; the model takes {predictor.n_features}",
        )
    check_served_outputs(predictor, x)
    cfg = calibrated_detectors(
        x[:MAX_CALIBRATION_RECORDS], DetectorConfig(**spec.detectors), "--detector-calibration"
    )
    detectors = {
        "center": list(cfg.center or ()),
        "scale": list(cfg.scale or ()),
        "knn_threshold": cfg.knn_threshold,
        "spread_window": cfg.spread_window,
    }
    typer.echo(
        f"detectors calibrated on {min(len(x), MAX_CALIBRATION_RECORDS):,} benign records: k-NN threshold {cfg.knn_threshold:.4g} standard units; cross-key window {cfg.spread_window:,} records",
        err=True,
    )
    return dataclasses.replace(spec, detectors={**spec.detectors, **detectors})


#: Records read for calibration: the k-NN quantile's cost grows with them (the first ones, in
#: the file's order, stand for arrival order).
MAX_CALIBRATION_RECORDS = 5_000


def _factory_params(value: str | None) -> dict[str, object]:
    """``--params``: a JSON object, or a .json/.toml file holding one (values only: no code)."""
    import tomllib

    if value is None:
        return {}
    path = Path(value)
    try:
        if path.suffix in (".json", ".toml") and path.is_file():
            text = path.read_text(encoding="utf-8")
            parsed = tomllib.loads(text) if path.suffix == ".toml" else json.loads(text)
        else:
            parsed = json.loads(value)
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise InputError(
            "--params", f"is not a JSON object or a .json/.toml file ({exc})"
        ) from None
    if not isinstance(parsed, dict):
        raise InputError("--params", f"must be a JSON object of keyword arguments, got {value!r}")
    try:  # the workers receive the spec as JSON (a TOML date would not survive the trip)
        json.dumps(parsed)
    except (TypeError, ValueError) as exc:
        raise InputError("--params", f"holds a value JSON cannot carry ({exc})") from None
    return parsed


def _model_output(value: str | None, model: Path | None) -> Literal["logits", "probs"] | None:
    """``--model-output``: logits or probs, for an .onnx --model only."""
    if value is None:
        return None
    if value not in ("logits", "probs"):
        raise InputError("--model-output", f"must be logits or probs, got {value!r}")
    if model is None or model.suffix != ".onnx":
        raise InputError("--model-output", "applies to an .onnx --model only")
    return "logits" if value == "logits" else "probs"


def _check_serve_options(*, workers: int, port: int, max_batch: int, model_index: int) -> None:
    if workers < 1:
        raise InputError("--workers", f"must be ≥ 1, got {workers}")
    if not 0 <= port <= 65535:
        raise InputError("--port", f"must be a TCP port (0 to 65535), got {port}")
    if max_batch < 1:
        raise InputError("--max-batch", f"must be ≥ 1, got {max_batch}")
    if model_index < 0:
        raise InputError("--model-index", f"must be ≥ 0, got {model_index}")


def _check_spec(spec: ServeSpec, calibration: Path | None) -> ServeSpec:
    """Check the workers' spec once here (model, detector calibration, roles, secret) and reach
    its database, so that a bad option fails with one line rather than in every worker; the
    spec with its calibrated detectors. Every check that reads the user's files comes before
    the database and the secret are created, so a refused command leaves neither behind; the
    quick ones (roles, --webhook, --sqlite-sync) before the model is loaded."""
    spec.check()
    predictor = spec.build_predictor()
    if calibration is not None:
        spec = _with_calibrated_detectors(spec, calibration, predictor)
    secret = Path(spec.secret_file) if spec.secret_file else None
    store, _ = _store_and_secret(spec.db, secret, sqlite_sync=spec.sqlite_synchronous)
    store.close()
    if calibration is None:  # its warning, once nothing can refuse the command
        spec = _with_calibrated_detectors(spec, None, predictor)
    for warning in getattr(predictor, "warnings", ()):
        typer.echo(f"warning: {warning}", err=True)
    return spec


def _run_workers(spec: ServeSpec, *, host: str, port: int, workers: int) -> None:
    """Uvicorn's workers, each building the app from ``$MIAUDIT_SERVE_SPEC``."""
    import uvicorn

    os.environ["MIAUDIT_SERVE_SPEC"] = spec.to_json()
    typer.echo(
        f"serving on http://{host}:{port} ({workers} worker{'s' if workers > 1 else ''}); OpenAPI at /docs",
        err=True,
    )
    uvicorn.run(
        "miaudit.serve:app_from_env",
        factory=True,
        host=host,
        port=port,
        workers=workers,
        log_level="warning",
        # The client's address is the socket's: uvicorn would otherwise take X-Forwarded-For
        # from loopback clients, which anyone can write (red team: rotating it evaded the 401
        # watch and put a script tag in its alerts).
        proxy_headers=False,
    )


@keys_app.command("create")
def keys_create(
    role: Annotated[
        str,
        typer.Option(
            help="Role of the key (admin, trusted, analyst, public, or one from --roles)."
        ),
    ],
    budget: Annotated[
        str | None, typer.Option(help="Total records the key may query ('none': no cap).")
    ] = None,
    rate: Annotated[str | None, typer.Option(help="Records per window ('none': no cap).")] = None,
    window: Annotated[
        str, typer.Option(metavar="SECONDS", help="Rate window in seconds (at most 366 days).")
    ] = "60",
    label: Annotated[
        str | None, typer.Option(help="A note, e.g. who holds the key (at most 200 characters).")
    ] = None,
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
    secret_file: Annotated[Path | None, typer.Option(help=SECRET_HELP)] = None,
    roles: Annotated[Path | None, typer.Option(help="Roles file; the role must be in it.")] = None,
) -> None:
    """Create a key and print its token (shown once; only its keyed hash is stored)."""
    from miaudit.serve import DEFAULT_ROLES, load_roles, make_engine

    known = load_roles(roles) if roles else DEFAULT_ROLES
    if role not in known:
        raise InputError("--role", f"unknown role {role!r}; roles: {', '.join(sorted(known))}")
    limits = _limits(
        budget, rate, window, label
    )  # every option checked before the secret or the database is touched
    make_engine(db).dispose()
    store, secret = _store_and_secret(db, _secret_path(db, secret_file))
    try:
        new = store.create_key(secret, role, **limits, label=label)
    finally:
        store.close()
    typer.echo(f"key {new.key_id} (role {role}) created; its token, shown only now:", err=True)
    typer.echo(new.token)


@keys_app.command("list")
def keys_list(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List keys: id, role, use against budget, rate limit, state (never tokens)."""
    store = _store(db)
    try:
        keys = store.list_keys()
    finally:
        store.close()
    if as_json:
        for k in keys:
            typer.echo(json.dumps(k.public()))
        return
    typer.echo(
        f"{'key id':<18}{'role':<10}{'used':>12}{'budget':>12}{'rate/window':>16}  {'state':<8}created"
    )
    for k in keys:
        rate = "-" if k.rate is None else f"{k.rate}/{k.window_s}s"
        state = "revoked" if k.revoked_at is not None else "active"
        budget = "-" if k.budget is None else str(k.budget)
        typer.echo(
            f"{k.key_id:<18}{k.role:<10}{k.used:>12}{budget:>12}{rate:>16}  {state:<8}{_when(k.created_at)}"
        )


@keys_app.command("revoke")
def keys_revoke(
    key_id: Annotated[str, typer.Argument(help="The key's public id.")],
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
) -> None:
    """Revoke a key: it answers 401 from the next request on."""
    store = _store(db)
    try:
        ok = store.revoke_key(key_id)
    finally:
        store.close()
    if not ok:
        raise InputError("key_id", f"no key {key_id!r}")
    typer.echo(f"key {key_id} revoked")


@keys_app.command("budget")
def keys_budget(
    key_id: Annotated[str, typer.Argument(help="The key's public id.")],
    budget: Annotated[
        str | None,
        typer.Option(help="Total records ('none': no cap). Left out: the key's is kept."),
    ] = None,
    rate: Annotated[
        str | None,
        typer.Option(help="Records per window ('none': no cap). Left out: the key's is kept."),
    ] = None,
    window: Annotated[
        str | None,
        typer.Option(
            metavar="SECONDS",
            help="Rate window in seconds (at most 366 days). Left out: the key's is kept.",
        ),
    ] = None,
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
) -> None:
    """Change a key's total record budget, rate limit or rate window: each option given replaces
    the key's value, each one left out keeps it ('none' removes a cap)."""
    limits = _changed_limits(budget, rate, window)
    store = _store(db)
    try:
        ok = store.set_limits(key_id, **limits)
        info = store.get_key(key_id) if ok else None
    finally:
        store.close()
    if info is None:
        raise InputError("key_id", f"no key {key_id!r}")
    typer.echo(
        f"key {key_id}: budget {info.budget if info.budget is not None else 'none'}, used {info.used}, rate {info.rate if info.rate is not None else 'none'} per {info.window_s}s"
    )


def alerts_cmd(
    db: Annotated[str, typer.Option(help=DB_HELP)] = "sqlite:///guard.db",
    since: Annotated[
        str, typer.Option(metavar="ID", help="Only alerts with an id above this.")
    ] = "0",
    limit: Annotated[str, typer.Option(metavar="N", help="Most alerts to show.")] = "100",
    key_id: Annotated[str | None, typer.Option("--key", help="Only this key's alerts.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="One JSON object per line.")] = False,
) -> None:
    """List the probing detectors' alerts, oldest first."""
    since_id = _number(since, "--since", "an alert id")
    most = _number(limit, "--limit", "a number of alerts")
    if since_id < 0:  # before the database is opened; Store.list_alerts checks the upper bounds
        raise InputError("--since", f"must be an alert id ≥ 0, got {since_id}")
    if most < 1:
        raise InputError("--limit", f"must be a number of alerts ≥ 1, got {most}")
    store = _store(db)
    try:
        found = store.list_alerts(since_id=since_id, limit=most, key_id=key_id)
    except InputError as exc:  # out of the database's range (Store.list_alerts checks it)
        option = {"since_id": "--since", "limit": "--limit"}.get(exc.field)
        if option is None:
            raise
        raise InputError(option, exc.problem) from None
    finally:
        store.close()
    if as_json:
        for a in found:
            typer.echo(json.dumps(a.public(), sort_keys=True))
        return
    if not found:
        typer.echo("no alerts")
        return
    for a in found:
        detail = ", ".join(f"{k}={v}" for k, v in sorted(a.detail.items()))
        keys = f" keys {','.join(a.keys)}" if len(a.keys) > 1 else ""
        typer.echo(f"#{a.id} {_when(a.ts)} {a.detector:<15} key {a.key_id or '-'}{keys}  {detail}")


#: A stand-alone app with the three commands, for tests until (and after) the main app registers them.
serve_app = typer.Typer(add_completion=False, no_args_is_help=True)
serve_app.command("serve")(serve_cmd)
serve_app.add_typer(keys_app, name="keys")
serve_app.command("alerts")(alerts_cmd)
