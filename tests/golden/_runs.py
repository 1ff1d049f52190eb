"""Fixed-seed runs of every command whose results file is a golden output.

Each run writes into its own folder; :func:`normalised` strips what legitimately changes between
runs (timestamps, versions, paths, timings) so that what remains must be byte-identical through
any refactor. Regenerate deliberately with ``MIAUDIT_REGEN_GOLDEN=1 pytest tests/golden``.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from miaudit.cli import main
from tests.conftest import simulated_outputs

HERE = Path(__file__).parent / "expected"
KEY = bytes(range(32))  # a fixed pseudonym key: pseudonyms are part of the golden output

AUDIT_TOML = """
seed = 5
[data]
dataset = "adult"
max_records = 600
[model]
kind = "torch-mlp"
hidden = [32]
epochs = 4
batch_size = 64
[plan]
pool_fraction = 0.8
[engine]
workers = 0
threads = 1
progress = false
[audit]
references = 2
resamples = 40
"""

DP_TOML = """
seed = 3
[data]
dataset = "purchase"
[data.purchase]
n_records = 400
n_features = 40
n_classes = 5
flip_rate = 0.1
[model]
kind = "torch-mlp"
hidden = [32]
epochs = 3
batch_size = 64
lr = 0.003
[model.dp]
epsilon = 1.0
ghost_clipping = true
[engine]
threads = 1
progress = false
"""

# Keys whose values describe the run, not its results.
VOLATILE = {"created", "created_at", "finished_at", "started_at", "miaudit_version", "versions"}
VOLATILE_SUFFIXES = ("_seconds", "_s", "_path", "_dir")


def _strip(value: Any) -> Any:
    if isinstance(value, dict):
        return {
            k: _strip(v)
            for k, v in value.items()
            if k not in VOLATILE and not k.endswith(VOLATILE_SUFFIXES)
        }
    if isinstance(value, list):
        return [_strip(v) for v in value]
    return value


def normalised(path: Path, root: Path) -> str:
    """The file's text with run-specific parts removed (JSON: keys; HTML: version and date)."""
    text = path.read_text()
    text = text.replace(str(root), "<ROOT>")
    if path.suffix == ".json":
        return json.dumps(_strip(json.loads(text)), indent=1, sort_keys=True) + "\n"
    text = re.sub(r"miaudit \d+\.\d+\.\d+\S*", "miaudit <VERSION>", text)
    return re.sub(
        r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d(:\d\d(\.\d+)?)?(Z|[+-]\d\d:?\d\d)?", "<TIME>", text
    )


def _with_key(out: Path) -> Path:
    out.mkdir(parents=True, exist_ok=True)
    fd = os.open(out / "pseudonym.key", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(KEY)
    return out


def _cli(*argv: str) -> None:
    try:
        main(list(argv))
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise AssertionError(f"miaudit {' '.join(argv)} exited {exc.code}") from None


def run_attack(root: Path) -> Path:
    src = root / "outputs.parquet"
    simulated_outputs(n=600, shift=1.0, seed=4).save(src)
    out = _with_key(root / "attack")
    _cli("attack", str(src), "--out", str(out), "--seed", "7", "--resamples", "50")
    return out / "results.json"


def run_audit(root: Path) -> tuple[Path, Path]:
    (root / "audit.toml").write_text(AUDIT_TOML)
    out = _with_key(root / "audit")
    _cli("audit", str(root / "audit.toml"), "--out", str(out))
    _cli("report", str(out), "--out", str(root / "report.html"))
    return out / "results.json", root / "report.html"


def run_tradeoff(root: Path) -> Path:
    (root / "audit.toml").write_text(AUDIT_TOML)
    out = root / "tradeoff"
    _cli(
        "tradeoff",
        str(root / "audit.toml"),
        "--out",
        str(out),
        "--epsilons",
        "2",
        "--weight-decays",
        "",
        "--no-early-stopping",
        "--policies",
        "top-1,label-only",
        "--accountant",
        "rdp",
        "--policy-targets",
        "2",
    )
    return out / "tradeoff.json"


def run_dp_audit(root: Path) -> Path:
    (root / "dp.toml").write_text(DP_TOML)
    out = root / "dp"
    _cli(
        "dp-audit",
        str(root / "dp.toml"),
        "--out",
        str(out),
        "--canaries",
        "100",
        "--k-plus",
        "10",
        "--k-minus",
        "10",
    )
    return out / "dp_audit.json"


def check(name: str, produced: Path, root: Path) -> None:
    """Compare one produced file with its golden copy (or write it when regenerating)."""
    text = normalised(produced, root)
    golden = HERE / name
    if os.environ.get("MIAUDIT_REGEN_GOLDEN") == "1":
        HERE.mkdir(exist_ok=True)
        golden.write_text(text)
        return
    if not golden.exists():
        pytest.fail(f"no golden copy {golden}; regenerate with MIAUDIT_REGEN_GOLDEN=1")
    expected = golden.read_text()
    if text != expected:
        import difflib

        diff = "".join(
            list(
                difflib.unified_diff(
                    expected.splitlines(True), text.splitlines(True), "golden", "now", n=1
                )
            )[:60]
        )
        pytest.fail(f"{name} changed:\n{diff}")
