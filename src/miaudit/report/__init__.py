"""The audit report: one self-contained HTML file, and a Markdown summary for pull requests.

An outer layer: it reads :class:`~miaudit.audit.AuditResult` (and, optionally, aggregates
computed from a run's restricted scores) and writes files; nothing in miaudit imports it.
"""

from miaudit.report._assessment import (
    CONTROLS,
    AssessmentRow,
    Framework,
    assess_frameworks,
    load_frameworks,
)
from miaudit.report._controls import AttackerProfile, Control, attacker_profile, recommend
from miaudit.report._design import DesignLimits, design_limits, needed_nonmembers
from miaudit.report._folders import (
    WrittenReport,
    dp_summary_from_audit,
    find_folder,
    render_dp_markdown,
    render_dp_report,
    variants_from_tradeoff,
    write_folder_report,
)
from miaudit.report._format import format_estimate, interval_decimals
from miaudit.report._inputs import DpAuditSummary, ScoreHistogram, TradeoffVariant
from miaudit.report._pdf import find_chromium, print_pdf
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
    "CONTROLS",
    "REPORT_FILE",
    "RISK_THRESHOLDS",
    "AssessmentRow",
    "AttackerProfile",
    "Control",
    "DesignLimits",
    "DpAuditSummary",
    "Framework",
    "RiskAssessment",
    "RiskLevel",
    "RiskThreshold",
    "ScoreHistogram",
    "TradeoffVariant",
    "WrittenReport",
    "assess_frameworks",
    "assess_risk",
    "attacker_profile",
    "class_breakdown",
    "design_limits",
    "dp_summary_from_audit",
    "find_chromium",
    "find_folder",
    "format_estimate",
    "interval_decimals",
    "load_frameworks",
    "load_results",
    "needed_nonmembers",
    "print_pdf",
    "recommend",
    "render_dp_markdown",
    "render_dp_report",
    "render_markdown",
    "render_report",
    "score_histograms",
    "variants_from_tradeoff",
    "write_folder_report",
    "write_report",
]
