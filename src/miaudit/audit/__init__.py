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
from miaudit.audit._dp_audit import DpAuditDesign, DpAuditResult, dp_audit
from miaudit.audit._reference_audit import ExternalTarget, ReferenceRun, attack_store, audit
from miaudit.audit._results import RESULTS_SCHEMA, AttackResult, AuditResult
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
    "ReferenceRun",
    "TradeoffResult",
    "VariantSpec",
    "attack",
    "attack_store",
    "audit",
    "default_variants",
    "dp_audit",
    "load_audit_config",
    "parse_audit_config",
    "run_attacks",
    "tradeoff",
]
