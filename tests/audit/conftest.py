"""A small trained audit shared by the audit tests (digits, 6 MLPs, k = 2)."""

from __future__ import annotations

import pytest

from miaudit.audit import audit

CONFIG = """
seed = 3
[data]
dataset = "digits"
[model]
kind = "torch-mlp"
hidden = [64]
epochs = 30
batch_size = 32
[plan]
pool_fraction = 0.8
[engine]
workers = 0
progress = false
[audit]
references = 2
resamples = 100
attacks = ["loss", "lira_online", "lira_offline", "rmia_online", "rmia_offline", "ml_leaks"]
"""


@pytest.fixture(scope="session")
def run(tmp_path_factory):
    d = tmp_path_factory.mktemp("audit")
    (d / "audit.toml").write_text(CONFIG)
    result = audit(d / "audit.toml", d / "out", quiet=True)
    return d, result
