"""SIGKILL a real training subprocess mid-unit and between units; the resumed run reuses the
finished units only and ends bit-identical to an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from miaudit.engine import train

from .conftest import small_config

# A training process that stops (sleeps) at a chosen progress event, so the test can kill it
# there from outside with SIGKILL.
SCRIPT = r"""
import sys, time
from pathlib import Path
sys.path.insert(0, {tests!r})
from engine.conftest import small_config
from miaudit.engine import train

kind, unit, done = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
marker = Path(sys.argv[5])

def hook(event):
    if event[0] == kind and event[1] == unit and event[2] == done:
        marker.write_text(str(event))
        time.sleep(600)

train(small_config(model={{"kind": "torch-mlp", "hidden": [32], "epochs": 6, "batch_size": 16}}, plan__models=6), sys.argv[1], on_event=hook)
"""


def _config():
    return small_config(
        model={"kind": "torch-mlp", "hidden": [32], "epochs": 6, "batch_size": 16}, plan__models=6
    )


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory) -> np.ndarray:
    return train(_config(), tmp_path_factory.mktemp("full")).signals.logits


@pytest.mark.parametrize(
    ("event", "reused"),
    [(("done", 0, 1), (0,)), (("step", 1, 3), (0,)), (("done", 1, 1), (0, 1))],
    ids=["between-units-0-1", "mid-unit-1", "between-units-1-2"],
)
def test_sigkill_then_resume_is_bit_identical(
    tmp_path: Path, uninterrupted: np.ndarray, event, reused
) -> None:
    script = tmp_path / "run.py"
    script.write_text(SCRIPT.format(tests=str(Path(__file__).resolve().parents[1])))
    marker = tmp_path / "paused"
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(out), event[0], str(event[1]), str(event[2]), str(marker)]
    )
    try:
        deadline = time.monotonic() + 120
        while not marker.exists():
            assert proc.poll() is None, "training subprocess ended before reaching the kill point"
            assert time.monotonic() < deadline, "kill point not reached within 120 s"
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    units = out / "models" / "units"
    if event[0] == "step":  # killed mid-unit: a staging folder, no published unit 1
        assert any(p.name.startswith(".tmp-") for p in units.iterdir())
    assert not (out / "signals").exists()
    resumed = train(_config(), out)
    assert resumed.reused == reused
    assert resumed.trained == tuple(u for u in range(3) if u not in reused)
    assert not any(p.name.startswith(".tmp-") for p in units.iterdir())
    np.testing.assert_array_equal(resumed.signals.logits, uninterrupted)


# The user's training code that kills its own worker process at its third model (unit 1),
# standing in for the kernel's out-of-memory killer; each call leaves a file, so the count
# survives the module being imported again.
SELF_KILLING = """
import os, signal
from pathlib import Path

from sklearn.linear_model import LogisticRegression

CALLS = Path(__file__).parent / "calls"


def fit(features, labels, seed):
    CALLS.mkdir(exist_ok=True)
    (CALLS / str(len(list(CALLS.iterdir())))).touch()
    if len(list(CALLS.iterdir())) == 3 and not (CALLS.parent / "spare").exists():
        os.kill(os.getpid(), signal.SIGKILL)
    return LogisticRegression(max_iter=500).fit(features, labels)
"""


def test_a_killed_worker_is_one_line_saying_a_rerun_resumes(tmp_path: Path, capsys) -> None:
    """A worker killed mid-run (the OOM killer) was "internal error (BrokenProcessPool: …);
    please report it", exit 1 (red team)."""
    from miaudit.cli import main

    name = "self_killing_c0de"
    (tmp_path / f"{name}.py").write_text(SELF_KILLING)
    (tmp_path / "c.toml").write_text(
        "\n".join(
            [
                '[data]\ndataset = "breast-cancer"',
                f'[model]\nkind = "python"\ntrain = "{name}:fit"',
                "[plan]\nmodels = 4\nunit_size = 2",
                "[engine]\nworkers = 1\nprogress = false",
            ]
        )
        + "\n"
    )
    argv = ["train", str(tmp_path / "c.toml"), "--out", str(tmp_path / "o"), "--trust-code"]
    try:
        with pytest.raises(SystemExit) as exit_:
            main(argv)
        err = capsys.readouterr().err
        assert exit_.value.code == 2, err
        assert (
            err.startswith("error: training: a training worker process died")
            and err.count("\n") == 1
        ), err
        assert "1 of the 2 unit(s) to train were published" in err and "resumes" in err
        (tmp_path / "spare").touch()  # the rerun resumes from unit 0
        main(argv)
        assert "reusing 1 of 2 unit(s)" in capsys.readouterr().err
    finally:
        sys.modules.pop(name, None)


def test_ctrl_c_while_a_worker_starts_prints_no_traceback(tmp_path: Path, capfd) -> None:
    """Ctrl-C reaches the whole process group: a worker importing torch printed a 17-line
    "Exception in initializer" traceback and broke the pool (red team). A starting worker
    ignores it now (the parent handles Ctrl-C) and trains once ready."""
    from miaudit.datasets import load_dataset
    from miaudit.engine import make_plan
    from miaudit.engine._executor import LocalExecutor
    from miaudit.engine._run import unit_jobs

    cfg = small_config()
    data = load_dataset(cfg.data)
    job = unit_jobs(cfg, data, make_plan(cfg, data.n_records), tmp_path)[0]
    ex = LocalExecutor(workers=1)
    ex.start(lambda _e: None)
    try:
        fut = ex.submit(job)  # spawns the worker
        for pid in list(ex._pool._processes):  # type: ignore[union-attr]
            os.kill(pid, signal.SIGINT)
        assert fut.result(timeout=120).unit == 0
    finally:
        ex.close()
    err = capfd.readouterr().err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err
