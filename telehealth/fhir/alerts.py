"""Alerts as FHIR R4 Flags: a warning about the patient that care should know of.

An open or acknowledged alert is an `active` Flag, a resolved one `inactive`; the period runs
from when it opened to when it was resolved. Rule, severity and lifecycle state are codings in
the project's own systems (FHIR has no codes for them); the message is the code's text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from fhir.resources.R4B.flag import Flag

from telehealth.fhir.base import coding, instant, validated
from telehealth.fhir.resources import device_fhir_id

FLAG_CATEGORY = "http://terminology.hl7.org/CodeSystem/flag-category"
ALERT_ID_SYSTEM = "urn:telehealth:alert"
RULE_SYSTEM = "urn:telehealth:alert-rule"
SEVERITY_SYSTEM = "urn:telehealth:alert-severity"
STATE_SYSTEM = "urn:telehealth:alert-status"


def flag(row: Mapping[str, Any]) -> dict[str, Any]:
    """An alert row (id, patient_id, rule, severity, status, message, device_id, opened_at,
    resolved_at) as a Flag."""
    period = {"start": instant(row["opened_at"])}
    if row.get("resolved_at") is not None:
        period["end"] = instant(row["resolved_at"])
    resource: dict[str, Any] = {
        "resourceType": "Flag",
        "id": f"alert-{row['id']}",
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": str(row["id"])}],
        "status": "inactive" if row["status"] == "resolved" else "active",
        "category": [
            {"coding": [coding(FLAG_CATEGORY, "clinical", "Clinical")]},
            {"coding": [coding(SEVERITY_SYSTEM, row["severity"])]},
            {"coding": [coding(STATE_SYSTEM, row["status"])]},
        ],
        "code": {"coding": [coding(RULE_SYSTEM, row["rule"])], "text": row["message"]},
        "subject": {"reference": f"Patient/{row['patient_id']}"},
        "period": period,
    }
    if row.get("device_id"):
        resource["author"] = {"reference": f"Device/{device_fhir_id(row['device_id'])}"}
    return validated(Flag, resource)
