"""A consent version as a FHIR R4 Consent resource (built and validated by `fhir.resources`).

Mapping: scope `research`, category LOINC 59284-0 (patient consent), base provision `deny`
(opt-in) with the version's `applies_from` as its period start; one nested provision per
permit/deny with its purpose (v3 ActReason) and, per code, the code's LOINC and our own code;
the national opt-out as a nested deny of every secondary purpose plus the NHS opt-out policy.
"""

from __future__ import annotations

from typing import Any
from uuid import UUID

from fhir.resources.R4B.consent import Consent

from telehealth.codes import CODES
from telehealth.consent import ConsentVersion, Provision, Purpose

ACT_REASON = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PURPOSE_CODES: dict[Purpose, tuple[str, str]] = {
    Purpose.RESEARCH: ("HRESCH", "healthcare research"),
    Purpose.PLANNING: ("HOPERAT", "healthcare operations (service planning)"),
    Purpose.COMMERCIAL: ("HMARKT", "healthcare marketing (commercial use)"),
}
CODE_SYSTEM = "urn:telehealth:code"
CONSENT_SCOPE = "http://terminology.hl7.org/CodeSystem/consentscope"
OPT_OUT_POLICY = "https://digital.nhs.uk/services/national-data-opt-out"


def _purpose(p: Purpose) -> dict[str, str]:
    code, display = PURPOSE_CODES[p]
    return {"system": ACT_REASON, "code": code, "display": display}


def _provision(p: Provision) -> dict[str, Any]:
    out: dict[str, Any] = {
        "type": p.decision,
        "purpose": [_purpose(p.purpose)],
        "class": [{"system": "http://hl7.org/fhir/resource-types", "code": "Observation"}],
    }
    if p.codes:
        out["code"] = [
            {
                "coding": [
                    {"system": CODE_SYSTEM, "code": c},
                    {"system": "http://loinc.org", "code": CODES[c].loinc},
                ]
            }
            for c in p.codes
        ]
    return out


def to_fhir(patient_id: UUID, version: ConsentVersion, *, active: bool) -> dict[str, Any]:
    """The FHIR JSON of one version; `active` is false for superseded versions."""
    nested = [_provision(p) for p in version.provisions]
    if version.national_opt_out:
        nested.insert(0, {"type": "deny", "purpose": [_purpose(p) for p in Purpose]})
    performer = (
        {"reference": f"Patient/{patient_id}", "display": version.recorded_by}
        if version.recorded_by_role == "patient"
        else {"display": f"{version.recorded_by} (admin, on the patient's behalf)"}
    )
    resource: dict[str, Any] = {
        "resourceType": "Consent",
        "id": f"{patient_id}-v{version.version}",
        "meta": {"versionId": str(version.version)},
        "status": "active" if active else "inactive",
        "scope": {"coding": [{"system": CONSENT_SCOPE, "code": "research"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0"}]}],
        "patient": {"reference": f"Patient/{patient_id}"},
        "dateTime": version.recorded_at.isoformat(),
        "performer": [performer],
        "policyRule": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}]
        },
        "provision": {
            "type": "deny",
            "period": {"start": version.applies_from.isoformat()},
            "provision": nested,
        },
    }
    if version.national_opt_out:
        resource["policy"] = [{"uri": OPT_OUT_POLICY}]
    # Validate against the R4 model: a malformed resource is a bug here, not the client's.
    return Consent.model_validate(resource).model_dump(mode="json", by_alias=True, exclude_none=True)
