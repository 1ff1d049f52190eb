"""Audit orchestration: run attacks, evaluate them, write shareable and restricted results."""

from miaudit.audit._api import attack
from miaudit.audit._attack import DEFAULT_ATTACKS, AttackRun, run_attacks
from miaudit.audit._config import (
    AUDIT_ATTACKS,
    AttackSection,
    AuditConfig,
    load_audit_config,
    parse_audit_config,
)
from miaudit.audit._dp_audit import CANARY_KINDS, DpAuditDesign, DpAuditResult, dp_audit
from miaudit.audit._reference_audit import (
    AuditRun,
    ExternalTarget,
    ReferenceRun,
    attack_store,
    audit,
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
    "DpAuditDesign",
    "DpAuditResult",
    "ExposedRecord",
    "ExternalTarget",
    "PrivacySpent",
    "ReferenceRun",
    "RobustnessComparison",
    "SliceAttack",
    "SliceResult",
    "TradeoffResult",
    "VariantComparison",
    "VariantOutcome",
    "VariantSpec",
    "attack",
    "attack_store",
    "audit",
    "default_variants",
    "dp_audit",
    "load_audit_config",
    "model_predictor",
    "parse_audit_config",
    "run_attacks",
    "run_audit",
    "tradeoff",
]
