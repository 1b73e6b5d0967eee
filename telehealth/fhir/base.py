"""Systems, content type and the helpers every FHIR shape here uses."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import datetime
from typing import Any
from uuid import UUID, uuid5

from fhir.resources.R4B.bundle import Bundle
from fhir.resources.R4B.operationoutcome import OperationOutcome
from pydantic import BaseModel

FHIR_JSON = "application/fhir+json"
FHIR_VERSION = "4.0.1"

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
OBSERVATION_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
DEVICE_STATUS_REASON = "http://terminology.hl7.org/CodeSystem/device-status-reason"
DATA_ABSENT_REASON = "http://terminology.hl7.org/CodeSystem/data-absent-reason"
NHS_NUMBER = "https://fhir.nhs.uk/Id/nhs-number"

# The project's own systems, as URNs like the consent mapping's `urn:telehealth:code`.
CODE_SYSTEM = "urn:telehealth:code"
QUALITY_SYSTEM = "urn:telehealth:quality"
PATIENT_ID_SYSTEM = "urn:telehealth:patient"
DEVICE_ID_SYSTEM = "urn:telehealth:device"
READING_ID_SYSTEM = "urn:telehealth:reading"
DEVICE_KIND_SYSTEM = "urn:telehealth:device-kind"
DEVICE_PROPERTY_SYSTEM = "urn:telehealth:device-property"

#: namespace of the stable ids derived here (same reading, same id on every request)
ID_NAMESPACE = UUID("6c1f2b8e-4f0a-5d9e-9a57-0c7e3e1f2a44")


def stable_id(*parts: object) -> str:
    """A FHIR id (a UUID) that is the same whenever it is derived from the same parts."""
    return str(uuid5(ID_NAMESPACE, "/".join(str(p) for p in parts)))


def instant(moment: datetime) -> str:
    """A FHIR instant / dateTime in UTC with `Z`, as clients parse most readily."""
    return moment.isoformat().replace("+00:00", "Z")


def quantity(value: float, unit: str, code: str | None = None) -> dict[str, Any]:
    """A UCUM quantity; `unit` is the human label, `code` the UCUM code (default: `unit`)."""
    return {"value": value, "unit": unit, "system": UCUM, "code": code or unit}


def coding(system: str, code: str, display: str | None = None) -> dict[str, str]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def validated(model: type[BaseModel], resource: Mapping[str, Any]) -> dict[str, Any]:
    """`resource` checked against its R4 model. A malformed resource is a bug here, never the
    client's, so a failure raises (and the client gets a 500 OperationOutcome)."""
    model.model_validate(resource)
    return dict(resource)


# ---- errors ---------------------------------------------------------------------------------

#: HTTP status -> OperationOutcome issue type (http://hl7.org/fhir/issue-type)
ISSUE_TYPES = {
    400: "invalid",
    401: "login",
    403: "forbidden",
    404: "not-found",
    405: "not-supported",
    413: "too-costly",
    422: "invalid",
    500: "exception",
    503: "transient",
}


def outcome(status: int, diagnostics: str) -> dict[str, Any]:
    """The OperationOutcome a FHIR client gets for an error answer with this status."""
    resource = {
        "resourceType": "OperationOutcome",
        "issue": [
            {
                "severity": "error" if status < 500 else "fatal",
                "code": ISSUE_TYPES.get(status, "processing"),
                "diagnostics": diagnostics,
            }
        ],
    }
    return validated(OperationOutcome, resource)


# ---- bundles --------------------------------------------------------------------------------


def searchset(
    entries: Iterable[tuple[str, dict[str, Any]]], *, self_url: str, next_url: str | None, now: datetime
) -> dict[str, Any]:
    """A search result page: (fullUrl, resource) entries, `self` and (if more) `next` links."""
    links = [{"relation": "self", "url": self_url}]
    if next_url is not None:
        links.append({"relation": "next", "url": next_url})
    bundle = {
        "resourceType": "Bundle",
        "type": "searchset",
        "timestamp": instant(now),
        "link": links,
    }
    found = [{"fullUrl": url, "resource": r, "search": {"mode": "match"}} for url, r in entries]
    if found:  # FHIR JSON has no empty arrays: no match, no `entry`
        bundle["entry"] = found
    return bundle


def check_bundle_envelope(bundle: Mapping[str, Any], *, sample: int = 50) -> None:
    """Validate a bundle's envelope (type, links, the first `sample` entries' fields) without
    re-validating its resources, which the builders check themselves: entries past the first
    ones are readings' entries of one fixed shape, and validating thousands costs a second
    (decision 0050)."""
    envelope = {k: v for k, v in bundle.items() if k != "entry"}
    entries = [{k: v for k, v in e.items() if k != "resource"} for e in bundle.get("entry", [])[:sample]]
    Bundle.model_validate({**envelope, "entry": entries} if entries else envelope)
