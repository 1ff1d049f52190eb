"""The Ray executor on a real local Ray cluster: the same units, the same cache, the same bits
as the local executor, also when a worker process is SIGKILLed mid-unit and Ray reruns the task.

One session fixture starts the cluster (a local start takes ~9 s) and shuts it down. Its
``_temp_dir`` is short: Ray's Unix socket paths must stay under 107 bytes, and pytest's
temporary folders are longer.
"""

from __future__ import annotations

import functools
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest

ray = pytest.importorskip("ray")

from miaudit.audit import audit
from miaudit.audit._config import parse_audit_config
from miaudit.engine import UnitJob, UnitOutcome, train
from miaudit.engine._executor import WorkerDied
from miaudit.engine._ray import RayExecutor
from miaudit.engine._unit import run_unit
from miaudit.errors import InputError

from .conftest import small_config

# Tasks run this module's _die_once: ship it by value (workers cannot import test modules).
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="session")
def ray_cluster() -> Iterator[None]:
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        _temp_dir=temp,
        log_to_driver=False,
        configure_logging=False,
    )
    try:
        yield
    finally:
        ray.shutdown()
        shutil.rmtree(temp, ignore_errors=True)


def _config():
    return small_config(
        model={"kind": "torch-mlp", "hidden": [32], "epochs": 4, "batch_size": 16}, plan__models=6
    )


@pytest.fixture(scope="module")
def local_logits(tmp_path_factory: pytest.TempPathFactory) -> np.ndarray:
    return train(_config(), tmp_path_factory.mktemp("local")).signals.logits


def _die_once(job: UnitJob, *, unit: int, marker: str) -> UnitOutcome:
    """Train ``job``; on the first attempt at ``unit``, SIGKILL this worker process mid-unit."""
    first = job.unit == unit and not os.path.exists(marker)

    def emit(event: tuple[str, int, int, int]) -> None:
        if first and event[0] == "step" and event[2] == 2:
            Path(marker).write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)

    return run_unit(job, emit)


def test_train_through_ray_is_bit_identical(
    ray_cluster: None, local_logits: np.ndarray, tmp_path: Path
) -> None:
    cfg = _config()
    cfg = cfg.model_copy(update={"engine": cfg.engine.model_copy(update={"executor": "ray"})})
    run = train(cfg, tmp_path / "out")
    assert run.trained == (0, 1, 2)
    assert run.signals.logits.dtype == np.float32
    assert np.array_equal(run.signals.logits, local_logits)
    # resume: a second run through Ray reuses every verified unit
    again = train(cfg, tmp_path / "out")
    assert again.reused == (0, 1, 2) and again.trained == ()
    assert ray.is_initialized()  # the executor did not shut down a cluster it did not start


def test_killed_worker_is_retried_and_bit_identical(
    ray_cluster: None, local_logits: np.ndarray, tmp_path: Path
) -> None:
    marker = tmp_path / "killed"
    ex = RayExecutor(run=functools.partial(_die_once, unit=1, marker=str(marker)), max_retries=2)
    run = train(_config(), tmp_path / "out", executor=ex)
    assert marker.exists(), "the worker was never killed"
    assert run.trained == (0, 1, 2)
    assert np.array_equal(run.signals.logits, local_logits)
    # The killed attempt left a staging folder of a dead process; the next run removes it.
    resumed = train(_config(), tmp_path / "out")
    assert resumed.reused == (0, 1, 2)
    assert not any(
        p.name.startswith(".tmp-") for p in (tmp_path / "out" / "models" / "units").iterdir()
    )


def test_without_retries_a_killed_unit_fails_the_run(ray_cluster: None, tmp_path: Path) -> None:
    marker = tmp_path / "killed"
    ex = RayExecutor(run=functools.partial(_die_once, unit=0, marker=str(marker)), max_retries=0)
    # Said as a worker that died (out of memory?), not an internal error to report (red team:
    # "internal error (LocalRayletDiedError …); please report it", exit 1).
    with pytest.raises(WorkerDied, match=r"^training: a Ray worker process died .* resumes"):
        train(_config(), tmp_path / "out", executor=ex)
    assert marker.exists()


AUDIT = {
    "seed": 5,
    "data": {"dataset": "breast-cancer"},
    "model": {"kind": "torch-mlp", "hidden": [16], "epochs": 4, "batch_size": 32},
    "plan": {"pool_fraction": 0.8, "unit_size": 2},
    "engine": {"workers": 0, "progress": False},
    "audit": {"references": 2, "resamples": 20, "attacks": ["loss", "lira_online", "rmia_offline"]},
}


def _comparable(result: object) -> dict:
    j = json.loads(result.to_json())  # type: ignore[attr-defined]
    j.pop("created_at")
    j.pop("config_sha256", None)  # the configs differ in engine.executor only
    j.pop("pseudonymisation")  # each output folder has its own pseudonym key
    for row in j["most_exposed"]:
        row.pop("pseudonym")
    return j


def test_audit_through_ray_is_bit_identical(ray_cluster: None, tmp_path: Path) -> None:
    local = parse_audit_config(AUDIT)
    remote = parse_audit_config({**AUDIT, "engine": {**AUDIT["engine"], "executor": "ray"}})
    a = audit(local, tmp_path / "local", quiet=True)
    b = audit(remote, tmp_path / "ray", quiet=True)
    # The same audit whose training lost a worker mid-unit: Ray reran the task, the audit then
    # reuses the verified units (resume) and attacks them.
    marker = tmp_path / "killed"
    train(
        remote.train_config(),
        tmp_path / "killed-run",
        executor=RayExecutor(run=functools.partial(_die_once, unit=1, marker=str(marker))),
    )
    assert marker.exists()
    c = audit(remote, tmp_path / "killed-run", quiet=True)
    reference = pq.read_table(tmp_path / "local" / "scores.parquet")
    for out in ("ray", "killed-run"):
        assert pq.read_table(tmp_path / out / "scores.parquet").equals(reference), out
    assert _comparable(a) == _comparable(b) == _comparable(c)


USER_CODE = """
import torch
from sklearn.tree import DecisionTreeClassifier


def fit(features, labels, seed):
    return DecisionTreeClassifier(max_depth=4, random_state=seed).fit(features, labels)


def build(n_features, n_classes):
    return torch.nn.Sequential(torch.nn.Linear(n_features, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_classes))
"""


@pytest.mark.parametrize(
    "model",
    [
        {"kind": "python", "train": "own_ray_c0de:fit"},
        {"kind": "torch-module", "factory": "own_ray_c0de:build", "epochs": 2},
    ],
    ids=["python", "torch-module"],
)
def test_the_users_own_code_trains_through_ray_bit_identically(
    ray_cluster: None, tmp_path: Path, model: dict
) -> None:
    """Ray's workers find the user's module in the recipe's folder, as local workers do."""
    (tmp_path / "own_ray_c0de.py").write_text(USER_CODE)
    cfg = small_config(model={**model, "path": str(tmp_path)}, trust_code=True)
    try:
        local = train(cfg, tmp_path / "local").signals.logits
        on_ray = cfg.model_copy(
            update={"engine": cfg.engine.model_copy(update={"executor": "ray"})}
        )
        run = train(on_ray, tmp_path / "ray")
    finally:
        sys.modules.pop("own_ray_c0de", None)
    assert run.trained == (0, 1) and np.array_equal(run.signals.logits, local)


def test_threads_above_every_nodes_cpus_are_refused(ray_cluster: None, tmp_path: Path) -> None:
    cfg = _config()
    engine = cfg.engine.model_copy(update={"executor": "ray", "threads": 3})
    with pytest.raises(InputError) as err:
        train(cfg.model_copy(update={"engine": engine}), tmp_path / "out")
    assert err.value.field == "engine.threads" and "has 2" in str(err.value)
    assert ray.is_initialized()  # the cluster it did not start is left running


# Starts a local cluster as `--executor ray` does, runs a task, and prints the address of every
# socket the cluster's processes (this session's) listen on.
LISTENING = """
import os, subprocess
from miaudit.engine._ray import RayExecutor

ex = RayExecutor(ADDRESS)
ex.start(lambda e: None)  # imports ray, as the CLI does: not imported before
import ray
assert ray.get(ray.remote(lambda: 1).remote()) == 1
ours = set(subprocess.run(["pgrep", "-s", str(os.getsid(0))], capture_output=True, text=True).stdout.split())
for line in subprocess.run(["ss", "-ltnpH"], capture_output=True, text=True).stdout.splitlines():
    if any(f"pid={pid}," in line for pid in ours):
        print("LISTEN", line.split()[3])
ex.close()
"""


@pytest.mark.skipif(shutil.which("ss") is None, reason="needs ss (iproute2)")
@pytest.mark.parametrize("address", [None, "local"])
def test_the_local_cluster_listens_on_loopback_only(tmp_path: Path, address: str | None) -> None:
    """The local cluster miaudit starts bound its GCS and raylet on every interface
    (`*:41879 gcs_server`, red team): anyone on the network could reach them. "local" starts
    one too (it was left on every interface after the first fix)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    env["PYTHONPATH"] = os.pathsep.join(sys.path)
    env["RAY_USAGE_STATS_ENABLED"] = "0"
    done = subprocess.run(
        [sys.executable, "-c", f"ADDRESS = {address!r}\n{LISTENING}"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        start_new_session=True,
        timeout=180,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    listening = [line.split()[1] for line in done.stdout.splitlines() if line.startswith("LISTEN")]
    assert listening, done.stdout
    loopback = ("127.0.0.1:", "[::ffff:127.0.0.1]:", "[::1]:")
    assert all(address.startswith(loopback) for address in listening), listening
