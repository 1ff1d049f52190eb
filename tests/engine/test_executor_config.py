"""``engine.executor`` / ``engine.address`` and their command-line overrides (no Ray needed)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from miaudit.cli._train import with_engine
from miaudit.engine import parse_config
from miaudit.errors import InputError

BASE = {"data": {"dataset": "breast-cancer"}}


def test_default_is_local() -> None:
    engine = parse_config(BASE).engine
    assert engine.executor == "local" and engine.address is None


def test_ray_with_address() -> None:
    engine = parse_config({**BASE, "engine": {"executor": "ray", "address": "auto"}}).engine
    assert (engine.executor, engine.address) == ("ray", "auto")


@pytest.mark.parametrize(
    ("engine", "match"),
    [
        ({"executor": "dask"}, r"^engine\.executor: Input should be 'local' or 'ray'"),
        ({"address": "auto"}, r"^engine\.address: .*executor = \"ray\""),
    ],
)
def test_bad_engine_fields_are_named(engine: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        parse_config({**BASE, "engine": engine})


def test_command_line_overrides() -> None:
    cfg = parse_config(BASE)
    assert with_engine(cfg) is cfg  # nothing given: unchanged
    over = with_engine(cfg, executor="ray", address="10.0.0.1:6379", workers=None)
    assert (over.engine.executor, over.engine.address, over.engine.workers) == (
        "ray",
        "10.0.0.1:6379",
        None,
    )
    with pytest.raises(InputError, match=r"^engine\.executor"):
        with_engine(cfg, executor="spark")


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A port on 127.0.0.1 that accepts connections and never answers (a wrong service's)."""
    server = socket.create_server(("127.0.0.1", 0))
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_a_port_that_is_not_a_ray_cluster_is_refused_in_bounded_time(silent_port: int) -> None:
    """A TCP connection was taken for a cluster: ``ray.init`` then waited for minutes, printing
    Ray's C++ log lines (red team, still waiting at 450 s)."""
    from miaudit.engine._ray import probe_address

    start = time.monotonic()
    with pytest.raises(InputError, match=r"accepts connections, but nothing answered") as info:
        probe_address(f"127.0.0.1:{silent_port}", timeout=1.0)
    assert info.value.field == "engine.address" and "\n" not in str(info.value)
    assert time.monotonic() - start < 5


def test_a_service_that_is_not_grpc_is_refused() -> None:
    """The dashboard's port answers HTTP/1.1, not a gRPC server's SETTINGS frame."""
    from miaudit.engine._ray import probe_address

    server = socket.create_server(("127.0.0.1", 0))

    def answer() -> None:
        conn, _ = server.accept()
        conn.recv(1024)
        conn.sendall(b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n")
        conn.close()

    threading.Thread(target=answer, daemon=True).start()
    try:
        with pytest.raises(InputError, match=r"not a gRPC server"):
            probe_address(f"127.0.0.1:{server.getsockname()[1]}", timeout=2.0)
    finally:
        server.close()


def test_the_cli_refuses_a_wrong_port_in_one_line(
    silent_port: int, tmp_path, monkeypatch, capsys
) -> None:
    from miaudit.cli import main
    from miaudit.engine import _ray

    monkeypatch.setattr(_ray, "ADDRESS_TIMEOUT_S", 1.0)
    (tmp_path / "c.toml").write_text('[data]\ndataset = "breast-cancer"\n')
    argv = ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o")]
    with pytest.raises(SystemExit) as exit_:
        main([*argv, "--executor", "ray", "--address", f"127.0.0.1:{silent_port}"])
    err = capsys.readouterr().err
    assert exit_.value.code == 2
    assert err.startswith("error: engine.address: ") and err.count("\n") == 1


def test_ray_client_address_without_ray_client_names_the_install(monkeypatch) -> None:
    from miaudit.engine import _ray

    monkeypatch.setattr(_ray, "_has_module", lambda name: name != "grpc")
    with pytest.raises(InputError, match=r"pip install 'ray\[client\]'") as info:
        _ray.probe_address("ray://127.0.0.1:10001", timeout=1.0)
    assert info.value.field == "engine.address"


@pytest.mark.parametrize(
    ("raised", "match"),
    [
        (ConnectionError("Could not find any running Ray instance."), r"'auto': Could not find"),
        (
            ValueError("Ray Client requires pip package `ray[client]`."),
            r"pip install 'ray\[client\]'",
        ),
    ],
)
def test_ray_init_refusals_name_the_address(raised: Exception, match: str) -> None:
    """``--address auto`` with no cluster said "I/O: …"; ``ray://`` without Ray Client was an
    internal error with exit 1."""
    from miaudit.engine import _ray

    class FakeRay:
        @staticmethod
        def init(**_kw: object) -> None:
            raise raised

    with pytest.raises(InputError, match=match) as info:
        _ray._connect(FakeRay, "auto")
    assert info.value.field == "engine.address"
