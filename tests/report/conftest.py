"""Real audit results to render: a small saved-outputs audit and a small reference audit."""

from __future__ import annotations

import pytest

from miaudit.audit import attack, audit
from miaudit.data import ModelOutputs
from tests.simulate import subgroup_outputs

#: Record ids of the synthetic outputs: distinctive, so a test can prove none reaches a report.
ID_BASE = 7_340_000

REFERENCE_CONFIG = """
seed = 5
[data]
dataset = "digits"
[model]
kind = "torch-mlp"
hidden = [32]
epochs = 12
batch_size = 64
[plan]
pool_fraction = 0.8
[engine]
workers = 0
progress = false
[audit]
references = 2
resamples = 50
attacks = ["loss", "lira_online", "rmia_offline"]
"""


def synthetic_outputs(n: int = 600, seed: int = 0) -> ModelOutputs:
    """Three classes, members fitted better than non-members, a small rare group that leaks more."""
    return subgroup_outputs(n, seed, id_base=ID_BASE)


@pytest.fixture(scope="session")
def outputs_run(tmp_path_factory):
    """(folder, result) of ``miaudit attack`` on synthetic outputs, with scores.parquet."""
    d = tmp_path_factory.mktemp("outputs_run")
    path = d / "outputs.parquet"
    synthetic_outputs().save(path)
    result = attack(path, slices=["group"], n_resamples=50, seed=1, out=d / "out")
    return d / "out", result


@pytest.fixture(scope="session")
def reference_run(tmp_path_factory):
    """(folder, result) of a small reference-model audit (digits, 4 MLPs, k = 1)."""
    d = tmp_path_factory.mktemp("reference_run")
    (d / "audit.toml").write_text(REFERENCE_CONFIG)
    result = audit(d / "audit.toml", d / "out", quiet=True)
    return d / "out", result


def variants():
    """A trade-off run's variants, as the producer will hand them over."""
    from miaudit.metrics import Estimate
    from miaudit.report import TradeoffVariant

    def est(p: float, w: float) -> Estimate:
        return Estimate(point=p, lower=p - w, upper=p + w)

    return [
        TradeoffVariant(
            name="baseline",
            test_accuracy=0.84,
            generalization_gap=0.12,
            strongest_attack="rmia_online",
            auc=est(0.66, 0.01),
            tpr_at_1pct_fpr=est(0.08, 0.01),
            baseline=True,
        ),
        TradeoffVariant(
            name="weight decay 5e-4",
            test_accuracy=0.85,
            generalization_gap=0.04,
            strongest_attack="rmia_online",
            auc=est(0.58, 0.01),
            tpr_at_1pct_fpr=est(0.03, 0.01),
        ),
        TradeoffVariant(
            name="DP-SGD ε=4",
            test_accuracy=0.80,
            generalization_gap=0.01,
            strongest_attack="lira_online",
            auc=est(0.51, 0.01),
            tpr_at_1pct_fpr=Estimate(point=0.012, status="interval_not_reliable"),
            epsilon=4.0,
        ),
    ]


def dp_summary(bound: float = 1.6):
    from miaudit.report import DpAuditSummary

    return DpAuditSummary(
        claimed_epsilon=4.0,
        delta=1e-5,
        accountant="PRV",
        method="one training run (Steinke et al., 2023)",
        empirical_epsilon_lower_bound=bound,
        max_certifiable_epsilon=5.8,
        trials=1000,
    )


@pytest.fixture(scope="session")
def outputs_report(outputs_run):
    """The report ``miaudit report`` writes for the outputs run (default path, with its scores.parquet)."""
    from miaudit.report import write_report

    folder, _ = outputs_run
    path = write_report(folder)
    return path, path.read_text(encoding="utf-8")


@pytest.fixture(scope="session")
def full_report(reference_run, tmp_path_factory):
    """Every section: the reference run with score distributions, per-class rows, a trade-off and a DP audit."""
    from miaudit.report import render_report
    from miaudit.report._scores import aggregates_from_scores

    folder, result = reference_run
    hist, classes, note = aggregates_from_scores(folder / "scores.parquet", result)
    assert note is None
    html = render_report(
        result, histograms=hist, classes=classes, tradeoff=variants(), dp=dp_summary()
    )
    path = tmp_path_factory.mktemp("full_report") / "report.html"
    path.write_text(html, encoding="utf-8")
    return path, html
