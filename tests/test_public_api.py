"""The public names are pinned: a change here is a change of the API."""

import miaudit
import miaudit.attacks
import miaudit.data
import miaudit.metrics
import miaudit.signals


def test_top_level_names():
    assert sorted(miaudit.__all__) == sorted(
        [
            "AuditResult",
            "InputError",
            "MiauditError",
            "ModelOutputs",
            "SignalsStore",
            "__version__",
            "attack",
            "load_outputs",
            "load_signals",
        ]
    )


def test_every_exported_name_exists():
    for module in (miaudit, miaudit.attacks, miaudit.data, miaudit.metrics, miaudit.signals):
        for name in module.__all__:
            assert hasattr(module, name), f"{module.__name__}.{name}"


def test_metric_names_follow_sklearn():
    for name in (
        "roc_auc_score",
        "roc_curve",
        "tpr_at_fpr",
        "membership_advantage",
        "balanced_accuracy_best",
        "ppv_at_fpr",
    ):
        assert name in miaudit.metrics.__all__
