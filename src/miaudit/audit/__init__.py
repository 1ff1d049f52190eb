"""Audit orchestration: run attacks, evaluate them, write shareable and restricted results."""

from miaudit.audit._api import attack, audit_text
from miaudit.audit._attack import DEFAULT_ATTACKS, AttackRun, run_attacks
from miaudit.audit._check_record import RecordEvidence, check_record
from miaudit.audit._config import (
    AUDIT_ATTACKS,
    AttackSection,
    AuditConfig,
    SignalsAuditConfig,
    load_audit_config,
    load_signals_config,
    parse_audit_config,
    signals_audit_config,
)
from miaudit.audit._demo import run_demo
from miaudit.audit._dp_audit import CANARY_KINDS, DpAuditDesign, DpAuditResult, dp_audit
from miaudit.audit._fail_on import GateRule, gate_failures, parse_gate_rule
from miaudit.audit._key_holder import AuditedRecord, audited_records, records_of_pseudonyms
from miaudit.audit._reference_audit import (
    AuditRun,
    ExternalTarget,
    ReferenceRun,
    attack_store,
    audit,
    audit_signals,
    augmented_queries,
    parse_references,
    run_audit,
)
from miaudit.audit._results import (
    RESULTS_SCHEMA,
    AttackResult,
    AuditResult,
    ExposedRecord,
    PrivacySpent,
    SliceAttack,
    SliceResult,
)
from miaudit.audit._text_audit import applicable_text_attacks, run_text_attacks
from miaudit.audit._tradeoff import (
    RobustnessComparison,
    TradeoffResult,
    VariantComparison,
    VariantOutcome,
    VariantSpec,
    default_variants,
    model_predictor,
    tradeoff,
)

__all__ = [
    "AUDIT_ATTACKS",
    "CANARY_KINDS",
    "DEFAULT_ATTACKS",
    "RESULTS_SCHEMA",
    "AttackResult",
    "AttackRun",
    "AttackSection",
    "AuditConfig",
    "AuditResult",
    "AuditRun",
    "AuditedRecord",
    "DpAuditDesign",
    "DpAuditResult",
    "ExposedRecord",
    "ExternalTarget",
    "GateRule",
    "PrivacySpent",
    "RecordEvidence",
    "ReferenceRun",
    "RobustnessComparison",
    "SignalsAuditConfig",
    "SliceAttack",
    "SliceResult",
    "TradeoffResult",
    "VariantComparison",
    "VariantOutcome",
    "VariantSpec",
    "applicable_text_attacks",
    "attack",
    "attack_store",
    "audit",
    "audit_signals",
    "audit_text",
    "audited_records",
    "augmented_queries",
    "check_record",
    "default_variants",
    "dp_audit",
    "gate_failures",
    "load_audit_config",
    "load_signals_config",
    "model_predictor",
    "parse_audit_config",
    "parse_gate_rule",
    "parse_references",
    "records_of_pseudonyms",
    "run_attacks",
    "run_audit",
    "run_demo",
    "run_text_attacks",
    "signals_audit_config",
    "tradeoff",
]
