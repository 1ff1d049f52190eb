"""Fixtures of the service tests: a small sklearn model saved with skops, in-process apps,
a real uvicorn server on 127.0.0.1 and a real PostgreSQL server on a free loopback port."""

from __future__ import annotations

import contextlib
import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest

from miaudit.serve import (
    EstimatorPredictor,
    ServeConfig,
    ServeSpec,
    Store,
    asgi_client,
    create_app,
)

SECRET = bytes(range(32))
N_FEATURES = 6


def synthetic(n: int = 400, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, N_FEATURES))
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).astype(int) + (x[:, 2] > 1.0).astype(int)
    return x, y


@pytest.fixture(scope="session")
def estimator():
    from sklearn.linear_model import LogisticRegression

    x, y = synthetic()
    return LogisticRegression(max_iter=500).fit(x, y)


@pytest.fixture(scope="session")
def model_file(estimator, tmp_path_factory) -> Path:
    from miaudit.models import save_sklearn

    path = tmp_path_factory.mktemp("model") / "target.skops"
    save_sklearn(path, estimator)
    return path


@dataclass
class InProcess:
    app: object
    store: Store
    client: httpx.Client
    admin: str
    config: ServeConfig

    def token(self, role: str, **kw: object) -> str:
        return self.store.create_key(SECRET, role, **kw).token  # type: ignore[arg-type]

    def post(self, token: str | None, path: str = "/predict", **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.post(path, headers=headers, **kw)  # type: ignore[arg-type]

    def get(self, token: str | None, path: str, **kw: object) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return self.client.get(path, headers=headers, **kw)  # type: ignore[arg-type]


@pytest.fixture
def make_service(estimator, tmp_path) -> Iterator:
    made: list[InProcess] = []

    def make(**overrides: object) -> InProcess:
        overrides.setdefault("predictor", EstimatorPredictor(estimator))
        cfg = ServeConfig(
            db=f"sqlite:///{tmp_path}/guard{len(made)}.db", secret=SECRET, **overrides
        )  # type: ignore[arg-type]
        app = create_app(cfg)
        store = app.state.store
        svc = InProcess(app, store, asgi_client(app), store.create_key(SECRET, "admin").token, cfg)
        made.append(svc)
        return svc

    yield make
    for svc in made:
        svc.client.close()
        svc.store.close()


@pytest.fixture
def service(make_service) -> InProcess:
    return make_service()


# --- real servers ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``miaudit serve`` (the CLI command) in its own process group on 127.0.0.1."""

    def __init__(self, spec: ServeSpec, *, workers: int = 1, log: Path) -> None:
        self.spec = spec
        self.workers = workers
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 90.0) -> Server:
        s = self.spec
        args = [
            sys.executable,
            "-c",
            "from miaudit.cli._serve import serve_app; serve_app()",
            "serve",
            "--model",
            str(s.model),
            "--db",
            s.db,
            "--secret-file",
            str(s.secret_file),
            "--port",
            str(self.port),
            "--workers",
            str(self.workers),
            "--max-batch",
            str(s.max_batch),
        ]
        env = {
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "OMP_NUM_THREADS": "1",
            "OPENBLAS_NUM_THREADS": "1",
        }
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                args, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(self.url + "/health", timeout=1.0).status_code == 200:
                    return self
            time.sleep(0.1)
        self.kill()
        raise RuntimeError(f"server did not start in {timeout}s: {self.log.read_text()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL the whole process group (master and workers): a crash."""
        if self.proc is not None and self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, 9)
            self.proc.wait(timeout=10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, 15)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()


def postgres_bin() -> Path | None:
    """The bin folder of the installed PostgreSQL (highest version), found from the package."""
    found = sorted(
        glob.glob("/usr/lib/postgresql/*/bin/initdb"),
        key=lambda p: int(Path(p).parts[-3]) if Path(p).parts[-3].isdigit() else 0,
    )
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _as_postgres_user(cmd: list[str]) -> list[str]:
    if os.geteuid() != 0:
        return cmd
    return ["runuser", "-u", "postgres", "--", *cmd]  # PostgreSQL refuses to run as root


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory) -> Iterator[str]:
    """A real PostgreSQL server on a free loopback port, for the session; stopped at the end."""
    bindir = postgres_bin()
    if bindir is None:
        if os.environ.get("CI") == "true":
            pytest.fail("PostgreSQL is not installed: run scripts/system-deps.sh")
        pytest.skip("PostgreSQL is not installed (scripts/system-deps.sh installs it)")
    root = tmp_path_factory.mktemp("pg")
    data, sock = root / "data", root / "sock"
    sock.mkdir()
    if os.geteuid() == 0:
        import pwd

        pw = pwd.getpwnam("postgres")
        for p in (root, sock):
            os.chown(p, pw.pw_uid, pw.pw_gid)
        # the postgres user must be able to reach the folder
        for parent in list(root.parents)[:3]:
            os.chmod(parent, os.stat(parent).st_mode | 0o011)
    port = free_port()
    subprocess.run(
        _as_postgres_user(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-A",
                "trust",
                "-U",
                "miaudit",
                "--no-sync",
                "-E",
                "UTF8",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    opts = f"-p {port} -k {sock} -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=100"
    subprocess.run(
        _as_postgres_user(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(data),
                "-o",
                opts,
                "-l",
                str(root / "pg.log"),
                "-w",
                "-t",
                "30",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
        timeout=60,
    )
    try:
        subprocess.run(
            _as_postgres_user(
                [
                    str(bindir / "createdb"),
                    "-h",
                    "127.0.0.1",
                    "-p",
                    str(port),
                    "-U",
                    "miaudit",
                    "guard",
                ]
            ),
            check=True,
            capture_output=True,
            timeout=30,
        )
        yield f"postgresql://miaudit@127.0.0.1:{port}/guard"
    finally:
        subprocess.run(
            _as_postgres_user(
                [str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"]
            ),
            check=False,
            capture_output=True,
            timeout=60,
        )


def reset_postgres(url: str) -> None:
    """Drop the service's tables so that each test starts empty."""
    from miaudit.serve._store import make_engine, metadata

    engine = make_engine(url)
    metadata.drop_all(engine)
    engine.dispose()


def spec_json(spec: ServeSpec) -> str:
    return json.dumps(spec.__dict__)


@pytest.fixture(params=["sqlite", "postgres"])
def any_store(request, tmp_path) -> Iterator[Store]:
    """A fresh store on SQLite, then on the session's PostgreSQL (emptied first)."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path}/store.db"
    else:
        url = request.getfixturevalue("postgres_url")
        reset_postgres(url)
    s = Store(url)
    yield s
    s.close()
