"""The audit report: one self-contained HTML file, and a Markdown summary for pull requests.

An outer layer: it reads :class:`~miaudit.audit.AuditResult` (and, optionally, aggregates
computed from a run's restricted scores) and writes files; nothing in miaudit imports it.
"""

from miaudit.report._controls import AttackerProfile, Control, attacker_profile, recommend
from miaudit.report._format import format_estimate
from miaudit.report._inputs import DpAuditSummary, ScoreHistogram, TradeoffVariant
from miaudit.report._render import (
    REPORT_FILE,
    load_results,
    render_markdown,
    render_report,
    write_report,
)
from miaudit.report._scores import class_breakdown, score_histograms
from miaudit.report._verdict import (
    RISK_THRESHOLDS,
    RiskAssessment,
    RiskLevel,
    RiskThreshold,
    assess_risk,
)

__all__ = [
    "REPORT_FILE",
    "RISK_THRESHOLDS",
    "AttackerProfile",
    "Control",
    "DpAuditSummary",
    "RiskAssessment",
    "RiskLevel",
    "RiskThreshold",
    "ScoreHistogram",
    "TradeoffVariant",
    "assess_risk",
    "attacker_profile",
    "class_breakdown",
    "format_estimate",
    "load_results",
    "recommend",
    "render_markdown",
    "render_report",
    "score_histograms",
    "write_report",
]
