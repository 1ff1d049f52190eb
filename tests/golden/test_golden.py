"""Golden outputs: fixed-seed runs of attack, audit, report, tradeoff and dp-audit whose results
must not change (apart from timestamps and versions) through a refactor. A change of behaviour is
a deliberate act: regenerate with ``MIAUDIT_REGEN_GOLDEN=1`` and say why in the commit."""

from __future__ import annotations

import pytest

from tests.golden import _runs


def test_attack(tmp_path):
    _runs.check("attack.json", _runs.run_attack(tmp_path), tmp_path)


def test_audit_and_report(tmp_path):
    results, html = _runs.run_audit(tmp_path)
    _runs.check("audit.json", results, tmp_path)
    _runs.check("report.html", html, tmp_path)


def test_tradeoff(tmp_path):
    pytest.importorskip("opacus")
    written = _runs.run_tradeoff(tmp_path)
    _runs.check("tradeoff.json", written, tmp_path)
    # every folder of restricted files 0700 (variants/ took the umask's 0755: new-user walkthrough)
    import stat

    for folder in (written.parent / "variants", *(written.parent / "variants").iterdir()):
        assert stat.S_IMODE(folder.stat().st_mode) == 0o700, folder


def test_dp_audit(tmp_path):
    pytest.importorskip("opacus")
    _runs.check("dp_audit.json", _runs.run_dp_audit(tmp_path), tmp_path)
