"""The public names are pinned: a change here is a change of the API."""

import miaudit
import miaudit.attacks
import miaudit.audit
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


def test_data_names():
    assert sorted(miaudit.data.__all__) == sorted(
        [
            "ADULT_CATEGORICAL",
            "ADULT_LABEL",
            "ADULT_NUMERIC",
            "CHUNK_RECORDS",
            "CORPUS_PACKAGE",
            "CORPUS_VERSION",
            "FAMILIES",
            "FASHION_MNIST_ATTRIBUTION",
            "FASHION_MNIST_CLASSES",
            "FASHION_MNIST_PACKAGE",
            "MAX_RECORD_CHARS",
            "SIGNALS_SCHEMA",
            "TEMPLATE_FAMILIES",
            "SyntheticText",
            "fake_names",
            "fits_float32",
            "looks_like_probabilities",
            "synthetic_records",
            "ModelOutputs",
            "PopulationOutputs",
            "RawTable",
            "SignalsInfo",
            "SignalsStore",
            "SignalsWriter",
            "TextCorpus",
            "is_mapped",
            "load_adult",
            "load_fashion_mnist",
            "load_outputs",
            "load_population",
            "load_records",
            "load_signals",
            "load_text_corpus",
            "parse_idx",
            "read_table",
            "record_chunks",
            "release",
        ]
    )


def test_audit_exports_its_entry_points_and_result_types():
    """What the CLI and the report use: every entry point, and the type of what it returns."""
    assert set(miaudit.audit.__all__) >= {
        "attack",
        "audit",
        "audit_signals",
        "check_record",
        "refuse_another_run",
        "dp_audit",
        "run_demo",
        "tradeoff",
        "parse_gate_rule",
        "gate_failures",
        "AuditResult",
        "AttackResult",
        "DpAuditResult",
        "GateRule",
        "RecordEvidence",
        "SliceAttack",
        "SliceResult",
        "TradeoffResult",
    }


def test_every_exported_name_exists():
    modules = (
        miaudit,
        miaudit.attacks,
        miaudit.audit,
        miaudit.data,
        miaudit.metrics,
        miaudit.signals,
    )
    for module in modules:
        assert len(module.__all__) == len(set(module.__all__)), module.__name__
        for name in module.__all__:
            assert getattr(module, name, None) is not None, f"{module.__name__}.{name}"


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
