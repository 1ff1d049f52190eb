"""Audit orchestration: run attacks, evaluate them, write shareable and restricted results."""

from miaudit.audit._api import attack
from miaudit.audit._attack import DEFAULT_ATTACKS, AttackRun, run_attacks
from miaudit.audit._check_record import RecordEvidence, check_record
from miaudit.audit._config import (
    AUDIT_ATTACKS,
    AttackSection,
    AuditConfig,
    load_audit_config,
    parse_audit_config,
)
from miaudit.audit._demo import run_demo
from miaudit.audit._dp_audit import DpAuditDesign, DpAuditResult, dp_audit
from miaudit.audit._fail_on import GateRule, gate_failures, parse_gate_rule
from miaudit.audit._reference_audit import ExternalTarget, ReferenceRun, attack_store, audit
from miaudit.audit._results import (
    RESULTS_SCHEMA,
    AttackResult,
    AuditResult,
    SliceAttack,
    SliceResult,
)
from miaudit.audit._tradeoff import TradeoffResult, VariantSpec, default_variants, tradeoff

__all__ = [
    "AUDIT_ATTACKS",
    "DEFAULT_ATTACKS",
    "RESULTS_SCHEMA",
    "AttackResult",
    "AttackRun",
    "AttackSection",
    "AuditConfig",
    "AuditResult",
    "DpAuditDesign",
    "DpAuditResult",
    "ExternalTarget",
    "GateRule",
    "RecordEvidence",
    "ReferenceRun",
    "SliceAttack",
    "SliceResult",
    "TradeoffResult",
    "VariantSpec",
    "attack",
    "attack_store",
    "audit",
    "check_record",
    "default_variants",
    "dp_audit",
    "gate_failures",
    "load_audit_config",
    "parse_audit_config",
    "parse_gate_rule",
    "run_attacks",
    "run_demo",
    "tradeoff",
]
