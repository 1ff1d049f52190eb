"""Issue 17, "your signals": the worked example of docs/signals-elsewhere.md runs as written.

A plain script (no main guard) trains 8 scikit-learn models without importing miaudit's
engine and writes their signals with ``SignalsWriter``; ``miaudit audit --signals`` on them
gives the results.json of the Python API (``attack_store``) apart from the timestamp, the files
of an audit, and a ``check-record`` that finds the target's own training records.
"""

from __future__ import annotations

import json
import re
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from miaudit.audit import attack_store, check_record
from miaudit.cli import main
from miaudit.data import load_signals

DOC = Path(__file__).resolve().parents[2] / "docs" / "signals-elsewhere.md"


def _example() -> str:
    text = DOC.read_text(encoding="utf-8")
    m = re.search(r"<!-- example: train_elsewhere\.py.*?-->\n```python\n(.*?)```", text, re.S)
    assert m, "the worked example is missing from docs/signals-elsewhere.md"
    return m.group(1)


@pytest.fixture(scope="module")
def audited(tmp_path_factory) -> Path:
    """The example script run as a plain script in a fresh interpreter, then the CLI audit."""
    d = tmp_path_factory.mktemp("elsewhere")
    (d / "train_elsewhere.py").write_text(_example(), encoding="utf-8")
    probe = (
        "import runpy, sys; runpy.run_path('train_elsewhere.py', run_name='__main__'); "
        "bad = sorted(m for m in sys.modules if m.split('.')[:2] in (['miaudit', 'engine'], "
        "['miaudit', 'attacks'], ['miaudit', 'models']) or m == 'torch'); "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", probe], cwd=d, check=True, timeout=120)
    main(
        ["audit", "--signals", str(d / "signals.npz"), "--out", str(d / "audit")]
    )  # returns on success
    return d


def test_cli_results_equal_the_python_api_apart_from_the_timestamp(audited: Path) -> None:
    out = audited / "audit"
    key = (out / "pseudonym.key").read_bytes()
    run = attack_store(
        load_signals(audited / "signals.npz"), source="signals.npz", pseudonym_key=key
    )
    cli = json.loads((out / "results.json").read_text(encoding="utf-8"))
    api = json.loads(run.result.to_json())
    assert cli.pop("created_at") and api.pop("created_at")
    assert cli == api
    ref = cli["reference"]
    assert ref["targets"] == 1 and ref["references"] is None
    assert ref["reference_models"] == [7]  # every other model: independent halves have no partner
    assert ref["pool"].startswith("the store's")


def test_the_audit_writes_every_file_restricted_where_it_holds_membership(audited: Path) -> None:
    out = audited / "audit"
    for name in ("results.json", "report.html", "audit.json", "manifest.json"):
        assert (out / name).is_file(), name
    for name in ("scores.parquet", "signals/signals.npz", "pseudonym.key"):
        assert stat.S_IMODE((out / name).stat().st_mode) == 0o600, name
    assert "references: every other model" in (out / "report.html").read_text(encoding="utf-8")


def test_check_record_finds_the_targets_own_training_records(audited: Path) -> None:
    """Model 0's members get p < 0.05 far more often than its non-members (whose rate is the
    test's false-positive rate, ≤ 0.05 when calibrated; 0.1 allows for 8 models' worth of
    estimation), and a member with the strongest evidence is reported as in the training set."""
    store = load_signals(audited / "signals.npz")
    ids = [str(r) for r in store.record_id[store.pool]]
    rows = check_record(audited / "audit", ids)
    assert all(r.target == 0 and r.model.startswith("your model") for r in rows)
    member = np.array([r.member_in_plan for r in rows])
    p = np.array([r.p_value for r in rows])
    assert np.array_equal(member, store.keep[0, store.pool])
    hit_in, hit_out = (p[member] < 0.05).mean(), (p[~member] < 0.05).mean()
    assert hit_out <= 0.1 and hit_in > 3 * hit_out, (hit_in, hit_out)
    best = rows[int(np.argmin([r.p_references if r.member_in_plan else np.inf for r in rows]))]
    assert best.member_in_plan and best.p_references is not None and best.p_references < 0.001
    # ranked among the model's own non-members: the smallest p they allow, 1 / (1 + 712)
    assert best.n_nonmembers is not None and best.p_value == 1 / (1 + best.n_nonmembers)
    # among all the pool's records checked at once no rank can reach 0.05 / records checked
    assert best.threshold == 0.05 / len(ids) < best.p_value
    assert best.verdict.startswith("inconclusive")
    (alone,) = check_record(audited / "audit", [best.record_id])
    assert alone.p_value == best.p_value and alone.verdict.startswith("evidence")
