"""The own-model journeys from a plain Python script with no ``if __name__ == "__main__":``
guard, as a user writes one: docs/own-model.md's recipe examples are audited through
``miaudit.audit.audit`` in a fresh interpreter, which must write results.json, scores.parquet and
report.html, and ``check_record`` must place the audited model's own training records in its
training set (and its non-members outside it)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.docs.test_own_model_docs import examples

SCRIPT = """
import json
import pandas as pd
from miaudit.audit import audit, check_record, load_audit_config

cfg = load_audit_config("audit.toml", trust_code=True)
result = audit(cfg, "results")
pairs = pd.read_parquet("results/scores.parquet")
own = pairs[pairs["target"] == 0]
members = own[own["member"] == 1]["record_id"].astype(str).head(5).tolist()
others = own[own["member"] == 0]["record_id"].astype(str).head(5).tolist()
answers = check_record("results", members + others, target=0)
print(json.dumps({
    "attacks": len(result.attacks),
    "members": members,
    "answers": [[a.record_id, a.member_in_plan, a.p_value] for a in answers],
}))
"""


@pytest.mark.parametrize("folder", ["pipeline", "xgboost", "torch"])
def test_a_plain_script_audits_the_users_own_model(folder, tmp_path) -> None:
    if folder == "xgboost":
        pytest.importorskip("xgboost")
    project = tmp_path / folder
    project.mkdir()
    for name, text in examples()[folder].items():
        (project / name).write_text(text)
    (project / "audit_my_model.py").write_text(SCRIPT)
    proc = subprocess.run(
        [sys.executable, "audit_my_model.py"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=280,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    for name in ("results.json", "scores.parquet", "report.html"):
        assert (project / "results" / name).is_file(), name
    assert out["attacks"] >= 1 and len(out["answers"]) == 10
    members = set(out["members"])
    for record, in_training_set, p in out["answers"]:
        assert in_training_set == (record in members), record
        assert 0.0 <= p <= 1.0
