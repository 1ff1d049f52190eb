"""A Ray executor: the same training units, run as Ray tasks on an existing cluster.

Each unit is one Ray task (``num_cpus`` = the unit's torch threads) that runs
:func:`~miaudit.engine._unit.run_unit`: it trains the unit and publishes it to the cache, exactly
as a local worker does, so the cache, the signals and the bits are the same. Ray schedules the
tasks; a task whose worker process or node dies is rerun by Ray (``max_retries``), and since a
unit is published atomically and keyed by everything its bits depend on, a rerun cannot leave a
half-written unit behind. A run that dies as a whole resumes like a local one: ``train`` reuses
every verified unit in the cache.

On a cluster of several machines the cache folder must be one shared file system (NFS, a
mounted bucket…) seen at the same path by the driver and every worker.

``ray`` is an optional dependency (``pip install 'miaudit[ray]'``).
"""

from __future__ import annotations

import math
import os
import sys
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import fields
from typing import Any

from miaudit.datasets import Dataset
from miaudit.engine._unit import Emit, UnitJob, UnitOutcome, run_unit
from miaudit.errors import InputError, first_line

RunUnit = Callable[[UnitJob], UnitOutcome]

#: Reruns of a task whose worker died (Ray's own default for tasks).
DEFAULT_RETRIES = 3


def _without_data(job: UnitJob) -> dict[str, Any]:
    """The job's fields but its dataset, which travels once through the object store rather
    than with every job."""
    return {f.name: getattr(job, f.name) for f in fields(job) if f.name != "data"}


def _train_unit(run: RunUnit, job_fields: dict[str, Any], data: Dataset) -> UnitOutcome:
    """The task body: the job put back together with the dataset from the object store."""
    return run(UnitJob(**job_fields, data=data))


ADDRESS_TIMEOUT_S = float(os.environ.get("MIAUDIT_RAY_TIMEOUT_S", "10"))

#: An HTTP/2 client's first bytes: the connection preface and an empty SETTINGS frame. A gRPC
#: server (a Ray GCS, Ray Client's server) answers with a SETTINGS frame of its own.
_HTTP2_HELLO = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + bytes([0, 0, 0, 4, 0, 0, 0, 0, 0])
_SETTINGS = 4


def probe_address(address: str | None, timeout: float | None = None) -> None:
    """Refuse a Ray address (``host:port`` or ``ray://host:port``) unless a gRPC server (a Ray
    GCS, or Ray Client's server for ``ray://``) answers there within ``timeout`` seconds
    (default ``MIAUDIT_RAY_TIMEOUT_S``, 10). A TCP connection is not enough: against a port
    where something else listens (the dashboard's, any other service) ``ray.init`` waited for
    minutes printing Ray's C++ log lines (red team: still waiting after 450 s). None and
    "auto" are Ray's own business (:meth:`RayExecutor.start` words its errors)."""
    if address is None or address in ("auto", "local"):
        return
    timeout = ADDRESS_TIMEOUT_S if timeout is None else timeout
    hostport = address.split("://", 1)[-1].rstrip("/")
    host, _, port = hostport.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise InputError(
            "engine.address",
            f"{address!r} is not a Ray address (host:port, ray://host:port or auto)",
        )
    if address.startswith("ray://") and not _has_module("grpc"):
        raise InputError(
            "engine.address",
            f"{address!r} is a Ray Client address, which needs Ray Client: pip install 'ray[client]'",
        )
    try:
        answer = _first_frame(host.strip("[]"), int(port), timeout)
    except OSError as exc:
        raise InputError(
            "engine.address",
            f"no Ray cluster answers at {address!r} within {timeout:g} s ({exc.strerror or type(exc).__name__})",
        ) from None
    # A cluster with TLS on answers the HTTP/2 hello with a TLS alert: Ray's own connection
    # (with its certificates) is the test there.
    tls = os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true")
    if not tls and (len(answer) < 9 or answer[3] != _SETTINGS):
        what = "nothing" if not answer else "something that is not a gRPC server"
        raise InputError(
            "engine.address",
            f"{address!r} accepts connections, but {what} answered as a Ray cluster would within {timeout:g} s: give the head node's GCS port (6379 by default; `ray status` on the head prints the address), not the dashboard's or another service's",
        )


def _has_module(name: str) -> bool:
    import importlib.util

    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _first_frame(host: str, port: int, timeout: float) -> bytes:
    """Up to the 9 bytes of the first HTTP/2 frame header the server sends after the hello,
    within ``timeout`` seconds in all (fewer when it sends less, closes, or says nothing)."""
    import socket
    import time

    deadline = time.monotonic() + timeout
    with socket.create_connection((host, port), timeout=timeout) as sock:
        sock.sendall(_HTTP2_HELLO)
        head = b""
        while len(head) < 9 and (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                chunk = sock.recv(9 - len(head))
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            head += chunk
    return head


def _connect(ray: Any, address: str | None) -> None:
    """``ray.init``, its refusals worded as the address's: "auto" with no cluster, a cluster
    refusing this driver (token auth), ``ray://`` without Ray Client (an internal error, exit 1,
    before)."""
    # "local" starts a new local cluster as None does: on the loopback interface too (red team)
    local = {"_node_ip_address": "127.0.0.1"} if address in (None, "local") else {}
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, **local)
    except ConnectionError as exc:
        raise InputError("engine.address", f"{address!r}: {first_line(exc)}") from None
    except ValueError as exc:
        if "ray[client]" not in str(exc):
            raise
        raise InputError(
            "engine.address",
            f"{address!r} is a Ray Client address, which needs Ray Client: pip install 'ray[client]'",
        ) from None


def lost_on_ray(exc: BaseException) -> str | None:
    """What died when ``exc`` is Ray's word for a lost worker, raylet or node (after Ray's own
    retries), else None."""
    import ray.exceptions as rx

    for name, what in (
        ("LocalRayletDiedError", "this machine's Ray raylet"),
        ("NodeDiedError", "a Ray node"),
        ("WorkerCrashedError", "a Ray worker process"),
        ("ObjectLostError", "a Ray node holding the run's data"),
    ):
        kind = getattr(rx, name, None)
        if isinstance(kind, type) and isinstance(exc, kind):
            return what
    return None


def _check_threads_fit(ray: Any, threads: int) -> None:
    """Refuse ``threads`` above every node's CPUs: Ray waits forever for a node to fit a task
    asking for more CPUs than any node has (a run with engine.threads above a local cluster's
    CPUs hung), and no node ever will unless the cluster's autoscaler may start one."""
    alive = [float(n.get("Resources", {}).get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    largest = max([*alive, *_autoscaled_cpus()], default=0.0)
    # No CPUs anywhere: a head without CPUs waiting for its autoscaler (which may publish no
    # config to read) to start workers; Ray's own wait is the answer there (second read).
    if 0 < largest < threads:
        raise InputError(
            "engine.threads",
            f"is {threads}: each unit asks Ray for that many CPUs, and the largest node of the Ray cluster has {largest:g}, so no unit would ever start; lower it to {int(largest)} or less",
        )


def _autoscaled_cpus() -> list[float]:
    """The CPUs of each kind of node the cluster's autoscaler may start: none when Ray keeps no
    autoscaling config (a fixed cluster), and unbounded when it cannot be read (an unknown Ray)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
        groups = config.node_group_configs if config is not None else []
        return [float(g.resources.get("CPU", 0)) for g in groups if g.max_count != 0]
    except Exception:  # noqa: BLE001 - Ray's private API, not promised between versions: never refuse on it
        return [math.inf]


class RayExecutor:
    """Units as Ray tasks on the cluster at ``address`` (None: an existing ``ray.init`` of this
    process, else a new local cluster; ``"auto"``: the cluster this machine belongs to).

    ``max_retries``: how often Ray reruns a unit whose worker process died (OOM kill, lost
    node). An exception raised by the training itself is not retried: it would fail the same
    way again (training is deterministic), and is raised by ``train``. ``run`` is what a task
    executes on a job (:func:`run_unit`; tests wrap it). Ray is connected in ``start`` and
    disconnected in ``close`` only if this executor connected it.
    """

    def __init__(
        self,
        address: str | None = None,
        *,
        threads: int = 1,
        max_retries: int = DEFAULT_RETRIES,
        run: RunUnit = run_unit,
    ) -> None:
        if max_retries < 0:
            raise InputError("max_retries", f"must be non-negative, got {max_retries}")
        self.address, self.threads, self.max_retries, self.run = address, threads, max_retries, run
        self._ray: Any = None
        self._remote: Any = None
        self._owned = False
        self._data_refs: dict[int, tuple[object, Any]] = {}
        self._events: Emit = lambda _e: None
        self._lock = threading.Lock()

    def start(self, events: Emit) -> None:
        self._events = events
        if self._ray is not None:
            return
        if self.address in (None, "local") and "ray" not in sys.modules:
            # The local cluster listens on the loopback interface only (it bound the GCS and
            # raylet on every interface, `*:41879 gcs_server`, red team): Ray keeps one machine
            # on 127.0.0.1 where this is off (its default on macOS and Windows). Read once, when
            # ray is imported; a user's own setting is kept.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise InputError(
                "engine.executor", "'ray' needs the ray package: pip install 'miaudit[ray]'"
            ) from None
        if not ray.is_initialized():
            probe_address(self.address)  # ray.init waits forever on an address nobody answers
            _connect(ray, self.address)
            self._owned = True
        self._ray = ray
        self._remote = ray.remote(_train_unit)
        try:
            _check_threads_fit(ray, self.threads)
        except InputError:
            self.close()
            raise

    def submit(self, job: UnitJob) -> Future[UnitOutcome]:
        if self._ray is None:
            self.start(self._events)
        ray = self._ray
        with self._lock:
            held = self._data_refs.get(id(job.data))
            if held is None or held[0] is not job.data:
                held = self._data_refs[id(job.data)] = (job.data, ray.put(job.data))
        task = self._remote.options(
            num_cpus=self.threads, max_retries=self.max_retries, retry_exceptions=False
        )
        ref = task.remote(self.run, _without_data(job), held[1])
        fut: Future[UnitOutcome] = ref.future()
        # Progress from the cluster: one event per finished unit (per-epoch events stay on the
        # workers; forwarding them would need an actor for a progress bar).
        fut.add_done_callback(
            lambda f: f.exception() is None and self._events(("done", job.unit, 1, 1))
        )
        return fut

    def close(self) -> None:
        self._data_refs.clear()
        if self._ray is not None and self._owned:
            self._ray.shutdown()
        self._ray = self._remote = None
        self._owned = False
