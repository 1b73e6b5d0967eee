"""Every action the code writes to the audit trail reads as words in the patient's access log."""

from __future__ import annotations

import ast

from telehealth.audit_actions import LABELS, describe
from tests.paths import ROOT

PACKAGES = ("dashboard_api", "telehealth", "processor", "launcher", "gateway")


def _calls_audit(node: ast.Call) -> bool:
    func = node.func
    name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
    return name in ("audit", "_audit", "record", "auditor")


def written_actions() -> set[str]:
    """Action codes in audit calls: the first string argument of audit(...)/_audit(pool, user, ...),
    `action=` of audit.record(...), and the f-string alert.{acknowledge,resolve}."""
    found: set[str] = set()
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(), str(path))):
                if not isinstance(node, ast.Call) or not _calls_audit(node):
                    continue
                for kw in node.keywords:
                    if kw.arg == "action" and isinstance(kw.value, ast.Constant):
                        found.add(kw.value.value)
                for arg in node.args:
                    if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and "." in arg.value:
                        found.add(arg.value)
                        break
    return found


def test_the_scan_finds_the_actions() -> None:
    actions = written_actions()
    assert {"observations.read", "alerts.stream.event", "access.denied", "glucose_summary.read"} <= actions


def test_every_written_action_has_a_label() -> None:
    missing = sorted(a for a in written_actions() if a not in LABELS)
    assert missing == [], f"add these to telehealth/audit_actions.py LABELS: {missing}"
    assert {"alert.acknowledge", "alert.resolve"} <= set(LABELS)  # written with an f-string


def test_unknown_actions_still_read_as_words() -> None:
    assert (
        describe("alerts.stream.event") == "was shown a change to one of your alerts in the live alert inbox"
    )
    assert describe("fhir.observation_search") == "fhir observation search"
