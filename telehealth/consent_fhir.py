"""A consent version as a FHIR R4 Consent resource (built and validated by `fhir.resources`).

Mapping: scope `research`, category LOINC 59284-0 (patient consent), base provision `deny`
(opt-in) with the version's `applies_from` as its period start; one nested provision per
permit/deny with its purpose (v3 ActReason) and, per code, the code's LOINC and our own code;
the national opt-out as a nested deny of every secondary purpose plus the NHS opt-out policy.
`from_fhir` reads the same mapping back and refuses whatever else a Consent may say.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
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
LOINC = "http://loinc.org"


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


class FhirConsentError(ValueError):
    """A FHIR Consent this mapping cannot read without changing its meaning."""

    def __init__(self, problems: list[str]) -> None:
        super().__init__("; ".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class ParsedConsent:
    provisions: list[Provision]
    national_opt_out: bool
    applies_from: datetime | None


#: elements read (or safely ignored: server-set or descriptive) at each level; anything else is refused
_TOP = {
    "resourceType", "id", "meta", "status", "scope", "category", "patient", "dateTime",
    "performer", "policyRule", "policy", "provision",
}  # fmt: skip
_BASE = {"type", "period", "provision"}
_NESTED = {"type", "purpose", "class", "code"}
_BY_ACT_REASON = {code: purpose for purpose, (code, _) in PURPOSE_CODES.items()}
_BY_LOINC = {c.loinc: name for name, c in CODES.items()}


def _unknown(element: dict[str, Any], known: set[str], path: str) -> list[str]:
    return [f"{path}{k} is not understood" for k in sorted(set(element) - known)]


def _nested(i: int, p: dict[str, Any]) -> tuple[list[Provision], list[str]]:
    path = f"provision.provision[{i}]."
    problems = _unknown(p, _NESTED, path)
    decision = p.get("type")
    if decision not in ("permit", "deny"):
        problems.append(f"{path}type must be permit or deny, not {decision!r}")
    purposes: list[Purpose] = []
    for coding in p.get("purpose", []):
        purpose = _BY_ACT_REASON.get(coding.get("code", "")) if coding.get("system") == ACT_REASON else None
        if purpose is None:
            problems.append(f"{path}purpose {coding.get('system')}|{coding.get('code')} is not understood")
        else:
            purposes.append(purpose)
    for cls in p.get("class", []):
        if cls.get("code") != "Observation":
            problems.append(f"{path}class {cls.get('code')!r} is not understood (only Observation)")
    codes: list[str] = []
    for j, concept in enumerate(p.get("code", [])):
        ours = [c.get("code") for c in concept.get("coding", []) if c.get("system") == CODE_SYSTEM]
        loinc = [_BY_LOINC.get(c.get("code")) for c in concept.get("coding", []) if c.get("system") == LOINC]
        found = {c for c in [*ours, *loinc] if c in CODES}
        if len(found) != 1:
            problems.append(f"{path}code[{j}] names no single known code ({', '.join(CODES)})")
        else:
            codes.append(found.pop())
    if problems:
        return [], problems
    # no purpose in FHIR: every purpose
    return [
        Provision(purpose=purpose, decision=decision, codes=codes) for purpose in purposes or list(Purpose)
    ], []


def from_fhir(resource: dict[str, Any], patient_id: UUID) -> ParsedConsent:
    """A FHIR Consent as this service's consent; anything it cannot map exactly is refused,
    naming the elements, so a document never silently changes meaning (e.g. to a withdrawal)."""
    if resource.get("resourceType") != "Consent":
        raise FhirConsentError([f"resourceType must be Consent, not {resource.get('resourceType')!r}"])
    try:
        Consent.model_validate(resource)
    except ValueError as exc:
        raise FhirConsentError([f"not a valid FHIR R4 Consent: {exc}"]) from exc
    problems = _unknown(resource, _TOP, "")
    if resource.get("status") != "active":
        problems.append(f"status must be active, not {resource.get('status')!r}")
    scope = [c.get("code") for c in resource.get("scope", {}).get("coding", [])]
    if scope != ["research"]:
        problems.append(f"scope must be research ({CONSENT_SCOPE}), not {scope}")
    subject = resource.get("patient", {}).get("reference")
    if subject is not None and subject != f"Patient/{patient_id}":
        problems.append(f"patient {subject} is not Patient/{patient_id}")
    base = resource.get("provision")
    if not isinstance(base, dict):
        raise FhirConsentError([*problems, "provision is missing: nothing says what is permitted or denied"])
    problems += _unknown(base, _BASE, "provision.")
    if base.get("type") != "deny":
        problems.append("provision.type must be deny (opt-in: what no nested provision permits is denied)")
    period = base.get("period", {})
    problems += [f"provision.period.{k} is not understood" for k in sorted(set(period) - {"start"})]
    policies = {p.get("uri") for p in resource.get("policy", [])}
    problems += [f"policy {uri} is not understood" for uri in sorted(policies - {OPT_OUT_POLICY}, key=str)]
    opt_out = OPT_OUT_POLICY in policies
    provisions: list[Provision] = []
    nested = list(base.get("provision", []))
    if opt_out and nested and nested[0] == {"type": "deny", "purpose": [_purpose(p) for p in Purpose]}:
        nested = nested[1:]  # the opt-out's own marker, written by `to_fhir`
    for i, p in enumerate(nested):
        found, wrong = _nested(i, p)
        provisions += found
        problems += wrong
    if problems:
        raise FhirConsentError(problems)
    start = period.get("start")
    applies_from = datetime.fromisoformat(start) if start else None
    if applies_from is not None and applies_from.tzinfo is None:
        raise FhirConsentError(["provision.period.start needs a UTC offset"])
    return ParsedConsent(provisions, opt_out, applies_from)
