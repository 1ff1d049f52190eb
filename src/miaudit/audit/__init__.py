"""Audit orchestration: run attacks, evaluate them, write shareable and restricted results."""

from miaudit.audit._api import attack
from miaudit.audit._attack import DEFAULT_ATTACKS, AttackRun, run_attacks
from miaudit.audit._results import RESULTS_SCHEMA, AttackResult, AuditResult

__all__ = ["DEFAULT_ATTACKS", "RESULTS_SCHEMA", "AttackResult", "AttackRun", "AuditResult", "attack", "run_attacks"]
