"""The Python API from a plain script (no ``if __name__ == "__main__":`` guard) with worker
processes: it runs once, trains once, and writes what the CLI writes."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

CONFIG = """
seed = 1
[data]
dataset = "digits"
max_records = 300
[model]
kind = "torch-mlp"
hidden = [16]
epochs = 2
batch_size = 64
[plan]
pool_fraction = 0.8
[engine]
workers = 2
threads = 1
progress = false
[audit]
references = 2
resamples = 20
attacks = ["loss", "lira_offline"]
"""

# No main guard: a worker that imported this script would run it (and train) again.
SCRIPT = """
from pathlib import Path
import miaudit.audit

here = Path(__file__).parent
with open(here / "runs.txt", "a") as fh:
    fh.write("ran\\n")
result = miaudit.audit.audit(here / "audit.toml", here / "out", quiet=True)
with open(here / "runs.txt", "a") as fh:
    fh.write("trained\\n")
print(repr(result))
"""


def test_a_plain_script_audits_with_workers_once(tmp_path: Path) -> None:
    (tmp_path / "audit.toml").write_text(CONFIG)
    script = tmp_path / "plain.py"
    script.write_text(textwrap.dedent(SCRIPT))
    done = subprocess.run(
        [sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert (tmp_path / "runs.txt").read_text().split() == ["ran", "trained"]
    out = tmp_path / "out"
    results = json.loads((out / "results.json").read_text())
    assert {a["name"] for a in results["attacks"]} == {"loss", "lira_offline"}
    assert (out / "report.html").is_file()
    assert "BrokenProcessPool" not in done.stderr
    # the repr is a summary, not arrays
    assert "AuditResult(" in done.stdout and "AUC" in done.stdout
    assert "array(" not in done.stdout
    _check_ids_of_a_reference_audit(out)


def test_cli_audit_json_in_a_log(tmp_path: Path) -> None:
    """``miaudit audit --json`` in a pipe: stdout is the results' JSON alone, stderr has plain
    progress lines (what a CI log shows) and the summary."""
    (tmp_path / "audit.toml").write_text(
        CONFIG.replace("progress = false", "progress = true").replace("workers = 2", "workers = 1")
    )
    done = subprocess.run(
        [
            sys.executable,
            "-c",
            "from miaudit.cli import main; main()",
            "audit",
            str(tmp_path / "audit.toml"),
            "--out",
            str(tmp_path / "out"),
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout) == json.loads((tmp_path / "out" / "results.json").read_text())
    assert "unit 0 done: 1/" in done.stderr and "\x1b[" not in done.stderr
    assert "AUC" in done.stderr


def _check_ids_of_a_reference_audit(out: Path) -> None:
    """The key holder lists the pool's ids and maps the report's pseudonyms back to them."""
    from miaudit.audit import audited_records, check_record, records_of_pseudonyms
    from miaudit.data import load_signals

    store = load_signals(out / "signals" / "signals.npz")
    listed = audited_records(out)
    assert [r.record_id for r in listed] == [str(i) for i in store.record_id[~store.population]]
    results = json.loads((out / "results.json").read_text())
    pseudonym = results["most_exposed"][0]["pseudonym"]
    (record,) = records_of_pseudonyms(out, [pseudonym])
    assert check_record(out, [record])[0].record_id == record
