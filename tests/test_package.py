"""The top-level package: light to import, every documented name reachable."""

from __future__ import annotations

import subprocess
import sys

CODE = """
import sys
import miaudit
from miaudit.models import build_net, train_unit  # what a training worker imports
assert "miaudit.audit" not in sys.modules and "miaudit.attacks" not in sys.modules, sorted(m for m in sys.modules if m.startswith("miaudit"))
assert callable(miaudit.attack) and miaudit.SignalsStore.__name__ == "SignalsStore"
assert callable(miaudit.audit.audit) and miaudit.audit.ExternalTarget
assert callable(miaudit.metrics.roc_auc_score) and miaudit.engine.train
try:
    miaudit.no_such_thing
except AttributeError as exc:
    assert "no_such_thing" in str(exc)
else:
    raise AssertionError("unknown attribute did not raise")
print("ok")
"""


def test_lazy_names_and_subpackages() -> None:
    proc = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and proc.stdout.strip() == "ok", proc.stderr
